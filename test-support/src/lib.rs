//! The one home of the helpers the workspace's integration tests share:
//!
//! - [`bins`]: the `csp-muxd` and `csp` executables, built once per test
//!   process with cargo (Cargo's `CARGO_BIN_EXE_*` exists only inside the
//!   binary's own package).
//! - [`ports`]: free loopback ports, and a bounded retry for a port taken
//!   between being found free and being bound.
//! - [`muxd`]: a `csp-muxd` process started from a [`MuxdConfig`] in a temp
//!   directory, waited for (bounded), restartable on the same config and
//!   socket, killed on drop with its stderr shown if the test failed.
//! - [`hub`]: a `csp-muxd --zmq-proxy` process on free ports, and a
//!   libcsp-style ZeroMQ peer on it.
//! - `apps` (feature `host-lib`): host-lib clients of a test daemon.
//! - [`ipc`]: a minimal blocking IPC client on the csp-ipc codec, for tests
//!   that speak the daemon's protocol frame by frame.
//! - [`junk`]: reproducible random bytes and malformed CSP frames for
//!   floods.
//! - [`stats`]: values out of the daemon's STATS/STATUS text.
//! - [`process`]: bounded waits for child processes.
//! - [`skip`]: a test whose tool is missing skips, or fails under CI=true.
//!
//! Everything runs on 127.0.0.1, Unix sockets and temp directories, and
//! every wait is bounded by [`WAIT`] (or a bound the caller passes).

use std::time::Duration;

#[cfg(feature = "host-lib")]
pub mod apps;
pub mod bins;
pub mod hub;
pub mod ipc;
pub mod junk;
pub mod muxd;
pub mod ports;
pub mod process;
pub mod skip;
pub mod stats;

pub use hub::Hub;
pub use ipc::{header, Ipc, Msg};
pub use muxd::{run_to_exit, Muxd, MuxdConfig, Udp};
pub use ports::{free_tcp_port, free_udp_port, retry_on_port_clash};
pub use process::{finish, finish_within, rss_kib, run, run_within, wait_bounded};
pub use skip::{say_skipped, skip_unless_ci};
pub use stats::{link_field, link_stat, stat, wait_link_up};

/// Bound of every single wait: a daemon starting, a reply, a child exiting.
pub const WAIT: Duration = Duration::from_secs(10);
