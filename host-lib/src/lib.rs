//! Client library for csp-muxd, and the `csp` command-line tool.
//!
//! An application links this crate, connects to the daemon's local socket
//! and from then on behaves as a CSP node of its own: the protocol work
//! (CRC32, HMAC, XTEA, SFP, RDP) runs in this process through the sans-IO
//! core, and the daemon only routes.
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
//! RDP connections, with a send that reports only real errors and a way to
//! know the data arrived:
//!
//! ```no_run
//! use host_lib::{Client, ConnOptions};
//! use std::time::Duration;
//!
//! let mut client = Client::connect_default()?;
//! let t = Some(Duration::from_secs(5));
//! let opts = ConnOptions::default().with_crc().with_hmac_key(b"secret");
//! let conn = client.connect_to(5, 10, opts, t)?;
//! client.send(&conn, b"command", t)?; // waits while the window is full
//! client.wait_acked(&conn, t)?; // the peer has it
//! let mut answer = [0u8; 256];
//! let n = client.recv(&conn, &mut answer, t)?;
//! client.close_conn(conn, t)?; // RDP close, then the port goes back
//! # let _ = n;
//! # Ok::<(), host_lib::Error>(())
//! ```
//!
//! The blocking calls are built on a non-blocking core for callers with
//! their own event loop (see [`Client`] and `examples/event_loop.rs`);
//! nothing here starts a thread. The daemon is reached through its Unix
//! socket (default path as the daemon's, [`default_socket_path`]) or its
//! loopback TCP listener ([`Endpoint`]). When it restarts, the client
//! reconnects, registers its ports again and says so ([`Event`]); RDP
//! connections that were open fail then, each with
//! [`Error::ConnectionFailed`] ("csp-muxd went away") and
//! [`Event::ConnectionFailed`], never silently.
//!
//! What is here: connectionless sockets ([`Client::bind`],
//! [`Client::sendto`], [`Client::recvfrom`]) with CRC32, HMAC, XTEA and SFP
//! ([`Options`]); RDP connections ([`Client::listen`], [`Client::accept`],
//! [`Client::connect_to`], [`Client::send`], [`Client::recv`],
//! [`Client::wait_acked`], [`Client::close_conn`], and their `try_`
//! non-blocking forms; see [`rdp`] for how they run); the standard service
//! requests ([`Client::ping`], ...) and the daemon's control requests
//! ([`Client::control`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod event;
mod ipc;
pub mod options;
pub mod pcapng;
pub mod rdp;
pub mod service;
pub mod socket;

pub use client::{Client, ClientConfig, ClientStats};
pub use csp_ipc::default_socket_path;
pub use csp_ipc::record::Record;
pub use csp_ipc::Control;
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use event::Event;
pub use options::Options;
pub use rdp::{Conn, ConnOptions, ConnState, Listener};
pub use service::IdentInfo;
pub use socket::{Bind, Datagram, Socket, SocketStats};
