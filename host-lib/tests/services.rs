//! Every standard service asked with `csp` from a real csp-muxd (its own
//! services) and, through it over UDP, from a Rust node (csp-core's `Node`
//! in this process), with and without HMAC; `--json` parsed and checked
//! field by field; the reboot/shutdown/clock policy; the drop counters by
//! cause; requests compared with libcsp's golden bytes; bad inputs.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use csp_core::node::{IfaceConfig, NodeConfig};
use csp_core::security::HmacKey;
use csp_core::service::Ident;
use csp_core::{Addr, Node, Version};
use serde_json::Value;
use test_support::*;

const KEY: &str = "mission key";

/// A key file with `mode`; its directory lives as long as the daemon's.
fn key_file(dir: &Path, mode: u32) -> PathBuf {
    let p = dir.join("keys.toml");
    std::fs::write(&p, format!("hmac_key = \"{KEY}\"\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// `csp ARGS` against `d`: exit code, stdout, stderr.
fn csp_run(d: &Muxd, args: &[&str]) -> (i32, String, String) {
    let mut cmd = d.csp();
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "2000"]);
    }
    run(cmd.args(args))
}

/// `csp ARGS` that must succeed, its stdout as JSON.
fn csp_json(d: &Muxd, args: &[&str]) -> Value {
    let (code, out, err) = csp_run(d, args);
    assert_eq!(code, 0, "csp {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("csp {args:?}: {e}: {out:?}"))
}

/// A counter of `csp status --json` (`kind` NAME, value in `args[0]`).
fn counter(d: &Muxd, name: &str) -> u64 {
    let v = csp_json(d, &["status", "--json"]);
    v["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == name)
        .unwrap_or_else(|| panic!("no counter {name}"))["args"][0]
        .as_u64()
        .unwrap()
}

/// Wait (bounded) until `name` reaches `want`; the daemon counts after the
/// request, and a request with no reply gives nothing else to wait on.
fn wait_counter(d: &Muxd, name: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = counter(d, name);
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} = {n}, want {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn services_config(keys: &Path, extra: &str) -> String {
    format!("[services]\nkey_file = \"{}\"\n{extra}", keys.display())
}

#[test]
fn every_query_of_the_daemon_with_and_without_hmac() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), 0o600);
    let d = Muxd::start(MuxdConfig::node(1).extra(&services_config(&keys, "")));
    // An application whose name ps must list.
    let _app = host_lib::Client::with_config(host_lib::ClientConfig {
        socket: Some(d.socket.clone()),
        name: "telemetry-logger".into(),
        ..host_lib::ClientConfig::default()
    })
    .unwrap();
    for auth in [&[][..], &["--hmac-key", KEY][..]] as [&[&'static str]; 2] {
        let with = |args: &[&'static str]| -> Vec<&'static str> { [auth, args].concat() };

        let p = csp_json(&d, &with(&["ping", "-c", "2", "-i", "1", "--json", "1"]));
        assert_eq!(p["node"], 1);
        assert_eq!(p["sent"], 2);
        assert_eq!(p["received"], 2, "{p}");
        assert_eq!(p["size"], 10);
        assert_eq!(p["loss_percent"], 0.0);
        let (min, avg, max) = (
            p["rtt_min_ms"].as_f64().unwrap(),
            p["rtt_avg_ms"].as_f64().unwrap(),
            p["rtt_max_ms"].as_f64().unwrap(),
        );
        assert!(min > 0.0 && min <= avg && avg <= max, "{p}");

        let u = csp_json(&d, &with(&["uptime", "--json", "1"]));
        assert_eq!(u["node"], 1);
        assert!(u["uptime_s"].as_u64().unwrap() < 3600, "{u}");

        let i = csp_json(&d, &with(&["ident", "--json", "1"]));
        assert_eq!(i["node"], 1);
        assert_eq!(i["hostname"], "csp-muxd");
        assert_eq!(i["model"], "csp-rs ground");
        assert_eq!(i["revision"], env!("CARGO_PKG_VERSION"));
        assert_eq!(i["date"].as_str().unwrap().len(), 11, "{i}");
        assert_eq!(i["time"].as_str().unwrap().len(), 8, "{i}");

        let m = csp_json(&d, &with(&["memfree", "--json", "1"]));
        let free = m["memfree_bytes"].as_u64().unwrap();
        assert!(free > 0 && free <= 0xFFFF_F000, "never u32::MAX: {m}");

        let b = csp_json(&d, &with(&["buffree", "--json", "1"]));
        assert!(b["buffers_free"].as_u64().unwrap() > 0, "{b}");

        let ps = csp_json(&d, &with(&["ps", "--json", "1"]));
        let lines: Vec<&str> = ps["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(
            lines.iter().any(|l| l.contains("telemetry-logger")),
            "{lines:?}"
        );

        let s = csp_json(&d, &with(&["cmp", "ifstat", "--json", "1", "udp"]));
        assert_eq!(s["interface"], "udp");
        for field in [
            "tx", "rx", "tx_error", "rx_error", "drop", "autherr", "frame", "txbytes", "rxbytes",
            "irq",
        ] {
            assert!(s[field].is_u64(), "{field} in {s}");
        }

        let c = csp_json(&d, &with(&["cmp", "clock", "--json", "1"]));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let tv_sec = c["tv_sec"].as_u64().unwrap();
        assert!(tv_sec.abs_diff(now) <= 60, "{c}");
        assert!(c["tv_nsec"].as_u64().unwrap() < 1_000_000_000);
        assert!(c["offset_s"].as_f64().unwrap().abs() < 60.0);
    }
    // The text forms say the same.
    let (code, out, _) = csp_run(&d, &["--hmac-key", KEY, "ident", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("hostname: csp-muxd"), "{out}");

    // A wrong key: no answer, counted as a bad HMAC.
    let (code, out, _) = csp_run(
        &d,
        &[
            "--hmac-key",
            "not the key",
            "--timeout",
            "300",
            "ping",
            "-c",
            "1",
            "1",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 sent, 0 received"), "{out}");
    wait_counter(&d, "service_dropped_bad_hmac", 1);
    assert_eq!(counter(&d, "service_dropped_no_key"), 0);
}

#[test]
fn hmac_requests_without_a_daemon_key_are_counted_as_no_key() {
    let d = Muxd::start(MuxdConfig::node(1));
    let (code, _, _) = csp_run(&d, &["--hmac-key", KEY, "--timeout", "300", "uptime", "1"]);
    assert_eq!(code, 1);
    wait_counter(&d, "service_dropped_no_key", 1);
}

#[test]
fn reboot_and_shutdown_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), 0o600);
    let log = dir.path().join("hook.log");
    let d = Muxd::start(MuxdConfig::node(1).extra(&services_config(
        &keys,
        &format!(
            "allow_reboot = true\nreboot_hook = \"echo $CSP_REQUEST from $CSP_FROM >> {}\"",
            log.display()
        ),
    )));
    // No confirmation: nothing is sent at all.
    let (code, _, err) = csp_run(&d, &["reboot", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    let (code, _, err) = csp_run(&d, &["shutdown", "1"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(counter(&d, "service_dropped_unauthenticated"), 0);
    assert_eq!(counter(&d, "service_dropped_not_allowed"), 0);

    // Unauthenticated: refused and counted, the hook does not run.
    let (code, out, err) = csp_run(&d, &["reboot", "--yes", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reboot request sent to node 1"), "{out}");
    wait_counter(&d, "service_dropped_unauthenticated", 1);
    // Shutdown is not allowed by this config, key or not.
    let (code, _, _) = csp_run(&d, &["--hmac-key", KEY, "shutdown", "--yes", "1"]);
    assert_eq!(code, 0);
    wait_counter(&d, "service_dropped_not_allowed", 1);
    assert!(!log.exists(), "no hook may have run");

    // With the key: the hook runs, once.
    let (code, _, _) = csp_run(&d, &["--hmac-key", KEY, "reboot", "--yes", "1"]);
    assert_eq!(code, 0);
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&log).map_or(true, |s| !s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "hook did not run");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "reboot from 1\n");
    assert_eq!(counter(&d, "service_dropped_unauthenticated"), 1);
    assert_eq!(counter(&d, "hook_refused_no_hook"), 0);
}

#[test]
fn clock_is_set_only_through_the_hook_and_with_a_valid_hmac() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), 0o600);
    let out_file = dir.path().join("clock");
    let d = Muxd::start(MuxdConfig::node(1).extra(&services_config(
        &keys,
        &format!(
            "clock_hook = \"echo $CSP_CLOCK_SEC $CSP_CLOCK_NSEC > {}\"",
            out_file.display()
        ),
    )));
    let (code, _, err) = csp_run(
        &d,
        &[
            "--timeout",
            "300",
            "cmp",
            "clock",
            "--set",
            "1780000000.25",
            "1",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("refused to set its clock"), "{err}");
    wait_counter(&d, "service_dropped_unauthenticated", 1);
    assert!(!out_file.exists());

    let c = csp_json(
        &d,
        &[
            "--hmac-key",
            KEY,
            "cmp",
            "clock",
            "--json",
            "--set",
            "1780000000.25",
            "1",
        ],
    );
    assert!(c["tv_sec"].as_u64().unwrap() > 1_700_000_000, "{c}");
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&out_file).map_or(true, |s| !s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "clock hook did not run");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "1780000000 250000000\n"
    );

    // Without a clock hook, setting is not allowed at all.
    let plain = Muxd::start(MuxdConfig::node(1));
    let (code, _, _) = csp_run(
        &plain,
        &["--timeout", "300", "cmp", "clock", "--set", "now", "1"],
    );
    assert_eq!(code, 1);
    wait_counter(&plain, "service_dropped_not_allowed", 1);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let d = Muxd::start(MuxdConfig::node(1));
    // Unknown interface: libcsp (and the daemon) send no reply.
    let (code, _, err) = csp_run(&d, &["--timeout", "300", "cmp", "ifstat", "1", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("no interface named \"nosuch\""), "{err}");
    wait_counter(&d, "service_dropped_unknown_interface", 1);
    let (code, _, err) = csp_run(&d, &["cmp", "ifstat", "1", "elevenchars"]);
    assert_eq!(code, 2, "{err}");

    // Peek and poke: always refused by a host daemon.
    let (code, _, err) = csp_run(&d, &["--timeout", "300", "cmp", "peek", "1", "0x1000", "4"]);
    assert_eq!(code, 1);
    assert!(err.contains("refused the read"), "{err}");
    wait_counter(&d, "service_dropped_not_allowed", 1);
    let (code, _, err) = csp_run(
        &d,
        &["--timeout", "300", "cmp", "poke", "1", "0x1000", "dead"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("refused the write"), "{err}");
    wait_counter(&d, "service_dropped_not_allowed", 2);
    let (code, _, _) = csp_run(&d, &["cmp", "peek", "1", "0x1000", "201"]);
    assert_eq!(code, 2, "over 200 bytes is a usage error");
    let (code, _, _) = csp_run(&d, &["cmp", "poke", "1", "0", "abc"]);
    assert_eq!(code, 2);
    // Route set: routes come from the config.
    let (code, _, err) = csp_run(&d, &["--timeout", "300", "cmp", "route", "1", "10", "udp"]);
    assert_eq!(code, 1);
    assert!(err.contains("refused the route"), "{err}");
    wait_counter(&d, "service_dropped_not_allowed", 3);
}

#[test]
fn a_key_file_others_can_read_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604] {
        let keys = key_file(dir.path(), mode);
        let cfg = dir.path().join("muxd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[udp]\nbind = \"127.0.0.1:0\"\n[services]\nkey_file = \"{}\"\n",
                keys.display()
            ),
        )
        .unwrap();
        let socket = dir.path().join("muxd.sock");
        let child = Command::new(bins::muxd())
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish(child);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("services.key_file = \"{}\"", keys.display())),
            "{err}"
        );
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        assert!(!socket.exists(), "start-up failure leaves no socket file");
        assert!(!err.contains(KEY), "the key never reaches the log: {err}");
    }
}

/// The requests `csp` sends are byte for byte those of libcsp's client
/// helpers (golden vectors), seen on the UDP link the daemon forwards them to.
#[test]
fn requests_match_libcsp_golden_bytes() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let port = peer.local_addr().unwrap().port();
    let d = Muxd::start(MuxdConfig::node(2).route(format!("1 udp 127.0.0.1:{port}")));
    let golden = golden_requests();
    let cases: [(&str, &[&str]); 5] = [
        ("req_reboot", &["reboot", "--yes", "1"]),
        ("req_shutdown", &["shutdown", "--yes", "1"]),
        ("req_uptime", &["--timeout", "100", "uptime", "1"]),
        ("req_cmp_ident", &["--timeout", "100", "ident", "1"]),
        (
            "req_cmp_clock_get",
            &["--timeout", "100", "cmp", "clock", "1"],
        ),
    ];
    for (name, args) in cases {
        let _ = csp_run(&d, args);
        let mut buf = [0u8; 512];
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        let h = csp_core::Header::parse(&buf[..n], Version::V2).unwrap();
        let want = &golden[name];
        assert_eq!(
            hex(&buf[6..n]),
            want.after_header,
            "{name}: data and trailers"
        );
        assert_eq!(
            (h.dst.get(), h.dport.get(), h.flags.bits()),
            (1, want.dport, want.flags),
            "{name}: header"
        );
    }
}

/// No golden vector exists for route set: the libcsp 1.x layout
/// (`type 0 | code 2 | dest:u8 | via:u8 | iface[11]`) and CRC32 as every
/// CMP helper sets it, checked field by field.
#[test]
fn route_set_request_is_the_libcsp_1x_layout() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let port = peer.local_addr().unwrap().port();
    let d = Muxd::start(MuxdConfig::node(2).route(format!("1 udp 127.0.0.1:{port}")));
    let _ = csp_run(
        &d,
        &[
            "--timeout",
            "100",
            "cmp",
            "route",
            "1",
            "10",
            "CAN",
            "--via",
            "3",
        ],
    );
    let mut buf = [0u8; 512];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    let h = csp_core::Header::parse(&buf[..n], Version::V2).unwrap();
    assert_eq!((h.dport.get(), h.flags), (0, csp_core::Flags::CRC32));
    let data = &buf[6..n];
    assert_eq!(data.len(), 15 + 4, "message and CRC32");
    assert_eq!(&data[..4], &[0x00, 0x02, 10, 3]);
    assert_eq!(&data[4..15], b"CAN\0\0\0\0\0\0\0\0");
    assert_eq!(
        &data[15..],
        &csp_core::security::crc32c(&data[..15]).to_be_bytes()
    );
}

struct GoldenRequest {
    after_header: String,
    dport: u8,
    flags: u8,
}

/// The v2 (`version` 2) request vectors of services.json, by name.
fn golden_requests() -> std::collections::HashMap<String, GoldenRequest> {
    let dir = std::env::var_os("CSP_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"));
    let text = std::fs::read_to_string(dir.join("services.json")).unwrap_or_else(|e| {
        panic!(
            "golden vectors not found in {} ({e}); set CSP_VECTORS_DIR",
            dir.display()
        )
    });
    let v: Value = serde_json::from_str(&text).unwrap();
    v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["version"] == 2 && v["name"].as_str().unwrap().starts_with("req_"))
        .map(|v| {
            let o = &v["outputs"];
            (
                v["name"].as_str().unwrap().to_string(),
                GoldenRequest {
                    after_header: o["request_after_header"].as_str().unwrap().to_string(),
                    dport: o["request_dport"].as_u64().unwrap() as u8,
                    flags: o["request_flags"].as_u64().unwrap() as u8,
                },
            )
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

type RustNode = Node<300, 8, 8, 4, 2, 4, 200, 1, 4>;

/// csp-core's `Node` at `addr` on a UDP socket, answering its services
/// (HMAC-flagged ones with `key`) until dropped. Replies go to whoever
/// sent the last datagram (the daemon).
struct NodeOnUdp {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NodeOnUdp {
    fn start(addr: u16, key: Option<&str>) -> NodeOnUdp {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let mut cfg = NodeConfig::new(Addr::new(addr).unwrap());
        cfg.ident = Ident {
            hostname: "rust-node",
            model: "csp-core Node",
            revision: "test",
            date: "Dec  4 2026",
            time: "00:00:00",
        };
        let mut node = RustNode::new(cfg);
        let iface = node
            .add_iface(IfaceConfig::new("UDP", Version::V2, 300))
            .unwrap();
        node.routes_mut().set_default(iface, None).unwrap();
        node.set_service_hmac_key(key.map(|k| HmacKey::from_key_string(k.as_bytes())));
        node.set_memfree(123_456);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let now = || csp_core::time::Instant::from_millis(started.elapsed().as_millis() as u64);
            let mut buf = [0u8; 512];
            let mut out = [0u8; 512];
            let mut peer = None;
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    peer = Some(from);
                    let _ = node.handle_frame(now(), iface, &buf[..n]);
                }
                while let Some(t) = node.poll_transmit(now(), &mut out) {
                    if let Some(p) = peer {
                        let _ = sock.send_to(&out[..t.len], p);
                    }
                }
                while node.poll_event().is_some() {}
            }
        });
        NodeOnUdp {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NodeOnUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn services_of_a_rust_node_through_the_daemon_and_ident_all() {
    let node = NodeOnUdp::start(5, Some(KEY));
    let d = Muxd::start(MuxdConfig::node(1).route(format!("0/0 udp 127.0.0.1:{}", node.port)));
    for auth in [&[][..], &["--hmac-key", KEY][..]] as [&[&'static str]; 2] {
        let with = |args: &[&'static str]| -> Vec<&'static str> { [auth, args].concat() };
        let p = csp_json(&d, &with(&["ping", "-c", "1", "--json", "5"]));
        assert_eq!(
            (p["node"].as_u64(), p["received"].as_u64()),
            (Some(5), Some(1))
        );
        let i = csp_json(&d, &with(&["ident", "--json", "5"]));
        assert_eq!(i["hostname"], "rust-node");
        assert_eq!(i["model"], "csp-core Node");
        let m = csp_json(&d, &with(&["memfree", "--json", "5"]));
        assert_eq!(m["memfree_bytes"], 123_456);
        let u = csp_json(&d, &with(&["uptime", "--json", "5"]));
        assert!(u["uptime_s"].as_u64().unwrap() < 3600);
        let b = csp_json(&d, &with(&["buffree", "--json", "5"]));
        assert!(b["buffers_free"].as_u64().unwrap() > 0);
        let s = csp_json(&d, &with(&["cmp", "ifstat", "--json", "5", "UDP"]));
        assert_eq!(s["interface"], "UDP");
        // The node counts the request itself on arrival.
        assert!(s["rx"].as_u64().unwrap() >= 1, "{s}");
        assert!(s["tx"].as_u64().unwrap() >= 1, "{s}");
    }
    // The node has no clock and no interface "KISS": no reply.
    let (code, _, err) = csp_run(&d, &["--timeout", "300", "cmp", "ifstat", "5", "KISS"]);
    assert_eq!(code, 1);
    assert!(err.contains("no interface named"), "{err}");
    // A wrong key: the node drops it.
    let (code, _, _) = csp_run(
        &d,
        &[
            "--hmac-key",
            "wrong",
            "--timeout",
            "300",
            "ping",
            "-c",
            "1",
            "5",
        ],
    );
    assert_eq!(code, 1);

    // Broadcast ident: the daemon (node 1) and the node (5) both answer.
    let all = csp_json(&d, &["--timeout", "1000", "ident", "--all", "--json"]);
    let mut nodes: Vec<(u64, String)> = all["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_u64().unwrap(),
                n["hostname"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        vec![(1, "csp-muxd".to_string()), (5, "rust-node".to_string())]
    );
}

/// memfree reports what the daemon itself may still allocate: under an
/// address-space limit (`ulimit -v`) it is below that limit, not the
/// host's free memory.
#[test]
fn memfree_is_what_the_daemon_may_still_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("muxd.toml");
    std::fs::write(&cfg, "[node]\naddress = 1\n[udp]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let socket = dir.path().join("muxd.sock");
    let limit_kib: u64 = 1_000_000;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
        .arg(bins::muxd())
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "csp-muxd did not start");
        assert!(child.try_wait().unwrap().is_none(), "csp-muxd exited");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, out, err) = run(Command::new(bins::csp())
        .arg("--socket")
        .arg(&socket)
        .args(["memfree", "--json", "1"]));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let free = v["memfree_bytes"].as_u64().unwrap();
    assert!(free > 0 && free < limit_kib * 1024, "{v}");
}
