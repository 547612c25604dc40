//! Link adapters: the few lines between a [`Node`](crate::Node) and a HAL
//! peripheral that every firmware would otherwise write again.
//!
//! - [`KissPort`]: KISS framing on a byte stream. Its core
//!   ([`KissPort::receive_byte`], [`KissPort::encode_frame`]) needs no HAL;
//!   the feature `embedded-io` adds [`KissPort::poll_io`] /
//!   [`KissPort::transmit_io`] over `embedded_io::{Read, ReadReady, Write}`,
//!   and the feature `embedded-hal-nb` adds [`KissPort::poll_nb`] /
//!   [`KissPort::transmit_nb`] over `embedded_hal_nb::serial::{Read, Write}`.
//!
//! The adapters own no packet buffer and no node: the caller keeps both (in
//! statics, usually) and lends them per call, so one node can have several
//! ports and the application still sees every event between frames.

mod kiss;

#[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
pub use kiss::PortError;
pub use kiss::{KissPort, PortRx};
