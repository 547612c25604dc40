//! The standard CSP services from the shell: ping, ps, uptime, memfree,
//! buffree, reboot, shutdown, ident (one node or all) and CMP (interface
//! statistics, route set, peek, poke, clock). Every query takes `--json`
//! for one JSON object on stdout whose field names are documented in
//! docs/cli.md and do not change.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use host_lib::service::{IfStats, RouteSet, Timestamp};
use host_lib::{Client, Error};
use serde_json::{json, Value};

use super::Global;

/// The service commands, flattened into `csp`'s own.
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Ping a node: one line per reply with its round-trip time, then a summary.
    #[command(
        after_help = "Examples:\n  csp ping 1\n  csp ping -c 3 -s 64 5\n  csp ping --crc --hmac-key secret 5\n  \
csp ping --json -c 2 1      # only the summary, as JSON"
    )]
    Ping {
        /// Node address.
        addr: u16,
        /// Pings to send.
        #[arg(short = 'c', long, default_value_t = 4)]
        count: u32,
        /// Payload bytes per ping.
        #[arg(short = 's', long, default_value_t = 10)]
        size: usize,
        /// Milliseconds between pings.
        #[arg(short = 'i', long, default_value_t = 1000)]
        interval: u64,
        /// Print only the summary, as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask a node how long it has been up.
    #[command(after_help = "Example:\n  csp uptime 1\n  csp uptime --json 1")]
    Uptime {
        /// Node address.
        addr: u16,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask a node who it is (CMP ident: hostname, model, revision, date),
    /// or with --all every node that answers a broadcast within --timeout.
    #[command(
        after_help = "Examples:\n  csp ident 1\n  csp ident --all --timeout 2000\n  csp ident --json 1"
    )]
    Ident {
        /// Node address.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        addr: Option<u16>,
        /// Ask the broadcast address and list every answer that arrives
        /// within --timeout (no answer at all is exit status 1).
        #[arg(long)]
        all: bool,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask a node how much memory it has free.
    #[command(after_help = "Example:\n  csp memfree 1")]
    Memfree {
        /// Node address.
        addr: u16,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask a node how many packet buffers it has free.
    #[command(after_help = "Example:\n  csp buffree 1")]
    Buffree {
        /// Node address.
        addr: u16,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask a node for its process list (port 2); csp-muxd lists its
    /// connected applications.
    #[command(after_help = "Example:\n  csp ps 1\n  csp ps --json 1")]
    Ps {
        /// Node address.
        addr: u16,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask a node to reboot (port 4; no answer comes back). Refused
    /// without --yes. csp-muxd acts only if its configuration allows it
    /// and, by default, only on a request with a valid HMAC (--hmac-key).
    #[command(after_help = "Example:\n  csp --hmac-key \"$KEY\" reboot --yes 5")]
    Reboot {
        /// Node address.
        addr: u16,
        /// Confirm: really ask the node to reboot.
        #[arg(long)]
        yes: bool,
    },
    /// Ask a node to shut down (port 4; no answer). Refused without --yes.
    #[command(after_help = "Example:\n  csp --hmac-key \"$KEY\" shutdown --yes 5")]
    Shutdown {
        /// Node address.
        addr: u16,
        /// Confirm: really ask the node to shut down.
        #[arg(long)]
        yes: bool,
    },
    /// CSP management protocol (port 0): interface statistics, routes,
    /// memory and the clock of a node.
    #[command(subcommand)]
    Cmp(Cmp),
}

/// `csp cmp ...`
#[derive(Subcommand, Debug)]
pub enum Cmp {
    /// Counters of one interface of a node, by name (libcsp's `KISS`,
    /// `ZMQHUB`, `CAN`...; csp-muxd's `udp` and its links' names). A node
    /// without that interface does not answer.
    #[command(after_help = "Examples:\n  csp cmp ifstat 1 udp\n  csp cmp ifstat --json 5 KISS")]
    Ifstat {
        /// Node address.
        addr: u16,
        /// Interface name (at most 10 bytes).
        iface: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Set a route on a node (libcsp 1.x route set: 8-bit addresses, a
    /// host route; with --netmask the 2.x form). The node echoes the route
    /// when it took it; csp-muxd refuses (its routes come from its config).
    #[command(
        after_help = "Examples:\n  csp cmp route 5 10 CAN          # node 5: reach 10 over CAN\n  \
csp cmp route 5 10 KISS --via 3\n  csp cmp route --netmask 8 5 256 ZMQHUB"
    )]
    Route {
        /// Node to configure.
        addr: u16,
        /// Destination the route is for.
        dest: u16,
        /// Interface name on that node.
        iface: String,
        /// Next hop (default: none, libcsp's 255 in the 1.x form).
        #[arg(long)]
        via: Option<u16>,
        /// Netmask bits: sends the 2.x form (CMP code 7).
        #[arg(long)]
        netmask: Option<u16>,
    },
    /// Read memory of a node (at most 200 bytes). csp-muxd always refuses.
    #[command(after_help = "Example:\n  csp cmp peek 5 0x20000000 16")]
    Peek {
        /// Node address.
        addr: u16,
        /// Memory address (decimal or 0x hex).
        #[arg(value_parser = parse_u32)]
        mem: u32,
        /// Bytes to read (1..=200).
        #[arg(value_parser = clap::value_parser!(u8).range(1..=200))]
        len: u8,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write memory of a node (at most 200 bytes, as hex). csp-muxd always
    /// refuses.
    #[command(after_help = "Example:\n  csp cmp poke 5 0x20000000 'de ad be ef'")]
    Poke {
        /// Node address.
        addr: u16,
        /// Memory address (decimal or 0x hex).
        #[arg(value_parser = parse_u32)]
        mem: u32,
        /// The bytes, as hex digits (spaces allowed).
        data: String,
    },
    /// Read a node's clock, or with --set set it first (the node answers
    /// with its clock after setting, and not at all if it refused).
    #[command(
        after_help = "Examples:\n  csp cmp clock 5\n  csp cmp clock --set now 5\n  \
csp cmp clock --set 1780000000.5 5\n  csp cmp clock --json 1"
    )]
    Clock {
        /// Node address.
        addr: u16,
        /// Set the clock: `now` (this host's clock) or SECONDS[.FRACTION]
        /// since 1970 (UTC).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        set: Option<Timestamp>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Write `text` to stdout; a closed stdout is the error `csp` ends quietly on.
fn emit(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: "writing stdout",
            source,
        })
}

/// One JSON value on its own line.
fn emit_json(v: &Value) -> Result<(), Error> {
    emit(&format!("{v}\n"))
}

/// `Timeout` with what a silent node usually means for this request.
fn no_reply(addr: u16, timeout: Duration, why: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Timeout => Error::Io {
            context: "waiting for the reply",
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no reply from node {addr} within {} ms ({why})",
                    timeout.as_millis()
                ),
            ),
        },
        e => e,
    }
}

/// Run one service command.
pub fn run(g: &Global, command: ServiceCommand) -> Result<ExitCode, Error> {
    let timeout = Duration::from_millis(g.timeout);
    let lost = "lost, or the node is down";
    match command {
        ServiceCommand::Ping {
            addr,
            count,
            size,
            interval,
            json,
        } => ping(
            &mut super::connect(g)?,
            PingRun {
                addr,
                count,
                size,
                interval: Duration::from_millis(interval),
                timeout,
                json,
            },
        ),
        ServiceCommand::Uptime { addr, json } => {
            let s = super::connect(g)?
                .uptime(addr, timeout)
                .map_err(no_reply(addr, timeout, lost))?;
            if json {
                emit_json(&json!({ "node": addr, "uptime_s": s }))?;
            } else {
                emit(&format!(
                    "node {addr} up {s} s ({} d {:02}:{:02}:{:02})\n",
                    s / 86_400,
                    s / 3600 % 24,
                    s / 60 % 60,
                    s % 60
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Ident {
            addr: Some(addr),
            json,
            ..
        } => {
            let id = super::connect(g)?
                .ident(addr, timeout)
                .map_err(no_reply(addr, timeout, lost))?;
            if json {
                emit_json(&ident_json(addr, &id))?;
            } else {
                emit(&format!(
                    "hostname: {}\nmodel:    {}\nrevision: {}\ndate:     {} {}\n",
                    id.hostname, id.model, id.revision, id.date, id.time
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Ident {
            addr: None, json, ..
        } => {
            let found = super::connect(g)?.ident_all(timeout)?;
            if json {
                let nodes: Vec<Value> = found.iter().map(|(a, id)| ident_json(*a, id)).collect();
                emit_json(&json!({ "nodes": nodes }))?;
            } else {
                for (a, id) in &found {
                    emit(&format!(
                        "node {a}: {} {} {} ({} {})\n",
                        id.hostname, id.model, id.revision, id.date, id.time
                    ))?;
                }
                if found.is_empty() {
                    emit(&format!("no answer within {} ms\n", timeout.as_millis()))?;
                }
            }
            Ok(if found.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ServiceCommand::Memfree { addr, json } => {
            let n = super::connect(g)?
                .memfree(addr, timeout)
                .map_err(no_reply(addr, timeout, lost))?;
            if json {
                emit_json(&json!({ "node": addr, "memfree_bytes": n }))?;
            } else {
                emit(&format!("node {addr}: {n} bytes free\n"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Buffree { addr, json } => {
            let n = super::connect(g)?
                .buffree(addr, timeout)
                .map_err(no_reply(addr, timeout, lost))?;
            if json {
                emit_json(&json!({ "node": addr, "buffers_free": n }))?;
            } else {
                emit(&format!("node {addr}: {n} buffers free\n"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Ps { addr, json } => {
            let text = super::connect(g)?.ps(addr, timeout).map_err(no_reply(
                addr,
                timeout,
                "lost, or the node keeps no process list",
            ))?;
            if json {
                let lines: Vec<&str> = text.lines().collect();
                emit_json(&json!({ "node": addr, "lines": lines }))?;
            } else {
                emit(&text)?;
                if !text.ends_with('\n') {
                    emit("\n")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Reboot { addr, yes: false } => unconfirmed("reboot", addr),
        ServiceCommand::Shutdown { addr, yes: false } => unconfirmed("shut down", addr),
        ServiceCommand::Reboot { addr, .. } => {
            super::connect(g)?.reboot(addr)?;
            emit(&format!(
                "reboot request sent to node {addr} (no reply is sent; the node's policy decides)\n"
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Shutdown { addr, .. } => {
            super::connect(g)?.shutdown(addr)?;
            emit(&format!(
                "shutdown request sent to node {addr} (no reply is sent; the node's policy decides)\n"
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Cmp(c) => cmp(g, c, timeout),
    }
}

/// A reboot or shutdown without `--yes`: nothing is sent; a usage error.
fn unconfirmed(what: &str, addr: u16) -> Result<ExitCode, Error> {
    let _ = writeln!(
        std::io::stderr(),
        "csp: not sent: asking node {addr} to {what} needs --yes"
    );
    Ok(ExitCode::from(2))
}

fn cmp(g: &Global, c: Cmp, timeout: Duration) -> Result<ExitCode, Error> {
    match c {
        Cmp::Ifstat { addr, iface, json } => {
            if iface.is_empty() || iface.len() > 10 {
                let _ = writeln!(
                    std::io::stderr(),
                    "csp: interface name {iface:?}: 1 to 10 bytes fit the CMP field"
                );
                return Ok(ExitCode::from(2));
            }
            let why = format!("lost, or node {addr} has no interface named {iface:?}: libcsp nodes and csp-muxd do not answer for an unknown interface");
            let s = super::connect(g)?
                .if_stats(addr, &iface, timeout)
                .map_err(no_reply(addr, timeout, &why))?;
            if json {
                emit_json(&ifstat_json(addr, &iface, &s))?;
            } else {
                emit(&format!(
                    "node {addr} interface {iface}:\n  tx {} ({} bytes), rx {} ({} bytes)\n  \
tx errors {}, rx errors {}, drops {}, auth errors {}, frame errors {}, irq {}\n",
                    s.tx,
                    s.txbytes,
                    s.rx,
                    s.rxbytes,
                    s.tx_error,
                    s.rx_error,
                    s.drop,
                    s.autherr,
                    s.frame,
                    s.irq
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmp::Route {
            addr,
            dest,
            iface,
            via,
            netmask,
        } => {
            let route = RouteSet {
                dest,
                // libcsp 1.x's "no via" is 255 (CSP_NODE_MAC).
                via: via.unwrap_or(if netmask.is_some() { 0xFFFF } else { 255 }),
                netmask,
                iface: &iface,
            };
            let why = "lost, or the node refused the route (unknown interface, table full, or \
                       routes not settable: csp-muxd always refuses)";
            super::connect(g)?
                .route_set(addr, route, timeout)
                .map_err(no_reply(addr, timeout, why))?;
            emit(&format!("node {addr}: route to {dest} on {iface} set\n"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmp::Peek {
            addr,
            mem,
            len,
            json,
        } => {
            let why = "lost, or the node refused the read (peek disabled or outside the \
                       allowed memory: csp-muxd always refuses)";
            let data = super::connect(g)?
                .peek(addr, mem, len, timeout)
                .map_err(no_reply(addr, timeout, why))?;
            let hex: Vec<String> = data.iter().map(|b| format!("{b:02x}")).collect();
            if json {
                emit_json(&json!({
                    "node": addr, "addr": mem, "len": data.len(), "data": hex.join("")
                }))?;
            } else {
                emit(&format!("{mem:#010x}: {}\n", hex.join(" ")))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmp::Poke { addr, mem, data } => {
            let Some(bytes) = parse_hex(&data).filter(|b| !b.is_empty() && b.len() <= 200) else {
                let _ = writeln!(
                    std::io::stderr(),
                    "csp: poke data must be 1 to 200 bytes of hex digits, not {data:?}"
                );
                return Ok(ExitCode::from(2));
            };
            let why = "lost, or the node refused the write (poke disabled or outside the \
                       allowed memory: csp-muxd always refuses)";
            super::connect(g)?
                .poke(addr, mem, &bytes, timeout)
                .map_err(no_reply(addr, timeout, why))?;
            emit(&format!(
                "node {addr}: {} bytes written at {mem:#010x}\n",
                bytes.len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmp::Clock { addr, set, json } => {
            let why = if set.is_some() {
                "lost, or the node refused to set its clock (csp-muxd: no services.clock_hook, \
                 or no valid HMAC)"
            } else {
                "lost, or the node has no clock"
            };
            let started = Instant::now();
            let t = super::connect(g)?
                .clock(addr, set, timeout)
                .map_err(no_reply(addr, timeout, why))?;
            // The node read its clock about half a round trip ago.
            let here = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
                - started.elapsed().as_secs_f64() / 2.0;
            let there = f64::from(t.tv_sec) + f64::from(t.tv_nsec) * 1e-9;
            let offset = there - here;
            if json {
                emit_json(&json!({
                    "node": addr,
                    "tv_sec": t.tv_sec,
                    "tv_nsec": t.tv_nsec,
                    "offset_s": offset,
                }))?;
            } else {
                emit(&format!(
                    "node {addr} clock: {}.{:09} s since 1970 UTC ({offset:+.3} s from this host)\n",
                    t.tv_sec, t.tv_nsec
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The fields of `csp ident --json` (one node, or each of `--all`).
fn ident_json(addr: u16, id: &host_lib::IdentInfo) -> Value {
    json!({
        "node": addr,
        "hostname": id.hostname,
        "model": id.model,
        "revision": id.revision,
        "date": id.date,
        "time": id.time,
    })
}

/// The fields of `csp cmp ifstat --json`: libcsp's counter names.
fn ifstat_json(addr: u16, iface: &str, s: &IfStats) -> Value {
    json!({
        "node": addr,
        "interface": iface,
        "tx": s.tx,
        "rx": s.rx,
        "tx_error": s.tx_error,
        "rx_error": s.rx_error,
        "drop": s.drop,
        "autherr": s.autherr,
        "frame": s.frame,
        "txbytes": s.txbytes,
        "rxbytes": s.rxbytes,
        "irq": s.irq,
    })
}

/// What one `csp ping` does.
struct PingRun {
    addr: u16,
    count: u32,
    size: usize,
    interval: Duration,
    timeout: Duration,
    json: bool,
}

fn ping(client: &mut Client, p: PingRun) -> Result<ExitCode, Error> {
    let PingRun {
        addr, count, size, ..
    } = p;
    let say = |text: String| if p.json { Ok(()) } else { emit(&text) };
    say(format!("PING node {addr}: {size} data bytes\n"))?;
    let mut rtts = Vec::new();
    for seq in 1..=count {
        let started = Instant::now();
        match client.ping(addr, size, p.timeout) {
            Ok(rtt) => {
                say(format!(
                    "{size} bytes from {addr}: seq={seq} time={:.3} ms\n",
                    rtt.as_secs_f64() * 1e3
                ))?;
                rtts.push(rtt);
            }
            Err(Error::Timeout) => say(format!("no reply from {addr}: seq={seq}\n"))?,
            Err(e) => return Err(e),
        }
        if seq < count {
            std::thread::sleep(p.interval.saturating_sub(started.elapsed()));
        }
    }
    let received = rtts.len() as u32;
    let loss = if count == 0 {
        0.0
    } else {
        100.0 * f64::from(count - received) / f64::from(count)
    };
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let (min, max) = (rtts.iter().min(), rtts.iter().max());
    let avg = (received > 0).then(|| rtts.iter().sum::<Duration>() / received);
    if p.json {
        emit_json(&json!({
            "node": addr,
            "size": size,
            "sent": count,
            "received": received,
            "loss_percent": loss,
            "rtt_min_ms": min.map(ms),
            "rtt_avg_ms": avg.as_ref().map(ms),
            "rtt_max_ms": max.map(ms),
        }))?;
    } else {
        emit(&format!(
            "--- node {addr} ping statistics ---\n{count} sent, {received} received, {loss:.0}% loss\n"
        ))?;
        if let (Some(min), Some(avg), Some(max)) = (min, avg, max) {
            emit(&format!(
                "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms\n",
                ms(min),
                ms(&avg),
                ms(max)
            ))?;
        }
    }
    Ok(if received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A u32 in decimal or with a 0x prefix in hex.
fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a 32-bit address: {e}"))
}

/// `now` or SECONDS[.FRACTION] since 1970, as a CMP timestamp; 0 is refused
/// (a zero `tv_sec` only reads the clock).
fn parse_time(s: &str) -> Result<Timestamp, String> {
    if s == "now" {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        let tv_sec = u32::try_from(d.as_secs()).map_err(|_| "this host's clock is past 2106")?;
        return Ok(Timestamp {
            tv_sec,
            tv_nsec: d.subsec_nanos(),
        });
    }
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: u32 = sec
        .parse()
        .map_err(|_| format!("{s:?}: expected `now` or SECONDS[.FRACTION] since 1970"))?;
    if tv_sec == 0 {
        return Err("0 s only reads the clock; give a time after 1970".into());
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?}: at most 9 digits after the point"));
    }
    let tv_nsec = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| "bad fraction")?
    };
    Ok(Timestamp { tv_sec, tv_nsec })
}

/// Hex digits (whitespace allowed) as bytes; `None` if odd or not hex.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("1780000000.5"),
            Ok(Timestamp {
                tv_sec: 1_780_000_000,
                tv_nsec: 500_000_000
            })
        );
        assert_eq!(parse_time("12").map(|t| t.tv_nsec), Ok(0));
        assert!(parse_time("0").is_err());
        assert!(parse_time("1.0000000001").is_err());
        assert!(parse_time("x").is_err());
        assert!(parse_time("now").is_ok_and(|t| t.tv_sec > 1_700_000_000));
    }

    #[test]
    fn addresses_and_hex_parse() {
        assert_eq!(parse_u32("0x20000000"), Ok(0x2000_0000));
        assert_eq!(parse_u32("16"), Ok(16));
        assert!(parse_u32("0x1_0000_0000").is_err());
        assert_eq!(parse_hex("de ad BE ef"), Some(vec![0xDE, 0xAD, 0xBE, 0xEF]));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex("zz"), None);
    }
}
