//! Where csp-muxd listens: its Unix socket, or (for clients in containers)
//! its loopback TCP listener with the token its HELLO must carry.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The daemon's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path (the daemon's `ipc.socket` or `--socket`).
    Unix(PathBuf),
    /// The daemon's `ipc.tcp_listen` address and its `ipc.tcp_token`.
    Tcp {
        /// Loopback address and port.
        addr: SocketAddr,
        /// The shared token, sent as the HELLO name.
        token: String,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "tcp:{addr}"),
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Connect (a TCP connect waits at most `timeout`).
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Stream> {
        Ok(match endpoint {
            Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
            Endpoint::Tcp { addr, .. } => {
                let s = TcpStream::connect_timeout(addr, timeout)?;
                // Small frames (acknowledgements, pings) must not wait for
                // Nagle's timer.
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        })
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_display_for_messages() {
        assert_eq!(
            Endpoint::Unix("/run/x.sock".into()).to_string(),
            "/run/x.sock"
        );
        let tcp = Endpoint::Tcp {
            addr: "127.0.0.1:9701".parse().unwrap(),
            token: "secret".into(),
        };
        assert_eq!(
            tcp.to_string(),
            "tcp:127.0.0.1:9701",
            "the token is never shown"
        );
    }
}
