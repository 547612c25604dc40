//! `csp bench`: measure round-trip time, connectionless throughput and RDP
//! throughput against any node, through the daemon this tool talks to.
//! See `docs/cli.md` ("csp bench").
//!
//! The peers: `rtt` pings the node's ping service (every libcsp node and
//! csp-muxd answers on port 1); `rdp` sends into any RDP sink (`csp bench
//! serve --rdp PORT`, `csp listen --rdp --raw PORT > /dev/null`, or a
//! libcsp server that reads and discards); `stream` needs `csp bench serve
//! PORT`, which counts what arrives and answers a report request, so that
//! loss is known at the sender.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use host_lib::{Bind, Client, Conn, ConnOptions, Error, Listener, Socket};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::Global;

/// `csp bench` and its modes.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
csp bench rtt -c 1000 2                 # ping node 2's service 1000 times\n  \
csp bench serve 11 &                     # a stream sink on this node, port 11\n  \
csp bench stream -c 100000 1 11          # connectionless packets into it\n  \
csp bench serve --rdp 12 &               # an RDP sink\n  \
csp bench rdp --bytes 10000000 --window 32 1 12\n  \
csp bench --json rtt 1                   # one JSON object on stdout\n\n\
See docs/cli.md for what each figure means.")]
pub struct Bench {
    /// Print one JSON object with the results instead of the table (no progress bar).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Round-trip time of pings to a node's ping service (port 1): percentiles.
    Rtt {
        /// Node address.
        addr: u16,
        /// Pings, one after the other (no pause between them).
        #[arg(short = 'c', long, default_value_t = 1000)]
        count: u64,
        /// Payload bytes per ping.
        #[arg(short = 's', long, default_value_t = 200)]
        size: usize,
    },
    /// Connectionless packets as fast as the daemon takes them into a
    /// `csp bench serve` sink: packets/s, MB/s and loss.
    Stream {
        /// Node address of the sink.
        addr: u16,
        /// Port of the sink.
        port: u8,
        /// Packets to send.
        #[arg(short = 'c', long, default_value_t = 100_000)]
        count: u64,
        /// Payload bytes per packet (at least 9: the sequence header).
        #[arg(short = 's', long, default_value_t = 200)]
        size: usize,
    },
    /// A reliable stream over one RDP connection into a sink: MB/s,
    /// segments/s and retransmissions.
    Rdp {
        /// Node address of the sink.
        addr: u16,
        /// Port of the sink.
        port: u8,
        /// Bytes to send.
        #[arg(long, default_value_t = 1_000_000)]
        bytes: u64,
        /// RDP window (segments in flight, 1..=32) [default: from --rdpopt,
        /// else 4].
        #[arg(long)]
        window: Option<u16>,
        /// User bytes per segment (1..=1024).
        #[arg(long, default_value_t = host_lib::rdp::DEFAULT_SEGMENT)]
        segment: usize,
    },
    /// Be the peer of `stream` (or with --rdp of `rdp`) on PORT of the
    /// daemon's node, until interrupted or idle.
    Serve {
        /// Port to serve.
        port: u8,
        /// Accept RDP connections and discard their data instead.
        #[arg(long)]
        rdp: bool,
        /// Exit after this many milliseconds without traffic.
        #[arg(long, value_name = "MS")]
        idle: Option<u64>,
    },
}

/// Stream packets: tag, run id, sequence number, filler.
const TAG_DATA: u8 = b'D';
/// A report request (tag, run id); answered with [`TAG_REPORT`].
const TAG_QUERY: u8 = b'Q';
/// Tag, run id, packets (u64), bytes (u64), microseconds from the first
/// to the last packet of the run (u64); all big-endian.
const TAG_REPORT: u8 = b'S';
const DATA_HEADER: usize = 9;
const REPORT_LEN: usize = 29;
/// Report requests before `stream` gives up on the sink.
const QUERY_TRIES: u32 = 10;
/// Chunks handed to RDP at once by `rdp` (it cuts them into segments).
const RDP_CHUNK: usize = 16 * 1024;
/// Runs shorter than this get no progress bar.
const BAR_MIN: u64 = 2_000;

pub fn run(g: &Global, bench: Bench) -> Result<ExitCode, Error> {
    let timeout = Duration::from_millis(g.timeout);
    let (report, ok) = match bench.mode {
        Mode::Serve { port, rdp, idle } => {
            let mut client = super::connect_with(g, true)?;
            let idle = idle.map(Duration::from_millis);
            return if rdp {
                let opts = super::conn_options(g)?;
                let listener = client.listen(port, opts)?;
                eprintln!("bench: RDP sink on {}:{port}", client.node());
                serve_rdp(&mut client, &listener, idle)
            } else {
                let socket = client.bind_with(Bind::Port(port), super::options(g))?;
                eprintln!("bench: stream sink on {}:{port}", client.node());
                serve_stream(&mut client, &socket, idle)
            };
        }
        Mode::Rtt { addr, count, size } => {
            let mut client = super::connect(g)?;
            rtt(&mut client, addr, count, size, timeout, bench.json)?
        }
        Mode::Stream {
            addr,
            port,
            count,
            size,
        } => {
            if size < DATA_HEADER {
                eprintln!("csp: --size must be at least {DATA_HEADER} (the sequence header)");
                return Ok(ExitCode::from(2));
            }
            let mut client = super::connect(g)?;
            let socket = client.bind_with(Bind::Ephemeral, super::options(g))?;
            let target = Target { addr, port, socket };
            stream(&mut client, &target, count, size, timeout, bench.json)?
        }
        Mode::Rdp {
            addr,
            port,
            bytes,
            window,
            segment,
        } => {
            let mut opts = super::conn_options(g)?.with_segment(segment);
            if let Some(w) = window {
                opts = opts.with_window(w);
            }
            let mut client = super::connect(g)?;
            rdp(&mut client, addr, port, bytes, opts, timeout, bench.json)?
        }
    };
    let mut report = report;
    report["crc"] = json!(g.crc);
    report["hmac"] = json!(g.hmac_key.is_some());
    if bench.json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn progress(len: u64, json: bool, unit: &str) -> ProgressBar {
    if json || len < BAR_MIN {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// Percentile `p` (0..=100) of sorted `v`, nearest rank.
fn percentile(v: &[Duration], p: u32) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (v.len() * p as usize).div_ceil(100).max(1);
    v[rank.min(v.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn rtt(
    client: &mut Client,
    addr: u16,
    count: u64,
    size: usize,
    timeout: Duration,
    json: bool,
) -> Result<(Value, bool), Error> {
    let bar = progress(count, json, "pings");
    let mut rtts = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 24));
    let mut lost = 0u64;
    for _ in 0..count {
        match client.ping(addr, size, timeout) {
            Ok(rtt) => rtts.push(rtt),
            Err(Error::Timeout) => lost += 1,
            Err(e) => return Err(e),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    rtts.sort_unstable();
    let avg = if rtts.is_empty() {
        Duration::ZERO
    } else {
        rtts.iter().sum::<Duration>() / rtts.len() as u32
    };
    let report = json!({
        "mode": "rtt",
        "addr": addr,
        "size": size,
        "count": count,
        "received": rtts.len(),
        "lost": lost,
        "min_us": us(rtts.first().copied().unwrap_or_default()),
        "avg_us": us(avg),
        "p50_us": us(percentile(&rtts, 50)),
        "p99_us": us(percentile(&rtts, 99)),
        "max_us": us(rtts.last().copied().unwrap_or_default()),
    });
    Ok((report, !rtts.is_empty()))
}

struct Target {
    addr: u16,
    port: u8,
    socket: Socket,
}

fn stream(
    client: &mut Client,
    t: &Target,
    count: u64,
    size: usize,
    timeout: Duration,
    json: bool,
) -> Result<(Value, bool), Error> {
    // A run id the sink has not seen from this process's previous runs.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let run = std::process::id().rotate_left(16) ^ nanos;
    let mut packet = vec![0u8; size];
    packet[0] = TAG_DATA;
    packet[1..5].copy_from_slice(&run.to_be_bytes());
    let bar = progress(count, json, "packets");
    let started = Instant::now();
    for seq in 0..count {
        packet[5..9].copy_from_slice(&(seq as u32).to_be_bytes());
        // Blocks while the daemon's socket is full: the daemon sets the pace.
        client.sendto(&t.socket, t.addr, t.port, &packet)?;
        if seq % 256 == 0 {
            bar.set_position(seq);
        }
    }
    let send_time = started.elapsed();
    bar.finish_and_clear();
    let (received, bytes, span) = query(client, t, run, timeout)?;
    let rate = |n: u64, d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            n as f64 / d.as_secs_f64()
        }
    };
    let loss = if count == 0 {
        0.0
    } else {
        1.0 - received.min(count) as f64 / count as f64
    };
    let report = json!({
        "mode": "stream",
        "addr": t.addr,
        "port": t.port,
        "size": size,
        "count": count,
        "received": received,
        "loss": loss,
        "send_s": send_time.as_secs_f64(),
        "sent_pps": rate(count, send_time),
        "received_pps": rate(received.saturating_sub(1), span),
        "received_mbps": rate(bytes, span) / 1e6,
    });
    Ok((report, received > 0))
}

/// Ask the sink how much of `run` arrived. Connectionless: the request or
/// the report may be lost (or queued behind the run), so ask a few times.
fn query(
    client: &mut Client,
    t: &Target,
    run: u32,
    timeout: Duration,
) -> Result<(u64, u64, Duration), Error> {
    let mut q = [0u8; 5];
    q[0] = TAG_QUERY;
    q[1..5].copy_from_slice(&run.to_be_bytes());
    for _ in 0..QUERY_TRIES {
        client.sendto(&t.socket, t.addr, t.port, &q)?;
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let d = match client.recvfrom(&t.socket, Some(left)) {
                Ok(d) => d,
                Err(Error::Timeout) => break,
                Err(e) => return Err(e),
            };
            let r = &d.data;
            if r.len() == REPORT_LEN && r[0] == TAG_REPORT && r[1..5] == q[1..5] {
                let n = u64::from_be_bytes(r[5..13].try_into().unwrap_or_default());
                let b = u64::from_be_bytes(r[13..21].try_into().unwrap_or_default());
                let span = u64::from_be_bytes(r[21..29].try_into().unwrap_or_default());
                return Ok((n, b, Duration::from_micros(span)));
            }
        }
    }
    Err(Error::Timeout)
}

/// What the stream sink knows of the current run.
#[derive(Default)]
struct RunCount {
    run: Option<u32>,
    packets: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn serve_stream(
    client: &mut Client,
    socket: &Socket,
    idle: Option<Duration>,
) -> Result<ExitCode, Error> {
    let mut c = RunCount::default();
    let mut last_seen = Instant::now();
    loop {
        let d = match client.recvfrom(socket, Some(Duration::from_millis(250))) {
            Ok(d) => d,
            Err(Error::Timeout) => {
                if idle.is_some_and(|i| last_seen.elapsed() >= i) {
                    return Ok(ExitCode::SUCCESS);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        last_seen = now;
        let data = &d.data;
        // Anything that is not ours is ignored: the sink is total.
        let Some(run) = data
            .get(1..5)
            .map(|r| u32::from_be_bytes([r[0], r[1], r[2], r[3]]))
        else {
            continue;
        };
        match data[0] {
            TAG_DATA if data.len() >= DATA_HEADER => {
                if c.run != Some(run) {
                    c = RunCount {
                        run: Some(run),
                        first: Some(now),
                        ..RunCount::default()
                    };
                }
                c.packets += 1;
                c.bytes += data.len() as u64;
                c.last = Some(now);
            }
            TAG_QUERY => {
                let (n, b, span) = match (c.run == Some(run), c.first, c.last) {
                    (true, Some(f), Some(l)) => (c.packets, c.bytes, l - f),
                    _ => (0, 0, Duration::ZERO),
                };
                let mut r = [0u8; REPORT_LEN];
                r[0] = TAG_REPORT;
                r[1..5].copy_from_slice(&run.to_be_bytes());
                r[5..13].copy_from_slice(&n.to_be_bytes());
                r[13..21].copy_from_slice(&b.to_be_bytes());
                let span = u64::try_from(span.as_micros()).unwrap_or(u64::MAX);
                r[21..29].copy_from_slice(&span.to_be_bytes());
                if let Err(e) = client.sendto(socket, d.src(), d.sport(), &r) {
                    eprintln!("csp: report to {}:{}: {e}", d.src(), d.sport());
                }
            }
            _ => {}
        }
    }
}

fn rdp(
    client: &mut Client,
    addr: u16,
    port: u8,
    bytes: u64,
    opts: ConnOptions,
    timeout: Duration,
    json: bool,
) -> Result<(Value, bool), Error> {
    let connect_started = Instant::now();
    let conn = client.connect_to(addr, port, opts, Some(timeout.max(Duration::from_secs(5))))?;
    let connect_time = connect_started.elapsed();
    let chunk: Vec<u8> = (0..RDP_CHUNK).map(|i| i as u8).collect();
    let bar = progress(bytes, json, "bytes");
    // The whole transfer must finish within this; each wait is bounded.
    let stall = Some(Duration::from_secs(30).max(timeout));
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(RDP_CHUNK as u64) as usize;
        client.send(&conn, &chunk[..n], stall)?;
        sent += n as u64;
        bar.set_position(sent);
    }
    client.wait_acked(&conn, stall)?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let counters = client.conn_counters(&conn)?.unwrap_or_default();
    let close_started = Instant::now();
    let closed = client.close_conn(conn, stall);
    let close_time = close_started.elapsed();
    let segments = bytes.div_ceil(opts.segment as u64);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let report = json!({
        "mode": "rdp",
        "addr": addr,
        "port": port,
        "bytes": bytes,
        "window": opts.rdp.window,
        "segment": opts.segment,
        "segments": segments,
        "seconds": elapsed.as_secs_f64(),
        "mbps": bytes as f64 / secs / 1e6,
        "segments_per_s": segments as f64 / secs,
        "tx_segments": counters.tx_segments,
        "retransmissions": counters.tx_retransmissions,
        "connect_ms": connect_time.as_secs_f64() * 1e3,
        "close_ms": close_time.as_secs_f64() * 1e3,
        "closed": closed.is_ok(),
    });
    if let Err(e) = closed {
        eprintln!("csp: close: {e}");
    }
    Ok((report, true))
}

fn serve_rdp(
    client: &mut Client,
    listener: &Listener,
    idle: Option<Duration>,
) -> Result<ExitCode, Error> {
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_seen = Instant::now();
    loop {
        client.wait(Some(Duration::from_millis(250)))?;
        while let Some(conn) = client.try_accept(listener)? {
            conns.push(conn);
            last_seen = Instant::now();
        }
        let mut i = 0;
        while i < conns.len() {
            let conn = conns[i];
            let ended = loop {
                match client.try_recv(&conn, &mut buf) {
                    Ok(0) => break Some(None),
                    Ok(_) => last_seen = Instant::now(),
                    Err(Error::WouldBlock) => break None,
                    Err(e) => break Some(Some(e)),
                }
            };
            match ended {
                None => i += 1,
                Some(error) => {
                    conns.swap_remove(i);
                    // The close waits for nothing of ours: the sink sends no data.
                    let closed = client.close_conn(conn, Some(Duration::from_secs(5)));
                    if let Some(e) = error.or(closed.err()) {
                        eprintln!("csp: bench sink: {e}");
                    }
                }
            }
        }
        while client.poll_event().is_some() {}
        if conns.is_empty() && idle.is_some_and(|i| last_seen.elapsed() >= i) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// The summary table: one row per figure, for people.
fn print_table(report: &Value) {
    let Some(fields) = report.as_object() else {
        return;
    };
    println!("{:<16} {:>16}", "figure", "value");
    println!("{:-<16} {:->16}", "", "");
    for (k, v) in fields {
        let text = match v {
            Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{k:<16} {text:>16}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99), Duration::from_micros(99));
        assert_eq!(percentile(&v, 100), Duration::from_micros(100));
        assert_eq!(percentile(&v[..1], 99), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
