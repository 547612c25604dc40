//! `csp-muxd`: the CSP ground daemon. See `docs/config.md` and `docs/ipc.md`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use host_muxd::config::{Config, DEFAULT_CONFIG};
use host_muxd::daemon::Daemon;

/// `eprintln!` that never panics: with stderr closed a message is lost,
/// which is all that can be done with it.
macro_rules! report {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// One CSP node shared by many processes: owns the links and the address,
/// routes packets, answers the standard services; applications connect to
/// its local socket (csp-ipc protocol) and bind their own ports.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Logging: RUST_LOG=debug (or info, warn, ...); default info.\n\
Examples:\n  csp-muxd                          # address 1, UDP 0.0.0.0:9700, default socket\n  \
csp-muxd --config /etc/csp-muxd.toml\n  csp-muxd --print-default-config > csp-muxd.toml\n  \
csp-muxd --zmq-proxy              # a ZMQ hub like libcsp's zmqproxy (tcp://*:6000, tcp://*:7000)"
)]
struct Args {
    /// TOML configuration file (every key optional; see --print-default-config).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Unix socket path for applications (overrides ipc.socket).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print the commented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Run a ZeroMQ hub (what libcsp's zmqproxy does) instead of a node:
    /// nodes publish to --xsub and subscribe at --xpub. Stops on SIGINT or
    /// SIGTERM.
    #[arg(long, conflicts_with_all = ["config", "socket", "print_default_config"])]
    zmq_proxy: bool,
    /// With --zmq-proxy: where nodes publish (their `pub_endpoint`).
    #[arg(long, default_value = "tcp://*:6000", requires = "zmq_proxy")]
    xsub: String,
    /// With --zmq-proxy: where nodes subscribe (their `sub_endpoint`).
    #[arg(long, default_value = "tcp://*:7000", requires = "zmq_proxy")]
    xpub: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        // A reader that stops early (`| head`) is not an error of ours.
        let mut out = std::io::stdout().lock();
        return match out.write_all(DEFAULT_CONFIG.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                report!("csp-muxd: writing stdout: {e}");
                ExitCode::FAILURE
            }
        };
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if args.zmq_proxy {
        return zmq_proxy(&args.xsub, &args.xpub);
    }

    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            report!("csp-muxd: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = args
        .socket
        .or_else(|| config.ipc.socket.clone())
        .unwrap_or_else(host_muxd::endpoint::default_socket_path);
    let mut daemon = match Daemon::new(config, socket) {
        Ok(d) => d,
        Err(e) => {
            report!("csp-muxd: {e}");
            return ExitCode::from(1);
        }
    };
    match daemon.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report!("csp-muxd: {e}");
            ExitCode::from(1)
        }
    }
}

/// Run the hub until SIGINT or SIGTERM. The proxy blocks inside libzmq, so
/// a thread waits for the signal and sends the proxy its TERMINATE command;
/// if the signal lands on the proxy's own thread instead, its wait returns
/// EINTR, which ends it just the same.
fn zmq_proxy(xsub: &str, xpub: &str) -> ExitCode {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            report!("csp-muxd: signals: {e}");
            return ExitCode::from(1);
        }
    };
    let (proxy, stop) = match host_muxd::zmqhub::Proxy::bind(xsub, xpub) {
        Ok(p) => p,
        Err(e) => {
            report!("csp-muxd: zmq proxy: {e}");
            return ExitCode::from(1);
        }
    };
    let (front, back) = proxy.endpoints();
    log::info!("zmq proxy: nodes publish to {front} (XSUB) and subscribe at {back} (XPUB)");
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig}: stopping the proxy");
        }
        stop.stop();
    });
    match proxy.run() {
        Ok(()) => {
            log::info!("zmq proxy stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            report!("csp-muxd: {e}");
            ExitCode::from(1)
        }
    }
}
