//! SocketCAN links (`[[can]] mode = "socketcan"`): CSP over CFP on a Linux
//! CAN network interface (`can0`, `vcan0`, a USB adapter's gs_usb or peak
//! device), the way libcsp's socketcan driver puts it on the bus.
//!
//! A raw CAN socket is a datagram socket of `struct can_frame` records
//! (16 bytes: 32-bit id with the EFF/RTR/ERR flags in host byte order, the
//! length, padding, 8 data bytes). The link reads and writes those records
//! itself on any such descriptor: the socket the `socketcan` crate opens
//! and binds to the interface, or, in tests, one end of a Unix datagram
//! pair (this machine kind has no `vcan` module). CFP is csp-core's
//! [`CanLink`], as for slcan links: reassembly with a bounded number of
//! slots and a timeout, fragments with the route's next hop.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use csp_core::cfp::{CanLink, CfpStats};
use csp_core::{Addr, Version};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::config::CanConfig;
use crate::kiss::MAX_FRAME;

/// Bytes of one `struct can_frame` on a raw CAN socket.
pub const CAN_FRAME_LEN: usize = 16;
/// Extended (29-bit) id flag of `can_id`.
const EFF_FLAG: u32 = 0x8000_0000;
/// Remote transmission request flag.
const RTR_FLAG: u32 = 0x4000_0000;
/// Error frame flag.
const ERR_FLAG: u32 = 0x2000_0000;
/// The 29 id bits.
const EFF_MASK: u32 = 0x1FFF_FFFF;

/// Frames read per readiness event before the loop serves others (it comes
/// back at once: see [`SocketCanLink::on_event`]'s return).
const READ_BUDGET: usize = 256;
/// How long a half-received packet waits for its next frame (as slcan).
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(1);

/// One `struct can_frame` for an extended data frame.
pub fn encode_frame(id: u32, data: &[u8]) -> [u8; CAN_FRAME_LEN] {
    let mut out = [0u8; CAN_FRAME_LEN];
    let len = data.len().min(8);
    out[..4].copy_from_slice(&((id & EFF_MASK) | EFF_FLAG).to_ne_bytes());
    out[4] = len as u8;
    out[8..8 + len].copy_from_slice(&data[..len]);
    out
}

/// What a received record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// An extended data frame: its 29-bit id and data.
    Frame {
        /// The id without flags.
        id: u32,
        /// Data bytes (the first `len` count).
        data: [u8; 8],
        /// Data length, 0..=8.
        len: usize,
    },
    /// A standard-id, remote or error frame: not CFP's.
    NotCfp,
    /// Not a `struct can_frame` (wrong size, length over 8).
    Malformed,
}

/// Decode one record read from the socket.
pub fn decode_frame(record: &[u8]) -> Received {
    let (Some(id), Some(&len), Some(bytes)) =
        (record.first_chunk::<4>(), record.get(4), record.get(8..16))
    else {
        return Received::Malformed;
    };
    if record.len() != CAN_FRAME_LEN || len > 8 {
        return Received::Malformed;
    }
    let id = u32::from_ne_bytes(*id);
    if id & EFF_FLAG == 0 || id & (RTR_FLAG | ERR_FLAG) != 0 {
        return Received::NotCfp;
    }
    let mut data = [0u8; 8];
    data.copy_from_slice(bytes);
    Received::Frame {
        id: id & EFF_MASK,
        data,
        len: usize::from(len),
    }
}

/// Counters of one SocketCAN link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCanStats {
    /// CSP packets reassembled from the bus.
    pub rx_packets: u64,
    /// CAN frames read.
    pub rx_frames: u64,
    /// Standard, remote and error frames (not CFP's), skipped.
    pub rx_not_cfp: u64,
    /// Records that were not CAN frames, and read errors.
    pub rx_errors: u64,
    /// CSP packets handed to the bus whole.
    pub tx_packets: u64,
    /// CAN frames written.
    pub tx_frames: u64,
    /// Packets dropped because `queue_len` packets were waiting.
    pub tx_queue_full: u64,
    /// Packets CFP can not carry (too long, header too wide for CFP1) and
    /// frames the socket refused with an error (the packet is lost).
    pub tx_errors: u64,
}

/// The descriptor the link reads and writes `struct can_frame` records on.
#[derive(Debug)]
pub enum Endpoint {
    /// A raw CAN socket bound to an interface.
    Can(socketcan::CanSocket),
    /// A datagram socket carrying the same records (tests).
    Datagram(std::os::unix::net::UnixDatagram),
}

impl AsFd for Endpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Endpoint::Can(s) => s.as_fd(),
            Endpoint::Datagram(s) => s.as_fd(),
        }
    }
}

/// One `[[can]]` link in socketcan mode.
pub struct SocketCanLink {
    /// Name routes use.
    pub name: String,
    /// The interface (`can0`), for status.
    pub interface: String,
    /// CSP header version, and so CFP version.
    pub version: Version,
    endpoint: Endpoint,
    token: Token,
    can: Box<CanLink<8, MAX_FRAME>>,
    /// The CFP clock starts with the link.
    epoch: Instant,
    max_frame: usize,
    /// Frames of whole packets waiting for the socket, a packet's frames
    /// together; `queue_len` packets at most (`packet_frames` counts them).
    pending: VecDeque<[u8; CAN_FRAME_LEN]>,
    /// How many of `pending` each queued packet has left, oldest first.
    packet_frames: VecDeque<usize>,
    queue_len: usize,
    /// Registered for WRITABLE too (frames are waiting).
    want_write: bool,
    /// Counters.
    pub stats: SocketCanStats,
}

impl std::fmt::Debug for SocketCanLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketCanLink")
            .field("name", &self.name)
            .field("interface", &self.interface)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SocketCanLink {
    /// Open the link of `cfg` (its `interface`) for node `node`, registered
    /// under `token`.
    pub fn open(
        cfg: &CanConfig,
        node: u16,
        token: Token,
        registry: &Registry,
    ) -> io::Result<SocketCanLink> {
        use socketcan::Socket;
        let interface = cfg.interface.clone().unwrap_or_default();
        let socket = socketcan::CanSocket::open(&interface)
            .map_err(|e| io::Error::new(e.kind(), format!("interface {interface:?}: {e}")))?;
        socket.set_nonblocking(true)?;
        let mut link = SocketCanLink::with_endpoint(cfg, node, Endpoint::Can(socket), token);
        link.interface = interface;
        link.register(registry)?;
        Ok(link)
    }

    /// A link on `endpoint` (non-blocking already), not yet registered.
    pub fn with_endpoint(
        cfg: &CanConfig,
        node: u16,
        endpoint: Endpoint,
        token: Token,
    ) -> SocketCanLink {
        let version = if cfg.version == 1 {
            Version::V1
        } else {
            Version::V2
        };
        let mut can = Box::new(CanLink::new(
            version,
            Addr::new(node).unwrap_or(Addr::LOCAL),
        ));
        can.set_timeout(csp_core::time::Duration::from_millis(
            REASSEMBLY_TIMEOUT.as_millis() as u64,
        ));
        SocketCanLink {
            name: cfg.name.clone(),
            interface: cfg.interface.clone().unwrap_or_default(),
            version,
            endpoint,
            token,
            can,
            epoch: Instant::now(),
            max_frame: cfg.max_frame.min(MAX_FRAME),
            pending: VecDeque::new(),
            packet_frames: VecDeque::new(),
            queue_len: cfg.queue_len.max(1),
            want_write: false,
            stats: SocketCanStats::default(),
        }
    }

    /// Register the descriptor with the poll (readable; writable while
    /// frames wait).
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let fd = self.endpoint.as_fd().as_raw_fd();
        registry.register(&mut SourceFd(&fd), self.token, Interest::READABLE)
    }

    /// True if `token` is this link's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.token
    }

    /// The CFP reassembly counters.
    pub fn cfp_stats(&self) -> &CfpStats {
        self.can.stats()
    }

    /// Packets waiting for the socket.
    pub fn queued(&self) -> usize {
        self.packet_frames.len()
    }

    fn core_now(&self, now: Instant) -> csp_core::time::Instant {
        csp_core::time::Instant::from_millis(now.duration_since(self.epoch).as_millis() as u64)
    }

    /// Read what the bus has (at most [`READ_BUDGET`] frames) and write
    /// what waits; completed CSP frames (header first) go to `out`. Returns
    /// true if the budget ran out: the caller comes back without waiting
    /// for another event (the poll is edge-triggered).
    pub fn on_event(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Vec<u8>>) -> bool {
        let more = self.read(now, out);
        self.write(registry);
        more
    }

    fn read(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> bool {
        let at = self.core_now(now);
        let mut record = [0u8; CAN_FRAME_LEN + 1];
        for _ in 0..READ_BUDGET {
            let n = match nix::unistd::read(self.endpoint.as_fd(), &mut record) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // A bus error (ENETDOWN when the interface goes down):
                    // counted; the socket stays and reads again later.
                    self.stats.rx_errors += 1;
                    log::debug!("{}: read: {e}", self.name);
                    return false;
                }
            };
            match decode_frame(&record[..n]) {
                Received::Frame { id, data, len } => {
                    self.stats.rx_frames += 1;
                    match self.can.receive(at, id, &data[..len]) {
                        Ok(Some(frame)) if frame.len() <= self.max_frame => {
                            self.stats.rx_packets += 1;
                            out.push(frame.to_vec());
                        }
                        // Longer than this link's max_frame: CFP counted it
                        // complete; the daemon drops it like an overlong
                        // KISS frame.
                        Ok(Some(_)) => self.stats.rx_errors += 1,
                        Ok(None) => {}
                        Err(_) => {} // counted by CFP
                    }
                }
                Received::NotCfp => self.stats.rx_not_cfp += 1,
                Received::Malformed => self.stats.rx_errors += 1,
            }
        }
        true
    }

    /// Queue the CAN frames of CSP frame `frame` (header first) towards
    /// `via`; false if it was dropped (counted).
    pub fn send(&mut self, frame: &[u8], via: Option<Addr>, registry: &Registry) -> bool {
        if self.packet_frames.len() >= self.queue_len {
            self.stats.tx_queue_full += 1;
            return false;
        }
        if frame.len() > self.max_frame {
            self.stats.tx_errors += 1;
            return false;
        }
        let Ok(frames) = self.can.transmit(frame, via) else {
            self.stats.tx_errors += 1;
            return false;
        };
        let before = self.pending.len();
        for f in frames {
            self.pending.push_back(encode_frame(f.id, f.data()));
        }
        self.packet_frames.push_back(self.pending.len() - before);
        self.write(registry);
        true
    }

    /// Write waiting frames until the socket would block.
    fn write(&mut self, registry: &Registry) {
        while let Some(record) = self.pending.front() {
            match nix::unistd::write(self.endpoint.as_fd(), record) {
                Ok(_) => {
                    self.pending.pop_front();
                    self.stats.tx_frames += 1;
                    self.frame_left(false);
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ENOBUFS) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // The rest of this packet is useless to the receiver.
                    log::debug!("{}: write: {e}", self.name);
                    self.stats.tx_errors += 1;
                    let left = self.packet_frames.front().copied().unwrap_or(1);
                    for _ in 0..left {
                        self.pending.pop_front();
                    }
                    self.frame_left(true);
                }
            }
        }
        let want = !self.pending.is_empty();
        if want != self.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let fd = self.endpoint.as_fd().as_raw_fd();
            if registry
                .reregister(&mut SourceFd(&fd), self.token, interest)
                .is_ok()
            {
                self.want_write = want;
            }
        }
    }

    /// One frame of the oldest packet left the queue (or, `whole`, all of
    /// them were dropped).
    fn frame_left(&mut self, whole: bool) {
        if let Some(left) = self.packet_frames.front_mut() {
            if whole || *left <= 1 {
                self.packet_frames.pop_front();
                if !whole {
                    self.stats.tx_packets += 1;
                }
            } else {
                *left -= 1;
            }
        }
    }

    /// When a half-received packet times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.can
            .poll_timeout()
            .map(|t| self.epoch + Duration::from_millis(t.as_millis()))
    }

    /// Give up half-received packets whose time ran out (counted lost).
    pub fn on_timer(&mut self, now: Instant) {
        let at = self.core_now(now);
        self.can.handle_timeout(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn cfg(version: u8) -> CanConfig {
        CanConfig {
            name: "bus".into(),
            mode: crate::config::CanMode::Socketcan,
            interface: Some("test".into()),
            version,
            queue_len: 4,
            ..CanConfig::default()
        }
    }

    /// A link on one end of a datagram pair; the test is the bus at the
    /// other end.
    fn link(version: u8, poll: &mio::Poll) -> (SocketCanLink, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // Every wait on the bus end is bounded.
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut l = SocketCanLink::with_endpoint(&cfg(version), 1, Endpoint::Datagram(a), Token(7));
        l.register(poll.registry()).unwrap();
        (l, b)
    }

    fn ping(src: u16, dst: u16, len: usize, version: Version) -> Vec<u8> {
        let h = csp_core::Header {
            prio: csp_core::Prio::Normal,
            src: Addr::new(src).unwrap(),
            dst: Addr::new(dst).unwrap(),
            dport: csp_core::Port::new(1).unwrap(),
            sport: csp_core::Port::new(40).unwrap(),
            flags: csp_core::Flags::NONE,
        };
        let mut frame = vec![0u8; version.header_len()];
        h.emit(&mut frame, version).unwrap();
        frame.extend((0..len).map(|i| i as u8));
        frame
    }

    #[test]
    fn frames_are_can_frame_records() {
        let r = encode_frame(0x1234_5678 & EFF_MASK, &[1, 2, 3]);
        assert_eq!(
            decode_frame(&r),
            Received::Frame {
                id: 0x1234_5678 & EFF_MASK,
                data: [1, 2, 3, 0, 0, 0, 0, 0],
                len: 3
            }
        );
        let mut std_frame = r;
        std_frame[..4].copy_from_slice(&0x123u32.to_ne_bytes());
        assert_eq!(decode_frame(&std_frame), Received::NotCfp);
        let mut err = r;
        err[..4].copy_from_slice(&(EFF_FLAG | ERR_FLAG | 1).to_ne_bytes());
        assert_eq!(decode_frame(&err), Received::NotCfp);
        let mut long = r;
        long[4] = 9;
        assert_eq!(decode_frame(&long), Received::Malformed);
        assert_eq!(decode_frame(&r[..15]), Received::Malformed);
        assert_eq!(decode_frame(&[]), Received::Malformed);
    }

    /// Packets of every size both ways through the link and a CFP peer
    /// (csp-core's CanLink on the test's end), CFP1 and CFP2; bus noise
    /// (standard, error, short records) is counted and loses nothing.
    #[test]
    fn packets_cross_the_bus_both_ways() {
        for (v, version) in [(1u8, Version::V1), (2, Version::V2)] {
            let poll = mio::Poll::new().unwrap();
            let (mut l, bus) = link(v, &poll);
            let mut peer: CanLink<4, 300> = CanLink::new(version, Addr::new(9).unwrap());
            let t0 = csp_core::time::Instant::ZERO;
            for len in [0usize, 1, 7, 8, 20, 100, 249] {
                // Link -> bus: the peer reassembles what was written.
                let frame = ping(1, 9, len, version);
                assert!(l.send(&frame, None, poll.registry()));
                let mut got = None;
                let mut record = [0u8; 32];
                while got.is_none() {
                    let n = bus.recv(&mut record).unwrap();
                    let Received::Frame { id, data, len: dl } = decode_frame(&record[..n]) else {
                        panic!("not a frame");
                    };
                    got = peer
                        .receive(t0, id, &data[..dl])
                        .unwrap()
                        .map(<[u8]>::to_vec);
                }
                assert_eq!(got.unwrap(), frame, "v{v} len {len} out");

                // Bus -> link, with noise between the frames.
                let back = ping(9, 1, len, version);
                for f in peer.transmit(&back, None).unwrap() {
                    bus.send(&encode_frame(0x7FF, &[1])[..]).unwrap();
                    let mut std_frame = encode_frame(0, &[]);
                    std_frame[..4].copy_from_slice(&0x123u32.to_ne_bytes());
                    bus.send(&std_frame).unwrap();
                    bus.send(&[0u8; 5]).unwrap();
                    bus.send(&encode_frame(f.id, f.data())).unwrap();
                }
                let mut out = Vec::new();
                while l.on_event(poll.registry(), Instant::now(), &mut out) {}
                assert_eq!(out, vec![back], "v{v} len {len} in");
            }
            assert_eq!(l.stats.rx_packets, 7);
            assert_eq!(l.stats.tx_packets, 7);
            assert!(
                l.stats.rx_not_cfp >= 7 && l.stats.rx_errors >= 7,
                "{:?}",
                l.stats
            );
        }
    }

    /// A bus that takes nothing: packets queue up to queue_len, the rest
    /// are dropped and counted; when it drains, the queued packets go out
    /// whole and in order.
    #[test]
    fn a_full_bus_queues_then_drops_and_recovers() {
        let poll = mio::Poll::new().unwrap();
        let (mut l, bus) = link(2, &poll);
        // Fill the datagram pair's buffer so writes would block.
        let mut filler = 0;
        loop {
            match nix::unistd::write(l.endpoint.as_fd(), &[0u8; CAN_FRAME_LEN]) {
                Ok(_) => filler += 1,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => panic!("{e}"),
            }
        }
        for i in 0..6 {
            let ok = l.send(&ping(1, 9, 20 + i, Version::V2), None, poll.registry());
            assert_eq!(ok, i < 4, "packet {i}");
        }
        assert_eq!((l.queued(), l.stats.tx_queue_full), (4, 2));
        // The bus reads everything: the filler, then the four packets.
        let mut peer: CanLink<4, 300> = CanLink::new(Version::V2, Addr::new(9).unwrap());
        let mut record = [0u8; 32];
        for _ in 0..filler {
            bus.recv(&mut record).unwrap();
        }
        let mut out = Vec::new();
        let mut packets = Vec::new();
        bus.set_nonblocking(true).unwrap();
        for _ in 0..1000 {
            l.on_event(poll.registry(), Instant::now(), &mut out);
            while let Ok(n) = bus.recv(&mut record) {
                if let Received::Frame { id, data, len } = decode_frame(&record[..n]) {
                    if let Some(p) = peer
                        .receive(csp_core::time::Instant::ZERO, id, &data[..len])
                        .unwrap()
                    {
                        packets.push(p.len());
                    }
                }
            }
            if packets.len() == 4 {
                break;
            }
        }
        let hlen = Version::V2.header_len();
        assert_eq!(packets, vec![hlen + 20, hlen + 21, hlen + 22, hlen + 23]);
        assert_eq!((l.queued(), l.stats.tx_packets), (0, 4));
    }
}
