//! What the client tells the application besides data.

use csp_ipc::ErrorCode;

use crate::error::Error;
use crate::rdp::Conn;
use crate::socket::Socket;

/// Something the application may want to know about.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The daemon went away; the client will reconnect.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// Connected again, ports registered again (except those reported in
    /// [`Event::RebindFailed`]). Packets sent while away are lost; the
    /// non-blocking caller must re-register the new descriptor
    /// ([`Client::as_raw_fd`](crate::Client::as_raw_fd)).
    Reconnected,
    /// An ephemeral socket got another port from the restarted daemon.
    PortChanged {
        /// The socket.
        socket: Socket,
        /// The port it had.
        old: u8,
        /// The port it has now.
        new: u8,
    },
    /// A socket could not be registered again after a reconnect (another
    /// application took its port meanwhile); it stays unusable until closed.
    RebindFailed {
        /// The socket.
        socket: Socket,
        /// Why.
        error: Error,
    },
    /// An RDP connection failed (the peer went silent or reset it, or the
    /// daemon went away): what was sent and not acknowledged may be lost.
    /// Its calls say so too; close it with
    /// [`Client::close_conn`](crate::Client::close_conn).
    ConnectionFailed {
        /// The connection.
        conn: Conn,
        /// Why, for a person.
        reason: String,
    },
    /// The peer closed an RDP connection (everything we sent was
    /// acknowledged); what it sent is still there to read.
    ConnectionClosed {
        /// The connection.
        conn: Conn,
    },
    /// The daemon refused something we sent (e.g. a spoofed source).
    DaemonError {
        /// The daemon's code.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
    },
}
