//! `[[can]]` links in slcan mode: two daemons joined by a pty pair (one
//! daemon creates the pty, the other opens it as its adapter's serial
//! device), carrying CSP over CFP as slcan lines. All local; waits bounded.

use csp_core::Flags;
use csp_ipc::{Control, PORT_EPHEMERAL};
use test_support::*;

fn can_pair(version: u8, dir: &std::path::Path) -> (Muxd, Muxd) {
    let pty = dir.join("can-a");
    let a = Muxd::start(MuxdConfig::node(1).route("2 bus").extra(&format!(
        "[[can]]\nname = \"bus\"\nmode = \"slcan\"\npty_link = \"{}\"\nversion = {version}\n",
        pty.display()
    )));
    let b = Muxd::start(MuxdConfig::node(2).route("1 can0").extra(&format!(
        "[[can]]\nmode = \"slcan\"\ndevice = \"{}\"\nbaud = 115200\nversion = {version}\n",
        pty.display()
    )));
    (a, b)
}

#[test]
fn slcan_pty_pair_carries_ping_and_packets_of_every_size() {
    for version in [1u8, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = can_pair(version, dir.path());
        let mut app_a = a.client("a");
        let mut app_b = b.client("b");
        let (_, _, eph) = app_b.register(0, PORT_EPHEMERAL);
        app_a.register(0, 10);

        // B pings A's service through the CAN link.
        let ping = vec![0xA5; 100];
        app_b.send_packet(2, eph, 1, 1, Flags::NONE, &ping);
        let (h, data) = app_b.recv_packet();
        assert_eq!((h.src.get(), h.sport.get(), data), (1, 1, ping));

        // Every length up to libcsp's 249-byte test maximum, both ways.
        for len in (0..=249usize).step_by(7).chain([249]) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
            app_b.send_packet(2, eph, 1, 10, Flags::NONE, &payload);
            let (h, data) = app_a.recv_packet();
            assert_eq!((h.src.get(), data.len()), (2, len), "v{version} len {len}");
            assert_eq!(data, payload, "v{version} len {len}");
            app_a.send_packet(1, 10, 2, eph, Flags::CRC32, &payload);
            let (h, data) = app_b.recv_packet();
            assert_eq!(data, payload, "v{version} reply len {len}");
            assert!(h.flags.contains(Flags::CRC32));
        }
        let status = app_b.control(Control::Status);
        assert!(
            status.contains(&format!(
                "link can0 can mode=slcan at={}@115200 state=up",
                dir.path().join("can-a").display()
            )),
            "{status}"
        );
    }
}

#[test]
fn can_tables_are_checked() {
    use host_muxd::config::Config;
    let bad = |body: &str| Config::parse(&format!("[[can]]\n{body}\n"), None).unwrap_err();
    let e = bad("mode = \"socketcan\"");
    assert!(
        e.to_string().contains("socketcan is not implemented"),
        "{e}"
    );
    let e = bad("mode = \"slcan\"\nbitrate = 333");
    assert!(e.to_string().contains("not an slcan rate"), "{e}");
    let e = bad("mode = \"slcan\"\ndevice = \"/dev/x\"\npty_link = \"/tmp/y\"");
    assert!(e.to_string().contains("not both"), "{e}");
    let ok = Config::parse(
        "routes = [\"5 can0\"]\n[[can]]\nmode = \"slcan\"\ndevice = \"/dev/ttyACM0\"\nbitrate = 1000\n",
        None,
    )
    .unwrap();
    assert_eq!(ok.can.len(), 1);
    assert_eq!(ok.can[0].name, "can0");
}
