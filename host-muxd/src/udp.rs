//! The UDP link, as libcsp 2.x speaks it: one datagram is exactly one CSP
//! frame (`header | data`), no other framing. The header version (v1 or v2)
//! is a property of the link.

use std::io;
use std::net::SocketAddr;

use csp_core::Version;

/// Counters of one link, shown by `csp status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames that were not CSP (too short for a header, too long).
    pub rx_errors: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames that could not be sent (socket full or error); UDP drops them.
    pub tx_errors: u64,
}

/// Largest datagram accepted. CSP's length field is 16 bits; anything larger
/// is not a CSP frame.
pub const MAX_DATAGRAM: usize = 65535;

/// Bytes of an [`RxBatch`]: room for the read budget's worth of typical
/// frames, and always for at least one datagram of [`MAX_DATAGRAM`].
const BATCH_BYTES: usize = 4 * MAX_DATAGRAM;

/// The datagrams of one wakeup, received straight into one buffer that is
/// allocated once (on first use): the daemon routes them after the link is
/// done receiving, without an allocation or a copy per packet.
#[derive(Debug, Default)]
pub struct RxBatch {
    buf: Vec<u8>,
    /// Start, length and sender of each frame in `buf`.
    frames: Vec<(usize, usize, SocketAddr)>,
}

impl RxBatch {
    /// The frames received, in order, with their senders.
    pub fn frames(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.frames
            .iter()
            .map(|&(at, n, from)| (&self.buf[at..at + n], from))
    }

    /// Forget the frames; the buffer stays for the next wakeup.
    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// Where the next datagram goes, if a whole one still fits.
    fn room(&mut self) -> Option<(usize, &mut [u8])> {
        if self.buf.is_empty() {
            self.buf = vec![0; BATCH_BYTES];
        }
        let at = self.frames.last().map_or(0, |&(at, n, _)| at + n);
        let room = &mut self.buf[at..];
        (room.len() >= MAX_DATAGRAM).then_some((at, room))
    }
}

/// A bound UDP socket carrying CSP frames.
#[derive(Debug)]
pub struct UdpLink {
    socket: mio::net::UdpSocket,
    /// Header version on this link.
    pub version: Version,
    /// Counters.
    pub stats: LinkStats,
    /// Where an outgoing frame is put together (header, then data): kept,
    /// so that sending allocates nothing.
    tx: Vec<u8>,
}

impl UdpLink {
    /// Bind `addr` for frames with headers of `version`.
    pub fn bind(addr: SocketAddr, version: Version) -> io::Result<UdpLink> {
        Ok(UdpLink {
            socket: mio::net::UdpSocket::bind(addr)?,
            version,
            stats: LinkStats::default(),
            tx: Vec::with_capacity(MAX_DATAGRAM),
        })
    }

    /// The socket, to register with the poll.
    pub fn socket(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// The bound address (useful when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receive the datagrams waiting into `batch`, at most `budget` of
    /// them (and as many as its buffer holds). Frames too short to hold a
    /// header are counted and skipped here. Returns true if the budget or
    /// the buffer ran out before the socket was drained: the poll is
    /// edge-triggered, so the caller must come back without waiting for
    /// another event.
    pub fn recv_batch(&mut self, budget: usize, batch: &mut RxBatch) -> bool {
        for _ in 0..budget {
            let Some((at, room)) = batch.room() else {
                return true;
            };
            match self.socket.recv_from(room) {
                Ok((n, from)) => {
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += n as u64;
                    if n < self.version.header_len() {
                        self.stats.rx_errors += 1;
                        log::debug!("udp: {n}-byte datagram from {from} is not a CSP frame");
                        continue;
                    }
                    batch.frames.push((at, n, from));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP port-unreachable from an earlier send surfaces here
                    // on Linux; it says nothing about this socket's health.
                    self.stats.rx_errors += 1;
                    log::debug!("udp: receive error: {e}");
                }
            }
        }
        true
    }

    /// Send `header | data` to `peer` as one frame, put together in the
    /// link's own buffer.
    pub fn send_parts(&mut self, header: &[u8], data: &[u8], peer: SocketAddr) -> bool {
        let mut frame = std::mem::take(&mut self.tx);
        frame.clear();
        frame.extend_from_slice(header);
        frame.extend_from_slice(data);
        let ok = self.send(&frame, peer);
        self.tx = frame;
        ok
    }

    /// Send one frame to `peer`. A full socket buffer drops the frame (UDP
    /// semantics; the loop never blocks) and counts it.
    pub fn send(&mut self, frame: &[u8], peer: SocketAddr) -> bool {
        match self.socket.send_to(frame, peer) {
            Ok(n) if n == frame.len() => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += n as u64;
                true
            }
            Ok(_) | Err(_) => {
                self.stats.tx_errors += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn frames_cross_loopback_and_runts_are_counted() {
        let mut a = UdpLink::bind("127.0.0.1:0".parse().unwrap(), Version::V2).unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let a_addr = a.local_addr().unwrap();

        assert!(a.send(&[1, 2, 3, 4, 5, 6, 7], b.local_addr().unwrap()));
        let mut buf = [0u8; 64];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[1u8, 2, 3, 4, 5, 6, 7][..], a_addr));

        b.send_to(&[9, 9, 9], a_addr).unwrap();
        b.send_to(&[8; 10], a_addr).unwrap();
        let mut got = Vec::new();
        let mut batch = RxBatch::default();
        // The datagrams are on loopback already; poll briefly until both arrived.
        for _ in 0..500 {
            a.recv_batch(64, &mut batch);
            got.extend(batch.frames().map(|(f, from)| (f.to_vec(), from)));
            batch.clear();
            if a.stats.rx_frames == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let b_addr = b.local_addr().unwrap();
        assert_eq!(got, vec![(vec![8u8; 10], b_addr)]);
        assert_eq!((a.stats.rx_frames, a.stats.rx_errors), (2, 1));
        assert_eq!(a.stats.tx_frames, 1);
    }

    #[test]
    fn a_batch_holds_frames_back_to_back_and_stops_when_full() {
        let mut a = UdpLink::bind("127.0.0.1:0".parse().unwrap(), Version::V2).unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a_addr = a.local_addr().unwrap();
        let sizes = [300usize, 7, 1000, 50];
        for (i, &n) in sizes.iter().enumerate() {
            b.send_to(&vec![i as u8; n], a_addr).unwrap();
        }
        let mut batch = RxBatch::default();
        let mut got: Vec<(u8, usize)> = Vec::new();
        for _ in 0..500 {
            a.recv_batch(64, &mut batch);
            got.extend(batch.frames().map(|(f, _)| (f[0], f.len())));
            assert!(batch.frames().all(|(f, _)| f.iter().all(|&x| x == f[0])));
            batch.clear();
            if a.stats.rx_frames == 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // 7 bytes hold a v2 header (6): a frame, not a runt.
        assert_eq!(got, vec![(0, 300), (1, 7), (2, 1000), (3, 50)]);

        // A buffer without room for a whole datagram ends the round before
        // reading, and says to come back.
        b.send_to(&[9; 20], a_addr).unwrap();
        let full = BATCH_BYTES - MAX_DATAGRAM + 1;
        batch.frames.push((0, full, a_addr));
        assert!(a.recv_batch(64, &mut batch));
        assert_eq!(batch.frames().count(), 1);
        batch.clear();
        let mut next = Vec::new();
        for _ in 0..500 {
            assert!(!a.recv_batch(64, &mut batch) || batch.frames().count() > 0);
            next.extend(batch.frames().map(|(f, _)| f.to_vec()));
            batch.clear();
            if !next.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(next, vec![vec![9u8; 20]]);
        // Sending puts header and data together.
        assert!(a.send_parts(&[1, 2, 3, 4, 5, 6], b"data", b.local_addr().unwrap()));
        let mut buf = [0u8; 64];
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x01\x02\x03\x04\x05\x06data");
    }
}
