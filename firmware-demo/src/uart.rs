//! CMSDK APB UART (ARM's simple UART of the MPS2 boards, UART0 on QEMU's
//! `mps2-an386`), with the `embedded-io` traits on top.
//!
//! Five registers, a one-byte receive holding register and a one-byte
//! transmit buffer. Receiving is polled from the main loop; the receive
//! interrupt only wakes the core out of `wfi` (see `main.rs`). Under QEMU the
//! model holds further input until `DATA` is read, so nothing is lost while
//! the node is busy. Real hardware at a real baud rate would need the
//! interrupt handler to move bytes into a ring buffer instead.

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

/// Base address of UART0 on mps2-an385/an386/an500 (QEMU's first `-serial`).
pub const UART0_BASE: usize = 0x4000_4000;
/// NVIC interrupt number of UART0's receive interrupt on the mps2 boards.
pub const UART0_RX_IRQ: u16 = 0;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTCLEAR: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// The smallest divider the UART accepts (QEMU ignores the UART below it);
/// under QEMU the rate is not modelled, so the smallest is also the fastest.
const MIN_BAUDDIV: u32 = 16;

/// One CMSDK UART.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// UART0, enabled for transmit and receive with the receive interrupt on.
    ///
    /// # Safety
    /// The caller owns UART0: only one `Uart` for it may exist, and nothing
    /// else may touch its registers (the interrupt handler only writes
    /// `INTCLEAR`, through [`clear_rx_interrupt`]).
    pub unsafe fn uart0() -> Uart {
        let uart = Uart { base: UART0_BASE };
        uart.write_reg(BAUDDIV, MIN_BAUDDIV);
        uart.write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
        uart
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base` is a CMSDK UART and `offset` one of its registers;
        // reads have no side effect except on DATA, which we own.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`; this `Uart` owns the device.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// True if a received byte is waiting.
    pub fn rx_ready(&self) -> bool {
        self.read_reg(STATE) & STATE_RX_FULL != 0
    }

    /// The received byte, if one is waiting.
    pub fn try_read(&mut self) -> Option<u8> {
        if self.rx_ready() {
            Some(self.read_reg(DATA) as u8)
        } else {
            None
        }
    }

    /// Sends one byte, waiting for room in the transmit buffer.
    pub fn write_byte(&mut self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {
            core::hint::spin_loop();
        }
        self.write_reg(DATA, u32::from(byte));
    }
}

/// Acknowledges UART0's receive interrupt (from the interrupt handler). The
/// byte itself stays in `DATA` for the main loop.
pub fn clear_rx_interrupt() {
    // SAFETY: INTCLEAR is write-one-to-clear and touches only the interrupt
    // status, which no other code reads.
    unsafe { write_volatile((UART0_BASE + INTCLEAR) as *mut u32, INT_RX) }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::Read for Uart {
    /// Waits for the first byte, then takes whatever else is already there.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            let byte = loop {
                match self.try_read() {
                    Some(b) => break Some(b),
                    None if n > 0 => break None,
                    None => core::hint::spin_loop(),
                }
            };
            match byte {
                Some(b) => {
                    *slot = b;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.read_reg(STATE) & STATE_TX_FULL == 0)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            self.write_byte(b);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        // The model sends each byte as it is written; there is no FIFO to drain.
        Ok(())
    }
}
