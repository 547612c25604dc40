//! `memcpy`, `memmove` and `memset` (and their ARM EABI aliases) in a few
//! dozen bytes of Thumb-2, one byte at a time.
//!
//! compiler-builtins' versions copy by words, with separate paths for every
//! alignment and direction: 3.3 KiB of flash, a tenth of the budget. Here
//! every copy is at most a packet buffer (274 bytes) and the UART moves a
//! byte in far longer than these loops take per byte, so the speed buys
//! nothing. compiler-builtins defines its versions weak; these are strong
//! and take their place at link time.
//!
//! Written in assembly so that the compiler can not recognise the loops and
//! turn them back into calls to themselves.

core::arch::global_asm!(
    ".syntax unified",
    ".thumb",
    ".section .text.fw_mem,\"ax\",%progbits",
    ".p2align 1",
    // memmove(dst, src, n) -> dst: backwards when dst is above src (an
    // overlap would otherwise overwrite source bytes before reading them).
    ".global memmove",
    ".global __aeabi_memmove",
    ".global __aeabi_memmove4",
    ".global __aeabi_memmove8",
    ".type memmove, %function",
    ".type __aeabi_memmove, %function",
    ".type __aeabi_memmove4, %function",
    ".type __aeabi_memmove8, %function",
    "memmove:",
    "__aeabi_memmove:",
    "__aeabi_memmove4:",
    "__aeabi_memmove8:",
    "    cmp r0, r1",
    "    bls memcpy",
    "    cmp r2, #0",
    "    beq 2f",
    "1:  subs r2, r2, #1",
    "    ldrb r3, [r1, r2]",
    "    strb r3, [r0, r2]",
    "    bne 1b",
    "2:  bx lr",
    // memcpy(dst, src, n) -> dst: forwards (memmove's case dst <= src too).
    ".global memcpy",
    ".global __aeabi_memcpy",
    ".global __aeabi_memcpy4",
    ".global __aeabi_memcpy8",
    ".type memcpy, %function",
    ".type __aeabi_memcpy, %function",
    ".type __aeabi_memcpy4, %function",
    ".type __aeabi_memcpy8, %function",
    "memcpy:",
    "__aeabi_memcpy:",
    "__aeabi_memcpy4:",
    "__aeabi_memcpy8:",
    "    mov r12, r0",
    "    cbz r2, 2f",
    "1:  ldrb r3, [r1], #1",
    "    strb r3, [r12], #1",
    "    subs r2, r2, #1",
    "    bne 1b",
    "2:  bx lr",
    // __aeabi_memclr(dst, n), __aeabi_memset(dst, n, byte): the EABI order,
    // turned into memset's (dst, byte, n).
    ".global __aeabi_memclr",
    ".global __aeabi_memclr4",
    ".global __aeabi_memclr8",
    ".type __aeabi_memclr, %function",
    ".type __aeabi_memclr4, %function",
    ".type __aeabi_memclr8, %function",
    "__aeabi_memclr:",
    "__aeabi_memclr4:",
    "__aeabi_memclr8:",
    "    movs r2, #0",
    ".global __aeabi_memset",
    ".global __aeabi_memset4",
    ".global __aeabi_memset8",
    ".type __aeabi_memset, %function",
    ".type __aeabi_memset4, %function",
    ".type __aeabi_memset8, %function",
    "__aeabi_memset:",
    "__aeabi_memset4:",
    "__aeabi_memset8:",
    "    mov r3, r1",
    "    mov r1, r2",
    "    mov r2, r3",
    // memset(dst, byte, n) -> dst.
    ".global memset",
    ".type memset, %function",
    "memset:",
    "    mov r12, r0",
    "    cbz r2, 2f",
    "1:  strb r1, [r12], #1",
    "    subs r2, r2, #1",
    "    bne 1b",
    "2:  bx lr",
);
