//! A pcapng writer for CSP captures: one Section Header Block, one
//! Interface Description Block per link, one Enhanced Packet Block per
//! frame (nanosecond timestamps, the direction in `epb_flags`), streamed:
//! every block is whole when written, so a reader (`tshark -r -`) can
//! follow the file as it grows and a capture cut short is still valid.
//!
//! Written here rather than with the `pcap-file` crate: its last stable
//! release (2.0) writes Enhanced Packet Block timestamps in nanoseconds
//! while leaving the interface's resolution at the default microseconds
//! (files dated thousands of years ahead; fixed only in 3.0 release
//! candidates), and the format needed is four small block kinds.
//!
//! Link types (the dissector `contrib/wireshark/csp.lua` decodes both):
//! [`LINKTYPE_USER0`] for links with v2 headers (the dissector's default
//! header version), [`LINKTYPE_USER1`] for v1 links, so a file mixing
//! libcsp 1.x and 2.x links decodes without changing a preference.

use std::io::{self, Write};

/// pcap/pcapng link type of raw CSP frames with v2 headers.
pub const LINKTYPE_USER0: u16 = 147;
/// Link type of raw CSP frames with v1 headers.
pub const LINKTYPE_USER1: u16 = 148;

/// Largest frame recorded whole (`if_snaplen`): CSP's length field is 16
/// bits, so no frame is longer.
pub const SNAPLEN: u32 = 65535;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// Direction of a packet: its values are `epb_flags` bits 0-1.
pub use csp_ipc::Direction;

/// A link as an Interface Description Block describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface<'a> {
    /// `if_name`: the link's name.
    pub name: &'a str,
    /// `if_description`, e.g. "CSP v2 frames".
    pub description: &'a str,
    /// CSP header version of the frames: picks the link type.
    pub version: u8,
}

/// One packet for an Enhanced Packet Block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Interface id (the order [`Writer::interface`] was called in).
    pub interface: u32,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The bytes recorded.
    pub data: &'a [u8],
    /// The packet's length on the wire (at least `data.len()`).
    pub orig_len: u32,
    /// Which way it went.
    pub direction: Direction,
}

/// Writes pcapng blocks to `W` (a file, stdout, a buffer).
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    interfaces: u32,
    block: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Write the Section Header Block; `application` goes into
    /// `shb_userappl`.
    pub fn new(out: W, application: &str) -> io::Result<Writer<W>> {
        let mut w = Writer {
            out,
            interfaces: 0,
            block: Vec::with_capacity(512),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes()); // major
        body.extend_from_slice(&0u16.to_le_bytes()); // minor
        body.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not known
        option(&mut body, SHB_USERAPPL, application.as_bytes());
        option(&mut body, OPT_END, &[]);
        w.write_block(SHB, &body)?;
        Ok(w)
    }

    /// Add an interface; returns its id for [`Packet::interface`].
    pub fn interface(&mut self, i: &Interface<'_>) -> io::Result<u32> {
        let linktype = if i.version == 1 {
            LINKTYPE_USER1
        } else {
            LINKTYPE_USER0
        };
        let mut body = Vec::new();
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes()); // reserved
        body.extend_from_slice(&SNAPLEN.to_le_bytes());
        option(&mut body, IF_NAME, i.name.as_bytes());
        option(&mut body, IF_DESCRIPTION, i.description.as_bytes());
        option(&mut body, IF_TSRESOL, &[9]); // 10^-9 s
        option(&mut body, OPT_END, &[]);
        self.write_block(IDB, &body)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Add one packet; an interface id not added yet is an error (the
    /// file would not open).
    pub fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        self.packet_with_comment(p, None)
    }

    /// [`Writer::packet`] with an `opt_comment` (e.g. why it was cut).
    pub fn packet_with_comment(&mut self, p: &Packet<'_>, comment: Option<&str>) -> io::Result<()> {
        if p.interface >= self.interfaces {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface {} not described", p.interface),
            ));
        }
        let caplen = u32::try_from(p.data.len())
            .ok()
            .filter(|&n| n <= SNAPLEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
        let mut body = std::mem::take(&mut self.block);
        body.clear();
        body.extend_from_slice(&p.interface.to_le_bytes());
        body.extend_from_slice(&((p.time_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(p.time_ns as u32).to_le_bytes());
        body.extend_from_slice(&caplen.to_le_bytes());
        body.extend_from_slice(&p.orig_len.max(caplen).to_le_bytes());
        body.extend_from_slice(p.data);
        pad4(&mut body);
        option(&mut body, EPB_FLAGS, &(p.direction as u32).to_le_bytes());
        if let Some(c) = comment {
            option(&mut body, OPT_COMMENT, c.as_bytes());
        }
        option(&mut body, OPT_END, &[]);
        let r = self.write_block(EPB, &body);
        self.block = body;
        r
    }

    /// Push what is buffered to the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The output back, flushed.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_block(&mut self, kind: u32, body: &[u8]) -> io::Result<()> {
        let total = u32::try_from(12 + body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block too long"))?;
        self.out.write_all(&kind.to_le_bytes())?;
        self.out.write_all(&total.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&total.to_le_bytes())
    }
}

/// One option: code, length, value padded to 4 bytes. Values longer than
/// an option holds are cut (names and comments only).
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = &value[..value.len().min(u16::MAX as usize - 3)];
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    }

    /// Walks the blocks: each starts and ends with the same length, and
    /// they tile the file exactly.
    fn blocks(b: &[u8]) -> Vec<(u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let kind = u32_at(b, at);
            let len = u32_at(b, at + 4) as usize;
            assert_eq!(len % 4, 0, "block length {len} not a multiple of 4");
            assert_eq!(u32_at(b, at + len - 4) as usize, len);
            out.push((kind, &b[at + 8..at + len - 4]));
            at += len;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn blocks_are_well_formed() {
        let mut w = Writer::new(Vec::new(), "csp capture").unwrap();
        let udp = w
            .interface(&Interface {
                name: "udp",
                description: "CSP v2 frames",
                version: 2,
            })
            .unwrap();
        let radio = w
            .interface(&Interface {
                name: "radio",
                description: "CSP v1 frames",
                version: 1,
            })
            .unwrap();
        let t = 1_700_000_000_123_456_789u64;
        w.packet(&Packet {
            interface: radio,
            time_ns: t,
            data: &[1, 2, 3, 4, 5],
            orig_len: 5,
            direction: Direction::Outbound,
        })
        .unwrap();
        w.packet_with_comment(
            &Packet {
                interface: udp,
                time_ns: t + 1,
                data: &[9; 8],
                orig_len: 9000,
                direction: Direction::Inbound,
            },
            Some("cut"),
        )
        .unwrap();
        let bad = w.packet(&Packet {
            interface: 2,
            time_ns: 0,
            data: &[],
            orig_len: 0,
            direction: Direction::Inbound,
        });
        assert!(bad.is_err(), "undescribed interface");
        let bytes = w.into_inner().unwrap();
        let b = blocks(&bytes);
        let kinds: Vec<u32> = b.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [SHB, IDB, IDB, EPB, EPB]);
        assert_eq!(u32_at(b[0].1, 0), BYTE_ORDER_MAGIC);
        assert_eq!(u16::from_le_bytes([b[1].1[0], b[1].1[1]]), LINKTYPE_USER0);
        assert_eq!(u16::from_le_bytes([b[2].1[0], b[2].1[1]]), LINKTYPE_USER1);
        let epb = b[3].1;
        assert_eq!(u32_at(epb, 0), radio);
        let ts = (u64::from(u32_at(epb, 4)) << 32) | u64::from(u32_at(epb, 8));
        assert_eq!(ts, t);
        assert_eq!((u32_at(epb, 12), u32_at(epb, 16)), (5, 5));
        assert_eq!(&epb[20..25], &[1, 2, 3, 4, 5]);
        // After the padded data: epb_flags = outbound.
        assert_eq!(u16::from_le_bytes([epb[28], epb[29]]), EPB_FLAGS);
        assert_eq!(u32_at(epb, 32), 2);
        let epb = b[4].1;
        assert_eq!((u32_at(epb, 12), u32_at(epb, 16)), (8, 9000));
    }
}
