//! The daemon's own services drop what does not verify, counted by cause:
//! a CRC32 that does not match, an HMAC under no key or the wrong key, and
//! a good HMAC request answered with an HMAC (raw IPC frames, so the
//! trailers are exactly what the test writes).

use csp_core::security::{hmac_trailer, HmacKey};
use csp_core::Flags;
use csp_ipc::{Control, PORT_EPHEMERAL};
use std::os::unix::fs::PermissionsExt;
use test_support::*;

#[test]
fn service_requests_are_dropped_by_cause_and_signed_replies_verify() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "hmac_key = \"k\"\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = Muxd::start(
        MuxdConfig::node(3).extra(&format!("[services]\nkey_file = \"{}\"", keys.display())),
    );
    let mut c = d.client("raw");
    let (_, _, eph) = c.register(0, PORT_EPHEMERAL);

    // A ping with a CRC32 flag and a wrong CRC: dropped as bad_crc.
    c.send_packet(3, eph, 3, 1, Flags::CRC32, b"abcd\0\0\0\0");
    // HMAC flagged with a wrong trailer: bad_hmac.
    c.send_packet(3, eph, 3, 6, Flags::HMAC, &[1, 2, 3, 4]);
    // A ping with a right HMAC: answered, with an HMAC over the echo.
    let key = HmacKey::from_key_string(b"k");
    let mut ping = b"hello".to_vec();
    ping.extend_from_slice(&hmac_trailer(&key, None, b"hello"));
    c.send_packet(3, eph, 3, 1, Flags::HMAC, &ping);
    let (h, data) = c.recv_packet();
    assert_eq!((h.sport.get(), h.flags), (1, Flags::HMAC));
    assert_eq!(data, ping, "same payload, HMAC recomputed with the key");

    let stats = c.control(Control::Stats);
    assert_eq!(stat(&stats, "service_dropped_bad_crc"), 1, "{stats}");
    assert_eq!(stat(&stats, "service_dropped_bad_hmac"), 1, "{stats}");
    assert_eq!(stat(&stats, "service_dropped_no_key"), 0, "{stats}");
}

#[test]
fn hmac_without_a_key_is_no_key() {
    let d = Muxd::start(MuxdConfig::node(3));
    let mut c = d.client("raw");
    let (_, _, eph) = c.register(0, PORT_EPHEMERAL);
    c.send_packet(3, eph, 3, 1, Flags::HMAC, b"hello1234");
    // A plain ping after it: once it is answered, the first was handled.
    c.send_packet(3, eph, 3, 1, Flags::NONE, b"x");
    let (_, data) = c.recv_packet();
    assert_eq!(data, b"x");
    let stats = c.control(Control::Stats);
    assert_eq!(stat(&stats, "service_dropped_no_key"), 1, "{stats}");
}

/// A libcsp 1.x peer on a version 1 UDP link pings the daemon with XTEA
/// (and CRC32 under it): the daemon decrypts with the key file's
/// `xtea_key` and answers encrypted, with a nonce of its own.
#[test]
fn xtea_requests_from_a_v1_link_are_answered_encrypted() {
    use csp_core::security::{SecurityOptions, XteaKey};
    use csp_core::{Header, Packet, Version};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "xtea_key = \"xk\"\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    let d = Muxd::start(
        MuxdConfig::node(3)
            .route(format!("9 udp 127.0.0.1:{peer_port}"))
            .extra(&format!(
                "version = 1\n[services]\nkey_file = \"{}\"",
                keys.display()
            )),
    );
    let secure = SecurityOptions {
        crc: true,
        xtea: Some(XteaKey::from_key_string(b"xk")),
        ..SecurityOptions::NONE
    };
    let mut request =
        Packet::<300>::with_data(header(9, 20, 3, 1, Flags::NONE), b"v1 ping").unwrap();
    secure
        .append(&mut request, Version::V1, 0x1234_5678)
        .unwrap();
    let (h, n) = request.header.to_bytes(Version::V1).unwrap();
    let mut frame = h[..n].to_vec();
    frame.extend_from_slice(request.data());
    assert!(
        !frame.windows(7).any(|w| w == b"v1 ping"),
        "encrypted on the wire"
    );
    peer.send_to(&frame, ("127.0.0.1", d.udp_port())).unwrap();

    let mut buf = [0u8; 512];
    let (len, _) = peer.recv_from(&mut buf).unwrap();
    let reply_header = Header::parse(&buf[..len], Version::V1).unwrap();
    assert_eq!((reply_header.src.get(), reply_header.sport.get()), (3, 1));
    assert!(reply_header.flags.contains(Flags::XTEA | Flags::CRC32));
    let mut reply = Packet::<300>::with_data(reply_header, &buf[4..len]).unwrap();
    let v = secure.verify(&mut reply, Version::V1).unwrap();
    assert_ne!(v.xtea_nonce, Some(0x1234_5678), "a nonce of its own");
    assert_eq!(reply.data(), b"v1 ping");

    // Without the key the same request is dropped as no_key.
    let plain = Muxd::start(
        MuxdConfig::node(4)
            .route(format!("9 udp 127.0.0.1:{peer_port}"))
            .extra("version = 1"),
    );
    let mut to4 = Packet::<300>::with_data(header(9, 20, 4, 1, Flags::NONE), b"v1 ping").unwrap();
    secure.append(&mut to4, Version::V1, 7).unwrap();
    let (h, n) = to4.header.to_bytes(Version::V1).unwrap();
    let mut frame = h[..n].to_vec();
    frame.extend_from_slice(to4.data());
    peer.send_to(&frame, ("127.0.0.1", plain.udp_port()))
        .unwrap();
    let mut c = plain.client("op");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = c.control(Control::Stats);
        if stat(&stats, "service_dropped_no_key") == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The bytes libcsp sends with `CSP_O_HMAC | CSP_O_CRC32` (golden vectors
/// `wire_hmac_crc_secret_len5`, v1 and v2: "hello", HMAC with key
/// "secret", CRC32), as a ping to the daemon from a UDP link of either
/// header version: the daemon, holding the key, answers with exactly the
/// same data and trailers, which a libcsp peer verifies.
#[test]
fn a_libcsp_hmac_ping_is_answered_with_golden_bytes() {
    let vectors = std::env::var_os("CSP_VECTORS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
        });
    let text = std::fs::read_to_string(vectors.join("hmac.json")).unwrap_or_else(|e| {
        panic!(
            "golden vectors not found in {} ({e}); set CSP_VECTORS_DIR",
            vectors.display()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "hmac_key = \"secret\"\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut seen = 0;
    for v in json["vectors"].as_array().unwrap() {
        if v["name"] != "wire_hmac_crc_secret_len5" {
            continue;
        }
        seen += 1;
        let version = match v["version"].as_u64() {
            Some(1) => csp_core::Version::V1,
            _ => csp_core::Version::V2,
        };
        let o = &v["outputs"];
        let unhex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let frame = unhex(o["frame"].as_str().unwrap());
        let header_len = o["header"].as_str().unwrap().len() / 2;
        let golden_data = &frame[header_len..];

        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(WAIT)).unwrap();
        let peer_port = peer.local_addr().unwrap().port();
        let d = Muxd::start(
            MuxdConfig::node(2)
                .route(format!("1 udp 127.0.0.1:{peer_port}"))
                .extra(&format!(
                    "version = {}\n[services]\nkey_file = \"{}\"",
                    v["version"],
                    keys.display()
                )),
        );
        // libcsp's frame, re-addressed to the ping port (the trailers
        // cover the data only, so they stay valid).
        let (h, n) = header(1, 20, 2, 1, Flags::HMAC | Flags::CRC32)
            .to_bytes(version)
            .unwrap();
        let mut request = h[..n].to_vec();
        request.extend_from_slice(golden_data);
        peer.send_to(&request, ("127.0.0.1", d.udp_port())).unwrap();
        let mut buf = [0u8; 512];
        let (len, _) = peer.recv_from(&mut buf).unwrap();
        let reply = csp_core::Header::parse(&buf[..len], version).unwrap();
        assert_eq!(
            (
                reply.src.get(),
                reply.dst.get(),
                reply.sport.get(),
                reply.dport.get()
            ),
            (2, 1, 1, 20)
        );
        assert_eq!(reply.flags, Flags::HMAC | Flags::CRC32);
        assert_eq!(
            &buf[n..len],
            golden_data,
            "v{:?}: golden bytes back",
            version
        );
    }
    assert_eq!(seen, 2, "both header versions have the vector");
}

/// ps lists the connected applications in one packet of libcsp's usual
/// 256-byte buffers however many there are: cut at a line boundary, the
/// last line saying how many did not fit, NUL-terminated for a C client.
#[test]
fn ps_fits_one_packet_with_many_applications() {
    let d = Muxd::start(MuxdConfig::node(3));
    let apps: Vec<_> = (0..40)
        .map(|i| d.client(&format!("application-with-a-long-name-{i:02}")))
        .collect();
    let mut c = d.client("asker");
    let (_, _, eph) = c.register(0, PORT_EPHEMERAL);
    c.send_packet(3, eph, 3, 2, Flags::NONE, &[0x55]);
    let (h, data) = c.recv_packet();
    assert_eq!(h.sport.get(), 2);
    assert!(data.len() <= 256 - 12, "{} bytes", data.len());
    assert_eq!(data.last(), Some(&0), "NUL-terminated");
    let text = std::str::from_utf8(&data[..data.len() - 1]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("application-with-a-long"), "{text}");
    let shown = lines.len() - 1;
    assert!(shown >= 3, "{text}");
    // 41 applications connected (the 40 and the asker).
    assert_eq!(lines[shown], format!("(+{} more)", 41 - shown), "{text}");
    drop(apps);
}
