//! The board's side of the application: free memory, ident strings, the
//! receive interrupt count and timing noise.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::STACK_PAINT_VALUE as STACK_PAINT;
use csp_core::service::Ident;

use crate::app::Board;

/// Receive interrupts taken (incremented by the interrupt handler).
pub static RX_IRQS: AtomicU32 = AtomicU32::new(0);

/// Identification strings of this firmware (CMP ident).
pub const IDENT: Ident<'static> = Ident {
    hostname: "firmware-demo",
    model: "mps2-an386",
    revision: env!("CARGO_PKG_VERSION"),
    date: env!("FW_BUILD_DATE"),
    time: env!("FW_BUILD_TIME"),
};

/// QEMU's mps2-an386 as this firmware uses it.
pub struct Mps2;

extern "C" {
    // cortex-m-rt's linker script: the lowest address the stack may reach,
    // just above the statics (there is no heap).
    static _stack_end: u32;
}

impl Board for Mps2 {
    /// RAM the stack has never reached since boot: cortex-m-rt paints the
    /// whole stack area at reset (`paint-stack`), and the paint that is left
    /// above the statics is what even the deepest call so far did not need.
    /// A low-water mark, so it is the honest figure for the RAM budget.
    fn memfree(&self) -> u32 {
        let start = core::ptr::addr_of!(_stack_end) as usize;
        let sp = cortex_m::register::msp::read() as usize;
        let mut at = start;
        // SAFETY: every address read is in RAM between the end of the
        // statics and the live stack (below `sp`): no Rust object lives
        // there, and nothing else writes it while we read (the handlers'
        // frames are above `sp` or only appear after this word was read).
        while at < sp && unsafe { core::ptr::read_volatile(at as *const u32) } == STACK_PAINT {
            at += 4;
        }
        (at - start) as u32
    }

    fn irqs(&self) -> u32 {
        RX_IRQS.load(Ordering::Relaxed)
    }

    /// Where SysTick is in its millisecond when a frame completes: the
    /// host's timing, not the firmware's, decides it. (QEMU has no RNG; a
    /// real board would use its TRNG.)
    fn entropy(&self) -> u64 {
        u64::from(cortex_m::peripheral::SYST::get_current())
    }
}
