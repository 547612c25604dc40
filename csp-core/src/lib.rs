//! The CubeSat Space Protocol core: wire formats, security trailers, routing,
//! port binding, KISS framing, SFP and CAN (CFP) fragmentation and the
//! standard services.
//!
//! `no_std`, no allocation, no I/O: every function takes bytes (and, where
//! time matters, an [`time::Instant`]) and returns bytes or a typed error.
//! The same code runs in Cortex-M firmware and in the Linux ground daemon.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("csp-core: the `defmt` and `log` features are mutually exclusive; enable one");

#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod trace;

pub mod adapter;
pub mod bind;
pub mod cfp;
pub mod header;
pub mod kiss;
pub mod node;
pub mod packet;
pub mod route;
pub mod security;
pub mod service;
pub mod sfp;

/// The core's time types (milliseconds, passed in by the caller), defined in
/// `csp-rdp` so that the RDP state machine and the core share them.
pub mod time {
    pub use csp_rdp::time::{Duration, Instant};
}

pub use header::{Addr, Flags, Header, Port, Prio, Version};
pub use node::Node;
pub use packet::Packet;
