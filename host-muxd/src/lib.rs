//! `csp-muxd`: one daemon owns the CSP address and the links; many
//! unprivileged processes share it through a local socket, each binding its
//! own CSP ports. See `docs/ipc.md` and `docs/config.md`.

pub mod auth;
pub mod capture;
pub mod client;
pub mod config;
pub mod daemon;
pub mod endpoint;
pub mod keys;
pub mod kiss;
pub mod links;
pub mod metrics;
pub mod services;
pub mod slcan;
pub mod socketcan;
pub mod stats;
pub mod udp;
pub mod zmqhub;

/// Largest CSP data (after the header) carried over IPC: a maximum IPC
/// frame less its type byte and the 6-byte v2 header.
pub const MAX_IPC_DATA: usize = csp_ipc::MAX_FRAME_LEN - 1 - 6;
