//! Reproducible data: random bytes and malformed CSP frames for floods,
//! and transfer patterns that show a shifted, lost or repeated segment.

use csp_core::{Flags, Packet, Version};

/// A v2 frame from `src:sport` to `dst:dport` with `flags`.
pub fn frame(src: u16, sport: u8, dst: u16, dport: u8, flags: Flags, data: &[u8]) -> Vec<u8> {
    let h = crate::ipc::header(src, sport, dst, dport, flags);
    let mut p = Packet::<512>::with_data(h, data).unwrap();
    p.frame(Version::V2).unwrap().to_vec()
}

/// xorshift64: reproducible junk without a dependency.
pub struct Junk(pub u64);

impl Junk {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One datagram of the flood, by kind: random bytes of any length (runts
/// included), a frame for a random port of the daemon's node or of
/// another node, an RDP SYN with garbage options, an RDP segment too
/// short for its header, a service request, for `node` (or, for some,
/// another node). From 100..1100, never from `node` (a real connection's address there):
/// blind injection into a connection is not what this measures.
pub fn junk_frame(j: &mut Junk, node: u16) -> Vec<u8> {
    let src = 100 + j.below(1000) as u16;
    assert!(!(100..1100).contains(&node), "junk comes from 100..1100");
    let sport = j.below(64) as u8;
    let len = j.below(200) as usize;
    match j.below(5) {
        0 => {
            let n = j.below(300) as usize;
            j.bytes(n)
        }
        1 => {
            let dst = if j.below(2) == 0 {
                node
            } else {
                (node + 1 + j.below(500) as u16) % 16384
            };
            // A well-formed frame, then up to three bytes anywhere mutated
            // (header fields, flags, trailers that do not verify).
            let data = j.bytes(len);
            let mut f = frame(src, sport, dst, j.below(64) as u8, Flags::NONE, &data);
            for _ in 0..j.below(4) {
                let at = j.below(f.len() as u64) as usize;
                f[at] = j.next_u64() as u8;
            }
            f
        }
        2 => {
            let mut syn = j.bytes(24);
            syn.extend_from_slice(&[0x08, 0, j.next_u64() as u8, 0, 0]);
            frame(src, sport, node, 10, Flags::RDP, &syn)
        }
        3 => {
            let n = j.below(5) as usize;
            let data = j.bytes(n);
            frame(src, sport, node, 10, Flags::RDP, &data)
        }
        _ => {
            let data = j.bytes(len.min(100));
            frame(src, sport, node, j.below(7) as u8, Flags::NONE, &data)
        }
    }
}

/// Data that differs from one byte to the next (a shifted, lost or
/// duplicated segment shows), different for each `seed`.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
