//! One connection to csp-muxd: a non-blocking Unix stream with a read
//! buffer (never more than one partial frame plus a read chunk) and a write
//! buffer, framed by the csp-ipc codec. No policy here: the client decides
//! what a frame means.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use csp_ipc::{ByeReason, ErrorCode, Message, Status};

use crate::endpoint::{Endpoint, Stream};
use crate::error::{Error, Result};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// `read` calls per [`Link::read`]: a daemon that keeps sending can not make
/// one call buffer without bound.
const READS_PER_CALL: usize = 16;

/// A frame from the daemon, owned so the client can act on it while the
/// read buffer is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    HelloAck {
        version: u16,
        node: u16,
        mtu: u16,
    },
    RegisterAck {
        status: Status,
        port: u8,
    },
    UnregisterAck {
        status: Status,
    },
    Data(Vec<u8>),
    /// One page of a control reply; `more` until the last.
    ControlReply {
        text: String,
        more: bool,
    },
    Bye(ByeReason),
    Error {
        code: ErrorCode,
        message: String,
    },
    /// A link a capture covers (`crate::capture`).
    CaptureLink {
        id: u8,
        version: u8,
        name: String,
    },
    CaptureStarted {
        queue_len: u32,
    },
    CaptureFrame(crate::capture::Frame),
    CaptureEnd {
        reason: csp_ipc::CaptureEnd,
        captured: u64,
        dropped: u64,
    },
}

impl Incoming {
    /// `None` for messages only a client sends: the daemon never does.
    fn from_message(m: Message<'_>) -> Option<Incoming> {
        Some(match m {
            Message::HelloAck {
                version,
                node_addr,
                mtu,
            } => Incoming::HelloAck {
                version,
                node: node_addr,
                mtu,
            },
            Message::RegisterAck { status, port, .. } => Incoming::RegisterAck { status, port },
            Message::UnregisterAck { status, .. } => Incoming::UnregisterAck { status },
            Message::Data { frame } => Incoming::Data(frame.to_vec()),
            Message::ControlReply { text, more, .. } => Incoming::ControlReply {
                text: text.to_string(),
                more,
            },
            Message::Bye(r) => Incoming::Bye(r),
            Message::Error { code, message } => Incoming::Error {
                code,
                message: message.to_string(),
            },
            Message::CaptureLink { id, version, name } => Incoming::CaptureLink {
                id,
                version,
                name: name.to_string(),
            },
            Message::CaptureStarted { queue_len } => Incoming::CaptureStarted { queue_len },
            Message::CaptureFrame {
                link,
                direction,
                time_ns,
                orig_len,
                frame,
            } => Incoming::CaptureFrame(crate::capture::Frame {
                link,
                direction,
                time_ns,
                orig_len,
                data: frame.to_vec(),
            }),
            Message::CaptureEnd {
                reason,
                captured,
                dropped,
            } => Incoming::CaptureEnd {
                reason,
                captured,
                dropped,
            },
            Message::Hello { .. }
            | Message::Register { .. }
            | Message::Unregister { .. }
            | Message::Control(_)
            | Message::CaptureStart { .. }
            | Message::CaptureStop => return None,
        })
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// Everything available was read; the stream is open.
    Drained,
    /// The per-call read budget ran out with more bytes waiting: read
    /// again soon (the descriptor will not signal them again when polled
    /// edge-triggered).
    More,
    /// The daemon closed the stream (or it failed): the reason.
    Lost(String),
}

/// The stream and its buffers.
#[derive(Debug)]
pub(crate) struct Link {
    stream: Stream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Frames that arrived together with HELLO_ACK, not yet handed over.
    held: Vec<Incoming>,
    /// The stream ended right behind HELLO_ACK: why.
    held_end: Option<String>,
}

/// What HELLO_ACK said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hello {
    pub node: u16,
    pub mtu: u16,
}

impl Link {
    /// Connect, say HELLO (with the token as name over TCP) and wait (at
    /// most `timeout`) for HELLO_ACK.
    pub fn connect(endpoint: &Endpoint, name: &str, timeout: Duration) -> Result<(Link, Hello)> {
        let stream = Stream::connect(endpoint, timeout).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::NotRunning {
                endpoint: endpoint.clone(),
            },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                endpoint: endpoint.clone(),
            },
            _ => Error::Io {
                context: "connecting to csp-muxd",
                source: e,
            },
        })?;
        stream
            .set_nonblocking(true)
            .map_err(Error::io("setting the socket non-blocking"))?;
        let mut link = Link {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            held: Vec::new(),
            held_end: None,
        };
        // A name longer than the protocol allows is cut, not refused: it is
        // only shown in `csp status`.
        let name = match endpoint {
            Endpoint::Tcp { token, .. } => token.as_str(),
            Endpoint::Unix(_) => name,
        };
        let mut cut = name.len().min(csp_ipc::MAX_TEXT_LEN);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        link.queue(&Message::Hello {
            version: csp_ipc::VERSION,
            name: &name[..cut],
        })?;
        let deadline = Instant::now() + timeout;
        let mut got = None;
        while got.is_none() {
            link.flush()
                .map_err(Error::io("sending HELLO to csp-muxd"))?;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            link.wait(deadline - now)
                .map_err(Error::io("waiting for csp-muxd"))?;
            let mut frames = Vec::new();
            let end = link.read(&mut |m| frames.push(m))?;
            let mut frames = frames.into_iter();
            match frames.next() {
                Some(Incoming::HelloAck { version, node, mtu }) => {
                    if version != csp_ipc::VERSION {
                        return Err(Error::VersionMismatch { daemon: version });
                    }
                    got = Some(Hello { node, mtu });
                    // What came with the answer is the client's: keep it
                    // for its first read, and the end of the stream too.
                    link.held.extend(frames);
                    if let ReadEnd::Lost(why) = end {
                        link.held_end = Some(why);
                    }
                }
                Some(Incoming::Error { code, message }) => {
                    return Err(Error::Refused { code, message })
                }
                Some(Incoming::Bye(_)) => {
                    return Err(Error::Refused {
                        code: ErrorCode::Other,
                        message: "the daemon is shutting down".into(),
                    })
                }
                Some(other) => {
                    return Err(Error::Refused {
                        code: ErrorCode::Other,
                        message: format!("expected HELLO_ACK, got {other:?}"),
                    })
                }
                None => {
                    if let ReadEnd::Lost(why) = end {
                        return Err(Error::Refused {
                            code: ErrorCode::Other,
                            message: why,
                        });
                    }
                }
            }
        }
        Ok((link, got.unwrap_or(Hello { node: 0, mtu: 0 })))
    }

    /// The descriptor, for poll/epoll/mio.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.stream.as_fd()
    }

    /// Bytes encoded but not yet written.
    pub fn pending_write(&self) -> usize {
        self.wbuf.len()
    }

    /// Encode `msg` behind what is already waiting to be written.
    pub fn queue(&mut self, msg: &Message<'_>) -> Result<()> {
        let start = self.wbuf.len();
        self.wbuf
            .resize(start + csp_ipc::LEN_PREFIX + csp_ipc::MAX_FRAME_LEN, 0);
        match csp_ipc::encode(msg, &mut self.wbuf[start..]) {
            Ok(n) => {
                self.wbuf.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                self.wbuf.truncate(start);
                Err(Error::Protocol(e))
            }
        }
    }

    /// Write as much as the socket takes without blocking.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.wbuf.len() {
                break Ok(());
            }
            match self.stream.write(&self.wbuf[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.wbuf.drain(..done);
        result
    }

    /// Read until the socket has nothing more, handing each complete frame
    /// to `on_frame`. A bad frame from the daemon ends the connection: the
    /// stream can not be trusted to be framed after it.
    pub fn read(&mut self, on_frame: &mut dyn FnMut(Incoming)) -> Result<ReadEnd> {
        for frame in self.held.drain(..) {
            on_frame(frame);
        }
        if let Some(why) = self.held_end.take() {
            return Ok(ReadEnd::Lost(why));
        }
        let mut chunk = vec![0u8; READ_CHUNK];
        for _ in 0..READS_PER_CALL {
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(ReadEnd::Lost("csp-muxd closed the connection".into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(ReadEnd::Lost(format!("reading from csp-muxd: {e}"))),
            };
            self.rbuf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            loop {
                match csp_ipc::decode(&self.rbuf[used..]) {
                    Ok(Some((m, len))) => {
                        used += len;
                        match Incoming::from_message(m) {
                            Some(frame) => on_frame(frame),
                            None => {
                                return Ok(ReadEnd::Lost(
                                    "csp-muxd sent a client-only message".into(),
                                ))
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Ok(ReadEnd::Lost(format!("csp-muxd sent a bad frame: {e}"))),
                }
            }
            self.rbuf.drain(..used);
        }
        Ok(ReadEnd::More)
    }

    /// Block until readable (or writable, when there is something to
    /// write), or `timeout` passes. Returns early on EINTR.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        use rustix::event::{PollFd, PollFlags};
        let mut flags = PollFlags::IN;
        if !self.wbuf.is_empty() {
            flags |= PollFlags::OUT;
        }
        let mut fds = [PollFd::from_borrowed_fd(self.fd(), flags)];
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_only_messages_are_not_accepted_from_the_daemon() {
        assert!(Incoming::from_message(Message::Register { addr: 0, port: 1 }).is_none());
        assert_eq!(
            Incoming::from_message(Message::RegisterAck {
                status: Status::Ok,
                addr: 1,
                port: 9
            }),
            Some(Incoming::RegisterAck {
                status: Status::Ok,
                port: 9
            })
        );
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut link = Link {
            stream: Stream::Unix(a),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            held: Vec::new(),
            held_end: None,
        };
        let bytes = csp_ipc::encode_to_vec(&Message::Data {
            frame: &[0, 1, 2, 3, 4, 5, 6],
        })
        .unwrap();
        b.write_all(&bytes[..4]).unwrap();
        let mut got = Vec::new();
        assert!(matches!(
            link.read(&mut |m| got.push(m)).unwrap(),
            ReadEnd::Drained
        ));
        assert!(got.is_empty());
        b.write_all(&bytes[4..]).unwrap();
        link.read(&mut |m| got.push(m)).unwrap();
        assert_eq!(got, vec![Incoming::Data(vec![0, 1, 2, 3, 4, 5, 6])]);
        // Garbage ends the link instead of being skipped.
        b.write_all(&[0, 0]).unwrap();
        assert!(matches!(link.read(&mut |_| {}).unwrap(), ReadEnd::Lost(_)));
        drop(b);
    }
}
