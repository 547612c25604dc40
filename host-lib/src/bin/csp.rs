//! `csp`: talk CSP from a shell through csp-muxd. See `docs/cli.md`.

// Its own file, so that `csp bench` stays out of the way of the other commands.
#[path = "csp/bench.rs"]
mod bench;
#[path = "csp/capture.rs"]
mod capture;
// --rdpopt: libcsp's csp_rdp_set_opt numbers as defaults for connections.
#[path = "csp/rdpopt.rs"]
mod rdpopt;
// The standard services (ping, ps, ident, reboot, CMP, ...), with --json.
#[path = "csp/services.rs"]
mod services;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use host_lib::{
    Bind, Client, ClientConfig, Conn, ConnOptions, ConnState, Control, Error, Event, Listener,
    Options, Socket,
};

/// Talk CSP through csp-muxd: ping and query nodes, send and listen for
/// packets, show the daemon's state. The protocol work (CRC, HMAC, SFP) is
/// done in this process; the daemon routes.
#[derive(Parser, Debug)]
#[command(
    name = "csp",
    version,
    after_help = "Examples:\n  csp ping 1                     # the daemon's own node (csp-muxd default address)\n  \
csp ping -c 10 -s 100 --crc 5  # 10 pings of 100 bytes to node 5 with CRC32\n  \
csp ident 5\n  csp ident --all                # every node that answers a broadcast\n  \
csp cmp ifstat 1 udp           # the daemon's UDP link counters\n  csp send 5 10 hello\n  csp listen 10\n  csp status\n  \
csp listen --rdp --echo 10     # an RDP echo server on the daemon's node\n  \
echo hello | csp rdp 1 10      # stdin over an RDP connection, answers to stdout\n\n\
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
    /// RDP options for every connection this command makes, in the order
    /// of libcsp's csp_rdp_set_opt (csh's rdpopt): window, connection
    /// timeout ms, packet timeout ms, delayed acks (0/1), ack timeout ms,
    /// ack delay count, e.g. 4,10000,1000,1,250,2. A command's own
    /// --window or --conn-timeout wins over it.
    #[arg(
        long,
        global = true,
        env = "CSP_RDPOPT",
        value_name = "W,CONN,PKT,DELAYED,ACK,COUNT",
        value_parser = rdpopt::parse
    )]
    rdpopt: Option<rdpopt::RdpOpt>,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Service(services::ServiceCommand),
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
csp listen --echo 10          # send each packet back to its sender\n  \
csp listen --rdp --echo 10    # accept RDP connections, echo what they send\n  \
csp listen --rdp --raw 10 > received.bin"
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
        /// Exit after this many packets (with --rdp: connections ended).
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Exit (status 1) if nothing arrives for this many milliseconds
        /// (with --rdp: while no connection is open).
        #[arg(long, value_name = "MS")]
        idle: Option<u64>,
        /// Reassemble SFP transfers.
        #[arg(long)]
        sfp: bool,
        /// Echo every packet back to its sender.
        #[arg(long)]
        echo: bool,
        /// Accept RDP connections instead: each connection's data is printed
        /// (or, with --echo, sent back) until its peer closes it.
        #[arg(long)]
        rdp: bool,
    },
    /// Pipe stdin to an RDP connection and the connection to stdout, like
    /// nc/socat. After the end of stdin it waits until everything sent is
    /// acknowledged, reads answers until --linger passes without any, then
    /// closes. Exit status 0 only if all of stdin was acknowledged by the
    /// peer and the close completed.
    #[command(after_help = "Examples:\n  \
echo hello | csp rdp 1 10                   # to an application on the daemon's node\n  \
csp rdp 5 10 < command.bin > answer.bin\n  \
csp rdp --crc --hmac-key secret 5 10 < file # CRC32 and HMAC on every segment\n  \
csp rdp --segment 1024 --window 32 1 10 < big.bin   # between local applications\n\n\
The other end: `csp listen --rdp PORT` (add --echo to send everything back).")]
    Rdp {
        /// Node address (0: this node, the daemon's address).
        addr: u16,
        /// Destination port.
        port: u8,
        /// User bytes per RDP segment (200 fits a 256-byte radio packet with
        /// CRC and HMAC; up to 1024 between local applications).
        #[arg(long, value_name = "BYTES", default_value_t = host_lib::rdp::DEFAULT_SEGMENT)]
        segment: usize,
        /// RDP window: segments in flight, up to 32 [default: from --rdpopt,
        /// else libcsp's 4].
        #[arg(long, value_name = "N")]
        window: Option<u16>,
        /// Give up connecting after this many milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5000)]
        connect_timeout: u64,
        /// RDP connection timeout: the connection fails after this long
        /// without a word from the peer (even an idle one) [default: from
        /// --rdpopt, else 10000].
        #[arg(long, value_name = "MS")]
        conn_timeout: Option<u64>,
        /// After the end of stdin, keep reading answers until none came for
        /// this long [default: --timeout].
        #[arg(long, value_name = "MS")]
        linger: Option<u64>,
    },
    /// Show the daemon's node, links, routes, applications and counters.
    #[command(after_help = "Examples:\n  csp status\n  csp status --json")]
    Status {
        /// One JSON object for scripts: `status`, `routes` and `counters`,
        /// each a list of records (`kind`, `args`, then the named values).
        #[arg(long)]
        json: bool,
    },
    /// Measure round-trip time, connectionless and RDP throughput against
    /// any node (`csp bench serve` is the peer for stream and rdp).
    Bench(bench::Bench),
    /// Capture the daemon's frames into a pcapng file for Wireshark/tshark
    /// (see docs/capture.md).
    Capture(capture::CaptureArgs),
}

/// `println!` that returns a closed or failing stdout as an error instead
/// of panicking: `csp listen 10 | head -1` must end quietly.
macro_rules! outln {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*).map_err(stdout_error)?
    };
}

/// `print!` with the same error handling as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {
        write!(std::io::stdout().lock(), $($t)*).map_err(stdout_error)?
    };
}

/// `eprintln!` that never panics: a message to a closed stderr is lost,
/// which is all that can be done with it.
macro_rules! errln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        context: "writing stdout",
        source,
    }
}

/// The reader of our output went away (`csp listen | head -1`): the
/// output was wanted up to here, so this ends the program as a success,
/// quietly, the way a C tool killed by SIGPIPE says nothing.
fn is_closed_stdout(e: &Error) -> bool {
    matches!(e, Error::Io { context: "writing stdout", source }
        if source.kind() == std::io::ErrorKind::BrokenPipe)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("csp: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Options of every RDP connection: the trailers of `options`, then
/// --rdpopt (or CSP_RDPOPT) if given.
fn conn_options(g: &Global) -> Result<ConnOptions, Error> {
    let opts = ConnOptions::from_options(&options(g))?;
    Ok(match g.rdpopt {
        Some(o) => o.apply(opts),
        None => opts,
    })
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
        Command::Bench(b) => bench::run(g, b),
        Command::Capture(a) => capture::run(g, a),
        Command::Rdp {
            addr,
            port,
            segment,
            window,
            connect_timeout,
            conn_timeout,
            linger,
        } => {
            let mut opts = conn_options(g)?.with_segment(segment);
            if let Some(w) = window {
                opts = opts.with_window(w);
            }
            if let Some(t) = conn_timeout {
                opts = opts.with_conn_timeout(Duration::from_millis(t));
            }
            let mut client = connect(g)?;
            let conn = client.connect_to(
                addr,
                port,
                opts,
                Some(Duration::from_millis(connect_timeout)),
            )?;
            let linger = linger.map_or(timeout, Duration::from_millis);
            rdp_pipe(&mut client, conn, linger)
        }
        Command::Listen {
            rdp: true,
            port,
            raw,
            count,
            idle,
            sfp,
            echo,
            ..
        } => {
            if sfp {
                errln!("csp: --sfp has no place on RDP connections (they carry any length)");
                return Ok(ExitCode::from(2));
            }
            let Ok(port) = port.parse::<u8>() else {
                errln!("csp: --rdp needs a port number 0..=63, not {port:?}");
                return Ok(ExitCode::from(2));
            };
            let opts = conn_options(g)?;
            // A listener outlives a daemon restart; its connections fail.
            let mut client = connect_with(g, true)?;
            let listener = client.listen(port, opts)?;
            errln!("listening for RDP connections on {}:{port}", client.node());
            let idle = idle.map(Duration::from_millis);
            listen_rdp(&mut client, &listener, count, idle, raw, echo)
        }
        Command::Service(c) => services::run(g, c),
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
                    errln!("csp: PORT must be a number 0..=63 or `any`, not {port:?}");
                    return Ok(ExitCode::from(2));
                }
            };
            if echo && bind == Bind::Any {
                errln!("csp: --echo needs a port number (a socket bound to any can not send)");
                return Ok(ExitCode::from(2));
            }
            // A listener outlives a daemon restart: it reconnects and keeps
            // its port.
            let mut client = connect_with(g, true)?;
            let mut opts = options(g);
            opts.sfp = sfp;
            let socket = client.bind_with(bind, opts)?;
            errln!("listening on {}:{port}", client.node());
            listen(&mut client, &socket, count, idle, raw, echo)
        }
        Command::Status { json } => {
            let mut client = connect(g)?;
            let sections = [
                ("status", Control::Status),
                ("routes", Control::Routes),
                ("counters", Control::Stats),
            ];
            if json {
                let mut out = serde_json::Map::new();
                for (title, c) in sections {
                    let records = client.control_records(c)?;
                    let list = records.iter().map(record_json).collect();
                    out.insert(title.into(), serde_json::Value::Array(list));
                }
                outln!("{}", serde_json::Value::Object(out));
                return Ok(ExitCode::SUCCESS);
            }
            for (title, c) in sections {
                let text = client.control(c)?;
                outln!("== {title}");
                out!("{text}");
                if text.is_empty() {
                    outln!("(none)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A control record as a JSON object: `kind`, `args` when there are any,
/// then each named value (digits become numbers).
fn record_json(r: &host_lib::Record) -> serde_json::Value {
    use serde_json::Value;
    let value = |v: &str| match v.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(v),
    };
    let mut o = serde_json::Map::new();
    o.insert("kind".into(), Value::from(r.kind.as_str()));
    if !r.args.is_empty() {
        o.insert("args".into(), r.args.iter().map(|a| value(a)).collect());
    }
    for (k, v) in &r.fields {
        o.insert(k.clone(), value(v));
    }
    Value::Object(o)
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
                        errln!("csp: echo to {}:{}: {e}", d.src(), d.sport());
                    }
                }
            }
            Err(Error::Timeout) => {
                if let Some(i) = idle.filter(|&i| last.elapsed() >= i) {
                    errln!("csp: nothing for {} ms", i.as_millis());
                    return Ok(ExitCode::FAILURE);
                }
            }
            Err(e) => return Err(e),
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Disconnected { reason } => {
                    errln!("csp: csp-muxd went away ({reason}); reconnecting")
                }
                Event::Reconnected => errln!("csp: reconnected to csp-muxd"),
                Event::RebindFailed { error, .. } => return Err(error),
                other => errln!("csp: {other:?}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `close` may take: acknowledgements, then RDP's close
/// handshake (bounded by RDP itself; this is a backstop).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// stdin -> connection -> stdout until stdin ends, everything is
/// acknowledged and the peer has been quiet for `linger`; then close.
fn rdp_pipe(client: &mut Client, conn: Conn, linger: Duration) -> Result<ExitCode, Error> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use std::os::fd::AsFd;

    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let io = |context| move |source| Error::Io { context, source };
    let mut input = vec![0u8; 16 * 1024];
    let mut received = vec![0u8; 64 * 1024];
    let (mut pending, mut sent) = (0usize, 0usize);
    let mut eof = false;
    let mut peer_closed = false;
    let mut last_activity = Instant::now();
    loop {
        // Input waiting to go out, as far as the window takes it.
        while sent < pending {
            match client.try_send(&conn, &input[sent..pending]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(e),
            }
        }
        if sent == pending {
            (sent, pending) = (0, 0);
        }
        loop {
            match client.try_recv(&conn, &mut received) {
                Ok(0) => {
                    peer_closed = true;
                    break;
                }
                Ok(n) => {
                    out.write_all(&received[..n])
                        .map_err(io("writing stdout"))?;
                    out.flush().map_err(io("writing stdout"))?;
                    last_activity = Instant::now();
                }
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(e),
            }
        }
        let all_sent = eof && pending == 0;
        if peer_closed {
            if !all_sent {
                return Err(Error::ConnectionFailed {
                    reason: "the peer closed the connection before all of stdin was sent".into(),
                });
            }
            break;
        }
        let acked = all_sent && client.is_acked(&conn)?;
        if acked && last_activity.elapsed() >= linger {
            break;
        }
        if all_sent && !acked {
            // Lingering counts from the last acknowledgement.
            last_activity = Instant::now();
        }
        // Wait for the daemon, stdin (when there is room for more), a timer
        // or the end of lingering.
        let now = Instant::now();
        let mut until = now + Duration::from_secs(1);
        if let Some(t) = client.poll_timeout() {
            until = until.min(t);
        }
        if acked {
            until = until.min(last_activity + linger);
        }
        let span = until.saturating_duration_since(now);
        let ts = Timespec {
            tv_sec: span.as_secs() as _,
            tv_nsec: span.subsec_nanos() as _,
        };
        let want_input = !eof && pending == 0;
        let Some(fd) = client.as_fd() else {
            // Only a failed connection gets here: the next try_send or
            // try_recv says so.
            client.handle_timeout(Instant::now());
            continue;
        };
        let mut flags = PollFlags::IN;
        if client.wants_write() {
            flags |= PollFlags::OUT;
        }
        let mut fds = vec![PollFd::from_borrowed_fd(fd, flags)];
        if want_input {
            fds.push(PollFd::from_borrowed_fd(stdin.as_fd(), PollFlags::IN));
        }
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io("waiting for input")(e.into())),
        }
        let daemon = fds[0].revents();
        let input_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if input_ready {
            match rustix::io::read(&stdin, &mut input) {
                Ok(0) => eof = true,
                Ok(n) => pending = n,
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(io("reading stdin")(e.into())),
            }
        }
        if daemon.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            client.handle_readable();
        }
        client.handle_writable();
        client.handle_timeout(Instant::now());
    }
    client.close_conn(conn, Some(CLOSE_TIMEOUT))?;
    Ok(ExitCode::SUCCESS)
}

/// Bytes waiting to be echoed on one connection before the server stops
/// reading it: a slow or dead peer then holds back only its own data (its
/// RDP window closes), never the other connections.
const ECHO_BACKLOG: usize = 256 * 1024;

/// One accepted connection of `csp listen --rdp`.
struct Served {
    conn: Conn,
    peer: String,
    /// Received, not yet queued back (with --echo); at most ECHO_BACKLOG.
    echo: Vec<u8>,
    /// The peer closed: end once the echo backlog is sent.
    peer_closed: bool,
    /// Our close is under way (`start_close`); it ends when the connection
    /// state says so, never by waiting here.
    closing: bool,
}

/// Accept connections and print (or echo) what each sends until it
/// closes; with `count`, exit after that many connections ended. Every
/// connection is served without blocking (`try_recv` / `try_send`), so a
/// peer that stops reading, or was killed, costs only its own connection.
fn listen_rdp(
    client: &mut Client,
    listener: &Listener,
    count: Option<u64>,
    idle: Option<Duration>,
    raw: bool,
    echo: bool,
) -> Result<ExitCode, Error> {
    let mut last = Instant::now();
    let mut conns: Vec<Served> = Vec::new();
    let mut ended = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let io = |source| Error::Io {
        context: "writing stdout",
        source,
    };
    while count.is_none_or(|c| ended < c) {
        client.wait(Some(Duration::from_millis(if conns.is_empty() {
            250
        } else {
            10
        })))?;
        while let Some(conn) = client.try_accept(listener)? {
            let (a, p) = client.conn_peer(&conn)?;
            errln!("connection from {a}:{p}");
            conns.push(Served {
                conn,
                peer: format!("{a}:{p}"),
                echo: Vec::new(),
                peer_closed: false,
                closing: false,
            });
            last = Instant::now();
        }
        let mut i = 0;
        while i < conns.len() {
            let s = &mut conns[i];
            let mut failure = None;
            // Receive while there is room for the echo.
            while !s.peer_closed && s.echo.len() < ECHO_BACKLOG {
                let room = (ECHO_BACKLOG - s.echo.len()).min(buf.len());
                match client.try_recv(&s.conn, &mut buf[..room]) {
                    Ok(0) => s.peer_closed = true,
                    Ok(n) => {
                        last = Instant::now();
                        let mut out = std::io::stdout().lock();
                        if raw {
                            out.write_all(&buf[..n]).map_err(io)?;
                        } else {
                            let hex: Vec<String> =
                                buf[..n].iter().map(|b| format!("{b:02x}")).collect();
                            writeln!(out, "{}: {n} bytes: {}", s.peer, hex.join(" "))
                                .map_err(io)?;
                        }
                        out.flush().map_err(io)?;
                        if echo {
                            s.echo.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Queue back what the window takes now; the rest waits.
            while failure.is_none() && !s.echo.is_empty() {
                match client.try_send(&s.conn, &s.echo) {
                    Ok(n) => {
                        s.echo.drain(..n);
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => failure = Some(e),
                }
            }
            // Closing never waits: a peer that closed and then went silent
            // holds up nobody (its close ends by the RDP timeouts).
            if failure.is_none() && s.peer_closed && s.echo.is_empty() && !s.closing {
                match client.start_close(&s.conn) {
                    Ok(()) => s.closing = true,
                    Err(e) => failure = Some(e),
                }
            }
            let outcome = match (failure, s.closing) {
                (Some(e), _) => Some(Err(e)),
                (None, true) => match client.conn_state(&s.conn) {
                    Ok(ConnState::Closed(_)) => Some(Ok(())),
                    Ok(ConnState::Failed(reason)) => Some(Err(Error::ConnectionFailed { reason })),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                },
                (None, false) => None,
            };
            let Some(outcome) = outcome else {
                i += 1;
                continue;
            };
            let s = conns.swap_remove(i);
            ended += 1;
            // Ended either way: this only releases the handle and port.
            let _ = client.close_conn(s.conn, Some(Duration::ZERO));
            match outcome {
                Ok(()) => errln!("{} closed", s.peer),
                Err(e) => errln!("csp: {}: {e}", s.peer),
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Disconnected { reason } => {
                    errln!("csp: csp-muxd went away ({reason}); reconnecting")
                }
                Event::Reconnected => errln!("csp: reconnected to csp-muxd"),
                Event::RebindFailed { error, .. } => return Err(error),
                // Said by the connection's own calls.
                Event::ConnectionFailed { .. } | Event::ConnectionClosed { .. } => {}
                other => errln!("csp: {other:?}"),
            }
        }
        if let Some(i) = idle.filter(|&i| conns.is_empty() && last.elapsed() >= i) {
            errln!("csp: nothing for {} ms", i.as_millis());
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
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
