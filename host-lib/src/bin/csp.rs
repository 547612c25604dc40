//! `csp`: talk CSP from a shell through csp-muxd. See `docs/cli.md`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use host_lib::{Bind, Client, ClientConfig, Control, Error, Event, Options, Socket};

/// Talk CSP through csp-muxd: ping and query nodes, send and listen for
/// packets, show the daemon's state. The protocol work (CRC, HMAC, SFP) is
/// done in this process; the daemon routes.
#[derive(Parser, Debug)]
#[command(
    name = "csp",
    version,
    after_help = "Examples:\n  csp ping 1                     # the daemon's own node (csp-muxd default address)\n  \
csp ping -c 10 -s 100 --crc 5  # 10 pings of 100 bytes to node 5 with CRC32\n  \
csp ident 5\n  csp send 5 10 hello\n  csp listen 10\n  csp status\n\n\
Exit status: 0 success, 1 failure (no reply, daemon not running, ...), 2 usage error."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Global options")]
struct Global {
    /// csp-muxd's socket [default: $XDG_RUNTIME_DIR/csp-muxd.sock, else /tmp/csp-muxd-$UID.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Connect to csp-muxd's loopback TCP listener (its ipc.tcp_listen)
    /// instead of its socket, e.g. from a container.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        requires = "tcp_token",
        conflicts_with = "socket"
    )]
    tcp: Option<SocketAddr>,
    /// The daemon's ipc.tcp_token, needed with --tcp.
    #[arg(long, global = true, value_name = "TOKEN")]
    tcp_token: Option<String>,
    /// Add a CRC32 trailer to what is sent and require one on what is received.
    #[arg(long, global = true)]
    crc: bool,
    /// Add an HMAC-SHA1 trailer keyed with KEY (libcsp's key derivation) and
    /// require a valid one on what is received.
    #[arg(long, global = true, value_name = "KEY")]
    hmac_key: Option<String>,
    /// Encrypt with XTEA keyed with KEY (libcsp 1.x only; needs --v1).
    #[arg(long, global = true, value_name = "KEY", requires = "v1")]
    xtea_key: Option<String>,
    /// The peer speaks libcsp 1.x. The IPC socket always carries v2 headers
    /// (the daemon re-emits the header for each link), so this only allows
    /// --xtea-key, which exists only in 1.x.
    #[arg(long, global = true, conflicts_with = "v2")]
    v1: bool,
    /// The peer speaks libcsp 2.x (the default; selects nothing on the IPC socket).
    #[arg(long, global = true)]
    v2: bool,
    /// How long to wait for a reply, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 1000)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ping a node: one line per reply with its round-trip time, then a summary.
    #[command(
        after_help = "Examples:\n  csp ping 1\n  csp ping -c 3 -s 64 5\n  csp ping --crc --hmac-key secret 5"
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
    },
    /// Ask a node how long it has been up.
    #[command(after_help = "Example:\n  csp uptime 1")]
    Uptime {
        /// Node address.
        addr: u16,
    },
    /// Ask a node who it is (CMP ident: hostname, model, revision, date).
    #[command(after_help = "Example:\n  csp ident 1")]
    Ident {
        /// Node address.
        addr: u16,
    },
    /// Ask a node how much memory it has free.
    #[command(after_help = "Example:\n  csp memfree 1")]
    Memfree {
        /// Node address.
        addr: u16,
    },
    /// Ask a node how many packet buffers it has free.
    #[command(after_help = "Example:\n  csp buffree 1")]
    Buffree {
        /// Node address.
        addr: u16,
    },
    /// Send one packet (connectionless) from an ephemeral port.
    #[command(after_help = "Examples:\n  csp send 5 10 hello\n  \
echo -n hello | csp send 5 10 -\n  csp send --hex 5 10 'de ad be ef'\n  \
csp send --sfp 5 10 - < image.bin   # larger than one packet: SFP fragments\n  \
csp send --reply 5 10 request       # and print one reply")]
    Send {
        /// Node address.
        addr: u16,
        /// Destination port (0..=63).
        port: u8,
        /// The data; `-` or nothing reads it from stdin.
        data: Option<String>,
        /// DATA is hex digits (spaces allowed).
        #[arg(long)]
        hex: bool,
        /// Fragment with SFP when the data exceeds one packet.
        #[arg(long)]
        sfp: bool,
        /// Wait for one reply and print it (as `listen` does).
        #[arg(long)]
        reply: bool,
    },
    /// Bind a port and print every packet that arrives.
    #[command(
        after_help = "Examples:\n  csp listen 10                 # one line per packet, data in hex\n  \
csp listen --raw -c 1 10 > out.bin\n  csp listen any                # every port nobody else bound\n  \
csp listen --echo 10          # send each packet back to its sender"
    )]
    Listen {
        /// Port to bind (0..=63, within the daemon's bindable range) or `any`.
        port: String,
        /// Write the data bytes only, unformatted, to stdout.
        #[arg(long, conflicts_with = "hex")]
        raw: bool,
        /// Data as hex (the default).
        #[arg(long)]
        hex: bool,
        /// Exit after this many packets.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Exit (status 1) if nothing arrives for this many milliseconds.
        #[arg(long, value_name = "MS")]
        idle: Option<u64>,
        /// Reassemble SFP transfers.
        #[arg(long)]
        sfp: bool,
        /// Echo every packet back to its sender.
        #[arg(long)]
        echo: bool,
        /// Accept RDP connections instead (not available yet).
        #[arg(long)]
        rdp: bool,
    },
    /// Pipe stdin to an RDP connection and the connection to stdout (not available yet).
    #[command(after_help = "Example:\n  csp rdp 5 10 < command.bin > answer.bin")]
    Rdp {
        /// Node address.
        addr: u16,
        /// Destination port.
        port: u8,
    },
    /// Show the daemon's node, links, routes, applications and counters.
    #[command(after_help = "Example:\n  csp status")]
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("csp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn options(g: &Global) -> Options {
    let mut o = Options::NONE;
    o.crc = g.crc;
    if let Some(k) = &g.hmac_key {
        o = o.with_hmac_key(k.as_bytes());
    }
    if let Some(k) = &g.xtea_key {
        o = o.with_xtea_key(k.as_bytes());
    }
    o
}

/// A client for one-shot commands: a lost daemon is reported, not waited for.
fn connect(g: &Global) -> Result<Client, Error> {
    connect_with(g, false)
}

fn connect_with(g: &Global, reconnect: bool) -> Result<Client, Error> {
    let mut client = Client::with_config(ClientConfig {
        socket: g.socket.clone(),
        tcp: g.tcp.map(|a| (a, g.tcp_token.clone().unwrap_or_default())),
        name: format!("csp[{}]", std::process::id()),
        reconnect,
        ..ClientConfig::default()
    })?;
    client.set_service_options(options(g));
    Ok(client)
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let g = &cli.global;
    let timeout = Duration::from_millis(g.timeout);
    match cli.command {
        Command::Rdp { .. } => Err(Error::NotAvailable(
            "RDP is not available yet: `csp rdp` waits for the csp-rdp connection state machine",
        )),
        Command::Listen { rdp: true, .. } => Err(Error::NotAvailable(
            "RDP is not available yet: `csp listen --rdp` waits for the csp-rdp connection state machine",
        )),
        Command::Ping {
            addr,
            count,
            size,
            interval,
        } => ping(&mut connect(g)?, addr, count, size, interval, timeout),
        Command::Uptime { addr } => {
            let s = connect(g)?.uptime(addr, timeout)?;
            println!(
                "node {addr} up {s} s ({} d {:02}:{:02}:{:02})",
                s / 86_400,
                s / 3600 % 24,
                s / 60 % 60,
                s % 60
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ident { addr } => {
            let id = connect(g)?.ident(addr, timeout)?;
            println!("hostname: {}", id.hostname);
            println!("model:    {}", id.model);
            println!("revision: {}", id.revision);
            println!("date:     {} {}", id.date, id.time);
            Ok(ExitCode::SUCCESS)
        }
        Command::Memfree { addr } => {
            let n = connect(g)?.memfree(addr, timeout)?;
            println!("node {addr}: {n} bytes free");
            Ok(ExitCode::SUCCESS)
        }
        Command::Buffree { addr } => {
            let n = connect(g)?.buffree(addr, timeout)?;
            println!("node {addr}: {n} buffers free");
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            addr,
            port,
            data,
            hex,
            sfp,
            reply,
        } => {
            let bytes = read_data(data.as_deref(), hex)?;
            let mut client = connect(g)?;
            let mut opts = options(g);
            opts.sfp = sfp;
            let socket = client.bind_with(Bind::Ephemeral, opts)?;
            client.sendto(&socket, addr, port, &bytes)?;
            if reply {
                let d = client.recvfrom(&socket, Some(timeout))?;
                print_datagram(&d, false)?;
            }
            client.close(socket)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Listen {
            port,
            raw,
            count,
            idle,
            sfp,
            echo,
            ..
        } => {
            let bind = match (port.eq_ignore_ascii_case("any"), port.parse::<u8>()) {
                (true, _) => Bind::Any,
                (false, Ok(p)) => Bind::Port(p),
                (false, Err(_)) => {
                    eprintln!("csp: PORT must be a number 0..=63 or `any`, not {port:?}");
                    return Ok(ExitCode::from(2));
                }
            };
            if echo && bind == Bind::Any {
                eprintln!("csp: --echo needs a port number (a socket bound to any can not send)");
                return Ok(ExitCode::from(2));
            }
            // A listener outlives a daemon restart: it reconnects and keeps
            // its port.
            let mut client = connect_with(g, true)?;
            let mut opts = options(g);
            opts.sfp = sfp;
            let socket = client.bind_with(bind, opts)?;
            eprintln!("listening on {}:{port}", client.node());
            listen(&mut client, &socket, count, idle, raw, echo)
        }
        Command::Status => {
            let mut client = connect(g)?;
            for (title, c) in [
                ("status", Control::Status),
                ("routes", Control::Routes),
                ("counters", Control::Stats),
            ] {
                let text = client.control(c)?;
                println!("== {title}");
                print!("{text}");
                if text.is_empty() {
                    println!("(none)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn listen(
    client: &mut Client,
    socket: &Socket,
    count: Option<u64>,
    idle: Option<u64>,
    raw: bool,
    echo: bool,
) -> Result<ExitCode, Error> {
    let idle = idle.map(Duration::from_millis);
    let mut last = Instant::now();
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        // Short slices, so that events are reported as they happen.
        let slice = Duration::from_millis(250);
        let wait = idle.map_or(slice, |i| i.saturating_sub(last.elapsed()).min(slice));
        match client.recvfrom(socket, Some(wait)) {
            Ok(d) => {
                last = Instant::now();
                seen += 1;
                print_datagram(&d, raw)?;
                if echo {
                    if let Err(e) = client.sendto(socket, d.src(), d.sport(), &d.data) {
                        eprintln!("csp: echo to {}:{}: {e}", d.src(), d.sport());
                    }
                }
            }
            Err(Error::Timeout) => {
                if let Some(i) = idle.filter(|&i| last.elapsed() >= i) {
                    eprintln!("csp: nothing for {} ms", i.as_millis());
                    return Ok(ExitCode::FAILURE);
                }
            }
            Err(e) => return Err(e),
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Disconnected { reason } => {
                    eprintln!("csp: csp-muxd went away ({reason}); reconnecting")
                }
                Event::Reconnected => eprintln!("csp: reconnected to csp-muxd"),
                Event::RebindFailed { error, .. } => return Err(error),
                other => eprintln!("csp: {other:?}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ping(
    client: &mut Client,
    addr: u16,
    count: u32,
    size: usize,
    interval: u64,
    timeout: Duration,
) -> Result<ExitCode, Error> {
    println!("PING node {addr}: {size} data bytes");
    let mut rtts = Vec::new();
    for seq in 1..=count {
        let started = Instant::now();
        match client.ping(addr, size, timeout) {
            Ok(rtt) => {
                println!(
                    "{size} bytes from {addr}: seq={seq} time={:.3} ms",
                    rtt.as_secs_f64() * 1e3
                );
                rtts.push(rtt);
            }
            Err(Error::Timeout) => println!("no reply from {addr}: seq={seq}"),
            Err(e) => return Err(e),
        }
        if seq < count {
            let wait = Duration::from_millis(interval).saturating_sub(started.elapsed());
            std::thread::sleep(wait);
        }
    }
    let received = rtts.len() as u32;
    let loss = if count == 0 {
        0.0
    } else {
        100.0 * f64::from(count - received) / f64::from(count)
    };
    println!("--- node {addr} ping statistics ---");
    println!("{count} sent, {received} received, {loss:.0}% loss");
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / received;
        println!(
            "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            min.as_secs_f64() * 1e3,
            avg.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(if received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_data(arg: Option<&str>, hex: bool) -> Result<Vec<u8>, Error> {
    let text: Vec<u8> = match arg {
        None | Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| Error::Io {
                    context: "reading stdin",
                    source,
                })?;
            buf
        }
        Some(s) => s.as_bytes().to_vec(),
    };
    if !hex {
        return Ok(text);
    }
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bad = || Error::Io {
        context: "reading --hex data",
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected an even number of hex digits",
        ),
    };
    if digits.len() % 2 != 0 {
        return Err(bad());
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

fn print_datagram(d: &host_lib::Datagram, raw: bool) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let io = |source| Error::Io {
        context: "writing stdout",
        source,
    };
    if raw {
        out.write_all(&d.data).map_err(io)?;
    } else {
        let hex: Vec<String> = d.data.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            out,
            "{}:{} -> port {} ({} bytes, flags {:#04x}): {}",
            d.src(),
            d.sport(),
            d.dport(),
            d.data.len(),
            d.header.flags.bits(),
            hex.join(" ")
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)
}
