//! `csp-muxd`: the CSP ground daemon. See `docs/config.md` and `docs/ipc.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use host_muxd::config::{Config, DEFAULT_CONFIG};
use host_muxd::daemon::Daemon;

/// One CSP node shared by many processes: owns the links and the address,
/// routes packets, answers the standard services; applications connect to
/// its local socket (csp-ipc protocol) and bind their own ports.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Logging: RUST_LOG=debug (or info, warn, ...); default info.\n\
Examples:\n  csp-muxd                          # address 1, UDP 0.0.0.0:9700, default socket\n  \
csp-muxd --config /etc/csp-muxd.toml\n  csp-muxd --print-default-config > csp-muxd.toml"
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("csp-muxd: bad configuration: {e}");
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
            eprintln!("csp-muxd: {e}");
            return ExitCode::from(1);
        }
    };
    match daemon.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("csp-muxd: {e}");
            ExitCode::from(1)
        }
    }
}
