//! `csp-muxd`: one daemon owns the CSP address and the links; many
//! unprivileged processes share it through a local socket.
//!
//! Being built (issue: host-muxd). What is here works and is tested; the
//! event loop that ties it together is not in place yet.

pub mod client;
pub mod config;
pub mod endpoint;
pub mod udp;
