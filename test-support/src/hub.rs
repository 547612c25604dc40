//! A ZeroMQ hub for ZMQ links: `csp-muxd --zmq-proxy` on two loopback
//! ports.

use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::muxd::{Muxd, MuxdConfig};
use crate::ports::{free_tcp_port, retry_on_port_clash};
use crate::process::{terminate, POLL};
use crate::WAIT;

/// The name of a hub node's ZMQ link in [`Hub::table`].
pub const LINK: &str = "zmqhub";

/// A running proxy; killed on drop.
pub struct Hub {
    pub child: Child,
    /// Where publishers connect (the nodes' `pub_endpoint`).
    pub xsub: u16,
    /// Where subscribers connect (the nodes' `sub_endpoint`).
    pub xpub: u16,
}

impl Hub {
    /// On two free ports, picked again while they clash (bounded).
    pub fn start() -> Hub {
        retry_on_port_clash(|| Hub::try_start_on(free_tcp_port(), free_tcp_port()))
    }

    /// On the given ports (a restarted hub on its old ports).
    pub fn start_on(xsub: u16, xpub: u16) -> Hub {
        Hub::try_start_on(xsub, xpub).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Ready once both ports take connections ([`WAIT`] at most); `Err`
    /// with what the proxy said if it exited.
    pub fn try_start_on(xsub: u16, xpub: u16) -> Result<Hub, String> {
        let child = Command::new(crate::bins::muxd())
            .args(["--zmq-proxy", "--xsub"])
            .arg(format!("tcp://127.0.0.1:{xsub}"))
            .arg("--xpub")
            .arg(format!("tcp://127.0.0.1:{xpub}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start csp-muxd --zmq-proxy");
        let mut hub = Hub { child, xsub, xpub };
        let deadline = Instant::now() + WAIT;
        for port in [xsub, xpub] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                hub.exited()?;
                assert!(Instant::now() < deadline, "proxy not listening on {port}");
                sleep(POLL);
            }
        }
        // Someone else may have answered on a port the proxy failed to bind.
        sleep(Duration::from_millis(20));
        hub.exited()?;
        Ok(hub)
    }

    /// `Err` with what the proxy said if it exited.
    fn exited(&mut self) -> Result<(), String> {
        match self.child.try_wait().expect("wait for the proxy") {
            None => Ok(()),
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                Err(format!("proxy exited early ({status}): {err}"))
            }
        }
    }

    /// The `[[zmq]]` table of a node on this hub, plus `keys`.
    pub fn table(&self, keys: &str) -> String {
        zmq_table(self.xsub, self.xpub, keys)
    }

    /// Start a daemon on this hub: `config` plus the [`table`](Self::table)
    /// with `keys` and a default route into the hub.
    pub fn node(&self, config: MuxdConfig, keys: &str) -> Muxd {
        Muxd::start(config.route(format!("0/0 {LINK}")).extra(&self.table(keys)))
    }

    /// SIGTERM; the exit status ([`WAIT`] at most).
    pub fn terminate(&mut self) -> ExitStatus {
        terminate(&mut self.child, "the zmq proxy")
    }
}

/// A peer on a hub that is not csp-muxd: raw ZeroMQ sockets, framing and
/// subscribing as the test says (libcsp 2.x: `header | data`, two-byte
/// `prio:2 | dst:14` subscriptions; libcsp 1.x: a next-hop byte first).
pub struct Peer {
    pub publisher: zmq::Socket,
    /// Receives time out after 100 ms.
    pub subscriber: zmq::Socket,
    _ctx: zmq::Context,
}

impl Peer {
    /// Connected to `hub`, subscribed to each of `prefixes`.
    pub fn connect(hub: &Hub, prefixes: &[Vec<u8>]) -> Peer {
        let ctx = zmq::Context::new();
        let publisher = ctx.socket(zmq::PUB).expect("a PUB socket");
        let subscriber = ctx.socket(zmq::SUB).expect("a SUB socket");
        for p in prefixes {
            subscriber.set_subscribe(p).expect("subscribe");
        }
        publisher
            .connect(&format!("tcp://127.0.0.1:{}", hub.xsub))
            .expect("connect to the hub's XSUB");
        subscriber
            .connect(&format!("tcp://127.0.0.1:{}", hub.xpub))
            .expect("connect to the hub's XPUB");
        subscriber.set_rcvtimeo(100).expect("receive timeout");
        Peer {
            publisher,
            subscriber,
            _ctx: ctx,
        }
    }

    /// A libcsp 2.x node `addr`: subscribed to its address at each priority.
    pub fn v2(hub: &Hub, addr: u16) -> Peer {
        let prefixes: Vec<Vec<u8>> = (0..4u16)
            .map(|prio| ((prio << 14) | addr).to_be_bytes().to_vec())
            .collect();
        Peer::connect(hub, &prefixes)
    }

    pub fn send(&self, frame: &[u8]) {
        self.publisher.send(frame, 0).expect("publish");
    }

    /// The next message, or None after 100 ms.
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.subscriber.recv_bytes(0).ok()
    }

    /// Send `frame` again (every 100 ms, [`WAIT`] at most) until a message
    /// `is_answer` accepts arrives: the first frames after joining may be
    /// lost while subscriptions travel (ZeroMQ's slow joiner).
    pub fn request(&self, frame: &[u8], is_answer: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no answer over the hub");
            self.send(frame);
            while let Some(msg) = self.recv() {
                if is_answer(&msg) {
                    return msg;
                }
            }
        }
    }
}

/// A `[[zmq]]` table named [`LINK`] for a hub on `xsub`/`xpub`.
pub fn zmq_table(xsub: u16, xpub: u16, keys: &str) -> String {
    format!(
        "[[zmq]]\nname = \"{LINK}\"\npub_endpoint = \"tcp://127.0.0.1:{xsub}\"\n\
         sub_endpoint = \"tcp://127.0.0.1:{xpub}\"\n{keys}\n"
    )
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
