//! Just enough of the pcap and pcapng file formats to write the captures the
//! dissector test opens: classic pcap with raw IPv4 packets (UDP datagrams
//! and TCP segments as they arrived on loopback), and pcapng with one
//! interface per link carrying raw CSP frames (the daemon's capture format).

use std::net::SocketAddrV4;

/// LINKTYPE_RAW: each packet starts with an IPv4 header.
const LINKTYPE_RAW: u32 = 101;
/// LINKTYPE_USER0 / USER1: raw CSP frames, v2 (by the dissector's
/// preference) and always v1.
pub const LINKTYPE_USER0: u16 = 147;
pub const LINKTYPE_USER1: u16 = 148;

/// A classic pcap file of raw IPv4 packets.
pub struct Pcap {
    bytes: Vec<u8>,
    ip_id: u16,
}

impl Pcap {
    pub fn new() -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        bytes.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        bytes.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        bytes.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        Pcap { bytes, ip_id: 1 }
    }

    /// One UDP datagram from `src` to `dst`.
    pub fn udp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let mut udp = Vec::with_capacity(8 + payload.len());
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&0u16.to_be_bytes()); // no checksum (allowed in IPv4)
        udp.extend_from_slice(payload);
        self.ip(17, src, dst, &udp);
    }

    /// One TCP segment (PSH|ACK) from `src` to `dst` at sequence number `seq`.
    pub fn tcp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, seq: u32, payload: &[u8]) {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&1u32.to_be_bytes()); // ack number
        tcp.extend_from_slice(&[5 << 4, 0x18]); // data offset 5 words; PSH|ACK
        tcp.extend_from_slice(&65535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum (not verified), urgent
        tcp.extend_from_slice(payload);
        self.ip(6, src, dst, &tcp);
    }

    fn ip(&mut self, proto: u8, src: SocketAddrV4, dst: SocketAddrV4, body: &[u8]) {
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
        ip.extend_from_slice(&src.ip().octets());
        ip.extend_from_slice(&dst.ip().octets());
        let sum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(body);
        let n = self.bytes.len() as u32; // packet index as the time: monotone
        self.bytes.extend_from_slice(&n.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes
            .extend_from_slice(&(ip.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(ip.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&ip);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A pcapng file: one section, interfaces added before their packets.
pub struct Pcapng {
    bytes: Vec<u8>,
    interfaces: u32,
}

impl Pcapng {
    pub fn new() -> Pcapng {
        let mut ng = Pcapng {
            bytes: Vec::new(),
            interfaces: 0,
        };
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
        ng.block(0x0a0d_0d0a, &shb);
        ng
    }

    /// Adds an interface (one per link) and returns its id.
    pub fn interface(&mut self, linktype: u16, name: &str) -> u32 {
        let mut idb = Vec::new();
        idb.extend_from_slice(&linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&65535u32.to_le_bytes());
        push_option(&mut idb, 2, name.as_bytes()); // if_name
        push_option(&mut idb, 0, &[]); // opt_endofopt
        self.block(1, &idb);
        self.interfaces += 1;
        self.interfaces - 1
    }

    /// An enhanced packet block; `inbound` sets the direction flag.
    pub fn packet(&mut self, interface: u32, inbound: bool, frame: &[u8]) {
        let mut epb = Vec::new();
        epb.extend_from_slice(&interface.to_le_bytes());
        let t = self.bytes.len() as u32;
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&t.to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        pad4(&mut epb);
        let flags: u32 = if inbound { 1 } else { 2 };
        push_option(&mut epb, 2, &flags.to_le_bytes()); // epb_flags: direction
        push_option(&mut epb, 0, &[]);
        self.block(6, &epb);
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let total = (12 + body.len()) as u32;
        self.bytes.extend_from_slice(&kind.to_le_bytes());
        self.bytes.extend_from_slice(&total.to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.bytes.extend_from_slice(&total.to_le_bytes());
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
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
