//! The Wireshark dissector (`contrib/wireshark/csp.lua`) under `tshark`.
//!
//! The frames are made by csp-core (headers, CRC32, HMAC, SFP, service
//! messages), csp-rdp (RDP header, SYN options) and by libcsp itself (the
//! golden vectors' captured RDP exchange with CRC32 + HMAC, service
//! requests). They go through real sockets on 127.0.0.1 (UDP datagrams, a
//! KISS-framed TCP stream); what arrived is written by the test into capture
//! files (pcap with IPv4/UDP and IPv4/TCP, pcapng with raw CSP frames on one
//! interface per link, as the daemon's capture will write them). tshark then
//! dissects each file with the script and every field value is compared with
//! what was sent.
//!
//! Without tshark the test is skipped with a message, except under CI=true
//! where it fails (.ci/run installs the Debian package).

#[path = "dissector/pcap.rs"]
mod pcap;
#[path = "dissector/tshark.rs"]
mod tshark;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use csp_core::security::{crc_trailer, hmac_trailer, HmacKey};
use csp_core::service::cmp::CmpType;
use csp_core::service::{Ident, IfStats, Timestamp};
use csp_core::{kiss, sfp, Addr, Flags, Header, Port, Prio, Version};
use csp_rdp::{Flags as RdpFlags, Options as RdpOptions, RdpHeader};
use serde_json::Value;

use pcap::{Pcap, Pcapng};
use tshark::{dissect, tshark};

/// Bound of every socket read.
const WAIT: Duration = Duration::from_secs(5);
const KEY: &[u8] = b"dissector test key";

/// A frame and the field values tshark must show for it (`-T fields` text).
#[derive(Clone)]
struct Case {
    name: String,
    frame: Vec<u8>,
    expect: Vec<(&'static str, String)>,
}

/// Header fields as tshark prints them.
fn header_expect(h: &Header) -> Vec<(&'static str, String)> {
    vec![
        ("csp.prio", (h.prio as u8).to_string()),
        ("csp.src", h.src.get().to_string()),
        ("csp.dst", h.dst.get().to_string()),
        ("csp.sport", h.sport.get().to_string()),
        ("csp.dport", h.dport.get().to_string()),
        (
            "csp.flags.crc",
            u8::from(h.flags.bits() & 0x01 != 0).to_string(),
        ),
        (
            "csp.flags.rdp",
            u8::from(h.flags.bits() & 0x02 != 0).to_string(),
        ),
        (
            "csp.flags.hmac",
            u8::from(h.flags.bits() & 0x08 != 0).to_string(),
        ),
        (
            "csp.flags.frag",
            u8::from(h.flags.bits() & 0x10 != 0).to_string(),
        ),
    ]
}

fn header(prio: u8, src: u16, sport: u8, dst: u16, dport: u8, flags: u8) -> Header {
    Header {
        prio: Prio::new(prio).unwrap(),
        src: Addr::new(src).unwrap(),
        dst: Addr::new(dst).unwrap(),
        dport: Port::new(dport).unwrap(),
        sport: Port::new(sport).unwrap(),
        flags: Flags::from_bits(flags),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// header | data, then HMAC (when flagged) and CRC32 (when flagged) over
/// the data, as csp-core's security layer appends them.
fn frame(h: &Header, version: Version, data: &[u8]) -> Vec<u8> {
    let mut body = data.to_vec();
    if h.flags.bits() & 0x08 != 0 {
        let t = hmac_trailer(&HmacKey::from_key_string(KEY), None, &body);
        body.extend_from_slice(&t);
    }
    if h.flags.bits() & 0x01 != 0 {
        let t = crc_trailer(None, &body);
        body.extend_from_slice(&t);
    }
    let (hb, hlen) = h.to_bytes(version).unwrap();
    let mut f = hb[..hlen].to_vec();
    f.extend_from_slice(&body);
    f
}

fn case(name: &str, h: Header, version: Version, data: &[u8]) -> Case {
    Case {
        name: name.into(),
        frame: frame(&h, version, data),
        expect: header_expect(&h),
    }
}

impl Case {
    fn with(mut self, field: &'static str, value: impl ToString) -> Case {
        self.expect.push((field, value.to_string()));
        self
    }
}

/// The v2 frames: services, RDP (SYN options; data with CRC32 + HMAC), SFP,
/// a bad CRC, and libcsp's own RDP exchange with CRC32 + HMAC.
fn v2_cases() -> Vec<Case> {
    let v2 = Version::V2;
    let ping: Vec<u8> = (0..10).collect();
    let mut cases = vec![
        case("ping request", header(2, 2, 20, 5, 1, 0), v2, &ping)
            .with("csp.service", 1)
            .with("csp.service.reply", 0)
            .with("csp.service.ping.data", hex(&ping)),
        case("ping reply crc", header(2, 5, 1, 2, 20, 0x01), v2, &ping)
            .with("csp.service.reply", 1)
            .with("csp.crc.status", 1),
        case(
            "uptime reply",
            header(2, 5, 6, 2, 21, 0x01),
            v2,
            &123_456u32.to_be_bytes(),
        )
        .with("csp.service", 6)
        .with("csp.service.uptime", 123_456),
        case(
            "memfree reply",
            header(2, 5, 3, 2, 21, 0),
            v2,
            &u32::MAX.to_be_bytes(),
        )
        .with("csp.service.memfree", u32::MAX),
        case(
            "buffree reply",
            header(2, 5, 5, 2, 21, 0),
            v2,
            &7u32.to_be_bytes(),
        )
        .with("csp.service.buffree", 7),
        case(
            "shutdown",
            header(2, 2, 22, 16383, 4, 0x01),
            v2,
            &0xD1E5_529Au32.to_be_bytes(),
        )
        .with("csp.service.reboot", "0xd1e5529a"),
        case(
            "ps reply",
            header(2, 5, 2, 2, 23, 0),
            v2,
            b"csp-muxd apps: 3",
        )
        .with("csp.service.ps", "csp-muxd apps: 3"),
    ];
    let mut buf = [0u8; 128];

    let ident = Ident {
        hostname: "ground",
        model: "csp-muxd",
        revision: "0.1.0",
        date: "Dec  4 2026",
        time: "18:46:00",
    };
    let n = ident.emit(CmpType::Reply, &mut buf).unwrap();
    cases.push(
        case("ident reply", header(2, 5, 0, 2, 24, 0x01), v2, &buf[..n])
            .with("csp.service.cmp.type", "0xff")
            .with("csp.service.cmp.code", 1)
            .with("csp.service.cmp.ident.hostname", "ground")
            .with("csp.service.cmp.ident.model", "csp-muxd")
            .with("csp.service.cmp.ident.time", "18:46:00"),
    );
    let stats = IfStats {
        tx: 11,
        rx: 12,
        drop: 3,
        autherr: 4,
        rxbytes: 70_000,
        ..IfStats::default()
    };
    let n = stats.emit(CmpType::Reply, "KISS", &mut buf).unwrap();
    cases.push(
        case("ifstat reply", header(2, 5, 0, 2, 24, 0), v2, &buf[..n])
            .with("csp.service.cmp.code", 3)
            .with("csp.service.cmp.iface", "KISS")
            .with("csp.service.cmp.ifstat.tx", 11)
            .with("csp.service.cmp.ifstat.rx", 12)
            .with("csp.service.cmp.ifstat.autherr", 4)
            .with("csp.service.cmp.ifstat.rxbytes", 70_000),
    );
    let clock = Timestamp {
        tv_sec: 1_796_000_000,
        tv_nsec: 5,
    };
    let n = clock.emit(CmpType::Request, &mut buf).unwrap();
    cases.push(
        case("clock set", header(2, 2, 24, 5, 0, 0), v2, &buf[..n])
            .with("csp.service.cmp.type", "0x00")
            .with("csp.service.cmp.clock.sec", 1_796_000_000u32)
            .with("csp.service.cmp.clock.nsec", 5),
    );

    let mut bad =
        case("bad crc", header(2, 5, 1, 2, 20, 0x01), v2, &ping).with("csp.crc.status", 0);
    *bad.frame.last_mut().unwrap() ^= 0x55;
    cases.push(bad);

    // RDP: the SYN carries the six options as its payload.
    let syn_opts = RdpOptions::default().to_syn();
    let mut syn = syn_opts.to_be_bytes().to_vec();
    syn.extend_from_slice(&RdpHeader::new(RdpFlags::SYN, 3, 0xadfd, 0).to_be_bytes());
    cases.push(
        case("rdp syn", header(1, 2, 18, 5, 10, 0x02), v2, &syn)
            .with("csp.rdp.syn", 1)
            .with("csp.rdp.ack", 0)
            .with("csp.rdp.counter", 3)
            .with("csp.rdp.seq", 0xadfd)
            .with("csp.rdp.ack_num", 0)
            .with("csp.rdp.window", syn_opts.window)
            .with("csp.rdp.conn_timeout", syn_opts.conn_timeout_ms)
            .with("csp.rdp.packet_timeout", syn_opts.packet_timeout_ms)
            .with("csp.rdp.ack_delay_count", syn_opts.ack_delay_count),
    );
    let user = b"an RDP segment under CRC32 and HMAC";
    let mut seg = user.to_vec();
    seg.extend_from_slice(&RdpHeader::new(RdpFlags::ACK, 0, 0xadfe, 0x1234).to_be_bytes());
    let c = case("rdp data crc hmac", header(2, 2, 18, 5, 10, 0x0b), v2, &seg);
    let hmac = hex(&c.frame[c.frame.len() - 8..c.frame.len() - 4]);
    cases.push(
        c.with("csp.rdp.ack", 1)
            .with("csp.rdp.syn", 0)
            .with("csp.rdp.seq", 0xadfe)
            .with("csp.rdp.ack_num", 0x1234)
            .with("csp.payload", hex(user))
            .with("csp.hmac", hmac)
            .with("csp.crc.status", 1),
    );

    // SFP: 300 bytes in fragments of 120, with CRC32.
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    for f in sfp::split(&big, 120).unwrap() {
        let mut data = f.data.to_vec();
        data.extend_from_slice(&f.trailer().to_be_bytes());
        let last = f.offset as usize + f.data.len() == big.len();
        cases.push(
            case("sfp fragment", header(2, 2, 19, 5, 11, 0x11), v2, &data)
                .with("csp.sfp.offset", f.offset)
                .with("csp.sfp.total", f.total)
                .with("csp.sfp.last", u8::from(last))
                .with("csp.payload", hex(f.data))
                .with("csp.crc.status", 1),
        );
    }

    // libcsp's own RDP exchange with CRC32 + HMAC (key "secret").
    for v in vectors("rdp.json") {
        let name = v["name"].as_str().unwrap();
        if !name.starts_with("rdp_crchmac_v2") {
            continue;
        }
        let out = &v["outputs"];
        let d = &out["decoded_header"];
        let h = header(
            d["prio"].as_u64().unwrap() as u8,
            d["src"].as_u64().unwrap() as u16,
            d["sport"].as_u64().unwrap() as u8,
            d["dst"].as_u64().unwrap() as u16,
            d["dport"].as_u64().unwrap() as u8,
            d["flags"].as_u64().unwrap() as u8,
        );
        let trailer = unhex(out["rdp_trailer"].as_str().unwrap());
        let seq = u16::from_be_bytes([trailer[1], trailer[2]]);
        cases.push(Case {
            name: format!("libcsp {name}"),
            frame: unhex(out["frame"].as_str().unwrap()),
            expect: header_expect(&h),
        });
        let last = cases.pop().unwrap();
        cases.push(
            last.with("csp.rdp.seq", seq)
                .with("csp.rdp.syn", u8::from(trailer[0] & 0x08 != 0))
                .with("csp.crc.status", 1),
        );
    }
    cases
}

/// v1 frames: one built here, and libcsp 1.x's own service requests.
fn v1_cases() -> Vec<Case> {
    let v1 = Version::V1;
    let mut cases = vec![
        case("v1 ping crc", header(3, 31, 63, 7, 1, 0x01), v1, b"v1 ping")
            .with("csp.crc.status", 1)
            .with("csp.service.ping.data", hex(b"v1 ping")),
    ];
    for v in vectors("services.json") {
        let out = &v["outputs"];
        if v["version"].as_u64() != Some(1) || out["request_frame"].is_null() {
            continue;
        }
        let h = header(
            out["request_prio"].as_u64().unwrap() as u8,
            out["request_src"].as_u64().unwrap() as u16,
            out["request_sport"].as_u64().unwrap() as u8,
            out["request_dst"].as_u64().unwrap() as u16,
            out["request_dport"].as_u64().unwrap() as u8,
            out["request_flags"].as_u64().unwrap() as u8,
        );
        let mut c = Case {
            name: format!("libcsp {}", v["name"].as_str().unwrap()),
            frame: unhex(out["request_frame"].as_str().unwrap()),
            expect: header_expect(&h),
        };
        if h.dport.get() <= 6 {
            c = c.with("csp.service", h.dport.get());
        }
        cases.push(c);
    }
    assert!(cases.len() > 3, "services.json has v1 requests");
    cases
}

fn vectors(file: &str) -> Vec<Value> {
    let dir = std::env::var_os("CSP_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (golden vectors missing?)", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    json["vectors"].as_array().unwrap().clone()
}

// ---- tshark: tests/tests/dissector/tshark.rs ---------------------------------

/// Every expected field of every case, plus the Lua-error and malformed
/// markers (which must stay empty).
fn field_list(cases: &[Case]) -> Vec<&'static str> {
    let mut fields = vec!["_ws.malformed", "_ws.expert.message"];
    for c in cases {
        for (f, _) in &c.expect {
            if !fields.contains(f) {
                fields.push(f);
            }
        }
    }
    fields
}

fn check(cases: &[Case], got: &[BTreeMap<String, String>]) {
    assert_eq!(got.len(), cases.len(), "one dissected packet per frame");
    for (c, g) in cases.iter().zip(got) {
        assert_eq!(
            g.get("_ws.malformed").map(String::as_str),
            Some(""),
            "{}",
            c.name
        );
        for (f, want) in &c.expect {
            let have = g.get(*f).map(String::as_str).unwrap_or("<missing>");
            assert_eq!(have, want, "{}: field {f}", c.name);
        }
        let experts = &g["_ws.expert.message"];
        assert!(!experts.contains("Lua Error"), "{}: {experts}", c.name);
        let bad_expected = c
            .expect
            .iter()
            .any(|(f, v)| *f == "csp.crc.status" && v == "0");
        assert_eq!(
            experts.contains("CRC32 does not match"),
            bad_expected,
            "{}: {experts}",
            c.name
        );
    }
}

fn loopback(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("bound to 127.0.0.1"),
    }
}

/// Sends every frame as one UDP datagram on loopback and returns the pcap
/// of what arrived (and the receiving port).
fn udp_capture(cases: &[Case]) -> (Vec<u8>, u16) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(WAIT)).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (rx_addr, tx_addr) = (
        loopback(rx.local_addr().unwrap()),
        loopback(tx.local_addr().unwrap()),
    );
    let mut pcap = Pcap::new();
    let mut buf = [0u8; 2048];
    for c in cases {
        tx.send_to(&c.frame, rx_addr).unwrap();
        let (n, from) = rx.recv_from(&mut buf).expect("datagram within WAIT");
        assert_eq!(loopback(from), tx_addr);
        assert_eq!(&buf[..n], &c.frame[..], "{}", c.name);
        pcap.udp(tx_addr, rx_addr, &buf[..n]);
    }
    (pcap.into_bytes(), rx_addr.port())
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn udp_frames_dissect_to_what_was_sent() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases = v2_cases();
    let (bytes, port) = udp_capture(&cases);
    let file = write_temp(dir.path(), "udp.pcap", &bytes);
    let decode_as = format!("udp.port=={port},csp");
    let got = dissect(&tshark, &file, &["-d", &decode_as], &field_list(&cases));
    check(&cases, &got);

    // The display filter of docs/capture.md selects exactly the RDP frames
    // to node 5.
    let rdp_to_5 = cases
        .iter()
        .filter(|c| {
            c.expect.contains(&("csp.dst", "5".into()))
                && c.expect.contains(&("csp.flags.rdp", "1".into()))
        })
        .count();
    let got = dissect(
        &tshark,
        &file,
        &["-d", &decode_as, "-Y", "csp.dst == 5 && csp.rdp"],
        &["csp.dst"],
    );
    assert_eq!(got.len(), rdp_to_5);
    assert!(rdp_to_5 >= 2);

    // v1 frames over UDP with the version preference, the port given by
    // the port preference (the path that registers 9700 by default).
    let cases = v1_cases();
    let (bytes, port) = udp_capture(&cases);
    let file = write_temp(dir.path(), "udp-v1.pcap", &bytes);
    let udp_port = format!("csp.udp_port:{port}");
    let got = dissect(
        &tshark,
        &file,
        &["-o", &udp_port, "-o", "csp.version:v1"],
        &field_list(&cases),
    );
    check(&cases, &got);
}

/// The daemon's capture format: pcapng, one interface per link, raw CSP
/// frames (USER0 by the version preference, USER1 always v1).
#[test]
fn raw_frames_in_pcapng_one_interface_per_link() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().unwrap();
    let v2 = v2_cases();
    let v1 = v1_cases();
    let mut ng = Pcapng::new();
    let udp = ng.interface(2, "udp0");
    let kiss = ng.interface(1, "kiss-v1");
    let mut all = Vec::new();
    // Interleaved, so each packet must be dissected by its interface's type.
    for (i, c) in v2.into_iter().enumerate() {
        ng.packet(udp, i % 2 == 0, &c.frame);
        all.push(c);
        if let Some(c1) = v1.get(i) {
            ng.packet(kiss, true, &c1.frame);
        }
        if let Some(c1) = v1.get(i) {
            all.push(c1.clone());
        }
    }
    assert!(all.len() > v1.len());
    let file = write_temp(dir.path(), "links.pcapng", &ng.into_bytes());
    let got = dissect(&tshark, &file, &[], &field_list(&all));
    check(&all, &got);
}

/// KISS over TCP: frames KISS-encoded by csp-core (escapes included) go
/// through a real loopback TCP connection; the capture holds the received
/// stream in small segments, so frames span segments and TCP reassembles.
#[test]
fn kiss_over_tcp_dissects_every_frame() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cases = v2_cases();
    // A payload full of FEND and FESC: the escaping must be undone.
    cases.push(
        case(
            "escapes",
            header(2, 2, 20, 5, 1, 0x01),
            Version::V2,
            &[0xC0, 0xDB, 0xC0, 0xDC, 0xDB, 0xDD],
        )
        .with("csp.payload", "c0dbc0dcdbdd")
        .with("csp.crc.status", 1),
    );
    let mut stream = Vec::new();
    for c in &cases {
        let mut buf = vec![0u8; kiss::max_encoded_len(c.frame.len())];
        let n = kiss::encode(&c.frame, Version::V2, &mut buf).unwrap();
        stream.extend_from_slice(&buf[..n]);
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = loopback(listener.local_addr().unwrap());
    let mut client = TcpStream::connect(server_addr).unwrap();
    let client_addr = loopback(client.local_addr().unwrap());
    let (mut server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(&stream).unwrap();
    drop(client);
    let mut received = Vec::new();
    server
        .read_to_end(&mut received)
        .expect("stream within WAIT");
    assert_eq!(received, stream);

    let mut pcap = Pcap::new();
    let mut seq = 1u32;
    for chunk in received.chunks(50) {
        pcap.tcp(client_addr, server_addr, seq, chunk);
        seq += chunk.len() as u32;
    }
    let file = write_temp(dir.path(), "kiss.pcap", &pcap.into_bytes());
    let decode_as = format!("tcp.port=={},csp_kiss", server_addr.port());
    let fields = [
        "csp.src",
        "csp.dst",
        "csp.sport",
        "csp.dport",
        "csp.crc.status",
        "csp_kiss.crc.status",
        "_ws.malformed",
        "_ws.expert.message",
    ];
    let got = dissect(&tshark, &file, &["-d", &decode_as], &fields);
    // Frames end in different segments: compare the whole sequence of each
    // field over the capture with the sequence sent.
    let seq_of = |f: &str| -> Vec<String> {
        got.iter()
            .flat_map(|p| {
                p[f].split(' ')
                    .filter(|v| !v.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert!(seq_of("_ws.malformed").is_empty());
    let experts = seq_of("_ws.expert.message").join(" ");
    assert!(
        !experts.contains("Lua Error") && !experts.contains("KISS CRC32 does not match"),
        "{experts}"
    );
    assert_eq!(
        seq_of("csp_kiss.crc.status"),
        vec!["1".to_string(); cases.len()]
    );
    let value = |c: &Case, f: &str| {
        c.expect
            .iter()
            .find(|(k, _)| *k == f)
            .map(|(_, v)| v.clone())
    };
    for f in ["csp.src", "csp.dst", "csp.sport", "csp.dport"] {
        let want: Vec<String> = cases.iter().filter_map(|c| value(c, f)).collect();
        assert_eq!(seq_of(f), want, "field {f}");
    }
    // Every frame with the CRC32 flag has a status: good unless made bad.
    let want: Vec<String> = cases
        .iter()
        .filter(|c| value(c, "csp.flags.crc").as_deref() == Some("1"))
        .map(|c| value(c, "csp.crc.status").unwrap_or_else(|| "1".into()))
        .collect();
    assert_eq!(seq_of("csp.crc.status"), want);
}

/// The script is total: every prefix of every frame (v2 and v1), every flag
/// combination on data of 0..=40 bytes, and KISS garbage give a dissection
/// with expert notes at most, never a Lua error or a malformed packet.
#[test]
fn truncated_and_odd_frames_never_raise_lua_errors() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut ng = Pcapng::new();
    let v2_if = ng.interface(2, "udp0");
    let v1_if = ng.interface(1, "kiss-v1");
    let mut packets = 0;
    for (iface, cases) in [(v2_if, v2_cases()), (v1_if, v1_cases())] {
        for c in &cases {
            for n in 0..c.frame.len() {
                ng.packet(iface, true, &c.frame[..n]);
                packets += 1;
            }
        }
    }
    // Every flag byte (all 8 bits: v1 has reserved bits) on data of every
    // length up to the largest trailer set (SYN options, SFP, RDP, HMAC, CRC).
    for flags in 0..=255u8 {
        for len in (0..=40).step_by(3) {
            let mut f = header(2, 1, 2, 3, flags % 7, flags & 0x3f)
                .to_bytes(Version::V2)
                .map(|(b, n)| b[..n].to_vec())
                .unwrap();
            f.extend((0..len).map(|i| (i as u8).wrapping_mul(flags)));
            ng.packet(v2_if, false, &f);
            let mut f1 = vec![0x80 | (flags >> 2), 0x10, (flags % 7) << 6, flags];
            f1.extend((0..len).map(|i| (i as u8).wrapping_mul(flags)));
            ng.packet(v1_if, false, &f1);
            packets += 2;
        }
    }
    let file = write_temp(dir.path(), "odd.pcapng", &ng.into_bytes());
    let fields = ["_ws.malformed", "_ws.expert.message", "csp.version"];
    let got = dissect(&tshark, &file, &[], &fields);
    assert_eq!(got.len(), packets);
    // Short frames carry the script's own "malformed" expert note; what
    // must not appear is a Lua error or an exception (a bounds error).
    for (i, g) in got.iter().enumerate() {
        assert!(
            !g["_ws.expert.message"].contains("Exception"),
            "packet {}",
            i + 1
        );
        assert!(
            !g["_ws.expert.message"].contains("Lua Error"),
            "packet {}: {}",
            i + 1,
            g["_ws.expert.message"]
        );
        assert!(
            !g["csp.version"].is_empty(),
            "packet {}: dissected as CSP",
            i + 1
        );
    }

    // KISS over TCP: random bytes with FENDs and bad escapes between good frames.
    let good = v2_cases().remove(0).frame;
    let mut enc = vec![0u8; kiss::max_encoded_len(good.len())];
    let n = kiss::encode(&good, Version::V2, &mut enc).unwrap();
    let mut stream = Vec::new();
    for round in 0u32..20 {
        stream.extend_from_slice(&enc[..n]);
        stream.extend(
            (0..round * 3).map(|i| [0xC0, 0xDB, 0x00, 0x17, 0xDD][(i * 7 + round) as usize % 5]),
        );
    }
    let mut pcap = Pcap::new();
    let a = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 40000);
    let b = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 40001);
    let mut seq = 1u32;
    for chunk in stream.chunks(37) {
        pcap.tcp(a, b, seq, chunk);
        seq += chunk.len() as u32;
    }
    let file = write_temp(dir.path(), "kiss-odd.pcap", &pcap.into_bytes());
    let got = dissect(
        &tshark,
        &file,
        &["-d", "tcp.port==40001,csp_kiss"],
        &fields[..2],
    );
    for g in &got {
        assert!(!g["_ws.expert.message"].contains("Exception"));
        assert!(
            !g["_ws.expert.message"].contains("Lua Error"),
            "{}",
            g["_ws.expert.message"]
        );
    }
}
