//! Milliseconds and seconds since boot from SysTick.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SYST};

/// SysTick's processor clock on QEMU's mps2 boards (the model's fixed rate).
pub const CORE_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);
static SECONDS: AtomicU32 = AtomicU32::new(0);
// Milliseconds into the current second: kept apart so that seconds stay right
// when MILLIS wraps (2^32 is not a multiple of 1000).
static SUBSEC: AtomicU32 = AtomicU32::new(0);

/// Starts the 1 kHz tick.
pub fn start(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Called from the SysTick exception, once a millisecond.
pub fn tick() {
    // Only this handler writes these; the main loop only reads.
    MILLIS.fetch_add(1, Ordering::Relaxed);
    let sub = SUBSEC.load(Ordering::Relaxed) + 1;
    if sub >= 1000 {
        SUBSEC.store(0, Ordering::Relaxed);
        SECONDS.fetch_add(1, Ordering::Relaxed);
    } else {
        SUBSEC.store(sub, Ordering::Relaxed);
    }
}

/// Milliseconds since boot (wraps after 49.7 days).
#[allow(dead_code)] // the time base csp-rdp will run on
pub fn millis() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

/// Whole seconds since boot.
pub fn seconds() -> u32 {
    SECONDS.load(Ordering::Relaxed)
}
