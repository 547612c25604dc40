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

/// Datagrams one `recvmmsg` call takes: each gets a slot of
/// [`MAX_DATAGRAM`] bytes, so no frame is ever cut. The slots are address
/// space more than memory: the kernel touches only the bytes it writes.
const RX_SLOTS: usize = 32;

/// Frames queued for one `sendmmsg` call before it is made.
pub const TX_BATCH: usize = 32;

/// The datagrams of one wakeup, received by `recvmmsg` straight into one
/// buffer that is allocated once (on first use): the daemon routes them
/// after the link is done receiving, without an allocation or a copy per
/// packet.
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
}

/// Frames waiting for the next `sendmmsg`, back to back in one buffer.
#[derive(Debug, Default)]
struct TxBatch {
    buf: Vec<u8>,
    frames: Vec<(usize, usize, SocketAddr)>,
}

/// A bound UDP socket carrying CSP frames.
#[derive(Debug)]
pub struct UdpLink {
    socket: mio::net::UdpSocket,
    /// Header version on this link.
    pub version: Version,
    /// Counters.
    pub stats: LinkStats,
    /// Frames queued by [`UdpLink::send_parts`] until [`UdpLink::flush`].
    tx: TxBatch,
    /// Frames dropped by a batch `send_parts` sent when it filled, not yet
    /// reported by [`UdpLink::flush`].
    dropped_unreported: u64,
}

impl UdpLink {
    /// Bind `addr` for frames with headers of `version`.
    pub fn bind(addr: SocketAddr, version: Version) -> io::Result<UdpLink> {
        Ok(UdpLink {
            socket: mio::net::UdpSocket::bind(addr)?,
            version,
            stats: LinkStats::default(),
            tx: TxBatch::default(),
            dropped_unreported: 0,
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

    /// Receive the datagrams waiting into `batch` with one `recvmmsg`
    /// call: at most `budget` of them and [`RX_SLOTS`]. Frames too short to
    /// hold a header are counted and skipped here. Returns true if the call
    /// filled what it asked for (the socket may hold more): the poll is
    /// edge-triggered, so the caller must come back without waiting for
    /// another event.
    pub fn recv_batch(&mut self, budget: usize, batch: &mut RxBatch) -> bool {
        use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        if batch.buf.is_empty() {
            batch.buf = vec![0; RX_SLOTS * MAX_DATAGRAM];
        }
        let want = budget.min(RX_SLOTS);
        if want == 0 {
            return true;
        }
        let mut slots = batch.buf.chunks_mut(MAX_DATAGRAM);
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = slots
            .by_ref()
            .take(want)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(want, None);
        let fd = self.socket.as_raw_fd();
        let got = match recvmmsg(
            fd,
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => results
                .map(|r| (r.bytes, r.flags, r.address.and_then(socket_addr)))
                .collect::<Vec<_>>(),
            Err(nix::errno::Errno::EAGAIN) => return false,
            // Interrupted: the caller comes back at once.
            Err(nix::errno::Errno::EINTR) => return true,
            Err(e) => {
                // ICMP port-unreachable from an earlier send surfaces here
                // on Linux; it says nothing about this socket's health.
                self.stats.rx_errors += 1;
                log::debug!("udp: receive error: {e}");
                return true;
            }
        };
        let drained = got.len() < want;
        for (slot, (n, flags, from)) in got.into_iter().enumerate() {
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += n as u64;
            let from = match from {
                Some(from) if n >= self.version.header_len() => from,
                _ => {
                    self.stats.rx_errors += 1;
                    log::debug!("udp: {n}-byte datagram is not a CSP frame");
                    continue;
                }
            };
            if flags.contains(MsgFlags::MSG_TRUNC) {
                // Cannot happen with MAX_DATAGRAM slots; counted if it does.
                self.stats.rx_errors += 1;
                continue;
            }
            batch.frames.push((slot * MAX_DATAGRAM, n, from));
        }
        !drained
    }

    /// Queue `header | data` for `peer` as one frame; it leaves with the
    /// next [`UdpLink::flush`] (at the latest before the daemon sleeps), or
    /// at once when [`TX_BATCH`] frames are waiting.
    pub fn send_parts(&mut self, header: &[u8], data: &[u8], peer: SocketAddr) {
        let at = self.tx.buf.len();
        self.tx.buf.extend_from_slice(header);
        self.tx.buf.extend_from_slice(data);
        self.tx.frames.push((at, header.len() + data.len(), peer));
        if self.tx.frames.len() >= TX_BATCH {
            self.dropped_unreported += self.send_queued();
        }
    }

    /// Send every queued frame. Returns how many frames were dropped since
    /// the last call (here, or by a full batch `send_parts` sent).
    pub fn flush(&mut self) -> u64 {
        self.send_queued() + std::mem::take(&mut self.dropped_unreported)
    }

    /// Send the queued frames, `sendmmsg` at a time. A full socket buffer
    /// drops what it can not take (UDP semantics; the loop never blocks)
    /// and counts it. Returns how many frames were dropped.
    fn send_queued(&mut self) -> u64 {
        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        let mut dropped = 0;
        let mut next = 0;
        let fd = self.socket.as_raw_fd();
        while next < self.tx.frames.len() {
            let pending = &self.tx.frames[next..];
            let iovs: Vec<[IoSlice<'_>; 1]> = pending
                .iter()
                .map(|&(at, n, _)| [IoSlice::new(&self.tx.buf[at..at + n])])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> = pending
                .iter()
                .map(|&(_, _, peer)| Some(SockaddrStorage::from(peer)))
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(pending.len(), None);
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            let sent = match sendmmsg(
                fd,
                &mut headers,
                iovs.iter(),
                &addrs,
                no_cmsgs,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => results.map(|r| r.bytes).collect::<Vec<_>>(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // The first frame failed (full buffer, unreachable):
                    // drop it and go on with the rest.
                    log::debug!("udp: send error: {e}");
                    self.stats.tx_errors += 1;
                    dropped += 1;
                    next += 1;
                    continue;
                }
            };
            for (bytes, &(_, n, _)) in sent.iter().zip(pending) {
                if *bytes == n {
                    self.stats.tx_frames += 1;
                    self.stats.tx_bytes += n as u64;
                } else {
                    self.stats.tx_errors += 1;
                    dropped += 1;
                }
            }
            next += sent.len().max(1);
        }
        self.tx.buf.clear();
        self.tx.frames.clear();
        dropped
    }
}

/// A received sender as a std address (IPv4 or IPv6).
fn socket_addr(s: nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
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

        a.send_parts(&[1, 2, 3, 4, 5, 6], &[7], b.local_addr().unwrap());
        assert_eq!(a.flush(), 0);
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
    fn batches_receive_and_send_in_order_and_say_when_to_come_back() {
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

        // More datagrams than one recvmmsg takes: a full batch says to come
        // back, the next takes the rest and says the socket is drained.
        for i in 0..RX_SLOTS + 8 {
            b.send_to(&[i as u8; 20], a_addr).unwrap();
        }
        let mut seen = Vec::new();
        let mut again = true;
        for _ in 0..500 {
            again = a.recv_batch(64, &mut batch);
            let n = batch.frames().count();
            assert!(n <= RX_SLOTS);
            seen.extend(batch.frames().map(|(f, _)| f[0]));
            batch.clear();
            if seen.len() == RX_SLOTS + 8 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(seen, (0..RX_SLOTS as u8 + 8).collect::<Vec<_>>());
        assert!(!again, "the last batch found the socket drained");
        // The largest datagram IPv4 carries arrives whole.
        b.send_to(&vec![7u8; 65507], a_addr).unwrap();
        let mut big = Vec::new();
        for _ in 0..500 {
            a.recv_batch(64, &mut batch);
            big.extend(batch.frames().map(|(f, _)| f.len()));
            batch.clear();
            if !big.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(big, vec![65507]);

        // Sending: queued until flushed (or a full batch), then in order,
        // header and data together.
        let to = b.local_addr().unwrap();
        b.set_nonblocking(true).unwrap();
        a.send_parts(&[1, 2, 3, 4, 5, 6], b"data", to);
        let mut buf = [0u8; 64];
        assert!(b.recv_from(&mut buf).is_err(), "sent before the flush");
        assert_eq!(a.flush(), 0);
        b.set_nonblocking(false).unwrap();
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x01\x02\x03\x04\x05\x06data");
        for i in 0..TX_BATCH + 3 {
            a.send_parts(&[i as u8; 6], b"", to);
        }
        // A full batch left at once; the last three wait for the flush.
        let mut order = Vec::new();
        for _ in 0..TX_BATCH {
            order.push(b.recv_from(&mut buf).unwrap().0.min(1) as u8 * buf[0]);
        }
        assert_eq!(a.flush(), 0);
        for _ in 0..3 {
            order.push(b.recv_from(&mut buf).unwrap().0.min(1) as u8 * buf[0]);
        }
        assert_eq!(order, (0..TX_BATCH as u8 + 3).collect::<Vec<_>>());
        assert_eq!(a.stats.tx_frames, TX_BATCH as u64 + 4);
    }
}
