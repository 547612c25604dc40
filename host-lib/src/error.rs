//! One error type for everything the library does, with messages a person
//! can act on: each says what happened and, where there is one, what to do.

use std::fmt;
use std::io;

use csp_core::security::SecurityError;
use csp_core::service::ServiceError;
use csp_ipc::{ErrorCode, IpcError, Status};

use crate::endpoint::Endpoint;

/// Everything that can go wrong talking to csp-muxd and through it to CSP.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Nothing listens on the socket (no file, or a stale one).
    NotRunning {
        /// Where we tried.
        endpoint: Endpoint,
    },
    /// The socket exists but we may not connect to it.
    PermissionDenied {
        /// Where we tried.
        endpoint: Endpoint,
    },
    /// The daemon refused our HELLO (other protocol version, bad token...).
    Refused {
        /// The daemon's error code.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
    },
    /// The daemon answered HELLO with a protocol version we do not speak.
    VersionMismatch {
        /// Version the daemon speaks.
        daemon: u16,
    },
    /// Another application holds the port.
    PortInUse {
        /// The port asked for.
        port: u8,
    },
    /// REGISTER or UNREGISTER failed for another reason.
    Register {
        /// The port asked for (254 ephemeral, 255 any).
        port: u8,
        /// The daemon's answer.
        status: Status,
    },
    /// An address out of range for CSP v2 (0..=16383).
    InvalidAddr(u16),
    /// A port out of range (0..=63).
    InvalidPort(u8),
    /// The socket handle is not (or no longer) bound in this client.
    UnknownSocket,
    /// The connection to the daemon is gone.
    Disconnected {
        /// Where the daemon was.
        endpoint: Endpoint,
        /// The client reconnects by itself (see `ClientConfig::reconnect`).
        reconnecting: bool,
    },
    /// Nothing arrived (or could be sent) in time.
    Timeout,
    /// The outgoing buffer is full (non-blocking send): retry once the
    /// descriptor is writable.
    WouldBlock,
    /// The data does not fit one packet and SFP is off.
    TooLarge {
        /// Bytes given (data plus trailers).
        len: usize,
        /// Bytes one packet carries.
        mtu: usize,
    },
    /// A trailer could not be added (e.g. XTEA on a v2 header).
    Security(SecurityError),
    /// SFP could not fragment the data.
    Sfp(csp_core::sfp::SfpError),
    /// The daemon reported an error for something we sent.
    Daemon {
        /// The daemon's error code.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
    },
    /// The daemon sent bytes that are not the IPC protocol.
    Protocol(IpcError),
    /// The daemon answered a request with the answer to another kind of
    /// request; the client drops the connection and reconnects.
    OutOfTurn(String),
    /// A control reply line is not a record (csp-ipc's `record` grammar).
    BadRecord(csp_ipc::record::RecordError),
    /// A service reply could not be read.
    Service(ServiceError),
    /// Something this version of the library does not do (yet); the text
    /// says what and why.
    NotAvailable(&'static str),
    /// An RDP connection failed: data sent and not acknowledged may be
    /// lost. The reason says why (the peer went silent, reset it, the
    /// daemon went away, nobody answered the connect, ...).
    ConnectionFailed {
        /// What happened, for a person.
        reason: String,
    },
    /// The RDP connection is closed (by us, or the peer closed it): nothing
    /// more can be sent.
    ConnectionClosed,
    /// The connection or listener handle is not (or no longer) known.
    UnknownConn,
    /// A blocking send ran out of time with only part of the data queued.
    SendTimeout {
        /// Bytes queued (and delivered in order, if the connection lives on).
        sent: usize,
    },
    /// Connection options that can not work (segment size, window, ...).
    InvalidOptions(String),
    /// The RDP node refused a call (a bug or a limit, the text says which).
    Node(csp_core::node::NodeError),
    /// Any other I/O failure.
    Io {
        /// What we were doing.
        context: &'static str,
        /// The failure.
        source: io::Error,
    },
}

/// Short form used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    /// True for errors the client recovers from by itself by reconnecting.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Error::Disconnected { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRunning { endpoint } => match endpoint {
                Endpoint::Unix(_) => write!(
                    f,
                    "csp-muxd is not running at {endpoint} (start it with `csp-muxd`, or point --socket at the socket it uses)"
                ),
                Endpoint::Tcp { .. } => write!(
                    f,
                    "csp-muxd is not listening at {endpoint} (start it with ipc.tcp_listen set to that address)"
                ),
            },
            Error::PermissionDenied { endpoint } => write!(
                f,
                "no permission to connect to csp-muxd at {endpoint} (the socket is mode 0660: join the daemon's group)"
            ),
            Error::Refused { code, message } => {
                write!(f, "csp-muxd refused the connection ({code:?}): {message}")
            }
            Error::VersionMismatch { daemon } => write!(
                f,
                "csp-muxd speaks IPC protocol version {daemon}, this program speaks {}: use matching versions",
                csp_ipc::VERSION
            ),
            // csp-muxd keeps the node's service ports 0..=6 for itself
            // unless services.app_ports hands one out (docs/ipc.md).
            Error::PortInUse { port } if *port <= csp_core::Port::UPTIME.get() => write!(
                f,
                "port {port} is a service port of the node, held by csp-muxd \
                 (its services.app_ports can hand it to applications)"
            ),
            Error::PortInUse { port } => {
                write!(f, "port {port} is in use by another application")
            }
            Error::Register { port, status } => match (*port, status) {
                (csp_ipc::PORT_EPHEMERAL, _) => write!(f, "no ephemeral port: {status}"),
                (csp_ipc::PORT_ANY, _) => write!(f, "binding every port (ANY): {status}"),
                (p, Status::Invalid) => write!(
                    f,
                    "port {p} can not be bound by number: it is outside the daemon's bindable \
                     range (`ports.max_bind` in its config, 31 by default); higher ports are \
                     handed out as ephemeral ports"
                ),
                (p, _) => write!(f, "port {p}: {status}"),
            },
            Error::InvalidAddr(a) => write!(f, "address {a} is out of range (0..=16383)"),
            Error::InvalidPort(p) => write!(f, "port {p} is out of range (0..=63)"),
            Error::UnknownSocket => f.write_str("socket is not bound (closed already?)"),
            Error::Disconnected {
                endpoint,
                reconnecting,
            } => write!(
                f,
                "lost the connection to csp-muxd at {endpoint}{}",
                if *reconnecting {
                    "; reconnecting"
                } else {
                    " (did it stop?)"
                }
            ),
            Error::Timeout => f.write_str("timed out"),
            Error::WouldBlock => f.write_str("send buffer full, try again when writable"),
            Error::TooLarge { len, mtu } => write!(
                f,
                "{len} bytes do not fit one packet of {mtu}: enable SFP (--sfp) or send less"
            ),
            Error::Security(e) => write!(f, "security trailer: {e}"),
            Error::Sfp(e) => write!(f, "SFP: {e}"),
            Error::Daemon { code, message } => write!(f, "csp-muxd: {message} ({code:?})"),
            Error::Protocol(e) => write!(f, "csp-muxd sent a bad frame: {e}"),
            Error::BadRecord(e) => write!(f, "csp-muxd sent a bad control record: {e}"),
            Error::OutOfTurn(what) => write!(
                f,
                "csp-muxd answered out of turn ({what}); the connection is reset"
            ),
            Error::Service(e) => write!(f, "bad service reply: {e}"),
            Error::NotAvailable(what) => f.write_str(what),
            Error::ConnectionFailed { reason } => write!(f, "RDP connection failed: {reason}"),
            Error::ConnectionClosed => f.write_str("the RDP connection is closed"),
            Error::UnknownConn => {
                f.write_str("no such RDP connection or listener (closed already?)")
            }
            Error::SendTimeout { sent } => write!(
                f,
                "timed out sending: only the first {sent} bytes were queued (the peer is \
                 not acknowledging fast enough)"
            ),
            Error::InvalidOptions(what) => write!(f, "bad connection options: {what}"),
            Error::Node(e) => write!(f, "RDP: {e}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Security(e) => Some(e),
            Error::Sfp(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Service(e) => Some(e),
            Error::Node(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SecurityError> for Error {
    fn from(e: SecurityError) -> Self {
        Error::Security(e)
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(e)
    }
}

/// The error for a REGISTER answer other than OK.
pub(crate) fn register_error(port: u8, status: Status) -> Error {
    match status {
        Status::PortInUse => Error::PortInUse { port },
        status => Error::Register { port, status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_fix() {
        let e = Error::NotRunning {
            endpoint: Endpoint::Unix("/tmp/x.sock".into()),
        };
        assert!(e
            .to_string()
            .starts_with("csp-muxd is not running at /tmp/x.sock"));
        assert_eq!(
            register_error(10, Status::PortInUse).to_string(),
            "port 10 is in use by another application"
        );
        assert!(register_error(40, Status::Invalid)
            .to_string()
            .contains("max_bind"));
        assert!(register_error(254, Status::NoEphemeralPort)
            .to_string()
            .contains("ephemeral"));
        assert!(Error::TooLarge {
            len: 9000,
            mtu: 4193
        }
        .to_string()
        .contains("SFP"));
    }
}
