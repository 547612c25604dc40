//! Sans-IO RDP (the Reliable Datagram Protocol as CSP puts it on the wire).
//!
//! This crate is a leaf: it knows its own 5-byte header ([`header`]) and the
//! connection state machine ([`Connection`]), and it is the home of the
//! protocol core's time types ([`time`]).
//!
//! A connection is driven like quinn-proto's: feed it received segments
//! ([`Connection::handle_segment`]) and time ([`Connection::handle_timeout`]),
//! then drain [`Connection::poll_transmit`], [`Connection::poll_event`] and
//! [`Connection::poll_timeout`]. It never reads a clock, allocates or blocks.
//!
//! Where libcsp is wrong, this one is not: a send is reported
//! [`Event::Acknowledged`] only when the peer has it, retransmission is
//! bounded and backs off, a dead peer fails the connection with an
//! [`Event::Failed`], out-of-order segments are held and delivered once,
//! and every input, however malformed, is counted and ignored.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod conn;
mod event;
pub mod header;
pub mod options;
mod ring;
pub mod seq;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;
mod timer;

pub use conn::{AcceptError, Connection, Counters, Role, State};
pub use event::{CloseReason, Event, FailReason, Payload, SendError, Transmit};
pub use header::{Flags, HeaderError, RdpHeader, SynOptions};
pub use options::{Options, OptionsError};
pub use timer::Timer;
