//! The captures the dissector test opens: classic pcap with raw IPv4
//! packets (UDP datagrams and TCP segments as they arrived on loopback),
//! written here (just enough of the format), and pcapng with one interface
//! per link carrying raw CSP frames, written by host-lib's pcapng writer
//! (the daemon's capture format).

use std::net::SocketAddrV4;

/// LINKTYPE_RAW: each packet starts with an IPv4 header.
const LINKTYPE_RAW: u32 = 101;

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

/// A pcapng file in memory, written by host-lib's pcapng writer (the one
/// `csp capture` uses): one interface per link, whose CSP header version
/// picks the link type (USER0 for v2, USER1 for v1).
pub struct Pcapng {
    writer: host_lib::pcapng::Writer<Vec<u8>>,
    packets: u64,
}

impl Pcapng {
    pub fn new() -> Pcapng {
        Pcapng {
            writer: host_lib::pcapng::Writer::new(Vec::new(), "dissector test")
                .expect("writing to memory"),
            packets: 0,
        }
    }

    /// Adds an interface (one per link) for frames with CSP header
    /// `version` and returns its id.
    pub fn interface(&mut self, version: u8, name: &str) -> u32 {
        let interface = host_lib::pcapng::Interface {
            name,
            description: "",
            version,
        };
        self.writer
            .interface(&interface)
            .expect("writing to memory")
    }

    /// An enhanced packet block; `inbound` sets the direction flag.
    pub fn packet(&mut self, interface: u32, inbound: bool, frame: &[u8]) {
        use host_lib::pcapng::Direction;
        self.packets += 1;
        let packet = host_lib::pcapng::Packet {
            interface,
            // Apart by a microsecond each, in order.
            time_ns: self.packets * 1000,
            data: frame,
            orig_len: frame.len() as u32,
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
        };
        self.writer.packet(&packet).expect("writing to memory");
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.writer.into_inner().expect("writing to memory")
    }
}
