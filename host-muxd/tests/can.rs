//! `[[can]]` links. slcan: two daemons joined by a pty pair (one
//! daemon creates the pty, the other opens it as its adapter's serial
//! device), carrying CSP over CFP as slcan lines; socketcan: two daemons on a vcan
//! interface where the kernel has one. All local; waits bounded.

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

/// Node 2's application pings node 1's service through the link, then
/// every length up to libcsp's 249-byte test maximum goes from node 2's
/// application to node 1's port 10 and back with CRC32.
fn ping_and_every_size(a: &Muxd, b: &Muxd, version: u8) {
    let mut app_a = a.client("a");
    let mut app_b = b.client("b");
    let (_, _, eph) = app_b.register(0, PORT_EPHEMERAL);
    app_a.register(0, 10);

    let ping = vec![0xA5; 100];
    app_b.send_packet(2, eph, 1, 1, Flags::NONE, &ping);
    let (h, data) = app_b.recv_packet();
    assert_eq!((h.src.get(), h.sport.get(), data), (1, 1, ping));

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
}

#[test]
fn slcan_pty_pair_carries_ping_and_packets_of_every_size() {
    for version in [1u8, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = can_pair(version, dir.path());
        ping_and_every_size(&a, &b, version);
        let status = b.control(Control::Status);
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
        e.to_string().contains("needs the CAN network interface"),
        "{e}"
    );
    let e = bad("mode = \"socketcan\"\ninterface = \"can0\"\ndevice = \"/dev/x\"");
    assert!(e.to_string().contains("ip link"), "{e}");
    let e = bad("mode = \"socketcan\"\ninterface = \"a-name-far-too-long\"");
    assert!(e.to_string().contains("not an interface name"), "{e}");
    let e = bad("mode = \"slcan\"\ninterface = \"can0\"");
    assert!(e.to_string().contains("is for mode"), "{e}");
    let sc = Config::parse(
        "routes = [\"5 bus\"]\n[[can]]\nname = \"bus\"\nmode = \"socketcan\"\ninterface = \"vcan0\"\n",
        None,
    )
    .unwrap();
    assert_eq!(sc.socketcan_links().count(), 1);
    assert!(sc.kiss.is_empty(), "a socketcan link is not a stream link");
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

/// A Python with `csp_py` (the pure-Python `cubesat-space-protocol-py`
/// package, an implementation independent of ours and of libcsp) in a venv
/// under the target dir, made once per test process. None (with the reason
/// printed) when python3, venv or the package index is missing, except
/// under CI=true, where that fails the test.
fn csp_py_python() -> Option<std::path::PathBuf> {
    use std::process::Command;
    use std::sync::OnceLock;
    static PYTHON: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cfp-venv");
        let python = venv.join("bin/python");
        let has_pkg = |p: &std::path::Path| {
            Command::new(p)
                .args(["-c", "import csp_py.interfaces.can_v1"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if has_pkg(&python) {
            return Ok(python);
        }
        let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)))
            }
        };
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )?;
        // The package declares Python 3.12 but runs on 3.11.
        run(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "--ignore-requires-python",
                "cubesat-space-protocol-py==1.5.2",
            ]),
            "pip install cubesat-space-protocol-py",
        )?;
        if has_pkg(&python) {
            Ok(python)
        } else {
            Err("csp_py does not import after installing".into())
        }
    });
    match made {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            skip_unless_ci("CFP interop with csp_py", why);
            None
        }
    }
}

/// csp-muxd and csp_py, the independent Python CSP, on one CAN bus: the
/// daemon's slcan pty on one side, `cfp_peer.py` bridging csp_py's CFP
/// frames to slcan lines on the other. Both ways, both CFP versions:
/// csp_py pings the daemon's node and sends every size to an application
/// on it, which echoes; then the daemon's application pings csp_py and
/// sends every size to csp_py's echo port.
#[test]
fn slcan_interoperates_with_the_independent_python_csp() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let Some(python) = csp_py_python() else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cfp_peer.py");
    const PEER: u16 = 10;
    for version in [1u8, 2] {
        let dir = tempfile::tempdir().unwrap();
        let pty = dir.path().join("bus");
        let d = Muxd::start(MuxdConfig::node(1).route(format!("{PEER} bus")).extra(&format!(
                "[[can]]\nname = \"bus\"\nmode = \"slcan\"\npty_link = \"{}\"\nversion = {version}\n",
                pty.display()
            )));
        // Largest data the link carries: max_frame 262 less the header.
        let max = 262 - if version == 1 { 4 } else { 6 };
        // csp_py's CFP1 receiver completes a packet only on a continuation
        // frame, so it drops packets that fit one frame (0..=2 data bytes,
        // its pings' answers included); its CFP2 receiver takes every size.
        let smallest = if version == 1 { 3 } else { 0 };
        let sizes = max + 1 - smallest;

        // An application on the daemon's node echoing port 11, in a thread.
        let mut echo = d.client("echo");
        assert_eq!(echo.register(0, 11).0, csp_ipc::Status::Ok);
        let echoer = std::thread::spawn(move || {
            let mut n = 0;
            while let Some((h, data)) = echo.recv_packet_within(WAIT) {
                echo.send_packet(1, 11, h.src.get(), h.sport.get(), Flags::NONE, &data);
                n += 1;
                if n == sizes {
                    break;
                }
            }
            n
        });

        let mut peer = Command::new(&python)
            .arg(script)
            .args(["--pty", &pty.display().to_string()])
            .args(["--version", &version.to_string()])
            .args(["--addr", &PEER.to_string(), "--daemon", "1"])
            .args(["--ping", &max.to_string()])
            .args(["--min-size", &smallest.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("peer.err")).unwrap())
            .spawn()
            .unwrap();
        let err_file = dir.path().join("peer.err");
        let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
        let mut next_line = |peer: &mut std::process::Child| match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let _ = peer.kill();
                let _ = peer.wait();
                let err = std::fs::read_to_string(&err_file).unwrap_or_default();
                panic!("v{version}: cfp_peer.py ended: {err}");
            }
        };
        assert_eq!(next_line(&mut peer), "READY");
        // csp_py -> csp-muxd: the service and the application, every size.
        assert_eq!(next_line(&mut peer), format!("PINGED {sizes}"));
        assert_eq!(next_line(&mut peer), format!("ECHOED {sizes}"));
        assert_eq!(echoer.join().unwrap(), sizes);

        // csp-muxd -> csp_py.
        let mut app = d.client("app");
        let (_, _, eph) = app.register(0, PORT_EPHEMERAL);
        for len in smallest..=max {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            for dport in [1u8, 10] {
                app.send_packet(1, eph, PEER, dport, Flags::NONE, &payload);
                let (h, data) = app.recv_packet();
                assert_eq!(
                    (h.src.get(), h.sport.get(), data.len()),
                    (PEER, dport, len),
                    "v{version} port {dport} len {len}"
                );
                assert_eq!(data, payload, "v{version} port {dport} len {len}");
            }
        }
        let stats = app.control(Control::Stats);
        drop(peer.stdin.take()); // the peer's cue to report and end
        let done = next_line(&mut peer);
        assert_eq!(done, "DONE bad_lines=0", "v{version}");
        assert!(peer.wait().unwrap().success());
        // Nothing was dropped on the daemon's side of the bus, and every
        // packet csp_py sent (its pings and echo requests, the answers to
        // ours) was reassembled once.
        assert_eq!(link_stat(&stats, "bus", "tx_queue_full"), 0, "{stats}");
        assert_eq!(link_stat(&stats, "bus", "rx_too_long"), 0, "{stats}");
        assert_eq!(
            link_stat(&stats, "bus", "cfp_completed"),
            4 * sizes as u64,
            "{stats}"
        );
        for clean in [
            "cfp_lost",
            "cfp_orphans",
            "cfp_malformed",
            "slcan_malformed",
        ] {
            assert_eq!(link_stat(&stats, "bus", clean), 0, "{clean}: {stats}");
        }
    }
}

/// What a broken or hostile bus puts on the line is counted by cause and
/// loses nothing around it: malformed and overlong slcan lines, a standard
/// frame, a CFP continuation with no packet begun; a ping sent after them
/// (and one interleaved with the garbage) is still answered.
#[test]
fn slcan_garbage_is_counted_by_cause_and_loses_nothing() {
    use csp_core::cfp::{fragment, TxLink};
    use csp_core::{Addr, Version};
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pty = dir.path().join("bus");
    let d = Muxd::start(MuxdConfig::node(1).route("9 bus").extra(&format!(
        "[[can]]\nname = \"bus\"\nmode = \"slcan\"\npty_link = \"{}\"\n",
        pty.display()
    )));
    let mut line = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(&pty)
        .unwrap();
    let mut t = nix::sys::termios::tcgetattr(&line).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&line, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();

    // A ping from node 9 to the daemon's node, as slcan lines.
    let ping = |counter: u16| -> Vec<u8> {
        let h = header(9, 40, 1, 1, Flags::NONE);
        let link = TxLink {
            via: None,
            iface_addr: Addr::new(9).unwrap(),
            counter,
        };
        let mut out = Vec::new();
        for f in fragment(Version::V2, &h, &[0x5A; 20], link).unwrap() {
            out.extend_from_slice(format!("T{:08X}{}", f.id, f.dlc()).as_bytes());
            for b in f.data() {
                out.extend_from_slice(format!("{b:02X}").as_bytes());
            }
            out.push(b'\r');
        }
        out
    };
    let first = ping(0);
    let split = first.iter().position(|&b| b == b'\r').unwrap() + 1;
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&first[..split]); // the ping's first frame
    garbage.extend_from_slice(b"Tzzzzzzzz1AA\r"); // malformed
    garbage.extend_from_slice(b"t1232ABCD\r"); // a standard frame
    garbage.extend_from_slice(&[b'T'; 200]); // overlong, then its CR
    garbage.push(b'\r');
    // A continuation (begin=0, end=1) of a packet from node 12 never begun.
    garbage.extend_from_slice(b"T");
    let orphan = (2u32 << 27) | (1 << 13) | (12 << 7) | 1;
    garbage.extend_from_slice(format!("{orphan:08X}2BEEF\r").as_bytes());
    garbage.extend_from_slice(&first[split..]); // the rest of the ping
    garbage.extend_from_slice(&ping(1));
    line.write_all(&garbage).unwrap();

    // Two answers come back as slcan lines: read until both ends are seen.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mut buf = [0u8; 512];
    let answers = |got: &[u8]| {
        got.split(|&b| b == b'\r')
            .filter(|l| l.len() >= 9 && l[0] == b'T')
            .filter(|l| {
                u32::from_str_radix(std::str::from_utf8(&l[1..9]).unwrap(), 16).unwrap() & 1 == 1
            })
            .count()
    };
    nix::fcntl::fcntl(
        &line,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    while answers(&got) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "answers: {:?}",
            String::from_utf8_lossy(&got)
        );
        match line.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut app = d.client("app");
    let stats = app.control(Control::Stats);
    for (key, want) in [
        ("cfp_completed", 2),
        ("cfp_orphans", 1),
        ("slcan_malformed", 1),
        ("standard_frames", 1),
        ("slcan_too_long", 1),
        ("cfp_lost", 0),
    ] {
        assert_eq!(link_stat(&stats, "bus", key), want, "{key}: {stats}");
    }
}

/// A vcan interface of our own, removed on drop; None (and why) where the
/// kernel has no vcan module or we may not create interfaces.
struct Vcan(String);

impl Vcan {
    fn create() -> Result<Vcan, String> {
        let name = format!("vcsp{}", std::process::id() % 100_000);
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&["link", "add", "dev", &name, "type", "vcan"])?;
        let vcan = Vcan(name);
        ip(&["link", "set", "up", &vcan.0])?;
        Ok(vcan)
    }
}

impl Drop for Vcan {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// Two daemons on one SocketCAN interface (a vcan of the test's own):
/// pings and packets of every size both ways, CFP1 and CFP2. Where vcan
/// can not be made (these CI machines: no vcan module), it says so and
/// what stays untested: the socketcan link's own logic is tested over a
/// datagram pair in host-muxd's `socketcan` unit tests.
#[test]
fn socketcan_link_carries_ping_and_packets_of_every_size() {
    let vcan = match Vcan::create() {
        Ok(v) => v,
        Err(why) => {
            // Not even under CI: these machines have no vcan module.
            say_skipped(
                "SocketCAN between two csp-muxd on a vcan interface",
                &format!("{why}; the link's frame handling is tested over a datagram pair"),
            );
            return;
        }
    };
    for version in [1u8, 2] {
        let link = |name: &str| {
            format!(
                "[[can]]\nname = \"{name}\"\nmode = \"socketcan\"\ninterface = \"{}\"\nversion = {version}\n",
                vcan.0
            )
        };
        let a = Muxd::start(MuxdConfig::node(1).route("2 bus").extra(&link("bus")));
        let b = Muxd::start(MuxdConfig::node(2).route("1 bus").extra(&link("bus")));
        ping_and_every_size(&a, &b, version);
        let stats = b.control(Control::Stats);
        assert_eq!(link_stat(&stats, "bus", "cfp_lost"), 0, "{stats}");
        assert_eq!(link_stat(&stats, "bus", "tx_queue_full"), 0, "{stats}");
    }
}

/// A socketcan link on an interface that does not exist stops start-up
/// with the link and the interface named, and leaves no socket file (the
/// open path of the real CAN socket, which runs on any machine).
#[test]
fn socketcan_on_a_missing_interface_stops_start_up_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("muxd.sock");
    let (code, err) = run_to_exit(
        dir.path(),
        &socket,
        "[udp]\nbind = \"127.0.0.1:0\"\n[[can]]\nname = \"bus\"\nmode = \"socketcan\"\ninterface = \"nocan9\"\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("[[can]] bus") && err.contains("\"nocan9\""),
        "{err}"
    );
    assert!(!socket.exists(), "socket file left behind: {err}");
}
