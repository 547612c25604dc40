//! `csp bench` smoke: every mode run as a process against a real daemon and
//! a real sink process, short counts, the `--json` report parsed and
//! checked for consistency. Nothing here asserts on time.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;
use test_support::*;

/// `csp bench --json ARGS` against `d`, with `global` options first.
fn bench_json(d: &Muxd, global: &[&str], args: &[&str]) -> Value {
    let (code, out, err) = run(d.csp().args(global).args(["bench", "--json"]).args(args));
    assert_eq!(code, 0, "csp bench {args:?}: {out}{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// A `csp bench serve` process, stopped on drop; returned once its port is
/// registered (it says so on stderr).
struct Sink(Child);

impl Sink {
    fn start(d: &Muxd, global: &[&str], args: &[&str]) -> Sink {
        let mut child = d
            .csp()
            .args(global)
            .args(["bench", "serve", "--idle", "20000"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("sink on"), "sink did not start: {line:?}");
        Sink(child)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn rtt_reports_ordered_percentiles_of_every_ping() {
    let d = Muxd::start(MuxdConfig::node(1));
    let v = bench_json(&d, &[], &["rtt", "-c", "20", "-s", "64", "1"]);
    assert_eq!(v["mode"], "rtt");
    assert_eq!(v["received"], 20);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["size"], 64);
    let (min, p50, p99, max) = (
        f(&v, "min_us"),
        f(&v, "p50_us"),
        f(&v, "p99_us"),
        f(&v, "max_us"),
    );
    assert!(0.0 < min && min <= p50 && p50 <= p99 && p99 <= max, "{v}");
}

#[test]
fn rtt_to_a_node_that_does_not_answer_fails() {
    let d = Muxd::start(MuxdConfig::node(1));
    // Node 9 has no route: every ping goes unanswered.
    let (code, out, err) =
        run(d
            .csp()
            .args(["--timeout", "50", "bench", "--json", "rtt", "-c", "2", "9"]));
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["received"], 0);
    assert_eq!(v["lost"], 2);
}

#[test]
fn stream_counts_what_the_sink_received() {
    let d = Muxd::start(MuxdConfig::node(1));
    let _sink = Sink::start(&d, &["--crc"], &["11"]);
    let v = bench_json(
        &d,
        &["--crc"],
        &["stream", "-c", "300", "-s", "100", "1", "11"],
    );
    assert_eq!(v["mode"], "stream");
    assert_eq!(v["count"], 300);
    assert_eq!(v["crc"], true);
    let received = v["received"].as_u64().unwrap();
    // The daemon may drop under overload (counted as loss), never invent.
    assert!(0 < received && received <= 300, "{v}");
    let loss = f(&v, "loss");
    assert!((loss - (1.0 - received as f64 / 300.0)).abs() < 1e-9, "{v}");
    assert!(f(&v, "sent_pps") > 0.0, "{v}");
    // A second run is counted on its own, not added to the first.
    let w = bench_json(&d, &["--crc"], &["stream", "-c", "50", "1", "11"]);
    assert!(w["received"].as_u64().unwrap() <= 50, "{w}");
}

#[test]
fn stream_without_a_sink_fails_after_asking() {
    let d = Muxd::start(MuxdConfig::node(1));
    let (code, out, err) =
        run(d
            .csp()
            .args(["--timeout", "20", "bench", "stream", "-c", "10", "1", "13"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
}

#[test]
fn rdp_into_a_sink_with_crc_and_hmac_is_acknowledged_and_closed() {
    let d = Muxd::start(MuxdConfig::node(1));
    let secure = ["--crc", "--hmac-key", "bench"];
    let _sink = Sink::start(&d, &secure, &["--rdp", "12"]);
    let v = bench_json(
        &d,
        &secure,
        &[
            "rdp",
            "--bytes",
            "20000",
            "--window",
            "8",
            "--segment",
            "500",
            "1",
            "12",
        ],
    );
    assert_eq!(v["mode"], "rdp");
    assert_eq!(v["bytes"], 20000);
    assert_eq!(v["segments"], 40);
    assert_eq!(v["window"], 8);
    assert_eq!(
        (v["crc"].clone(), v["hmac"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(v["closed"], true, "{v}");
    // Every segment went out at least once.
    assert!(v["tx_segments"].as_u64().unwrap() >= 40, "{v}");
    assert!(f(&v, "segments_per_s") > 0.0 && f(&v, "mbps") > 0.0, "{v}");
    // The sink takes connection after connection (default options too).
    let plain = Sink::start(&d, &[], &["--rdp", "14"]);
    for _ in 0..2 {
        let w = bench_json(&d, &[], &["rdp", "--bytes", "1000", "1", "14"]);
        assert_eq!(w["segments"], 5);
        assert_eq!(w["closed"], true, "{w}");
    }
    drop(plain);
}
