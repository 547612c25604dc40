//! Milliseconds since boot from SysTick, as the node's [`Instant`].

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use csp_core::time::Instant;

/// SysTick's processor clock on QEMU's mps2 boards (the model's fixed rate).
pub const CORE_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

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
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// The 32-bit tick widened to 64 bits by the main loop, which reads it far
/// more often than every 49.7 days (the wrap period), so a smaller reading
/// than the last one is a wrap.
pub struct Monotonic {
    last: u32,
    high: u64,
}

impl Monotonic {
    /// Time zero is the boot.
    pub const fn new() -> Monotonic {
        Monotonic { last: 0, high: 0 }
    }

    /// Now.
    pub fn now(&mut self) -> Instant {
        let ms = MILLIS.load(Ordering::Relaxed);
        if ms < self.last {
            self.high += 1 << 32;
        }
        self.last = ms;
        Instant::from_millis(self.high | u64::from(ms))
    }
}
