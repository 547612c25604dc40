//! The daemon's own services drop what does not verify, counted by cause:
//! a CRC32 that does not match, an HMAC under no key or the wrong key, and
//! a good HMAC request answered with an HMAC (raw IPC frames, so the
//! trailers are exactly what the test writes).

mod common;

use common::*;
use csp_core::security::{hmac_trailer, HmacKey};
use csp_core::Flags;
use csp_ipc::{Control, PORT_EPHEMERAL};
use std::os::unix::fs::PermissionsExt;

#[test]
fn service_requests_are_dropped_by_cause_and_signed_replies_verify() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "hmac_key = \"k\"\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = Muxd::start(
        3,
        "",
        &format!("[services]\nkey_file = \"{}\"", keys.display()),
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
    let d = Muxd::start(3, "", "");
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
