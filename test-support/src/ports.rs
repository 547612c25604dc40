//! Free loopback ports. The kernel picks one (bind port 0 and read it
//! back); between our release and the daemon's bind any process may take
//! it again, so whatever starts on such a port runs under
//! [`retry_on_port_clash`].

use std::net::{TcpListener, UdpSocket};

/// How often [`retry_on_port_clash`] starts again before it gives up.
pub const PORT_RETRIES: usize = 5;

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP socket on 127.0.0.1")
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a TCP listener on 127.0.0.1")
        .port()
}

/// Whether a start failure says a port was taken ("Address in use").
pub fn is_port_clash(err: &str) -> bool {
    err.contains("in use")
}

/// Run `start` again, [`PORT_RETRIES`] times at most, while what it starts
/// finds its port taken (outgoing connections of processes running in
/// parallel take ports from the same range). Any other error panics.
pub fn retry_on_port_clash<T>(mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..PORT_RETRIES {
        match start() {
            Ok(t) => return t,
            Err(e) if is_port_clash(&e) => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("ports kept clashing ({PORT_RETRIES} tries): {last}")
}
