//! csp-core as Cortex-M flight firmware: one CSP node on a KISS UART.
//!
//! Runs on QEMU's `mps2-an386` (Cortex-M4F). UART0 carries KISS frames;
//! SysTick counts milliseconds; the UART receive interrupt wakes the core
//! from `wfi`, so an idle node costs the host no CPU. See `node.rs` for what
//! the node answers.
//!
//! No heap, and no panic on any input: csp-core's decoders are total. A
//! panic or fault (a bug) is reported over semihosting and ends QEMU with a
//! non-zero status, so a test sees it.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

/// Logging: defmt over semihosting with the `defmt` feature, nothing otherwise.
#[cfg(feature = "defmt")]
macro_rules! fw_log {
    ($($t:tt)*) => { defmt::info!($($t)*) };
}
#[cfg(not(feature = "defmt"))]
macro_rules! fw_log {
    ($($t:tt)*) => {{}};
}

mod board;
mod clock;
mod node;
mod uart;

use core::sync::atomic::Ordering;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;
use csp_core::security::HmacKey;
use csp_core::{Addr, Version};

#[cfg(feature = "defmt")]
use defmt_semihosting as _;

use crate::node::{Node, NodeConfig, MTU};
use crate::uart::Uart;

/// Header version on the link: 2 unless built with `--features header-v1`.
#[cfg(not(feature = "header-v1"))]
const VERSION: Version = Version::V2;
#[cfg(feature = "header-v1")]
const VERSION: Version = Version::V1;

/// Our CSP address: 10, or `FW_CSP_ADDR` at build time.
const CSP_ADDR: u16 = parse_u16(option_env!("FW_CSP_ADDR"), 10);

/// The shared demo key for HMAC-flagged packets (libcsp key-string form).
const DEMO_KEY: &[u8] = b"csp-demo-key";

/// Longest KISS frame taken (header and data): a full packet.
const FRAME_MAX: usize = MTU + VERSION.header_len();

/// `s` as a decimal u16, or `default` if unset; a bad value fails the build.
const fn parse_u16(s: Option<&str>, default: u16) -> u16 {
    let Some(s) = s else { return default };
    let b = s.as_bytes();
    assert!(!b.is_empty(), "FW_CSP_ADDR is empty");
    let mut v: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "FW_CSP_ADDR is not a number");
        v = v * 10 + (b[i] - b'0') as u32;
        assert!(v <= u16::MAX as u32, "FW_CSP_ADDR is too large");
        i += 1;
    }
    v as u16
}

/// UART0's receive interrupt as the NVIC sees it (no PAC for this board).
#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: the number is a valid mps2 interrupt line (UART0 RX).
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

#[entry]
fn main() -> ! {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        fatal("core peripherals taken twice")
    };
    let Ok(addr) = Addr::for_version(CSP_ADDR, VERSION) else {
        fatal("FW_CSP_ADDR does not fit the header version")
    };
    let config = NodeConfig {
        addr,
        version: VERSION,
        hmac_key: HmacKey::from_key_string(DEMO_KEY),
    };
    // In .bss (counted by llvm-size), not on the stack.
    let Some(node) = cortex_m::singleton!(: Node<FRAME_MAX> = Node::new(config)) else {
        fatal("node created twice")
    };

    clock::start(&mut cp.SYST);
    // SAFETY: the only UART0 handle; the interrupt handler only acknowledges.
    let mut uart = unsafe { Uart::uart0() };
    // SAFETY: the handler for this line is `DefaultHandler` below, which
    // shares nothing with the main loop but atomics.
    unsafe { NVIC::unmask(Irq(uart::UART0_RX_IRQ)) };
    fw_log!(
        "firmware-demo: CSP address {}, header {:?}",
        CSP_ADDR,
        VERSION
    );

    let board = board::Mps2;
    loop {
        match uart.try_read() {
            Some(byte) => node.receive(byte, &board, &mut uart),
            None => idle(&uart),
        }
    }
}

/// Sleeps until an interrupt, unless a byte is already waiting. Interrupts
/// are masked around the check so that a byte arriving between the check and
/// `wfi` still wakes us (a pending interrupt ends `wfi` even while masked).
fn idle(uart: &Uart) {
    cortex_m::interrupt::disable();
    if !uart.rx_ready() {
        cortex_m::asm::wfi();
    }
    // SAFETY: not inside a critical section; the handlers only touch atomics
    // and INTCLEAR.
    unsafe { cortex_m::interrupt::enable() };
}

#[exception]
fn SysTick() {
    clock::tick();
}

/// Device interrupts: only UART0 receive is unmasked.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == uart::UART0_RX_IRQ as i16 {
        uart::clear_rx_interrupt();
        board::RX_IRQS.fetch_add(1, Ordering::Relaxed);
    } else {
        fatal("unexpected interrupt");
    }
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    fatal("hard fault")
}

/// Reports over semihosting and ends QEMU with a failure status.
fn fatal(why: &str) -> ! {
    report(format_args!("{}", why));
    exit_failure()
}

#[cfg(not(feature = "defmt"))]
fn report(args: core::fmt::Arguments) {
    cortex_m_semihosting::hprintln!("firmware-demo: fatal: {}", args);
}

#[cfg(feature = "defmt")]
fn report(args: core::fmt::Arguments) {
    defmt::error!("firmware-demo: fatal: {}", defmt::Display2Format(&args));
}

fn exit_failure() -> ! {
    loop {
        // Only returns when QEMU runs without semihosting exit support.
        debug::exit(debug::EXIT_FAILURE);
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    report(format_args!("panic: {}", info));
    exit_failure()
}
