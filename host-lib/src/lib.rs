//! Client library for csp-muxd, and the `csp` command-line tool.
//!
//! An application links this crate, connects to the daemon's local socket
//! and from then on behaves as a CSP node of its own: the protocol work
//! (CRC32, HMAC, XTEA, SFP; RDP once csp-rdp's state machine lands) runs in
//! this process through the sans-IO core, and the daemon only routes.
//!
//! ```no_run
//! use host_lib::{Bind, Client, Options};
//! use std::time::Duration;
//!
//! let mut client = Client::connect_default()?;
//! let socket = client.bind_with(Bind::Port(10), Options::NONE.with_crc())?;
//! let request = client.recvfrom(&socket, Some(Duration::from_secs(5)))?;
//! client.sendto(&socket, request.src(), request.sport(), &request.data)?;
//! # Ok::<(), host_lib::Error>(())
//! ```
//!
//! The blocking calls are built on a non-blocking core for callers with
//! their own event loop (see [`Client`]); nothing here starts a thread.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod endpoint;
pub mod error;
pub mod event;
mod ipc;
pub mod options;
pub mod path;
pub mod service;
pub mod socket;

pub use client::{Client, ClientConfig, ClientStats};
pub use csp_ipc::Control;
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use event::Event;
pub use options::Options;
pub use path::default_socket_path;
pub use service::IdentInfo;
pub use socket::{Bind, Datagram, Socket, SocketStats};
