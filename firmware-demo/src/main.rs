//! csp-core as Cortex-M flight firmware: one CSP node on a KISS UART.
//!
//! Runs on QEMU's `mps2-an386` (Cortex-M4F). UART0 carries KISS frames;
//! SysTick counts milliseconds (the node's clock, and the wake-up for RDP
//! timers); the UART receive interrupt wakes the core from `wfi`, so an idle
//! node costs the host no CPU. See `app.rs` for what the node answers.
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

mod app;
mod board;
mod clock;
mod mem;
mod uart;

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;
use csp_core::security::HmacKey;
use csp_core::{Addr, Version};

#[cfg(feature = "defmt")]
use defmt_semihosting as _;

use crate::app::{Demo, DemoConfig};
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

/// The PRNG seed: the build time (see build.rs), so two builds differ.
const SEED: u64 = parse_u64(env!("FW_BUILD_EPOCH"));

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

/// `s` as a decimal u64 (0 if it is not one).
const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut v: u64 = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            return 0;
        }
        v = v.wrapping_mul(10).wrapping_add((b[i] - b'0') as u64);
        i += 1;
    }
    v
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
    let config = DemoConfig {
        addr,
        version: VERSION,
        hmac_key: HmacKey::from_key_string(DEMO_KEY),
        ident: board::IDENT,
        // No RNG on this board: a per-build value, mixed with timing noise
        // as frames arrive (see `Board::entropy`).
        seed: SEED,
    };
    let demo = place(config);
    if demo.start().is_err() {
        fatal("node setup failed");
    }

    clock::start(&mut cp.SYST);
    let mut clock = clock::Monotonic::new();
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
        let now = clock.now();
        if let Some(byte) = uart.try_read() {
            demo.receive(now, byte, &board, &mut uart);
        } else if demo.poll_timeout().is_some_and(|t| t <= now) {
            demo.handle_timeout(now, &mut uart);
        } else {
            // SysTick wakes us every millisecond, so RDP timers run late
            // by at most that.
            idle(&uart);
        }
    }
}

/// Builds the application in its static (in .bss, counted by llvm-size),
/// once, in a frame of its own: the compiler assembles part of the value in
/// stack temporaries before moving it (5.5 KiB with two RDP slots, the
/// deepest the stack gets; 10 KiB before csp-core's connection table
/// stopped copying an empty slot per connection), and they are gone when
/// this returns. `cortex_m::singleton!` would keep them in main's frame
/// for ever.
#[inline(never)]
fn place(config: DemoConfig) -> &'static mut Demo {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut SLOT: MaybeUninit<Demo> = MaybeUninit::uninit();
    if TAKEN.swap(true, Ordering::Relaxed) {
        fatal("node created twice");
    }
    // SAFETY: TAKEN lets this run once, so this is the only reference ever
    // made to SLOT.
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(SLOT) };
    slot.write(Demo::new(config))
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

/// Interrupt lines of the mps2 boards' NVIC as QEMU models them.
const IRQ_LINES: usize = 32;

extern "C" {
    /// cortex-m-rt's name for the handler below.
    fn DefaultHandler();
}

/// The device vectors, all to `DefaultHandler`: only as many as the board
/// has lines (cortex-m-rt's own table, without its `device` feature, has
/// 240: 832 bytes more flash). Only UART0 receive is ever unmasked.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
#[used]
static __INTERRUPTS: [unsafe extern "C" fn(); IRQ_LINES] = [DefaultHandler; IRQ_LINES];

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
    report(why, None);
    exit_failure()
}

/// Writes `firmware-demo: fatal: WHY [at FILE:LINE]` to QEMU's stdout.
/// Without `core::fmt`: its machinery (about 2 KiB of flash) is kept out of
/// the image, so no number is formatted but the line's, by hand.
#[cfg(not(feature = "defmt"))]
fn report(why: &str, at: Option<&core::panic::Location>) {
    use cortex_m_semihosting::hio;
    let Ok(mut out) = hio::hstdout() else { return };
    let _ = out.write_all(b"firmware-demo: fatal: ");
    let _ = out.write_all(why.as_bytes());
    if let Some(at) = at {
        let _ = out.write_all(b" at ");
        let _ = out.write_all(at.file().as_bytes());
        // Digits from the last; a u32 has at most 10. Iterators, not
        // indexing: no panic path inside the panic handler.
        let mut digits = [0u8; 10];
        let mut n = at.line();
        let mut used = 0;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
            used += 1;
            if n == 0 {
                break;
            }
        }
        let _ = out.write_all(b":");
        let _ = out.write_all(digits.get(digits.len() - used..).unwrap_or_default());
    }
    let _ = out.write_all(b"\n");
}

#[cfg(feature = "defmt")]
fn report(why: &str, at: Option<&core::panic::Location>) {
    match at {
        Some(at) => defmt::error!(
            "firmware-demo: fatal: {} at {}:{}",
            why,
            at.file(),
            at.line()
        ),
        None => defmt::error!("firmware-demo: fatal: {}", why),
    }
}

fn exit_failure() -> ! {
    loop {
        // Only returns when QEMU runs without semihosting exit support.
        debug::exit(debug::EXIT_FAILURE);
        cortex_m::asm::wfi();
    }
}

/// A bug (csp-core's decoders are total, so no input panics): where it is.
/// The message is not formatted (see `report`).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    report("panic", info.location());
    exit_failure()
}
