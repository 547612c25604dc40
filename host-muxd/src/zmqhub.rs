//! ZeroMQ hub links, as libcsp 2.x's `csp_if_zmqhub` speaks them, and the
//! hub itself (`csp-muxd --zmq-proxy`, libcsp's `zmqproxy`).
//!
//! A hub is a ZeroMQ proxy with an XSUB side (default port 6000) and an
//! XPUB side (7000). Every node PUBlishes its frames to the XSUB side and
//! SUBscribes at the XPUB side. One message is one CSP frame,
//! `header | data`, with nothing in front (libcsp 2.x). With `framing =
//! "libcsp1"` the link speaks libcsp 1.x's layout instead: the next hop's
//! address in one byte (the route's via, else the destination), then the
//! v1 header as a little-endian u32 (1.x copied its header word in host
//! order), then the data; its subscriptions are that first byte.
//!
//! Receiving only what is ours: ZeroMQ subscriptions are byte prefixes of
//! the message, and a v2 header starts with `prio:2 | dst:14` in two
//! big-endian bytes. libcsp 2.x (`csp_zmqhub_init_filter2`) subscribes to
//! those two bytes for each of the four priorities and each address it
//! wants (its own, its subnet's broadcast, 16383); [`subscriptions`] does the same for the node address,
//! the broadcast address and the link's `subscribe` list. The filtering
//! then happens in the publishers (ZeroMQ forwards subscriptions upstream
//! through the proxy), so the hub does not flood every node with every
//! frame. Promiscuous mode subscribes to the empty prefix: everything. A v1
//! header has the source between priority and destination, so no prefix
//! selects a destination: a v1 link subscribes to everything and filters
//! here, counting what it drops (`rx_filtered`).
//!
//! In the mio loop: a ZeroMQ socket is not a file descriptor, but it
//! exposes one (`ZMQ_FD`) that becomes readable when the socket *may* have
//! changed state, edge-triggered, and only tells the owner to ask
//! `ZMQ_EVENTS`; asking is what processes the socket's pending commands
//! and re-arms the descriptor. So the link registers that descriptor with
//! mio (which is edge-triggered too) and, on every event, asks
//! `ZMQ_EVENTS` and receives with `DONTWAIT` until `POLLIN` is gone. A
//! drain that stops early (the per-round budget) must be resumed without
//! waiting for another edge, which may never come: [`ZmqLink::recv_all`]
//! says so and the daemon queues the link for the next round. Sending on
//! the PUB socket never touches the SUB socket's descriptor (they are
//! separate sockets with separate mailboxes), so a send needs no drain;
//! the daemon still drains every link once at start, in case the
//! descriptor was signalled before it was registered. The PUB socket's
//! descriptor is registered too (the token after the SUB's): the PUB
//! socket learns of new subscribers, and forgets lost ones, only when its
//! commands are processed, which otherwise happens only inside a send (and
//! a send skips it when the last processing was very recent), so on
//! its event the link asks its `ZMQ_EVENTS` as well
//! ([`ZmqLink::on_pub_event`]): a node that just joined gets frames sooner,
//! and an idle link does not pile up commands. No thread is needed besides
//! libzmq's own I/O thread (one per daemon, shared by all links).
//!
//! Sending never blocks: a PUB socket drops messages for a subscriber whose
//! queue is at the high-water mark, silently (ZeroMQ does not report it), so
//! such drops can not be counted here; errors from `zmq_send` are counted.
//! Reconnecting is ZeroMQ's: a lost proxy connection is retried from 100 ms
//! up to [`RECONNECT_MAX_MS`], and the SUB socket sends its subscriptions
//! again on every new connection, so a restarted proxy or daemon rejoins by
//! itself.

use std::io;
use std::os::fd::RawFd;

use csp_core::header::HeaderView;
use csp_core::Version;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::config::{ZmqConfig, ZmqFraming};

/// Most extra addresses in one link's `subscribe` list.
pub const MAX_SUBSCRIBE: usize = 64;
/// Largest frame received: like a UDP datagram, CSP frames carry a 16-bit
/// length at most. Longer messages are counted and dropped.
pub const MAX_FRAME: usize = 65535;
/// libzmq refuses (and disconnects) a peer sending a message longer than
/// this: a hard bound on what one message can make the daemon allocate.
pub const MAX_MSG_SIZE: i64 = 1 << 20;
/// How long closing a socket may wait to hand queued frames to the proxy.
pub const LINGER_MS: i32 = 200;
/// Longest wait between ZeroMQ's reconnect attempts (it starts at 100 ms
/// and doubles).
pub const RECONNECT_MAX_MS: i32 = 2000;

/// Counters of one ZMQ link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZmqLinkStats {
    /// Frames received and passed on.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Messages that are no CSP frame: shorter than a header, multipart,
    /// or a receive error.
    pub rx_errors: u64,
    /// Messages longer than [`MAX_FRAME`], dropped.
    pub rx_too_long: u64,
    /// Frames for a destination this link does not receive for (possible
    /// on a v1 link, which subscribes to everything), dropped.
    pub rx_filtered: u64,
    /// Frames handed to the PUB socket.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the PUB socket refused.
    pub tx_errors: u64,
}

/// The subscription prefixes of a link: the empty prefix (everything) for
/// a promiscuous or v1 link, else two bytes `prio:2 | dst:14`, big-endian,
/// for every priority and every address in `addrs`, as libcsp 2.x
/// subscribes.
///
/// With libcsp 1.x framing the prefix is the one-byte next-hop address in
/// front of the header, so each address is one one-byte subscription.
pub fn subscriptions(
    version: Version,
    framing: ZmqFraming,
    promiscuous: bool,
    addrs: &[u16],
) -> Vec<Vec<u8>> {
    if promiscuous {
        return vec![Vec::new()];
    }
    if framing == ZmqFraming::Libcsp1 {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for &addr in addrs {
            let prefix = vec![addr as u8];
            if !out.contains(&prefix) {
                out.push(prefix);
            }
        }
        return out;
    }
    if version == Version::V1 {
        return vec![Vec::new()];
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for &addr in addrs {
        for prio in 0..4u16 {
            let prefix = ((prio << 14) | (addr & 0x3FFF)).to_be_bytes().to_vec();
            if !out.contains(&prefix) {
                out.push(prefix);
            }
        }
    }
    out
}

/// A ZMQ hub link in the daemon's poll.
pub struct ZmqLink {
    /// Name routes use.
    pub name: String,
    /// Header version on the hub.
    pub version: Version,
    /// Receives every frame on the hub.
    pub promiscuous: bool,
    /// Message layout.
    pub framing: ZmqFraming,
    /// The proxy's XSUB endpoint, published to.
    pub pub_endpoint: String,
    /// The proxy's XPUB endpoint, subscribed at.
    pub sub_endpoint: String,
    publisher: zmq::Socket,
    subscriber: zmq::Socket,
    fd: RawFd,
    pub_fd: RawFd,
    token: Token,
    /// Destinations received for (when not promiscuous).
    addrs: Vec<u16>,
    subscriptions: usize,
    buf: Vec<u8>,
    /// Counters.
    pub stats: ZmqLinkStats,
}

impl std::fmt::Debug for ZmqLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqLink")
            .field("name", &self.name)
            .field("pub_endpoint", &self.pub_endpoint)
            .field("sub_endpoint", &self.sub_endpoint)
            .finish_non_exhaustive()
    }
}

fn zerr(what: String) -> impl FnOnce(zmq::Error) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

impl ZmqLink {
    /// Open the sockets of `cfg` in `ctx` for node `node`, start connecting
    /// (ZeroMQ connects in the background: no proxy yet is no error) and
    /// register the SUB socket's descriptor with `registry` under `token`,
    /// the PUB socket's under the token after it.
    pub fn open(
        cfg: &ZmqConfig,
        node: u16,
        ctx: &zmq::Context,
        token: Token,
        registry: &Registry,
    ) -> io::Result<ZmqLink> {
        let version = cfg.header_version();
        let name = &cfg.name;
        let publisher = ctx
            .socket(zmq::PUB)
            .map_err(zerr(format!("zmq {name}: PUB socket")))?;
        let subscriber = ctx
            .socket(zmq::SUB)
            .map_err(zerr(format!("zmq {name}: SUB socket")))?;
        for s in [&publisher, &subscriber] {
            s.set_linger(LINGER_MS)
                .and_then(|()| s.set_reconnect_ivl_max(RECONNECT_MAX_MS))
                .map_err(zerr(format!("zmq {name}: socket options")))?;
        }
        subscriber
            .set_maxmsgsize(MAX_MSG_SIZE)
            .map_err(zerr(format!("zmq {name}: socket options")))?;

        let mut addrs = vec![node, version.max_addr()];
        for &a in &cfg.subscribe {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        let subs = subscriptions(version, cfg.framing, cfg.promiscuous, &addrs);
        for s in &subs {
            subscriber
                .set_subscribe(s)
                .map_err(zerr(format!("zmq {name}: subscribe")))?;
        }
        publisher
            .connect(&cfg.pub_endpoint)
            .map_err(zerr(format!("zmq {name}: connect {}", cfg.pub_endpoint)))?;
        subscriber
            .connect(&cfg.sub_endpoint)
            .map_err(zerr(format!("zmq {name}: connect {}", cfg.sub_endpoint)))?;
        let fd = subscriber
            .get_fd()
            .map_err(zerr(format!("zmq {name}: ZMQ_FD")))?;
        let pub_fd = publisher
            .get_fd()
            .map_err(zerr(format!("zmq {name}: ZMQ_FD")))?;
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        registry.register(
            &mut SourceFd(&pub_fd),
            Token(token.0 + 1),
            Interest::READABLE,
        )?;
        log::info!(
            "zmq {name}: pub {} sub {} version {:?}{}",
            cfg.pub_endpoint,
            cfg.sub_endpoint,
            version,
            if cfg.promiscuous { " promiscuous" } else { "" }
        );
        Ok(ZmqLink {
            name: name.clone(),
            version,
            promiscuous: cfg.promiscuous,
            framing: cfg.framing,
            pub_endpoint: cfg.pub_endpoint.clone(),
            sub_endpoint: cfg.sub_endpoint.clone(),
            publisher,
            subscriber,
            fd,
            pub_fd,
            token,
            addrs,
            subscriptions: subs.len(),
            buf: vec![0; MAX_FRAME],
            stats: ZmqLinkStats::default(),
        })
    }

    /// Whether `token` is this link's SUB socket's (true) or its PUB
    /// socket's (false); None if neither.
    pub fn owns(&self, token: Token) -> Option<bool> {
        if token == self.token {
            Some(true)
        } else if token.0 == self.token.0 + 1 {
            Some(false)
        } else {
            None
        }
    }

    /// The PUB socket's descriptor fired: let it process its commands
    /// (subscriptions arriving, peers attached or lost). Asking
    /// `ZMQ_EVENTS` does that and re-arms the descriptor; there is nothing
    /// to read on a PUB socket.
    pub fn on_pub_event(&mut self) {
        if let Err(e) = self.publisher.get_events() {
            log::debug!("zmq {}: PUB ZMQ_EVENTS: {e}", self.name);
        }
    }

    /// Number of subscription prefixes (1, the empty one, when receiving
    /// everything).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Whether a frame whose next hop is `hop` is received here.
    fn accepts(&self, hop: u16) -> bool {
        self.promiscuous || self.addrs.contains(&hop)
    }

    /// Receive the frames waiting, at most `budget` messages, and hand each
    /// to `on_frame`. Returns true if the budget ran out: the caller must
    /// come back without waiting for the descriptor (see the module notes).
    pub fn recv_all(&mut self, budget: usize, mut on_frame: impl FnMut(&[u8])) -> bool {
        for _ in 0..budget {
            // Asking ZMQ_EVENTS processes pending commands and re-arms ZMQ_FD.
            match self.subscriber.get_events() {
                Ok(ev) if ev.contains(zmq::POLLIN) => {}
                Ok(_) => return false,
                Err(e) => {
                    self.stats.rx_errors += 1;
                    log::warn!("zmq {}: ZMQ_EVENTS: {e}", self.name);
                    return false;
                }
            }
            let n = match self.subscriber.recv_into(&mut self.buf, zmq::DONTWAIT) {
                Ok(n) => n,
                Err(zmq::Error::EAGAIN) => return false,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    self.stats.rx_errors += 1;
                    log::debug!("zmq {}: receive: {e}", self.name);
                    continue;
                }
            };
            if self.subscriber.get_rcvmore().unwrap_or(false) {
                // Not from libcsp (it sends single-part messages): skip the
                // rest of the message, which has arrived whole.
                while self
                    .subscriber
                    .recv_into(&mut self.buf, zmq::DONTWAIT)
                    .is_ok()
                    && self.subscriber.get_rcvmore().unwrap_or(false)
                {}
                self.stats.rx_errors += 1;
                continue;
            }
            if n > self.buf.len() {
                self.stats.rx_too_long += 1;
                continue;
            }
            let prefix = usize::from(self.framing == ZmqFraming::Libcsp1);
            if n < prefix + self.version.header_len() {
                self.stats.rx_errors += 1;
                log::debug!("zmq {}: {n}-byte message is not a CSP frame", self.name);
                continue;
            }
            let hop = if prefix == 1 {
                // libcsp 1.x: the header word arrives little-endian.
                self.buf[1..5].reverse();
                u16::from(self.buf[0])
            } else {
                HeaderView::new_checked(&self.buf[..n], self.version)
                    .map_or(u16::MAX, |h| h.dst().get())
            };
            let frame = &self.buf[prefix..n];
            if !self.accepts(hop) {
                self.stats.rx_filtered += 1;
                continue;
            }
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += n as u64;
            on_frame(frame);
        }
        true
    }

    /// Publish one frame (`header | data`, the header in the link's
    /// version) whose next hop is `hop` (used by libcsp 1.x framing only).
    /// Never blocks.
    pub fn send(&mut self, frame: &[u8], hop: u16) -> bool {
        let sent = if self.framing == ZmqFraming::Libcsp1 && frame.len() >= 4 {
            let mut msg = Vec::with_capacity(1 + frame.len());
            msg.push(hop as u8);
            msg.extend(frame[..4].iter().rev());
            msg.extend_from_slice(&frame[4..]);
            self.publisher.send(msg, zmq::DONTWAIT)
        } else {
            self.publisher.send(frame, zmq::DONTWAIT)
        };
        match sent {
            Ok(()) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += frame.len() as u64;
                true
            }
            Err(e) => {
                self.stats.tx_errors += 1;
                log::debug!("zmq {}: send: {e}", self.name);
                false
            }
        }
    }

    /// Take the descriptor out of the poll (on shutdown).
    pub fn close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.fd));
        let _ = registry.deregister(&mut SourceFd(&self.pub_fd));
    }
}

/// A bound hub, ready to [`run`](Proxy::run): XSUB (where nodes publish)
/// and XPUB (where they subscribe), as libcsp's `zmqproxy`.
pub struct Proxy {
    xsub: zmq::Socket,
    xpub: zmq::Socket,
    control: zmq::Socket,
}

/// Stops a running [`Proxy`] from another thread.
pub struct ProxyStop(zmq::Socket);

/// Tells apart the control endpoints of proxies in one process (tests).
static PROXY_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Proxy {
    /// Bind both endpoints (`tcp://*:6000`, `tcp://127.0.0.1:0`, ...).
    pub fn bind(xsub: &str, xpub: &str) -> io::Result<(Proxy, ProxyStop)> {
        let ctx = zmq::Context::new();
        let front = ctx.socket(zmq::XSUB).map_err(zerr("XSUB socket".into()))?;
        front.bind(xsub).map_err(zerr(format!("bind {xsub}")))?;
        let back = ctx.socket(zmq::XPUB).map_err(zerr("XPUB socket".into()))?;
        back.bind(xpub).map_err(zerr(format!("bind {xpub}")))?;
        // The proxy blocks in libzmq's own loop; the only clean way out is a
        // TERMINATE command on its control socket, sent by whoever watches
        // for signals (a PAIR over inproc: no port, no descriptor to poll).
        let seq = PROXY_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let endpoint = format!("inproc://csp-muxd-proxy-control-{seq}");
        let control = ctx
            .socket(zmq::PAIR)
            .map_err(zerr("control socket".into()))?;
        control
            .bind(&endpoint)
            .map_err(zerr(format!("bind {endpoint}")))?;
        let stop = ctx
            .socket(zmq::PAIR)
            .map_err(zerr("control socket".into()))?;
        stop.connect(&endpoint)
            .map_err(zerr(format!("connect {endpoint}")))?;
        for s in [&front, &back, &stop] {
            s.set_linger(0).map_err(zerr("socket options".into()))?;
        }
        Ok((
            Proxy {
                xsub: front,
                xpub: back,
                control,
            },
            ProxyStop(stop),
        ))
    }

    /// The bound endpoints, XSUB then XPUB (a port 0 resolved).
    pub fn endpoints(&self) -> (String, String) {
        let ep = |s: &zmq::Socket| {
            s.get_last_endpoint()
                .ok()
                .and_then(Result::ok)
                .unwrap_or_else(|| "?".into())
        };
        (ep(&self.xsub), ep(&self.xpub))
    }

    /// Forward between the two sides until stopped. A signal interrupting
    /// the proxy's wait (EINTR) also ends it: the daemon's signals are
    /// SIGINT and SIGTERM, both meaning stop.
    pub fn run(mut self) -> io::Result<()> {
        match zmq::proxy_steerable(&mut self.xsub, &mut self.xpub, &mut self.control) {
            Ok(()) | Err(zmq::Error::EINTR) | Err(zmq::Error::ETERM) => Ok(()),
            Err(e) => Err(io::Error::other(format!("zmq proxy: {e}"))),
        }
    }
}

impl ProxyStop {
    /// Make the proxy return from [`Proxy::run`].
    pub fn stop(self) {
        let _ = self.0.send("TERMINATE", 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csp_core::{Addr, Flags, Header, Port, Prio};
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    #[test]
    fn v2_subscriptions_are_prio_and_destination_big_endian() {
        let subs = subscriptions(Version::V2, ZmqFraming::Libcsp2, false, &[11, 16383]);
        assert_eq!(
            subs,
            [
                [0x00, 0x0B],
                [0x40, 0x0B],
                [0x80, 0x0B],
                [0xC0, 0x0B],
                [0x3F, 0xFF],
                [0x7F, 0xFF],
                [0xBF, 0xFF],
                [0xFF, 0xFF],
            ]
        );
        let l2 = ZmqFraming::Libcsp2;
        assert_eq!(
            subscriptions(Version::V2, l2, true, &[11]),
            [Vec::<u8>::new()]
        );
        assert_eq!(
            subscriptions(Version::V1, l2, false, &[11]),
            [Vec::<u8>::new()]
        );
        assert_eq!(subscriptions(Version::V2, l2, false, &[5, 5]).len(), 4);
        let l1 = ZmqFraming::Libcsp1;
        assert_eq!(subscriptions(Version::V1, l1, false, &[5, 31]), [[5], [31]]);
        assert_eq!(
            subscriptions(Version::V1, l1, true, &[5]),
            [Vec::<u8>::new()]
        );
    }

    proptest! {
        /// A frame matches a subscription prefix exactly when its
        /// destination is one subscribed to, whatever the other fields.
        #[test]
        fn a_prefix_selects_exactly_the_destination(
            dst in 0u16..16384, src in 0u16..16384, prio in 0u8..4,
            dport in 0u8..64, sport in 0u8..64, want in prop::collection::vec(0u16..16384, 1..4),
        ) {
            let h = Header {
                prio: Prio::new(prio).unwrap(),
                src: Addr::new(src).unwrap(),
                dst: Addr::new(dst).unwrap(),
                dport: Port::new(dport).unwrap(),
                sport: Port::new(sport).unwrap(),
                flags: Flags::NONE,
            };
            let (bytes, n) = h.to_bytes(Version::V2).unwrap();
            let frame = &bytes[..n];
            let subs = subscriptions(Version::V2, ZmqFraming::Libcsp2, false, &want);
            let matched = subs.iter().any(|s| frame.starts_with(s));
            prop_assert_eq!(matched, want.contains(&dst));
        }
    }

    /// A link published to and subscribed at an in-process proxy: what it
    /// sends for a subscribed destination comes back, other frames do not.
    #[test]
    fn link_through_a_proxy_receives_only_its_destinations() {
        let (proxy, stop) = Proxy::bind("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").unwrap();
        let (xsub, xpub) = proxy.endpoints();
        let thread = std::thread::spawn(move || proxy.run());
        let poll = mio::Poll::new().unwrap();
        let ctx = zmq::Context::new();
        let cfg = ZmqConfig {
            name: "hub".into(),
            pub_endpoint: xsub,
            sub_endpoint: xpub,
            subscribe: vec![20],
            ..ZmqConfig::default()
        };
        let mut link = ZmqLink::open(&cfg, 11, &ctx, Token(0), poll.registry()).unwrap();
        assert_eq!(
            (
                link.owns(Token(0)),
                link.owns(Token(1)),
                link.owns(Token(2))
            ),
            (Some(true), Some(false), None)
        );
        assert_eq!(link.subscription_count(), 12);
        let frame = |dst: u16, tag: u8| {
            let h = Header {
                prio: Prio::Normal,
                src: Addr::new(3).unwrap(),
                dst: Addr::new(dst).unwrap(),
                dport: Port::new(10).unwrap(),
                sport: Port::new(20).unwrap(),
                flags: Flags::NONE,
            };
            let (b, n) = h.to_bytes(Version::V2).unwrap();
            let mut f = b[..n].to_vec();
            f.push(tag);
            f
        };
        // The subscriptions travel to the publisher through the proxy
        // (ZeroMQ's slow joiner): send until the first one comes back.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.is_empty() {
            assert!(Instant::now() < deadline, "nothing came back");
            link.send(&frame(12, 0), 0);
            link.send(&frame(11, 1), 0);
            std::thread::sleep(Duration::from_millis(20));
            link.recv_all(64, |f| got.push(f.to_vec()));
        }
        got.clear();
        for (dst, tag) in [(12, 2), (11, 3), (13, 4), (16383, 5), (20, 6)] {
            assert!(link.send(&frame(dst, tag), 0));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 3 {
            assert!(Instant::now() < deadline, "got {got:?}");
            std::thread::sleep(Duration::from_millis(5));
            link.recv_all(64, |f| got.push(f.to_vec()));
        }
        std::thread::sleep(Duration::from_millis(50));
        link.recv_all(64, |f| got.push(f.to_vec()));
        let tags: Vec<u8> = got.iter().map(|f| f[6]).collect();
        assert_eq!(tags, [3, 5, 6], "own address, broadcast, subscribed");
        assert_eq!(link.stats.rx_filtered, 0, "filtered by ZeroMQ, not here");
        assert_eq!(link.stats.tx_errors, 0);

        // A budget of one leaves the rest for the next round.
        link.send(&frame(11, 7), 0);
        link.send(&frame(11, 8), 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut more = Vec::new();
        while more.len() < 2 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
            if link.recv_all(1, |f| more.push(f[6])) {
                assert!(more.len() <= 2);
            }
        }
        assert_eq!(more, [7, 8]);

        stop.stop();
        thread.join().unwrap().unwrap();
    }
}
