//! host-lib clients of a test daemon (feature `host-lib`).

use host_lib::{Client, ClientConfig};

use crate::muxd::Muxd;

/// A client of `d` named `name`; `reconnect`: whether it reconnects (and
/// registers its ports again) when the daemon comes back.
pub fn client(d: &Muxd, name: &str, reconnect: bool) -> Client {
    Client::with_config(ClientConfig {
        socket: Some(d.socket.clone()),
        name: name.into(),
        reconnect,
        ..ClientConfig::default()
    })
    .expect("connect to csp-muxd")
}
