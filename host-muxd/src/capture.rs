//! Packet capture: every frame a link carries (and the applications'
//! DATA, as the pseudo-link `local`) copied to the clients that asked for
//! it with CAPTURE_START, as CAPTURE_FRAME messages on their own IPC
//! connection (`docs/capture.md`, `docs/ipc.md`).
//!
//! The daemon never opens a file for a client (it would write with the
//! daemon's rights where the client says), and never waits for one: each
//! capture has a bounded queue in its client's writer, a frame that does
//! not fit is dropped and counted, and what is queued goes out when the
//! socket takes it, after the client's acks and DATA. With no capture
//! running a tap costs one branch.
//!
//! Who may capture: capture shows every application's traffic, keys'
//! results included, so only clients of the daemon's own user (and the
//! uids in `capture.allowed_uids`) by the Unix socket's peer credentials
//! (SO_PEERCRED, which the kernel fills in: it can not be forged), and TCP
//! clients only with `capture.allow_tcp`.

use std::time::{SystemTime, UNIX_EPOCH};

use csp_core::Version;
use csp_ipc::{CaptureEnd, Direction, Message};
use mio::Token;

use crate::client::{Client, Stream};
use crate::config::{CaptureConfig, Config};

/// A link as the capture names it; ids in CAPTURE_LINK/FRAME are indices
/// into [`Captures::links`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRef {
    /// The UDP link.
    Udp,
    /// `[[kiss]]` (and `[[can]]`) link `i`, in config order.
    Kiss(usize),
    /// `[[zmq]]` link `i`.
    Zmq(usize),
    /// SocketCAN link `i` (the socketcan `[[can]]` tables in config order).
    SocketCan(usize),
    /// The IPC socket: DATA from and to applications (v2 headers).
    Local,
}

/// One capturable link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureLink {
    /// Which link.
    pub link: LinkRef,
    /// Its name (`udp`, the table's `name`, `local`).
    pub name: String,
    /// Header version of its frames.
    pub version: Version,
}

/// Daemon-wide capture counters (STATS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Captures started.
    pub started: u64,
    /// CAPTURE_START refused: client not trusted, capture disabled.
    pub refused: u64,
    /// CAPTURE_START that could not be served: unknown link, too many
    /// captures, one running on that connection already.
    pub unavailable: u64,
    /// Frames queued for capturing clients.
    pub frames: u64,
    /// Frames dropped because a capture's queue was full.
    pub dropped: u64,
}

/// One running capture.
#[derive(Debug)]
struct Capture {
    client: Token,
    /// Only this link's frames (an index into `links`); None: all.
    link: Option<u8>,
    /// Frames still to send; None: until stopped.
    remaining: Option<u32>,
    captured: u64,
    dropped: u64,
}

/// Why CAPTURE_START was not granted: the error the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The IPC error code.
    pub code: csp_ipc::ErrorCode,
    /// For the person running `csp capture`.
    pub message: String,
}

/// The captures running and the links they can see.
#[derive(Debug)]
pub struct Captures {
    cfg: CaptureConfig,
    links: Vec<CaptureLink>,
    active: Vec<Capture>,
    /// Clients with frames queued since the last [`Captures::take_dirty`].
    dirty: Vec<Token>,
    /// Counters.
    pub stats: CaptureStats,
    /// The daemon's own uid: always trusted.
    own_uid: u32,
}

impl Captures {
    /// The capturable links of `cfg` (as `Links::open` opens them) and
    /// `local`, nothing running.
    pub fn new(cfg: &Config) -> Captures {
        let version = |v: u8| if v == 1 { Version::V1 } else { Version::V2 };
        let mut links = Vec::new();
        if cfg.udp.enabled {
            links.push(CaptureLink {
                link: LinkRef::Udp,
                name: "udp".into(),
                version: version(cfg.udp.version),
            });
        }
        for (i, k) in cfg.kiss.iter().enumerate() {
            links.push(CaptureLink {
                link: LinkRef::Kiss(i),
                name: k.name.clone(),
                version: k.header_version(),
            });
        }
        for (i, z) in cfg.zmq.iter().enumerate() {
            links.push(CaptureLink {
                link: LinkRef::Zmq(i),
                name: z.name.clone(),
                version: z.header_version(),
            });
        }
        for (i, c) in cfg.socketcan_links().enumerate() {
            links.push(CaptureLink {
                link: LinkRef::SocketCan(i),
                name: c.name.clone(),
                version: version(c.version),
            });
        }
        links.push(CaptureLink {
            link: LinkRef::Local,
            name: "local".into(),
            version: Version::V2,
        });
        // Ids are one byte: a daemon with more links (far beyond any real
        // one) captures the first 256.
        links.truncate(256);
        Captures {
            cfg: cfg.capture.clone(),
            links,
            active: Vec::new(),
            dirty: Vec::new(),
            stats: CaptureStats::default(),
            own_uid: nix::unistd::getuid().as_raw(),
        }
    }

    /// The capturable links, by id.
    pub fn links(&self) -> &[CaptureLink] {
        &self.links
    }

    /// True when nothing is captured: the taps return at once.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Whether the client on `stream` may capture.
    fn trust(&self, stream: &Stream) -> Result<(), String> {
        if !self.cfg.enabled {
            return Err("capture is disabled in this daemon (capture.enabled = false)".into());
        }
        match stream {
            Stream::Tcp(_) if self.cfg.allow_tcp => Ok(()),
            Stream::Tcp(_) => Err(
                "capture is not allowed over the TCP endpoint (capture.allow_tcp = false)".into(),
            ),
            Stream::Unix(s) => {
                let uid =
                    nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
                        .map(|c| c.uid())
                        .map_err(|e| format!("peer credentials unknown ({e}): capture refused"))?;
                if uid == self.own_uid || self.cfg.allowed_uids.contains(&uid) {
                    Ok(())
                } else {
                    Err(format!(
                        "capture is allowed to uid {} (the daemon's) and capture.allowed_uids only; \
                         you are uid {uid}",
                        self.own_uid
                    ))
                }
            }
        }
    }

    /// CAPTURE_START from `token` on `client`: on success the links and
    /// CAPTURE_STARTED are queued on the client's control queue (ahead of
    /// any frame), and frames follow from the next tap.
    pub fn start(
        &mut self,
        token: Token,
        client: &mut Client,
        count: u32,
        link: &str,
    ) -> Result<(), Refusal> {
        if let Err(message) = self.trust(&client.stream) {
            self.stats.refused += 1;
            log::info!("client {} ({}): {message}", token.0, client.name);
            return Err(Refusal {
                code: csp_ipc::ErrorCode::NotAllowed,
                message,
            });
        }
        let unavailable = |stats: &mut CaptureStats, message: String| {
            stats.unavailable += 1;
            Err(Refusal {
                code: csp_ipc::ErrorCode::Unavailable,
                message,
            })
        };
        if self.active.iter().any(|c| c.client == token) {
            return unavailable(
                &mut self.stats,
                "a capture runs on this connection already".into(),
            );
        }
        if self.active.len() >= self.cfg.max_captures {
            return unavailable(
                &mut self.stats,
                format!(
                    "{} captures run already (capture.max_captures)",
                    self.active.len()
                ),
            );
        }
        let filter = if link.is_empty() {
            None
        } else {
            match self.links.iter().position(|l| l.name == link) {
                Some(i) => Some(i as u8),
                None => {
                    let names: Vec<&str> = self.links.iter().map(|l| l.name.as_str()).collect();
                    return unavailable(
                        &mut self.stats,
                        format!("no link named {link:?} (links: {})", names.join(", ")),
                    );
                }
            }
        };
        // The links and the start go out whole or not at all.
        let answers = filter.map_or(self.links.len(), |_| 1) + 1;
        if client.control_room() < answers {
            return unavailable(
                &mut self.stats,
                "too many replies are waiting for this connection".into(),
            );
        }
        for (id, l) in self.links.iter().enumerate() {
            if filter.is_some_and(|f| usize::from(f) != id) {
                continue;
            }
            client.send_control(&Message::CaptureLink {
                id: id as u8,
                version: if l.version == Version::V1 { 1 } else { 2 },
                name: &l.name,
            });
        }
        client.send_control(&Message::CaptureStarted {
            queue_len: u32::try_from(self.cfg.queue_len).unwrap_or(u32::MAX),
        });
        self.active.push(Capture {
            client: token,
            link: filter,
            remaining: (count > 0).then_some(count),
            captured: 0,
            dropped: 0,
        });
        self.stats.started += 1;
        self.dirty.push(token);
        log::info!(
            "client {} ({}) captures {}",
            token.0,
            client.name,
            if link.is_empty() { "every link" } else { link }
        );
        Ok(())
    }

    /// CAPTURE_STOP (or the client went away: `client` None): the
    /// capture ends; CAPTURE_END goes behind its queued frames. False if
    /// `token` had no capture.
    pub fn stop(&mut self, token: Token, client: Option<&mut Client>) -> bool {
        let Some(i) = self.active.iter().position(|c| c.client == token) else {
            return false;
        };
        let cap = self.active.swap_remove(i);
        if let Some(client) = client {
            Self::queue_end(client, &cap, CaptureEnd::Stopped);
            self.dirty.push(token);
        }
        true
    }

    /// The daemon stops: every capture ends (CAPTURE_END, then the
    /// daemon's BYE).
    pub fn end_all(&mut self, clients: &mut std::collections::HashMap<Token, Client>) {
        for cap in std::mem::take(&mut self.active) {
            if let Some(c) = clients.get_mut(&cap.client) {
                Self::queue_end(c, &cap, CaptureEnd::Shutdown);
            }
        }
    }

    fn queue_end(client: &mut Client, cap: &Capture, reason: CaptureEnd) {
        let end = Message::CaptureEnd {
            reason,
            captured: cap.captured,
            dropped: cap.dropped,
        };
        if let Ok(frame) = csp_ipc::encode_to_vec(&end) {
            client.push_capture_end(frame);
        }
    }

    /// One frame, `parts` joined (a header and its data), seen on `link`
    /// going `direction`: queued for every capture that wants it.
    pub fn tap(
        &mut self,
        clients: &mut std::collections::HashMap<Token, Client>,
        link: LinkRef,
        direction: Direction,
        parts: &[&[u8]],
    ) {
        if self.active.is_empty() {
            return;
        }
        let Some(id) = self.links.iter().position(|l| l.link == link) else {
            return;
        };
        let id = id as u8;
        let time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // The captures with room for it, as bits (at most 64 captures,
        // `capture.max_captures`): the message is then built once, copied
        // for all but the last.
        let mut takers: u64 = 0;
        for (i, cap) in self.active.iter_mut().enumerate() {
            if cap.link.is_some_and(|f| f != id) {
                continue;
            }
            let Some(client) = clients.get(&cap.client) else {
                continue;
            };
            if client.queued_captures() >= self.cfg.queue_len || i >= 64 {
                cap.dropped += 1;
                self.stats.dropped += 1;
                continue;
            }
            takers |= 1 << i;
        }
        if takers == 0 {
            return;
        }
        let mut msg = Vec::new();
        csp_ipc::encode_capture_frame(id, direction, time_ns, parts, &mut msg);
        let mut finished = Vec::new();
        for i in 0..self.active.len().min(64) {
            if takers & (1 << i) == 0 {
                continue;
            }
            let cap = &mut self.active[i];
            let Some(client) = clients.get_mut(&cap.client) else {
                continue;
            };
            takers &= !(1 << i);
            let bytes = if takers == 0 {
                std::mem::take(&mut msg)
            } else {
                msg.clone()
            };
            client.push_capture(bytes, self.cfg.queue_len);
            cap.captured += 1;
            self.stats.frames += 1;
            if !self.dirty.contains(&cap.client) {
                self.dirty.push(cap.client);
            }
            if let Some(left) = cap.remaining.as_mut() {
                *left -= 1;
                if *left == 0 {
                    Self::queue_end(client, cap, CaptureEnd::CountReached);
                    finished.push(i);
                }
            }
        }
        for i in finished.into_iter().rev() {
            self.active.swap_remove(i);
        }
    }

    /// Clients with capture frames to write, for the loop to flush once
    /// per round (not once per frame).
    pub fn take_dirty(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.dirty)
    }

    /// One STATUS record's fields per running capture: client token,
    /// link filter, frames queued and dropped.
    pub fn describe(&self) -> Vec<(usize, String, u64, u64)> {
        self.active
            .iter()
            .map(|c| {
                let link = c.link.map_or("all".to_string(), |i| {
                    self.links[usize::from(i)].name.clone()
                });
                (c.client.0, link, c.captured, c.dropped)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overflow;
    use std::collections::HashMap;
    use std::io::Read;
    use std::time::{Duration, Instant};

    fn client() -> (Client, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let c = Client::new(
            Stream::Unix(mio::net::UnixStream::from_std(a)),
            8,
            Overflow::DropOldest,
            Instant::now() + Duration::from_secs(5),
        );
        (c, b)
    }

    fn messages(peer: &mut std::os::unix::net::UnixStream) -> Vec<String> {
        peer.set_nonblocking(true).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = peer.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((m, n)) = csp_ipc::decode(&all[at..]).unwrap() {
            out.push(format!("{m:?}"));
            at += n;
        }
        out
    }

    fn config(text: &str) -> Config {
        Config::parse(text, None).unwrap()
    }

    #[test]
    fn links_are_numbered_in_config_order_with_local_last() {
        let cfg =
            config("[udp]\nversion = 1\n[[kiss]]\nname = \"radio\"\n[[zmq]]\nname = \"hub\"\n");
        let caps = Captures::new(&cfg);
        let names: Vec<_> = caps
            .links()
            .iter()
            .map(|l| (l.name.as_str(), l.version))
            .collect();
        assert_eq!(
            names,
            [
                ("udp", Version::V1),
                ("radio", Version::V2),
                ("hub", Version::V2),
                ("local", Version::V2)
            ]
        );
    }

    #[test]
    fn own_uid_is_trusted_others_and_tcp_are_not() {
        let (mut c, mut peer) = client();
        let mut caps = Captures::new(&config(""));
        // The socket pair's peer is this process: the daemon's own uid.
        caps.start(Token(20), &mut c, 0, "").unwrap();
        c.flush().unwrap();
        let got = messages(&mut peer);
        assert!(got[0].starts_with("CaptureLink { id: 0"), "{got:?}");
        assert!(got.last().unwrap().starts_with("CaptureStarted"), "{got:?}");
        let again = caps.start(Token(20), &mut c, 0, "").unwrap_err();
        assert_eq!(again.code, csp_ipc::ErrorCode::Unavailable);

        // Another uid: pretend ours is someone else's.
        caps.own_uid = caps.own_uid.wrapping_add(1);
        let (mut c2, _peer2) = client();
        let refused = caps.start(Token(21), &mut c2, 0, "").unwrap_err();
        assert_eq!(refused.code, csp_ipc::ErrorCode::NotAllowed);
        assert!(
            refused.message.contains("allowed_uids"),
            "{}",
            refused.message
        );
        assert_eq!(caps.stats.refused, 1);
        // ... unless listed.
        caps.cfg.allowed_uids.push(nix::unistd::getuid().as_raw());
        caps.start(Token(21), &mut c2, 0, "").unwrap();

        let mut off = Captures::new(&config("[capture]\nenabled = false\n"));
        let (mut c3, _p3) = client();
        assert_eq!(
            off.start(Token(22), &mut c3, 0, "").unwrap_err().code,
            csp_ipc::ErrorCode::NotAllowed
        );
        let e = caps
            .start(Token(23), &mut client().0, 0, "nope")
            .unwrap_err();
        assert!(
            e.message.contains("no link named \"nope\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn bounded_queue_drops_and_counts_and_count_ends_the_capture() {
        let cfg = config("[capture]\nqueue_len = 3\n");
        let mut caps = Captures::new(&cfg);
        let (c, mut peer) = client();
        let mut clients = HashMap::new();
        clients.insert(Token(20), c);
        caps.start(Token(20), clients.get_mut(&Token(20)).unwrap(), 0, "udp")
            .unwrap();
        for i in 0..5u8 {
            caps.tap(
                &mut clients,
                LinkRef::Udp,
                Direction::Inbound,
                &[&[i; 6], b"x"],
            );
            // Another link's frames are filtered out.
            caps.tap(
                &mut clients,
                LinkRef::Local,
                Direction::Outbound,
                &[&[9; 7]],
            );
        }
        assert_eq!((caps.stats.frames, caps.stats.dropped), (3, 2));
        assert_eq!(caps.describe(), [(20, "udp".to_string(), 3, 2)]);
        assert!(caps.stop(Token(20), clients.get_mut(&Token(20))));
        assert!(caps.is_idle());
        let c = clients.get_mut(&Token(20)).unwrap();
        c.flush().unwrap();
        let got = messages(&mut peer);
        let frames = got.iter().filter(|m| m.starts_with("CaptureFrame")).count();
        assert_eq!(frames, 3, "{got:?}");
        assert_eq!(
            got.last().unwrap(),
            "CaptureEnd { reason: Stopped, captured: 3, dropped: 2 }"
        );

        // --count: the capture ends by itself after N frames.
        let (c, mut peer) = client();
        clients.insert(Token(21), c);
        caps.start(Token(21), clients.get_mut(&Token(21)).unwrap(), 2, "")
            .unwrap();
        for _ in 0..4 {
            caps.tap(&mut clients, LinkRef::Local, Direction::Inbound, &[&[0; 6]]);
        }
        assert!(caps.is_idle());
        let c = clients.get_mut(&Token(21)).unwrap();
        c.flush().unwrap();
        let got = messages(&mut peer);
        assert_eq!(
            got.last().unwrap(),
            "CaptureEnd { reason: CountReached, captured: 2, dropped: 0 }"
        );
    }

    #[test]
    fn a_long_frame_is_cut_and_keeps_its_length() {
        let mut caps = Captures::new(&config(""));
        let (c, mut peer) = client();
        let mut clients = HashMap::new();
        clients.insert(Token(20), c);
        caps.start(Token(20), clients.get_mut(&Token(20)).unwrap(), 0, "")
            .unwrap();
        let big = vec![7u8; 9000];
        caps.tap(
            &mut clients,
            LinkRef::Udp,
            Direction::Inbound,
            &[&big[..6], &big[6..]],
        );
        clients.get_mut(&Token(20)).unwrap().flush().unwrap();
        peer.set_nonblocking(true).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = peer.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        let mut at = 0;
        let mut seen = false;
        while let Some((m, n)) = csp_ipc::decode(&all[at..]).unwrap() {
            if let Message::CaptureFrame {
                orig_len, frame, ..
            } = m
            {
                assert_eq!(orig_len, 9000);
                assert_eq!(frame.len(), csp_ipc::MAX_CAPTURE_BYTES);
                seen = true;
            }
            at += n;
        }
        assert!(seen);
    }
}
