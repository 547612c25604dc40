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

/// A bound UDP socket carrying CSP frames.
#[derive(Debug)]
pub struct UdpLink {
    socket: mio::net::UdpSocket,
    /// Header version on this link.
    pub version: Version,
    /// Counters.
    pub stats: LinkStats,
    buf: Vec<u8>,
}

impl UdpLink {
    /// Bind `addr` for frames with headers of `version`.
    pub fn bind(addr: SocketAddr, version: Version) -> io::Result<UdpLink> {
        Ok(UdpLink {
            socket: mio::net::UdpSocket::bind(addr)?,
            version,
            stats: LinkStats::default(),
            buf: vec![0; MAX_DATAGRAM],
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

    /// Receive the datagrams waiting, at most `budget` of them, and hand
    /// each frame with its sender to `on_frame`. Frames too short to hold a
    /// header are counted and skipped here. Returns true if the budget ran
    /// out before the socket was drained: the poll is edge-triggered, so the
    /// caller must come back without waiting for another event.
    pub fn recv_all(&mut self, budget: usize, mut on_frame: impl FnMut(&[u8], SocketAddr)) -> bool {
        for _ in 0..budget {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += n as u64;
                    if n < self.version.header_len() {
                        self.stats.rx_errors += 1;
                        log::debug!("udp: {n}-byte datagram from {from} is not a CSP frame");
                        continue;
                    }
                    on_frame(&self.buf[..n], from);
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
        // The datagrams are on loopback already; poll briefly until both arrived.
        for _ in 0..500 {
            a.recv_all(64, |f, _| got.push(f.to_vec()));
            if a.stats.rx_frames == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(got, vec![vec![8u8; 10]]);
        assert_eq!((a.stats.rx_frames, a.stats.rx_errors), (2, 1));
        assert_eq!(a.stats.tx_frames, 1);
    }
}
