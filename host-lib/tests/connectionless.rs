//! Two applications on one csp-muxd, connectionless.

mod common;

use std::time::Duration;

use common::*;
use host_lib::{Bind, Client};

const T: Option<Duration> = Some(WAIT);

#[test]
fn two_clients_both_ways_plain() {
    let d = Muxd::start(9, "");
    let mut server = Client::connect(&d.socket).unwrap();
    let mut client = Client::connect(&d.socket).unwrap();
    assert_eq!(server.node(), 9);
    let s = server.bind(Bind::Port(10)).unwrap();
    let c = client.bind(Bind::Ephemeral).unwrap();
    client.sendto(&c, 9, 10, b"hello").unwrap();
    let got = server.recvfrom(&s, T).unwrap();
    assert_eq!(got.data, b"hello");
    assert_eq!(got.src(), 9);
    assert_eq!(got.sport(), client.local_port(&c).unwrap());
    server.sendto(&s, got.src(), got.sport(), b"world").unwrap();
    let back = client.recvfrom(&c, T).unwrap();
    assert_eq!((back.data.as_slice(), back.sport()), (&b"world"[..], 10));
}
