//! The board's side of the services: uptime, free memory, ident strings and
//! the receive interrupt count.

use core::sync::atomic::{AtomicU32, Ordering};

use csp_core::service::Ident;

use crate::clock;
use crate::node::Board;

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
    // cortex-m-rt's linker script: the first RAM byte after all statics.
    static __sheap: u8;
}

impl Board for Mps2 {
    fn uptime_s(&self) -> u32 {
        clock::seconds()
    }

    /// RAM not in use right now: between the end of the statics and the
    /// stack pointer (the stack grows down from the top of RAM towards the
    /// statics, and there is no heap). Deeper calls than the current one
    /// (HMAC, the service handler) dip into it for a moment.
    fn memfree(&self) -> u32 {
        // Only the symbol's address is taken, never its value.
        let statics_end = core::ptr::addr_of!(__sheap) as u32;
        cortex_m::register::msp::read().saturating_sub(statics_end)
    }

    fn ident(&self) -> Ident<'static> {
        IDENT
    }

    fn irqs(&self) -> u32 {
        RX_IRQS.load(Ordering::Relaxed)
    }
}
