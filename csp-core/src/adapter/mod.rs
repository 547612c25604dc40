//! Link adapters: the few lines between a [`Node`](crate::Node) and a HAL
//! peripheral that every firmware would otherwise write again.
//!
//! - [`KissPort`]: KISS framing on a byte stream. Its core
//!   ([`KissPort::receive_byte`], [`KissPort::encode_frame`]) needs no HAL;
//!   the feature `embedded-io` adds [`KissPort::poll_io`] /
//!   [`KissPort::transmit_io`] over `embedded_io::{Read, ReadReady, Write}`,
//!   and the feature `embedded-hal-nb` adds [`KissPort::poll_nb`] /
//!   [`KissPort::transmit_nb`] over `embedded_hal_nb::serial::{Read, Write}`.
//! - `CanPort` (feature `embedded-can`): CFP on a CAN controller with
//!   `embedded_can::nb::Can`, on top of [`CanLink`](crate::cfp::CanLink)
//!   (which needs no HAL).
//!
//! The adapters own no packet buffer and no node: the caller keeps both (in
//! statics, usually) and lends them per call, so one node can have several
//! ports and the application still sees every event between frames.

#[cfg(feature = "embedded-can")]
mod can;
mod kiss;

#[cfg(feature = "embedded-can")]
pub use can::{CanPort, CanPortStats, CanRx};
pub use kiss::{KissPort, PortRx};

/// A link error of the device (serial port, CAN controller), as the HAL
/// reports it.
#[cfg(any(
    feature = "embedded-io",
    feature = "embedded-hal-nb",
    feature = "embedded-can"
))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PortError<E> {
    /// Reading or writing the device failed. On transmit, the frame being
    /// written (KISS) or the packet being sent (CAN) is lost (RDP
    /// retransmits; connectionless traffic may be lost on any link) and
    /// counted as the interface's `tx_error`. A CAN port also counts a
    /// receive error, as `rx_error`.
    Link(E),
}
