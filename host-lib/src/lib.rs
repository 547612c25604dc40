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
//! their own event loop (see [`Client`] and `examples/event_loop.rs`);
//! nothing here starts a thread. The daemon is reached through its Unix
//! socket (default path as the daemon's, [`default_socket_path`]) or its
//! loopback TCP listener ([`Endpoint`]). When it restarts, the client
//! reconnects, registers its ports again and says so ([`Event`]).
//!
//! What is here: connectionless sockets ([`Client::bind`],
//! [`Client::sendto`], [`Client::recvfrom`]) with CRC32, HMAC, XTEA and SFP
//! ([`Options`]), the standard service requests ([`Client::ping`], ...)
//! and the daemon's control requests ([`Client::control`]). RDP
//! connections (`connect`/`listen`/`accept`) arrive with csp-rdp's
//! connection state machine; until then RDP segments are counted and
//! dropped ([`SocketStats::dropped_rdp`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod endpoint;
pub mod error;
pub mod event;
mod ipc;
pub mod options;
pub mod path;
pub mod rdp;
pub mod service;
pub mod socket;

pub use client::{Client, ClientConfig, ClientStats};
pub use csp_ipc::Control;
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use event::Event;
pub use options::Options;
pub use path::default_socket_path;
pub use rdp::{Conn, ConnOptions, ConnState, Listener};
pub use service::IdentInfo;
pub use socket::{Bind, Datagram, Socket, SocketStats};
