//! The benchmark suite of issue 13: one run on loopback that measures plain
//! Rust std UDP baselines and the same paths through csp-muxd, and prints
//! every figure as a ratio to its baseline from the same run (the machines
//! are shared and noisy: only ratios compare between runs).
//!
//! Run it through `scripts/bench.sh` (builds the release binaries first):
//!
//! ```sh
//! scripts/bench.sh                    # prints the table
//! scripts/bench.sh --write            # and puts it into docs/PERFORMANCE.md
//! scripts/bench.sh --quick            # counts / 20: does it all work?
//! ```
//!
//! The daemons and `csp` are the release binaries next to this example's
//! directory (target/release). Every wait is bounded.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csp_core::{Addr, Header, Port, Version};
use serde_json::Value;

/// Payload bytes of every packet and segment unless a row says otherwise.
const SIZE: usize = 200;
/// Round trips of each RTT measurement.
const PINGS: u64 = 5_000;
/// Packets blasted through each relay.
const RELAY_PACKETS: u64 = 200_000;
/// Bytes of each RDP transfer.
const RDP_BYTES: u64 = 4_000_000;
/// Applications connected for the RSS figure.
const APPS: usize = 1_000;
/// Runs of each throughput figure; the median is reported (one noisy run
/// on a shared machine would otherwise decide a ratio).
const RUNS: usize = 3;
/// A receiver that hears nothing for this long has seen the end of a run.
const QUIET: Duration = Duration::from_millis(300);
/// Marks of the generated section of docs/PERFORMANCE.md.
const BEGIN: &str = "<!-- bench-suite:begin -->";
const END: &str = "<!-- bench-suite:end -->";

/// `--quick`: every count divided by 20, to check the suite works (its
/// figures then mean little).
static QUICK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn n(count: u64) -> u64 {
    if *QUICK.get().unwrap_or(&false) {
        (count / 20).max(1)
    } else {
        count
    }
}

fn main() {
    let write = std::env::args().any(|a| a == "--write");
    let _ = QUICK.set(std::env::args().any(|a| a == "--quick"));
    let bins = bin_dir();
    let mut rows: Vec<Row> = Vec::new();

    // Baselines: plain std sockets, one thread per end.
    let raw_rtt = raw_ping_pong(n(PINGS));
    eprintln!("raw UDP ping-pong: p50 {:.1} us", raw_rtt.p50_us);
    let raw_relay = median(|| relay_rate(spawn_raw_relay, n(RELAY_PACKETS)));
    eprintln!("raw UDP relay: {raw_relay:.0} pkt/s");
    rows.push(Row::base(
        "raw UDP ping-pong RTT p50 (std)",
        raw_rtt.p50_us,
        "us",
    ));
    rows.push(Row::base(
        "raw UDP relay (std recv/send)",
        raw_relay,
        "pkt/s",
    ));

    // csp-muxd forwarding UDP -> UDP: the same sender and receiver as the
    // raw relay, the daemon in the middle routing node 5 to the receiver.
    let fwd = median(|| {
        relay_rate(
            |dst| {
                let port = free_udp_port();
                let d = Daemon::start(&bins, 1, port, &format!("routes = [\"5 udp {dst}\"]"), "");
                (d, format!("127.0.0.1:{port}"))
            },
            n(RELAY_PACKETS),
        )
    });
    eprintln!("csp-muxd forwarding: {fwd:.0} pkt/s");
    rows.push(Row::vs(
        "csp-muxd forwarding UDP -> UDP",
        fwd,
        "pkt/s",
        raw_relay,
        "target >= 1.2x",
    ));

    // Two daemons linked over UDP: node 1 (the applications' side) and 2.
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let a = Daemon::start(
        &bins,
        1,
        pa,
        &format!("routes = [\"2 udp 127.0.0.1:{pb}\"]"),
        "",
    );
    let b = Daemon::start(
        &bins,
        2,
        pb,
        &format!("routes = [\"1 udp 127.0.0.1:{pa}\"]"),
        "",
    );
    let rtt = a.bench(
        &[
            "rtt",
            "-c",
            &n(PINGS).to_string(),
            "-s",
            &SIZE.to_string(),
            "2",
        ],
        &[],
    );
    let (p50, p99) = (num(&rtt, "p50_us"), num(&rtt, "p99_us"));
    rows.push(Row::vs_lower(
        "echo RTT p50: app -> muxd -> UDP -> muxd (ping service)",
        p50,
        "us",
        raw_rtt.p50_us,
    ));
    rows.push(Row::vs_lower(
        "echo RTT p99 (same run)",
        p99,
        "us",
        raw_rtt.p99_us,
    ));

    let secure = ["--crc", "--hmac-key", "bench"];
    b.sink(&[], 12);
    b.sink(&secure, 13);
    let one = |window: u16, segment: usize, opts: &[&str], port: u8| {
        let (bytes, window, segment) = (
            n(RDP_BYTES).to_string(),
            window.to_string(),
            segment.to_string(),
        );
        let args = [
            "rdp",
            "--bytes",
            &bytes,
            "--window",
            &window,
            "--segment",
            &segment,
            "2",
            &port.to_string(),
        ];
        a.bench(&args, opts)
    };
    let rdp = |window: u16, segment: usize, opts: &[&str], port: u8| {
        median_by(
            |v: &Value| num(v, "segments_per_s"),
            || one(window, segment, opts, port),
        )
    };
    // With and without CRC+HMAC run in turns, so that a slow spell of the
    // machine hits both alike.
    let paired = |window: u16| {
        let (mut plain, mut secured) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            plain.push(num(&one(window, SIZE, &[], 12), "segments_per_s"));
            secured.push(num(&one(window, SIZE, &secure, 13), "segments_per_s"));
        }
        let mut it = [plain, secured].into_iter().map(|v| {
            let mut v = v.into_iter();
            median(|| v.next().unwrap_or(0.0))
        });
        (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0))
    };
    let w4 = rdp(4, SIZE, &[], 12);
    let mut best = (4u16, num(&w4, "segments_per_s"));
    for w in [8u16, 16, 32] {
        let r = rdp(w, SIZE, &[], 12);
        if num(&r, "segments_per_s") > best.1 {
            best = (w, num(&r, "segments_per_s"));
        }
    }
    let seg_rate = |v: &Value| num(v, "segments_per_s");
    rows.push(Row::vs(
        "RDP via two daemons, window 4, 200 B (seg/s)",
        seg_rate(&w4),
        "seg/s",
        raw_relay,
        &format!("target >= 45k; {} retransmissions", w4["retransmissions"]),
    ));
    rows.push(Row::vs(
        &format!("RDP best window ({}), 200 B (seg/s)", best.0),
        best.1,
        "seg/s",
        raw_relay,
        "target >= 150k at window 32",
    ));
    let big = rdp(32, 1024, &[], 12);
    rows.push(Row::plain(
        "RDP window 32, 1024 B segments",
        num(&big, "mbps"),
        "MB/s",
        "target >= 30 MB/s",
    ));
    for window in [4, best.0] {
        let (plain, secured) = paired(window);
        rows.push(Row::cost(
            &format!("RDP window {window} with CRC+HMAC"),
            secured,
            plain,
        ));
    }
    // The exchange a user feels first (`echo hi | csp rdp 2 12`): connect,
    // one 200-byte segment acknowledged, closed.
    let tiny = median(|| {
        let v = a.bench(&["rdp", "--bytes", &SIZE.to_string(), "2", "12"], &[]);
        num(&v, "connect_ms") + 1e3 * num(&v, "seconds") + num(&v, "close_ms")
    });
    rows.push(Row::plain(
        "tiny RDP exchange: connect, 200 B acknowledged, close",
        tiny,
        "ms",
        "target < 2 ms",
    ));
    drop((a, b));

    // Resident memory of a daemon with APPS applications connected.
    let port = free_udp_port();
    let d = Daemon::start(
        &bins,
        1,
        port,
        "",
        &format!("[ipc]\nmax_clients = {}", APPS + 16),
    );
    let before = d.rss_kib();
    let mut apps = Vec::with_capacity(APPS);
    for _ in 0..APPS {
        apps.push(host_lib::Client::connect(&d.socket).expect("connecting an application"));
    }
    // Every application is registered once a control request of the last
    // one round-trips (routes: the shortest reply; status with 1000
    // applications is many pages).
    apps[APPS - 1]
        .control(host_lib::Control::Routes)
        .expect("a control request of the last application");
    let after = d.rss_kib();
    drop(apps);
    rows.push(Row::plain(
        &format!("daemon RSS, {APPS} applications connected"),
        after as f64 / 1024.0,
        "MiB",
        &format!(
            "{:.0} KiB idle; {:.1} KiB per application",
            before,
            (after.saturating_sub(before)) as f64 / APPS as f64
        ),
    ));

    let table = render(&rows);
    println!("{table}");
    if write {
        write_doc(&table);
    }
}

/// One line of the table.
struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    ratio: String,
    note: String,
}

impl Row {
    fn base(what: &str, value: f64, unit: &'static str) -> Row {
        Row::plain(what, value, unit, "baseline").with_ratio("1.00")
    }
    fn plain(what: &str, value: f64, unit: &'static str, note: &str) -> Row {
        Row {
            what: what.into(),
            value,
            unit,
            ratio: String::new(),
            note: note.into(),
        }
    }
    fn with_ratio(mut self, r: &str) -> Row {
        self.ratio = r.into();
        self
    }
    /// Higher is better: value / baseline.
    fn vs(what: &str, value: f64, unit: &'static str, base: f64, note: &str) -> Row {
        Row::plain(what, value, unit, note).with_ratio(&format!("{:.2}x", value / base))
    }
    /// Lower is better (times): value / baseline too, said so.
    fn vs_lower(what: &str, value: f64, unit: &'static str, base: f64) -> Row {
        Row::plain(what, value, unit, "x the raw round trip (lower is better)")
            .with_ratio(&format!("{:.2}x", value / base))
    }
    /// The cost of an option: 1 - with / without.
    fn cost(what: &str, with: f64, without: f64) -> Row {
        Row::plain(
            what,
            with,
            "seg/s",
            "cost against the same window without; target < 10%",
        )
        .with_ratio(&format!("{:+.1}%", 100.0 * (1.0 - with / without)))
    }
}

fn render(rows: &[Row]) -> String {
    let mut s = String::from("| figure | value | ratio | note |\n|---|---|---|---|\n");
    for r in rows {
        let v = if r.value >= 1000.0 {
            format!("{:.0} {}", r.value, r.unit)
        } else {
            format!("{:.1} {}", r.value, r.unit)
        };
        s += &format!("| {} | {v} | {} | {} |\n", r.what, r.ratio, r.note);
    }
    s
}

fn write_doc(table: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PERFORMANCE.md");
    let doc = std::fs::read_to_string(&path).expect("reading docs/PERFORMANCE.md");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let section = format!(
        "{BEGIN}\nCommand: `scripts/bench.sh --write` (release builds, loopback, {SIZE}-byte \
         payloads, v2 headers). Machine: {nproc} CPUs, {cpu}; {date}. Each ratio is to the \
         baseline measured in the same run; throughput figures are the median of {RUNS} runs.\n\n{table}{END}"
    );
    let new = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &doc[..b], &doc[e + END.len()..]),
        _ => format!("{doc}\n## The benchmark suite (scripts/bench.sh)\n\n{section}\n"),
    };
    std::fs::write(&path, new).expect("writing docs/PERFORMANCE.md");
    eprintln!("wrote {}", path.display());
}

/// target/release, where this example's directory is target/release/examples.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    for bin in ["csp", "csp-muxd"] {
        assert!(
            dir.join(bin).exists(),
            "{} missing: run through scripts/bench.sh",
            dir.join(bin).display()
        );
    }
    dir.to_path_buf()
}

/// The median of [`RUNS`] runs of `f`.
fn median(mut f: impl FnMut() -> f64) -> f64 {
    median_by(|v: &f64| *v, &mut f)
}

/// The run of [`RUNS`] whose `key` is the median.
fn median_by<T>(key: impl Fn(&T) -> f64, mut f: impl FnMut() -> T) -> T {
    let mut runs: Vec<T> = (0..RUNS).map(|_| f()).collect();
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.swap_remove(RUNS / 2)
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("binding a UDP port");
    s.local_addr().expect("local address").port()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

struct Rtt {
    p50_us: f64,
    p99_us: f64,
}

/// Round trips of SIZE bytes between two std UDP sockets, an echo thread.
fn raw_ping_pong(count: u64) -> Rtt {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    echo.set_read_timeout(Some(QUIET)).unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(echo_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let msg = [0x5a; SIZE];
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let t = Instant::now();
        c.send(&msg).unwrap();
        if c.recv(&mut buf).is_ok() {
            rtts.push(t.elapsed());
        }
    }
    server.join().unwrap();
    rtts.sort_unstable();
    let pick = |p: usize| rtts[(rtts.len() * p / 100).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    Rtt {
        p50_us: pick(50),
        p99_us: pick(99),
    }
}

/// A relay thread: what arrives on its socket goes to `dst`, packet by
/// packet with recv/send, until it is quiet.
fn spawn_raw_relay(dst: String) -> (std::thread::JoinHandle<()>, String) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap().to_string();
    s.set_read_timeout(Some(QUIET * 3)).unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok(n) = s.recv(&mut buf) {
            let _ = s.send_to(&buf[..n], &dst);
        }
    });
    (h, addr)
}

/// Packets per second a relay delivers: a sender thread blasts `count`
/// CSP packets (v2 header to node 5, SIZE bytes of data) at the relay, a
/// receiver counts what arrives from the first to the last packet. The
/// relay is what `start` returns (kept alive until the end) and its address.
fn relay_rate<R>(start: impl FnOnce(String) -> (R, String), count: u64) -> f64 {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(QUIET)).unwrap();
    let (relay, relay_addr) = start(rx.local_addr().unwrap().to_string());
    let header = Header {
        src: Addr::new(9).unwrap(),
        dst: Addr::new(5).unwrap(),
        dport: Port::new(10).unwrap(),
        sport: Port::new(20).unwrap(),
        ..Header::default()
    };
    let mut packet = vec![0x5a; 6 + SIZE];
    header.emit(&mut packet, Version::V2).unwrap();
    let sender = std::thread::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(&relay_addr).unwrap();
        for _ in 0..count {
            let _ = tx.send(&packet);
        }
    });
    let mut buf = [0u8; 2048];
    let (mut n, mut first, mut last) = (0u64, None, Instant::now());
    while rx.recv(&mut buf).is_ok() {
        last = Instant::now();
        first.get_or_insert(last);
        n += 1;
    }
    sender.join().unwrap();
    drop(relay);
    match first {
        Some(f) if n > 1 => (n - 1) as f64 / (last - f).as_secs_f64(),
        _ => 0.0,
    }
}

/// A csp-muxd process on a temp socket, killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    csp: PathBuf,
    sinks: std::cell::RefCell<Vec<Child>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bins: &Path, node: u16, udp_port: u16, top: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("muxd.sock");
        let cfg = dir.path().join("muxd.toml");
        let text = format!(
            "{top}\n[node]\naddress = {node}\n[udp]\nbind = \"127.0.0.1:{udp_port}\"\n{extra}\n"
        );
        std::fs::write(&cfg, text).unwrap();
        let child = Command::new(bins.join("csp-muxd"))
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting csp-muxd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "csp-muxd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon {
            child,
            socket,
            csp: bins.join("csp"),
            sinks: Default::default(),
            _dir: dir,
        }
    }

    fn csp(&self, global: &[&str]) -> Command {
        let mut c = Command::new(&self.csp);
        c.arg("--socket").arg(&self.socket).args(global);
        c
    }

    /// `csp bench --json ARGS` through this daemon.
    fn bench(&self, args: &[&str], global: &[&str]) -> Value {
        let out = self
            .csp(global)
            .args(["bench", "--json"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running csp bench");
        assert!(
            out.status.success(),
            "csp bench {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("csp bench --json output");
        eprintln!("{v}");
        v
    }

    /// An RDP sink on `port` of this daemon's node, alive as long as it is.
    fn sink(&self, global: &[&str], port: u8) {
        let mut child = self
            .csp(global)
            .args([
                "bench",
                "serve",
                "--rdp",
                "--idle",
                "120000",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the sink");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("sink on"), "sink: {line}");
        self.sinks.borrow_mut().push(child);
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for s in self.sinks.get_mut().iter_mut() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
