//! One connected application: its stream, a bounded read buffer, bounded
//! outgoing queues, and what it has registered.
//!
//! Nothing from a client is trusted: frames are decoded by `csp-ipc` (total,
//! length-limited), and a client that stops reading can only fill its own
//! queue, whose overflow policy then drops packets and counts them: it never
//! blocks the loop or another client.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use csp_ipc::{IpcError, Message};

use crate::config::Overflow;

/// Unix or TCP stream, both non-blocking mio sources.
#[derive(Debug)]
pub enum Stream {
    /// Local Unix socket (the normal case).
    Unix(mio::net::UnixStream),
    /// Loopback TCP (optional, token protected).
    Tcp(mio::net::TcpStream),
}

impl Stream {
    /// The stream as a mio event source.
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
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
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tcp(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A request decoded from a client, owned so the daemon can act on it while
/// the client's buffers are reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// HELLO.
    Hello {
        /// Protocol version.
        version: u16,
        /// Client name (or, over TCP, the token).
        name: String,
    },
    /// REGISTER.
    Register {
        /// Address (0 = the daemon's).
        addr: u16,
        /// Port, `PORT_ANY` or `PORT_EPHEMERAL`.
        port: u8,
    },
    /// UNREGISTER.
    Unregister {
        /// Address.
        addr: u16,
        /// Port.
        port: u8,
    },
    /// DATA: a CSP packet with a v2 header.
    Data(Vec<u8>),
    /// A control request.
    Control(csp_ipc::Control),
    /// CAPTURE_START: frames of one link (or all) to this client.
    CaptureStart {
        /// Frames to send before ending (0: until stopped).
        count: u32,
        /// Link name; empty: every link.
        link: String,
    },
    /// CAPTURE_STOP.
    CaptureStop,
    /// A message only the daemon may send (HELLO_ACK, ...): a protocol error.
    Unexpected(&'static str),
}

/// The part of a HELLO name the daemon keeps: at most
/// [`csp_ipc::MAX_NAME_LEN`] bytes, cut at a character boundary, with control
/// characters shown as `?` so that a name can not forge lines in the log.
pub(crate) fn kept_name(name: &str) -> String {
    let mut kept = String::with_capacity(name.len().min(csp_ipc::MAX_NAME_LEN));
    for c in name.chars() {
        if kept.len() + c.len_utf8() > csp_ipc::MAX_NAME_LEN {
            break;
        }
        kept.push(if c.is_control() { '?' } else { c });
    }
    kept
}

impl Request {
    fn from_message(m: &Message<'_>) -> Request {
        match *m {
            Message::Hello { version, name } => Request::Hello {
                version,
                name: name.to_string(),
            },
            Message::Register { addr, port } => Request::Register { addr, port },
            Message::Unregister { addr, port } => Request::Unregister { addr, port },
            Message::Data { frame } => Request::Data(frame.to_vec()),
            Message::Control(c) => Request::Control(c),
            Message::CaptureStart { count, link } => Request::CaptureStart {
                count,
                link: link.to_string(),
            },
            Message::CaptureStop => Request::CaptureStop,
            Message::CaptureLink { .. } => Request::Unexpected("CAPTURE_LINK"),
            Message::CaptureStarted { .. } => Request::Unexpected("CAPTURE_STARTED"),
            Message::CaptureFrame { .. } => Request::Unexpected("CAPTURE_FRAME"),
            Message::CaptureEnd { .. } => Request::Unexpected("CAPTURE_END"),
            Message::HelloAck { .. } => Request::Unexpected("HELLO_ACK"),
            Message::RegisterAck { .. } => Request::Unexpected("REGISTER_ACK"),
            Message::UnregisterAck { .. } => Request::Unexpected("UNREGISTER_ACK"),
            Message::ControlReply { .. } => Request::Unexpected("CONTROL_REPLY"),
            Message::Bye(_) => Request::Unexpected("BYE"),
            Message::Error { .. } => Request::Unexpected("ERROR"),
        }
    }
}

/// Per-client counters, shown by `csp status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Packets received from the client.
    pub rx_packets: u64,
    /// Packets queued to the client.
    pub tx_packets: u64,
    /// Packets dropped because the client's queue was full.
    pub dropped_overflow: u64,
    /// DATA refused: source not registered by this client, or not a packet.
    pub rejected: u64,
}

/// What reading from a client produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The client is still connected (requests may have been collected).
    Open,
    /// The read budget ran out with bytes still waiting: read again after
    /// the other sources had their turn.
    More,
    /// The client closed its end.
    Closed,
    /// The byte stream broke the protocol; answer with this error and close.
    ProtocolError(IpcError),
}

/// Control frames (acks, errors, replies) a client may have pending. They are
/// never dropped by the overflow policy; a client that lets this many pile
/// up is not reading at all and is disconnected.
const MAX_CONTROL_FRAMES: usize = 64;

/// A deadline the client must meet or be closed: an unauthenticated or
/// stalled connection must not hold one of the `max_clients` slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// HELLO must be accepted by then.
    Hello(Instant),
    /// The frame begun in the read buffer must be complete by then.
    Frame(Instant),
}

impl Deadline {
    /// When it runs out.
    pub fn at(self) -> Instant {
        match self {
            Deadline::Hello(t) | Deadline::Frame(t) => t,
        }
    }
}

/// Frames handed to one `writev` at most (Linux takes up to 1024).
const WRITE_BATCH: usize = 64;

/// One connected application.
#[derive(Debug)]
pub struct Client {
    /// The stream.
    pub stream: Stream,
    /// Name from HELLO (empty before).
    pub name: String,
    /// True once HELLO was accepted.
    pub hello_done: bool,
    /// (address, port) pairs this client holds, `csp_ipc::PORT_ANY` included.
    pub bindings: Vec<(u16, u8)>,
    /// Counters.
    pub stats: ClientStats,
    /// The deadline running, if any (see [`Client::track_partial_frame`]).
    pub deadline: Option<Deadline>,
    /// A whole frame was decoded since the last `track_partial_frame`.
    progressed: bool,
    rbuf: Vec<u8>,
    rlen: usize,
    data_queue: VecDeque<Vec<u8>>,
    control_queue: VecDeque<Vec<u8>>,
    /// CAPTURE_FRAME messages (and the CAPTURE_END behind them), bounded
    /// by the capture's queue length (`crate::capture`).
    capture_queue: VecDeque<Vec<u8>>,
    /// The frame being written and how much of it is out.
    writing: Option<(Vec<u8>, usize)>,
    queue_len: usize,
    overflow: Overflow,
}

/// What [`Client::send_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued for the client (perhaps pushing out an older one).
    Yes,
    /// Dropped by the drop-newest policy: the queue was full.
    Dropped,
    /// Too large for a DATA frame.
    TooLarge,
}

impl Client {
    /// A new client on `stream` with the configured queue bound and policy;
    /// it must complete HELLO by `hello_by`.
    pub fn new(stream: Stream, queue_len: usize, overflow: Overflow, hello_by: Instant) -> Client {
        Client {
            stream,
            name: String::new(),
            hello_done: false,
            bindings: Vec::new(),
            stats: ClientStats::default(),
            deadline: Some(Deadline::Hello(hello_by)),
            progressed: false,
            rbuf: vec![0; csp_ipc::LEN_PREFIX + csp_ipc::MAX_FRAME_LEN],
            rlen: 0,
            data_queue: VecDeque::new(),
            control_queue: VecDeque::new(),
            capture_queue: VecDeque::new(),
            writing: None,
            queue_len,
            overflow,
        }
    }

    /// Read what is available, up to `budget` bytes, and decode it into
    /// `requests`. The poll is edge-triggered, so the socket is drained until
    /// it would block, or until the budget runs out ([`ReadOutcome::More`]:
    /// the caller must come back): a client that writes without pause can
    /// neither starve the others nor grow `requests` without bound.
    pub fn read(&mut self, requests: &mut Vec<Request>, budget: usize) -> ReadOutcome {
        let mut taken = 0;
        loop {
            if taken >= budget {
                return ReadOutcome::More;
            }
            match self.stream.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    taken += n;
                    self.rlen += n;
                    if let Err(e) = self.decode(requests) {
                        return ReadOutcome::ProtocolError(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Decode whole frames from the front of the read buffer. The buffer holds
    /// one maximum frame, so after this there is always room to read more.
    fn decode(&mut self, requests: &mut Vec<Request>) -> Result<(), IpcError> {
        let mut at = 0;
        while let Some((msg, used)) = csp_ipc::decode(&self.rbuf[at..self.rlen])? {
            requests.push(Request::from_message(&msg));
            at += used;
            self.progressed = true;
        }
        self.rbuf.copy_within(at..self.rlen, 0);
        self.rlen -= at;
        Ok(())
    }

    /// After reading (and once HELLO is done): start the half-sent frame
    /// deadline when bytes of an incomplete frame wait, restart it when a
    /// whole frame arrived meanwhile (a slow but steady sender is making
    /// progress), stop it when the buffer is empty. Before HELLO the HELLO
    /// deadline stays.
    pub fn track_partial_frame(&mut self, now: Instant, timeout: Duration) {
        if !self.hello_done {
            return;
        }
        let progressed = std::mem::take(&mut self.progressed);
        self.deadline = match self.deadline {
            _ if self.rlen == 0 => None,
            Some(Deadline::Frame(t)) if !progressed => Some(Deadline::Frame(t)),
            _ => Some(Deadline::Frame(now + timeout)),
        };
    }

    /// Queue a control frame (ack, reply, error). Returns false if the client
    /// has so many pending that it must be disconnected.
    pub fn send_control(&mut self, msg: &Message<'_>) -> bool {
        if self.control_queue.len() >= MAX_CONTROL_FRAMES {
            return false;
        }
        self.queue_encoded(msg);
        true
    }

    fn queue_encoded(&mut self, msg: &Message<'_>) {
        match csp_ipc::encode_to_vec(msg) {
            Ok(frame) => self.control_queue.push_back(frame),
            Err(e) => {
                // Tell the client rather than leave it waiting; the log line
                // names the message, never its (possibly huge) text.
                let kind = format!("{msg:?}");
                let kind = kind.split([' ', '(', '{']).next().unwrap_or("");
                log::warn!("client {}: cannot encode {kind}: {e}", self.name);
                let error = Message::Error {
                    code: csp_ipc::ErrorCode::Other,
                    message: "reply could not be encoded",
                };
                if let Ok(frame) = csp_ipc::encode_to_vec(&error) {
                    self.control_queue.push_back(frame);
                }
            }
        }
    }

    /// Queue the pages of one control reply, the last one marked. Returns
    /// false, queueing nothing, if the client already lets control frames
    /// pile up: one reply is bounded (its records are), the backlog by count.
    pub fn send_reply_pages(&mut self, request: csp_ipc::Control, pages: &[String]) -> bool {
        if self.control_queue.len() >= MAX_CONTROL_FRAMES {
            return false;
        }
        for (i, text) in pages.iter().enumerate() {
            let page = Message::ControlReply {
                request,
                more: i + 1 < pages.len(),
                text,
            };
            self.queue_encoded(&page);
        }
        true
    }

    /// Queue a CSP packet (v2 header + data) for the client, applying the
    /// overflow policy when the queue is full.
    pub fn send_packet(&mut self, frame: &[u8]) -> Queued {
        let Ok(encoded) = csp_ipc::encode_to_vec(&Message::Data { frame }) else {
            // Not an overflow of this client's queue: no DATA frame can
            // carry it (the daemon counts it as too_large).
            return Queued::TooLarge;
        };
        if self.data_queue.len() >= self.queue_len {
            self.stats.dropped_overflow += 1;
            match self.overflow {
                Overflow::DropNewest => return Queued::Dropped,
                Overflow::DropOldest => {
                    self.data_queue.pop_front();
                }
            }
        }
        self.data_queue.push_back(encoded);
        self.stats.tx_packets += 1;
        Queued::Yes
    }

    /// Packets waiting to be written.
    pub fn queued_packets(&self) -> usize {
        self.data_queue.len()
    }

    /// Queue an encoded CAPTURE_FRAME unless `bound` frames wait already
    /// (false: the frame is dropped; the caller counts it). Capture never
    /// pushes out what is queued: the file keeps an unbroken prefix.
    pub fn push_capture(&mut self, frame: Vec<u8>, bound: usize) -> bool {
        if self.capture_queue.len() >= bound {
            return false;
        }
        self.capture_queue.push_back(frame);
        true
    }

    /// Queue the encoded CAPTURE_END behind the capture's frames, past the
    /// bound (one frame): the client must learn how its capture ended.
    pub fn push_capture_end(&mut self, frame: Vec<u8>) {
        self.capture_queue.push_back(frame);
    }

    /// Control frames this client can still be sent before it counts as
    /// not reading ([`Client::send_control`] refuses past that).
    pub fn control_room(&self) -> usize {
        MAX_CONTROL_FRAMES.saturating_sub(self.control_queue.len())
    }

    /// Capture frames waiting to be written.
    pub fn queued_captures(&self) -> usize {
        self.capture_queue.len()
    }

    /// Write as much as the socket takes; control frames go first.
    /// Returns an error only when the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        loop {
            // Everything waiting, in the order it goes out (the frame begun,
            // control frames, data, then capture frames), written with one
            // `writev`: a burst of packets for one application costs one
            // syscall.
            let mut iov: [io::IoSlice<'_>; WRITE_BATCH] = [io::IoSlice::new(&[]); WRITE_BATCH];
            let mut n_iov = 0;
            let begun = self.writing.as_ref().map(|(f, done)| &f[*done..]);
            for frame in begun
                .into_iter()
                .chain(self.control_queue.iter().map(Vec::as_slice))
                .chain(self.data_queue.iter().map(Vec::as_slice))
                .chain(self.capture_queue.iter().map(Vec::as_slice))
                .take(WRITE_BATCH)
            {
                iov[n_iov] = io::IoSlice::new(frame);
                n_iov += 1;
            }
            if n_iov == 0 {
                return Ok(());
            }
            match self.stream.write_vectored(&iov[..n_iov]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Account for `n` bytes written from the front of what was waiting:
    /// whole frames leave their queues, a frame cut short becomes the one
    /// begun.
    fn consume(&mut self, mut n: usize) {
        if let Some((frame, done)) = self.writing.as_mut() {
            let left = frame.len() - *done;
            if n < left {
                *done += n;
                return;
            }
            n -= left;
            self.writing = None;
        }
        while n > 0 {
            // The order `flush` lists them in.
            let next = self
                .control_queue
                .pop_front()
                .or_else(|| self.data_queue.pop_front())
                .or_else(|| self.capture_queue.pop_front());
            let Some(frame) = next else {
                return;
            };
            if n < frame.len() {
                self.writing = Some((frame, n));
                return;
            }
            n -= frame.len();
        }
    }

    /// True if nothing is left to write.
    pub fn is_flushed(&self) -> bool {
        self.writing.is_none()
            && self.control_queue.is_empty()
            && self.data_queue.is_empty()
            && self.capture_queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csp_ipc::{ByeReason, Control};

    #[test]
    fn hello_names_are_capped_and_cleaned() {
        assert_eq!(kept_name("ground-1"), "ground-1");
        assert_eq!(kept_name("a\nFAKE LOG LINE\u{7}"), "a?FAKE LOG LINE?");
        let long = "x".repeat(4000);
        assert_eq!(kept_name(&long), long[..csp_ipc::MAX_NAME_LEN]);
        // A multi-byte character that would straddle the cap is left out whole.
        let accents = "é".repeat(40);
        let kept = kept_name(&accents);
        assert_eq!(kept, "é".repeat(csp_ipc::MAX_NAME_LEN / 2));
        assert!(kept.len() <= csp_ipc::MAX_NAME_LEN);
        let odd = format!("x{}", "é".repeat(40));
        assert_eq!(kept_name(&odd).len(), csp_ipc::MAX_NAME_LEN - 1);
    }

    fn pair(queue_len: usize, overflow: Overflow) -> (Client, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let client = Client::new(
            Stream::Unix(mio::net::UnixStream::from_std(a)),
            queue_len,
            overflow,
            Instant::now() + Duration::from_secs(5),
        );
        (client, b)
    }

    /// Bytes written cut anywhere (inside the frame begun, on a frame
    /// boundary, inside a queued frame) leave exactly the rest, in order.
    #[test]
    fn partial_writes_leave_the_rest_in_order() {
        let (mut c, _peer) = pair(8, Overflow::DropNewest);
        let all = |c: &Client| -> Vec<u8> {
            let mut out = Vec::new();
            if let Some((f, done)) = &c.writing {
                out.extend_from_slice(&f[*done..]);
            }
            c.control_queue
                .iter()
                .chain(c.data_queue.iter())
                .for_each(|f| out.extend(f));
            out
        };
        c.writing = Some((vec![1, 2, 3], 1));
        c.control_queue.push_back(vec![4, 5]);
        c.data_queue.push_back(vec![6, 7, 8]);
        c.data_queue.push_back(vec![9]);
        let mut expect: Vec<u8> = (2..=9).collect();
        for n in [1, 2, 1, 3, 1] {
            c.consume(n);
            expect.drain(..n);
            assert_eq!(all(&c), expect, "after {n}");
        }
        assert!(c.is_flushed());
    }

    fn read_frames(peer: &mut std::os::unix::net::UnixStream) -> Vec<Vec<u8>> {
        peer.set_nonblocking(true).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((m, n)) = csp_ipc::decode(&all[at..]).unwrap() {
            if let Message::Data { frame } = m {
                frames.push(frame.to_vec());
            }
            at += n;
        }
        frames
    }

    #[test]
    fn requests_split_across_reads_are_reassembled() {
        let (mut c, mut peer) = pair(8, Overflow::DropOldest);
        let mut bytes = csp_ipc::encode_to_vec(&Message::Hello {
            version: 1,
            name: "t",
        })
        .unwrap();
        bytes.extend(csp_ipc::encode_to_vec(&Message::Control(Control::Stats)).unwrap());
        let mut reqs = Vec::new();
        peer.write_all(&bytes[..3]).unwrap();
        assert!(matches!(c.read(&mut reqs, usize::MAX), ReadOutcome::Open));
        assert!(reqs.is_empty());
        peer.write_all(&bytes[3..]).unwrap();
        assert!(matches!(c.read(&mut reqs, usize::MAX), ReadOutcome::Open));
        assert_eq!(
            reqs,
            vec![
                Request::Hello {
                    version: 1,
                    name: "t".into()
                },
                Request::Control(Control::Stats)
            ]
        );
        drop(peer);
        assert!(matches!(c.read(&mut reqs, usize::MAX), ReadOutcome::Closed));
    }

    #[test]
    fn read_budget_stops_and_resumes() {
        let (mut c, mut peer) = pair(8, Overflow::DropOldest);
        // 100 frames of ~100 bytes: more than one read buffer's worth.
        let name = "n".repeat(100);
        let one = csp_ipc::encode_to_vec(&Message::Hello {
            version: 1,
            name: &name,
        })
        .unwrap();
        for _ in 0..100 {
            peer.write_all(&one).unwrap();
        }
        let mut reqs = Vec::new();
        assert!(matches!(c.read(&mut reqs, 10), ReadOutcome::More));
        assert!(reqs.len() < 100, "stopped early: {}", reqs.len());
        while let ReadOutcome::More = c.read(&mut reqs, 10) {}
        assert_eq!(reqs.len(), 100, "nothing lost across budget stops");
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let (mut c, mut peer) = pair(8, Overflow::DropOldest);
        peer.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
        let mut reqs = Vec::new();
        assert!(matches!(
            c.read(&mut reqs, usize::MAX),
            ReadOutcome::ProtocolError(IpcError::BadLength(65535))
        ));
    }

    #[test]
    fn overflow_policies() {
        for (policy, expect_first) in [(Overflow::DropOldest, 2u8), (Overflow::DropNewest, 0u8)] {
            let (mut c, mut peer) = pair(3, policy);
            for i in 0..5u8 {
                c.send_packet(&[0, 0, 0, 0, 0, 0, i]);
            }
            assert_eq!(c.queued_packets(), 3);
            assert_eq!(c.stats.dropped_overflow, 2);
            c.flush().unwrap();
            let got = read_frames(&mut peer);
            let firsts: Vec<u8> = got.iter().map(|f| f[6]).collect();
            assert_eq!(firsts[0], expect_first, "{policy:?}: {firsts:?}");
            assert_eq!(firsts.len(), 3);
        }
    }

    #[test]
    fn control_frames_overtake_data_and_are_bounded() {
        let (mut c, mut peer) = pair(4, Overflow::DropOldest);
        c.send_packet(&[0, 0, 0, 0, 0, 0, 9]);
        assert!(c.send_control(&Message::Bye(ByeReason::Shutdown)));
        c.flush().unwrap();
        assert!(c.is_flushed());
        peer.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let n = peer.read(&mut buf).unwrap();
        let (first, _) = csp_ipc::decode(&buf[..n]).unwrap().unwrap();
        assert_eq!(first, Message::Bye(ByeReason::Shutdown));
        for _ in 0..MAX_CONTROL_FRAMES {
            assert!(c.send_control(&Message::Control(Control::Status)));
        }
        assert!(!c.send_control(&Message::Control(Control::Status)));
    }

    #[test]
    fn partial_frame_deadline_starts_restarts_and_stops() {
        let (mut c, mut peer) = pair(4, Overflow::DropOldest);
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let hello = c.deadline;
        assert!(matches!(hello, Some(Deadline::Hello(_))));
        let mut reqs = Vec::new();
        let frame = csp_ipc::encode_to_vec(&Message::Control(Control::Stats)).unwrap();
        peer.write_all(&frame[..2]).unwrap();
        c.read(&mut reqs, usize::MAX);
        c.track_partial_frame(t0, timeout);
        assert_eq!(c.deadline, hello, "before HELLO the HELLO deadline stays");

        c.hello_done = true;
        c.track_partial_frame(t0, timeout);
        assert_eq!(c.deadline, Some(Deadline::Frame(t0 + timeout)));
        // More of the same frame, not complete: the deadline does not move.
        peer.write_all(&frame[2..3]).unwrap();
        c.read(&mut reqs, usize::MAX);
        c.track_partial_frame(t0 + Duration::from_secs(1), timeout);
        assert_eq!(c.deadline, Some(Deadline::Frame(t0 + timeout)));
        // The frame completes and the next one begins: progress restarts it.
        let t1 = t0 + Duration::from_secs(2);
        peer.write_all(&frame[3..]).unwrap();
        peer.write_all(&frame[..1]).unwrap();
        c.read(&mut reqs, usize::MAX);
        c.track_partial_frame(t1, timeout);
        assert_eq!(c.deadline, Some(Deadline::Frame(t1 + timeout)));
        peer.write_all(&frame[1..]).unwrap();
        c.read(&mut reqs, usize::MAX);
        c.track_partial_frame(t1, timeout);
        assert_eq!(c.deadline, None, "nothing half-sent");
        assert_eq!(reqs.len(), 2);
    }
}
