//! Packet capture from csp-muxd: a connection of its own that asks the
//! daemon for the frames of one link or all (CAPTURE_START) and receives
//! them as they go over the links, exactly as on the wire (`docs/ipc.md`,
//! `docs/capture.md`). [`crate::pcapng`] writes them to a file; the `csp
//! capture` command does both.
//!
//! ```no_run
//! use host_lib::capture::{Capture, CaptureEvent, CaptureRequest};
//! use host_lib::Endpoint;
//! use std::time::Duration;
//!
//! let endpoint = Endpoint::Unix(host_lib::default_socket_path());
//! let mut cap = Capture::start(&endpoint, &CaptureRequest { count: 10, ..Default::default() })?;
//! loop {
//!     match cap.next(Some(Duration::from_secs(5)))? {
//!         Some(CaptureEvent::Frame(f)) => println!("{} {:?} {} bytes", cap.link_name(f.link), f.direction, f.data.len()),
//!         Some(CaptureEvent::End { captured, dropped, .. }) => { println!("{captured} captured, {dropped} dropped"); break }
//!         Some(CaptureEvent::Lost(why)) => { eprintln!("{why}"); break }
//!         None => {} // nothing for 5 s
//!     }
//! }
//! # Ok::<(), host_lib::Error>(())
//! ```

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

pub use csp_ipc::{CaptureEnd, Direction};
use csp_ipc::{ErrorCode, Message};

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::ipc::{Incoming, Link, ReadEnd};

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The link's id ([`Capture::links`]).
    pub link: u8,
    /// Which way it went, seen from the daemon.
    pub direction: Direction,
    /// When the daemon saw it, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Its length on the link (more than `data.len()` when the daemon cut
    /// a frame longer than an IPC message holds).
    pub orig_len: u32,
    /// The CSP frame: header (the link's version), data, trailers.
    pub data: Vec<u8>,
}

/// A link the capture covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureLink {
    /// Id used by [`Frame::link`].
    pub id: u8,
    /// CSP header version of its frames (1 or 2).
    pub version: u8,
    /// Its name in the daemon (`udp`, a KISS/ZMQ/CAN link's name, `local`).
    pub name: String,
}

/// What to capture.
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    /// Only this link (its name, or `local`); None: every link.
    pub link: Option<String>,
    /// The daemon stops after this many frames; 0: until [`Capture::stop`].
    pub count: u32,
    /// Name shown in the daemon's log and status.
    pub name: String,
    /// How long to wait for the daemon to accept (default 5 s when zero).
    pub timeout: Duration,
}

/// What a capture produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureEvent {
    /// A frame.
    Frame(Frame),
    /// The capture is over: why, and the daemon's count of frames sent to
    /// us and dropped because our queue was full.
    End {
        /// Why it ended.
        reason: CaptureEnd,
        /// Frames the daemon queued for us.
        captured: u64,
        /// Frames the daemon dropped (we did not read fast enough).
        dropped: u64,
    },
    /// The connection ended without CAPTURE_END (daemon killed, or it
    /// dropped us): why.
    Lost(String),
}

/// A running capture on its own connection to csp-muxd.
#[derive(Debug)]
pub struct Capture {
    link: Link,
    links: Vec<CaptureLink>,
    queue_len: u32,
    inbox: VecDeque<CaptureEvent>,
    done: bool,
}

impl Capture {
    /// Connect to the daemon at `endpoint` and start capturing. The daemon
    /// refuses clients it does not trust for capture
    /// ([`Error::Daemon`] with [`ErrorCode::NotAllowed`]) and links it does
    /// not have ([`ErrorCode::Unavailable`]).
    pub fn start(endpoint: &Endpoint, req: &CaptureRequest) -> Result<Capture> {
        let timeout = if req.timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            req.timeout
        };
        let name = if req.name.is_empty() {
            format!("capture[{}]", std::process::id())
        } else {
            req.name.clone()
        };
        let (mut link, _) = Link::connect(endpoint, &name, timeout)?;
        link.queue(&Message::CaptureStart {
            count: req.count,
            link: req.link.as_deref().unwrap_or(""),
        })?;
        let mut cap = Capture {
            link,
            links: Vec::new(),
            queue_len: 0,
            inbox: VecDeque::new(),
            done: false,
        };
        let deadline = Instant::now() + timeout;
        let mut started = false;
        while !started {
            cap.link
                .flush()
                .map_err(Error::io("sending CAPTURE_START"))?;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            cap.link
                .wait(deadline - now)
                .map_err(Error::io("waiting for csp-muxd"))?;
            let mut frames = Vec::new();
            let end = cap.link.read(&mut |m| frames.push(m))?;
            for m in frames {
                match m {
                    Incoming::CaptureLink { id, version, name } if !started => {
                        cap.links.push(CaptureLink { id, version, name });
                    }
                    Incoming::CaptureStarted { queue_len } if !started => {
                        cap.queue_len = queue_len;
                        started = true;
                    }
                    Incoming::Error { code, message } if !started => {
                        return Err(Error::Daemon { code, message });
                    }
                    // Frames right behind the start: keep them in order.
                    other if started => cap.on_incoming(other),
                    other => {
                        return Err(Error::OutOfTurn(format!(
                            "expected the capture to start, got {other:?}"
                        )))
                    }
                }
            }
            if let ReadEnd::Lost(why) = end {
                if !started {
                    return Err(Error::Refused {
                        code: ErrorCode::Other,
                        message: why,
                    });
                }
                cap.lost(why);
            }
        }
        Ok(cap)
    }

    /// The links covered, by id.
    pub fn links(&self) -> &[CaptureLink] {
        &self.links
    }

    /// Name of link `id` (`?` for an id the daemon did not announce).
    pub fn link_name(&self, id: u8) -> &str {
        self.links
            .iter()
            .find(|l| l.id == id)
            .map_or("?", |l| l.name.as_str())
    }

    /// Frames the daemon queues for us before it drops.
    pub fn queue_len(&self) -> u32 {
        self.queue_len
    }

    /// The descriptor, to poll together with others.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.link.fd()
    }

    /// Ask the daemon to stop; the frames it queued still come, then
    /// [`CaptureEvent::End`].
    pub fn stop(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.link.queue(&Message::CaptureStop)?;
        self.link.flush().map_err(Error::io("sending CAPTURE_STOP"))
    }

    /// Everything that has arrived, without waiting. After `End` or `Lost`
    /// nothing more comes.
    pub fn poll_events(&mut self, out: &mut Vec<CaptureEvent>) -> Result<()> {
        self.fill()?;
        out.extend(self.inbox.drain(..));
        Ok(())
    }

    /// The next event, waiting at most `timeout` (None: for ever); Ok(None)
    /// when nothing came in time.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<CaptureEvent>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.fill()?;
            if let Some(e) = self.inbox.pop_front() {
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(w) if !w.is_zero() => w,
                    _ => return Ok(None),
                },
                None => Duration::from_secs(3600),
            };
            self.link
                .wait(wait)
                .map_err(Error::io("waiting for csp-muxd"))?;
        }
    }

    /// Read what the socket holds into the inbox.
    fn fill(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        // Written out only now: a stop queued while the socket was full.
        self.link
            .flush()
            .map_err(Error::io("writing to csp-muxd"))?;
        loop {
            let mut frames = Vec::new();
            let end = self.link.read(&mut |m| frames.push(m))?;
            for m in frames {
                self.on_incoming(m);
            }
            match end {
                ReadEnd::Drained => return Ok(()),
                ReadEnd::More => {
                    // Bounded: hand over what we have, read the rest on
                    // the next call.
                    if self.inbox.len() >= 4096 {
                        return Ok(());
                    }
                }
                ReadEnd::Lost(why) => {
                    self.lost(why);
                    return Ok(());
                }
            }
        }
    }

    fn on_incoming(&mut self, m: Incoming) {
        if self.done {
            return;
        }
        match m {
            Incoming::CaptureFrame(f) => self.inbox.push_back(CaptureEvent::Frame(f)),
            Incoming::CaptureEnd {
                reason,
                captured,
                dropped,
            } => {
                self.inbox.push_back(CaptureEvent::End {
                    reason,
                    captured,
                    dropped,
                });
                self.done = true;
            }
            Incoming::Bye(r) => self.lost(format!("csp-muxd said goodbye ({r:?})")),
            Incoming::Error { code, message } => {
                // Not fatal for the daemon (e.g. a stop it did not expect).
                log::warn!("csp-muxd: {message} ({code:?})");
            }
            other => self.lost(format!("csp-muxd sent {other:?} during a capture")),
        }
    }

    fn lost(&mut self, why: String) {
        if !self.done {
            self.inbox.push_back(CaptureEvent::Lost(why));
            self.done = true;
        }
    }
}
