//! The daemon's links and the interfaces the route table points at.
//!
//! An interface is what a route names: for UDP, the link plus one peer
//! address (libcsp's UDP interface has exactly one peer; here every route
//! line may name its own `HOST:PORT`, and routes naming the same peer share
//! one interface). For KISS, the interface is the link itself, named by its
//! `name`, and so for a ZMQ hub link. The route table stores only the
//! interface id.

use std::net::SocketAddr;
use std::time::Instant;

use mio::{Registry, Token};

use csp_core::route::{IfaceId, RouteTable};
use csp_core::service::IfStats;
use csp_core::{Header, Version};

use crate::config::Config;
use crate::kiss::KissLink;
use crate::socketcan::SocketCanLink;
use crate::udp::UdpLink;
use crate::zmqhub::ZmqLink;

/// What an interface sends through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceKind {
    /// The UDP link, to one peer.
    Udp {
        /// Where datagrams go.
        peer: SocketAddr,
    },
    /// A KISS link.
    Kiss {
        /// Index into the config's `[[kiss]]` tables (and [`Links::kiss`]).
        link: usize,
    },
    /// A ZMQ hub link.
    Zmq {
        /// Index into the config's `[[zmq]]` tables (and [`Links::zmq`]).
        link: usize,
    },
    /// A SocketCAN link.
    SocketCan {
        /// Index into [`Links::socketcan`] (the socketcan `[[can]]` tables
        /// in config order).
        link: usize,
    },
}

/// One interface and its counters.
#[derive(Debug, Clone)]
pub struct Iface {
    /// Name shown in routes and status (`udp:HOST:PORT`, or the KISS
    /// link's name).
    pub name: String,
    /// How it sends.
    pub kind: IfaceKind,
    /// Frames sent through it.
    pub tx_frames: u64,
    /// Frames received from its peer.
    pub rx_frames: u64,
    /// Frames that could not be sent (header does not fit the link version,
    /// socket full).
    pub tx_errors: u64,
}

/// A route configuration problem: the config key, the byte offset of the
/// offending string in the config file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfigError {
    /// `routes` or `route_string`.
    pub key: &'static str,
    /// Byte offset of the string in the config text.
    pub at: usize,
    /// What is wrong, naming the bad token.
    pub message: String,
}

/// The interfaces the routes need and the route table pointing at them,
/// worked out from the configuration alone (no sockets), so a bad route is
/// a config error reported with its line before anything is opened.
#[derive(Debug)]
pub struct RoutePlan<const N: usize> {
    /// The table.
    pub table: RouteTable<N>,
    /// Interfaces, indexed by [`IfaceId`].
    pub ifaces: Vec<Iface>,
}

impl<const N: usize> RoutePlan<N> {
    /// Routes from `routes` (our syntax, which allows `HOST:PORT` for UDP)
    /// and then `route_string` (libcsp's syntax).
    pub fn from_config(cfg: &Config) -> Result<RoutePlan<N>, RouteConfigError> {
        let mut plan = RoutePlan {
            table: RouteTable::new(Version::V2),
            ifaces: Vec::new(),
        };
        // One interface per KISS link, whether or not a route names it, so
        // its received frames are counted too.
        for (link, k) in cfg.kiss.iter().enumerate() {
            let kind = IfaceKind::Kiss { link };
            if u8::try_from(plan.ifaces.len()).is_err() {
                return Err(RouteConfigError {
                    key: "kiss",
                    at: 0,
                    message: "too many links".into(),
                });
            }
            plan.ifaces.push(Iface::new(k.name.clone(), kind));
        }
        for (link, z) in cfg.zmq.iter().enumerate() {
            if u8::try_from(plan.ifaces.len()).is_err() {
                return Err(RouteConfigError {
                    key: "zmq",
                    at: 0,
                    message: "too many links".into(),
                });
            }
            plan.ifaces
                .push(Iface::new(z.name.clone(), IfaceKind::Zmq { link }));
        }
        for (link, c) in cfg.socketcan_links().enumerate() {
            if u8::try_from(plan.ifaces.len()).is_err() {
                return Err(RouteConfigError {
                    key: "can",
                    at: 0,
                    message: "too many links".into(),
                });
            }
            plan.ifaces
                .push(Iface::new(c.name.clone(), IfaceKind::SocketCan { link }));
        }
        let udp_default = match cfg.udp.peer {
            Some(peer) if cfg.udp.enabled => plan.udp_iface(peer),
            _ => None,
        };
        for line in &cfg.routes {
            let text = line.get_ref().as_str();
            let err = |message| RouteConfigError {
                key: "routes",
                at: line.span().start,
                message,
            };
            let tokens: Vec<&str> = text.split_whitespace().collect();
            // `ADDR[/BITS] udp HOST:PORT`: the third token is a peer, not a via address.
            let (entry, iface) = match tokens.as_slice() {
                [prefix, link, peer] if link.eq_ignore_ascii_case("udp") && peer.contains(':') => {
                    let peer: SocketAddr = peer
                        .parse()
                        .map_err(|_| err(format!("{peer:?} is not HOST:PORT in {text:?}")))?;
                    (format!("{prefix} {link}"), plan.udp_iface(peer))
                }
                _ => (text.to_string(), udp_default),
            };
            plan.load(cfg, &entry, iface).map_err(err)?;
        }
        if let Some(s) = &cfg.route_string {
            plan.load(cfg, s.get_ref(), udp_default)
                .map_err(|message| RouteConfigError {
                    key: "route_string",
                    at: s.span().start,
                    message,
                })?;
        }
        Ok(plan)
    }

    /// The interface for UDP peer `peer`, created on first use.
    fn udp_iface(&mut self, peer: SocketAddr) -> Option<IfaceId> {
        let kind = IfaceKind::Udp { peer };
        if let Some(i) = self.ifaces.iter().position(|f| f.kind == kind) {
            return u8::try_from(i).ok().map(IfaceId);
        }
        let id = u8::try_from(self.ifaces.len()).ok()?;
        self.ifaces.push(Iface::new(format!("udp:{peer}"), kind));
        Some(IfaceId(id))
    }

    fn load(&mut self, cfg: &Config, entry: &str, udp: Option<IfaceId>) -> Result<(), String> {
        let mut missing = None;
        // Named links (KISS, ZMQ): their interfaces are theirs alone.
        let named: Vec<(String, Option<IfaceId>)> = self
            .ifaces
            .iter()
            .enumerate()
            .filter(|(_, f)| !matches!(f.kind, IfaceKind::Udp { .. }))
            .map(|(i, f)| (f.name.clone(), u8::try_from(i).ok().map(IfaceId)))
            .collect();
        let result = self.table.load(entry, |name| {
            if let Some((_, id)) = named.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return *id;
            }
            if !name.eq_ignore_ascii_case("udp") {
                return None;
            }
            if !cfg.udp.enabled {
                missing = Some("route uses udp but udp.enabled is false");
            } else if udp.is_none() {
                missing = Some("route names udp without HOST:PORT and udp.peer is not set");
            }
            udp
        });
        match (result, missing) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(why)) => Err(format!("{entry:?}: {why}")),
            (Err(e), None) => Err(format!("{entry:?}: {}", e.display_in(entry))),
        }
    }
}

impl Iface {
    fn new(name: String, kind: IfaceKind) -> Iface {
        Iface {
            name,
            kind,
            tx_frames: 0,
            rx_frames: 0,
            tx_errors: 0,
        }
    }
}

/// All links of the daemon and the interfaces routes point at.
#[derive(Debug)]
pub struct Links {
    /// The UDP link, if enabled.
    pub udp: Option<UdpLink>,
    /// The KISS links, in config order.
    pub kiss: Vec<KissLink>,
    /// The ZMQ hub links, in config order.
    pub zmq: Vec<ZmqLink>,
    /// The SocketCAN links, in config order.
    pub socketcan: Vec<SocketCanLink>,
    ifaces: Vec<Iface>,
}

impl Links {
    /// Open the links the config enables, for the interfaces of `plan`.
    /// KISS link `i` registers with `registry` under `kiss_token(i)` and
    /// the token after it, ZMQ link `i` under `zmq_token(i)`.
    pub fn open(
        cfg: &Config,
        ifaces: Vec<Iface>,
        registry: &Registry,
        kiss_token: impl Fn(usize) -> Token,
        zmq_token: impl Fn(usize) -> Token,
        socketcan_token: impl Fn(usize) -> Token,
    ) -> std::io::Result<Links> {
        let version = if cfg.udp.version == 1 {
            Version::V1
        } else {
            Version::V2
        };
        let udp = if cfg.udp.enabled {
            Some(UdpLink::bind(cfg.udp.bind, version).map_err(|e| {
                std::io::Error::new(e.kind(), format!("udp.bind = \"{}\": {e}", cfg.udp.bind))
            })?)
        } else {
            None
        };
        let now = Instant::now();
        let kiss = cfg
            .kiss
            .iter()
            .enumerate()
            .map(|(i, k)| {
                KissLink::open(k, kiss_token(i), registry, now)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("[[kiss]] {}: {e}", k.name)))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        // One ZeroMQ context (one libzmq I/O thread) for all hub links.
        let zmq = if cfg.zmq.is_empty() {
            Vec::new()
        } else {
            let ctx = zmq::Context::new();
            cfg.zmq
                .iter()
                .enumerate()
                .map(|(i, z)| ZmqLink::open(z, cfg.node.address, &ctx, zmq_token(i), registry))
                .collect::<std::io::Result<Vec<_>>>()?
        };
        let socketcan = cfg
            .socketcan_links()
            .enumerate()
            .map(|(i, c)| {
                SocketCanLink::open(c, cfg.node.address, socketcan_token(i), registry)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("[[can]] {}: {e}", c.name)))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Links {
            udp,
            kiss,
            zmq,
            socketcan,
            ifaces,
        })
    }

    /// Name of an interface, for route printing.
    pub fn name(&self, id: IfaceId) -> &str {
        self.ifaces
            .get(id.0 as usize)
            .map_or("?", |i| i.name.as_str())
    }

    /// Send `header | data` on interface `id` towards `via` (the route's
    /// next hop, if any), with the header emitted for the link's version.
    /// False if it could not be sent (counted).
    pub fn send(
        &mut self,
        id: IfaceId,
        via: Option<csp_core::Addr>,
        header: &Header,
        data: &[u8],
        registry: &Registry,
    ) -> bool {
        let Some(iface) = self.ifaces.get_mut(id.0 as usize) else {
            return false;
        };
        match iface.kind {
            IfaceKind::Udp { peer } => {
                let Some(udp) = self.udp.as_mut() else {
                    iface.tx_errors += 1;
                    return false;
                };
                let Ok((bytes, n)) = header.to_bytes(udp.version) else {
                    iface.tx_errors += 1;
                    log::debug!("{}: header does not fit {:?}", iface.name, udp.version);
                    return false;
                };
                // Queued for the round's sendmmsg: a frame the socket then
                // refuses is counted by the link and in the daemon's
                // link_errors (Links::flush).
                udp.send_parts(&bytes[..n], data, peer);
                iface.tx_frames += 1;
                true
            }
            IfaceKind::Kiss { link } => {
                let Some(kiss) = self.kiss.get_mut(link) else {
                    iface.tx_errors += 1;
                    return false;
                };
                let Ok((bytes, n)) = header.to_bytes(kiss.version) else {
                    iface.tx_errors += 1;
                    kiss.stats.tx_errors += 1;
                    log::debug!("{}: header does not fit {:?}", iface.name, kiss.version);
                    return false;
                };
                let mut frame = Vec::with_capacity(n + data.len());
                frame.extend_from_slice(&bytes[..n]);
                frame.extend_from_slice(data);
                let ok = kiss.send_via(&frame, via, registry, Instant::now());
                if ok {
                    iface.tx_frames += 1;
                } else {
                    iface.tx_errors += 1;
                }
                ok
            }
            IfaceKind::SocketCan { link } => {
                let Some(can) = self.socketcan.get_mut(link) else {
                    iface.tx_errors += 1;
                    return false;
                };
                let Ok((bytes, n)) = header.to_bytes(can.version) else {
                    iface.tx_errors += 1;
                    can.stats.tx_errors += 1;
                    return false;
                };
                let mut frame = Vec::with_capacity(n + data.len());
                frame.extend_from_slice(&bytes[..n]);
                frame.extend_from_slice(data);
                let ok = can.send(&frame, via, registry);
                if ok {
                    iface.tx_frames += 1;
                } else {
                    iface.tx_errors += 1;
                }
                ok
            }
            IfaceKind::Zmq { link } => {
                let Some(zmq) = self.zmq.get_mut(link) else {
                    iface.tx_errors += 1;
                    return false;
                };
                let Ok((bytes, n)) = header.to_bytes(zmq.version) else {
                    iface.tx_errors += 1;
                    zmq.stats.tx_errors += 1;
                    log::debug!("{}: header does not fit {:?}", iface.name, zmq.version);
                    return false;
                };
                let mut frame = Vec::with_capacity(n + data.len());
                frame.extend_from_slice(&bytes[..n]);
                frame.extend_from_slice(data);
                let hop = via.unwrap_or(header.dst).get();
                let ok = zmq.send(&frame, hop);
                if ok {
                    iface.tx_frames += 1;
                } else {
                    iface.tx_errors += 1;
                }
                ok
            }
        }
    }

    /// The link an interface sends on and its header version, as the
    /// capture names it.
    pub fn capture_link(&self, id: IfaceId) -> Option<(crate::capture::LinkRef, Version)> {
        use crate::capture::LinkRef;
        match self.ifaces.get(id.0 as usize)?.kind {
            IfaceKind::Udp { .. } => Some((LinkRef::Udp, self.udp.as_ref()?.version)),
            IfaceKind::Kiss { link } => Some((LinkRef::Kiss(link), self.kiss.get(link)?.version)),
            IfaceKind::Zmq { link } => Some((LinkRef::Zmq(link), self.zmq.get(link)?.version)),
            IfaceKind::SocketCan { link } => {
                Some((LinkRef::SocketCan(link), self.socketcan.get(link)?.version))
            }
        }
    }

    /// The interface of ZMQ link `link`.
    pub fn zmq_iface(&self, link: usize) -> Option<IfaceId> {
        let i = self
            .ifaces
            .iter()
            .position(|i| i.kind == IfaceKind::Zmq { link })?;
        u8::try_from(i).ok().map(IfaceId)
    }

    /// Count a frame received on `link` against its interface (UDP
    /// frames count by sender: [`Links::note_rx`]).
    pub fn note_link_rx(&mut self, link: crate::capture::LinkRef) {
        use crate::capture::LinkRef;
        let kind = match link {
            LinkRef::Kiss(link) => IfaceKind::Kiss { link },
            LinkRef::Zmq(link) => IfaceKind::Zmq { link },
            LinkRef::SocketCan(link) => IfaceKind::SocketCan { link },
            LinkRef::Udp | LinkRef::Local => return,
        };
        if let Some(i) = self.ifaces.iter_mut().find(|i| i.kind == kind) {
            i.rx_frames += 1;
        }
    }

    /// The earliest time a link wants its timer run.
    pub fn deadline(&self) -> Option<Instant> {
        let kiss = self.kiss.iter().filter_map(KissLink::deadline);
        let can = self.socketcan.iter().filter_map(SocketCanLink::deadline);
        kiss.chain(can).min()
    }

    /// Run the links' timers that are due.
    pub fn on_timers(&mut self, registry: &Registry, now: Instant) {
        for k in &mut self.kiss {
            k.on_timer(registry, now);
        }
        for c in &mut self.socketcan {
            if c.deadline().is_some_and(|d| d <= now) {
                c.on_timer(now);
            }
        }
    }

    /// Send what the links batch (the UDP link's `sendmmsg` queue);
    /// returns how many frames were dropped doing so. The daemon calls it
    /// before it waits, so nothing queued waits with it.
    pub fn flush(&mut self) -> u64 {
        self.udp.as_mut().map_or(0, UdpLink::flush)
    }

    /// Count a frame received from `from` against its interface, if any.
    pub fn note_rx(&mut self, from: SocketAddr) {
        if let Some(i) = self
            .ifaces
            .iter_mut()
            .find(|i| i.kind == IfaceKind::Udp { peer: from })
        {
            i.rx_frames += 1;
        }
    }

    /// One line per link and interface, for `csp status`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(udp) = &self.udp {
            let addr = udp.local_addr().map_or("?".to_string(), |a| a.to_string());
            out.push(format!("udp bind={addr} version={:?}", udp.version));
        }
        for k in &self.kiss {
            let (kind, mode) = if k.can_stats().is_some() {
                ("can", "slcan")
            } else {
                ("kiss", k.mode.as_str())
            };
            out.push(format!(
                "{} {kind} mode={mode} at={} state={} version={:?} queued={}",
                k.name,
                k.endpoint(),
                k.state(),
                k.version,
                k.queued()
            ));
        }
        for z in &self.zmq {
            out.push(format!(
                "{} zmq pub={} sub={} version={:?} framing={} promiscuous={} subscriptions={}",
                z.name,
                z.pub_endpoint,
                z.sub_endpoint,
                z.version,
                z.framing.as_str(),
                z.promiscuous,
                z.subscription_count()
            ));
        }
        for c in &self.socketcan {
            out.push(format!(
                "{} can mode=socketcan interface={} version={:?} queued={}",
                c.name,
                c.interface,
                c.version,
                c.queued()
            ));
        }
        for i in &self.ifaces {
            out.push(format!("iface {}", i.name));
        }
        out
    }

    /// The counters of the link called `name` (case-insensitive: `udp`, a
    /// KISS, CAN or ZMQ link's name) as CMP interface statistics carry them;
    /// `None` for a name no link has, which libcsp answers with no reply.
    /// Counters are taken modulo 2^32, as libcsp's own u32 counters wrap.
    pub fn if_stats(&self, name: &str) -> Option<IfStats> {
        let w = |v: u64| v as u32;
        if name.eq_ignore_ascii_case("udp") {
            let s = self.udp.as_ref()?.stats;
            return Some(IfStats {
                tx: w(s.tx_frames),
                rx: w(s.rx_frames),
                tx_error: w(s.tx_errors),
                rx_error: w(s.rx_errors),
                txbytes: w(s.tx_bytes),
                rxbytes: w(s.rx_bytes),
                ..IfStats::default()
            });
        }
        if let Some(k) = self.kiss.iter().find(|k| k.name.eq_ignore_ascii_case(name)) {
            let (s, d) = (k.stats, k.kiss_stats());
            let frame = [d.bad_crc, d.bad_escape, d.too_short, d.oversize]
                .into_iter()
                .map(u64::from)
                .sum::<u64>();
            return Some(IfStats {
                tx: w(s.tx_frames),
                rx: w(s.rx_frames),
                tx_error: w(s.tx_errors),
                rx_error: w(s.rx_too_long + frame),
                drop: w(s.tx_queue_full),
                frame: w(frame),
                txbytes: w(s.tx_bytes),
                rxbytes: w(s.rx_bytes),
                ..IfStats::default()
            });
        }
        if let Some(c) = self
            .socketcan
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
        {
            let (s, f) = (c.stats, c.cfp_stats());
            let frame = u64::from(f.out_of_order)
                + u64::from(f.overlong)
                + u64::from(f.orphans)
                + u64::from(f.malformed);
            return Some(IfStats {
                tx: w(s.tx_packets),
                rx: w(s.rx_packets),
                tx_error: w(s.tx_errors),
                rx_error: w(s.rx_errors + frame),
                drop: w(s.tx_queue_full + u64::from(f.lost)),
                frame: w(frame),
                ..IfStats::default()
            });
        }
        let z = self
            .zmq
            .iter()
            .find(|z| z.name.eq_ignore_ascii_case(name))?;
        let s = z.stats;
        Some(IfStats {
            tx: w(s.tx_frames),
            rx: w(s.rx_frames),
            tx_error: w(s.tx_errors),
            rx_error: w(s.rx_errors + s.rx_too_long),
            txbytes: w(s.tx_bytes),
            rxbytes: w(s.rx_bytes),
            ..IfStats::default()
        })
    }

    /// Counter lines per link and interface, for `csp status` stats.
    pub fn describe_stats(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(udp) = &self.udp {
            let s = udp.stats;
            out.push(format!(
                "link udp rx_frames={} rx_bytes={} rx_errors={} tx_frames={} tx_bytes={} tx_errors={}",
                s.rx_frames, s.rx_bytes, s.rx_errors, s.tx_frames, s.tx_bytes, s.tx_errors
            ));
        }
        for k in &self.kiss {
            let s = k.stats;
            // The stream's counters, then the framing's: KISS, or for a CAN
            // link the slcan lines and the CFP reassembly.
            let framing = match k.can_stats() {
                Some((l, c)) => format!(
                    "can_frames={} standard_frames={} slcan_acks={} slcan_refused={} \
                     slcan_too_long={} slcan_malformed={} cfp_frames={} cfp_completed={} \
                     cfp_lost={} cfp_out_of_order={} cfp_overlong={} cfp_orphans={} \
                     cfp_no_slot={} cfp_timeouts={} cfp_duplicates={} cfp_malformed={}",
                    l.frames,
                    l.standard,
                    l.acks,
                    l.refused,
                    l.too_long,
                    l.malformed,
                    c.frames,
                    c.completed,
                    c.lost,
                    c.out_of_order,
                    c.overlong,
                    c.orphans,
                    c.no_slot,
                    c.timeouts,
                    c.duplicates,
                    c.malformed
                ),
                None => {
                    let d = k.kiss_stats();
                    format!(
                        "garbage_bytes={} skipped_bytes={} bad_crc={} oversize={} \
                         bad_escape={} too_short={} non_data_command={} crc_with_header={}",
                        d.garbage_bytes,
                        d.skipped_bytes,
                        d.bad_crc,
                        d.oversize,
                        d.bad_escape,
                        d.too_short,
                        d.non_data_command,
                        d.crc_with_header
                    )
                }
            };
            out.push(format!(
                "link {} state={} rx_frames={} rx_bytes={} tx_frames={} tx_bytes={} \
                 tx_queue_full={} tx_errors={} tx_retried={} connects={} disconnects={} \
                 connect_failures={} rx_too_long={} {framing}",
                k.name,
                k.state(),
                s.rx_frames,
                s.rx_bytes,
                s.tx_frames,
                s.tx_bytes,
                s.tx_queue_full,
                s.tx_errors,
                s.tx_retried,
                s.connects,
                s.disconnects,
                s.connect_failures,
                s.rx_too_long,
            ));
        }
        for z in &self.zmq {
            let s = z.stats;
            out.push(format!(
                "link {} rx_frames={} rx_bytes={} rx_errors={} rx_too_long={} rx_filtered={} \
                 tx_frames={} tx_bytes={} tx_errors={}",
                z.name,
                s.rx_frames,
                s.rx_bytes,
                s.rx_errors,
                s.rx_too_long,
                s.rx_filtered,
                s.tx_frames,
                s.tx_bytes,
                s.tx_errors
            ));
        }
        for c in &self.socketcan {
            let (s, f) = (c.stats, c.cfp_stats());
            out.push(format!(
                "link {} rx_frames={} tx_frames={} tx_queue_full={} tx_errors={} \
                 can_frames={} can_tx_frames={} not_cfp_frames={} rx_errors={} \
                 cfp_frames={} cfp_completed={} cfp_lost={} cfp_out_of_order={} \
                 cfp_overlong={} cfp_orphans={} cfp_no_slot={} cfp_timeouts={} \
                 cfp_duplicates={} cfp_malformed={}",
                c.name,
                s.rx_packets,
                s.tx_packets,
                s.tx_queue_full,
                s.tx_errors,
                s.rx_frames,
                s.tx_frames,
                s.rx_not_cfp,
                s.rx_errors,
                f.frames,
                f.completed,
                f.lost,
                f.out_of_order,
                f.overlong,
                f.orphans,
                f.no_slot,
                f.timeouts,
                f.duplicates,
                f.malformed
            ));
        }
        for i in &self.ifaces {
            out.push(format!(
                "iface {} rx_frames={} tx_frames={} tx_errors={}",
                i.name, i.rx_frames, i.tx_frames, i.tx_errors
            ));
        }
        out
    }
}
