//! Sans-IO RDP (the Reliable Datagram Protocol as CSP puts it on the wire).
//!
//! This crate is a leaf: it knows its own 5-byte header and the connection
//! state machine, and it is the home of the protocol core's time types.
//! The connection state machine itself arrives with its own issue; today the
//! crate provides only [`time`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod time;
