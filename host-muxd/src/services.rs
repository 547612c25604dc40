//! The built-in services on the daemon's own address (ping, ps, uptime,
//! memfree, buffer free, reboot/shutdown, CMP ident, interface stats and
//! clock), answered through csp-core's pure service handler. The daemon is
//! the endpoint here, so it checks a request's trailers (CRC32, HMAC and,
//! from v1 links, XTEA, with the keys of `services.key_file`) and puts the
//! same trailers on the reply, as libcsp does (`CSP_O_SAME`).
//!
//! What a ground host does not offer is refused, with no reply (libcsp
//! sends none when a handler fails): CMP peek and poke (the daemon's memory
//! is nobody's business, so there is no setting for them), CMP route set
//! (routes come from the config), and clock setting without a
//! `clock_hook`. Reboot, shutdown and clock set pass a policy: allowed by
//! the config, and carrying a valid HMAC unless `allow_unauthenticated`.
//! Every request dropped is counted by its cause ([`ServiceDrops`]).

use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use csp_core::security::{SecurityError, SecurityOptions, Trailer};
use csp_core::service::{
    Declined, Ident, IfStats, NoReply, Refusal, ServiceConfig, ServiceContext, ServiceEvent,
    ServiceOutcome, Services as Handler, Timestamp,
};
use csp_core::{Addr, Flags, Header, Packet, Version};

use crate::config::Config;
use crate::keys::ServiceKeys;
use crate::links::Links;

/// Room for any packet the daemon carries, header included.
type ServicePacket = Packet<{ crate::MAX_IPC_DATA + 6 }>;

/// Most bytes of a ps reply, its closing NUL included: one packet of
/// libcsp's usual 256-byte buffers with room for CRC32, HMAC and the XTEA
/// nonce, so the reply crosses any link a request came over.
pub const PS_MAX_LEN: usize = 256 - 12;

/// What memfree answers when 4 GiB or more are available: the largest
/// page-aligned value of the u32 field, read as "at least this much".
/// u32::MAX itself is never sent, as it reads as -1 (an error) to a C client.
pub const MEMFREE_CLAMP: u32 = 0xFFFF_F000;

/// What CMP ident reports.
struct Identity {
    hostname: String,
    model: String,
    revision: String,
    /// Start date and time in libcsp's `__DATE__` / `__TIME__` forms.
    date: String,
    time: String,
}

/// What the configuration lets requests do.
struct Policy {
    reboot_hook: Option<String>,
    allow_reboot: bool,
    allow_shutdown: bool,
    clock_hook: Option<String>,
    allow_unauthenticated: bool,
}

/// The daemon's service state.
pub struct Services {
    handler: Handler,
    identity: Identity,
    policy: Policy,
    keys: ServiceKeys,
    /// The reboot hook process while it runs: one at a time.
    hook: Option<Child>,
    /// When the reboot hook may start again (rate limit).
    next_hook: Option<Instant>,
    /// The clock hook process while it runs: one at a time.
    clock_hook: Option<Child>,
    /// XTEA nonces of replies: never repeated under one key in a run
    /// (seeded from the start time, so not across runs either, in practice).
    nonce: u32,
    /// Reboot/shutdown requests allowed but not acted on, by cause.
    pub refused: HookRefusals,
    /// Requests dropped without a reply, by cause.
    pub dropped: ServiceDrops,
}

/// A service request as routing hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Its header (destination already the daemon's address).
    pub header: &'a Header,
    /// Data with trailers.
    pub data: &'a [u8],
    /// Header version of the link it came from (v2 from applications):
    /// XTEA exists only on v1 links.
    pub version: Version,
}

/// What the daemon knows that the services report.
pub struct NodeView<'a> {
    /// Seconds since start.
    pub uptime_s: u64,
    /// Free packet slots.
    pub buf_free: u32,
    /// The links, for interface statistics.
    pub links: &'a Links,
    /// The connected applications, one line each, for ps (only filled for
    /// a ps request).
    pub apps: Vec<String>,
}

/// What the service handler may ask about the daemon.
struct Context<'a> {
    identity: &'a Identity,
    node: &'a NodeView<'a>,
    /// The request carried a valid HMAC.
    authenticated: bool,
    policy: &'a Policy,
    /// A clock set the policy let through, done after the reply is made.
    clock_set: Option<Timestamp>,
    /// Why a clock set was declined.
    clock_refusal: Option<Denial>,
}

/// Why a clock set was declined (the counter it goes to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denial {
    NotAllowed,
    Unauthenticated,
}

impl ServiceContext for Context<'_> {
    fn uptime_s(&self) -> u32 {
        u32::try_from(self.node.uptime_s).unwrap_or(u32::MAX)
    }
    fn memfree(&self) -> u32 {
        memfree()
    }
    fn buf_free(&self) -> u32 {
        self.node.buf_free
    }
    fn ident(&self) -> Ident<'_> {
        let id = self.identity;
        Ident {
            hostname: &id.hostname,
            model: &id.model,
            revision: &id.revision,
            date: &id.date,
            time: &id.time,
        }
    }
    fn if_stats(&self, name: &str) -> Option<IfStats> {
        self.node.links.if_stats(name)
    }
    fn clock_get(&self) -> Option<Timestamp> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(Timestamp {
            tv_sec: u32::try_from(now.as_secs()).unwrap_or(u32::MAX),
            tv_nsec: now.subsec_nanos(),
        })
    }
    fn clock_set(&mut self, time: Timestamp) -> Result<(), Declined> {
        if self.policy.clock_hook.is_none() {
            self.clock_refusal = Some(Denial::NotAllowed);
            return Err(Declined);
        }
        if !self.authenticated && !self.policy.allow_unauthenticated {
            self.clock_refusal = Some(Denial::Unauthenticated);
            return Err(Declined);
        }
        self.clock_set = Some(time);
        Ok(())
    }
    fn ps(&mut self, _request: &[u8], out: &mut [u8]) -> usize {
        // The text ends with a NUL, as libcsp's client prints it as a C string.
        ps_text(&self.node.apps, out.len().min(PS_MAX_LEN), out)
    }
}

/// Write the ps text into `out` (at most `max` bytes with its NUL): one line
/// per application, cut at a line boundary, with a last line saying how
/// many did not fit.
fn ps_text(apps: &[String], max: usize, out: &mut [u8]) -> usize {
    let mut text = String::new();
    for (i, line) in apps.iter().enumerate() {
        let more = apps.len() - i;
        let tail = format!("(+{more} more)\n");
        // Room for this line, and for the "more" line if others follow.
        let need = text.len() + line.len() + 1 + if more > 1 { tail.len() } else { 0 } + 1;
        if need > max {
            text.push_str(&tail);
            break;
        }
        text.push_str(line);
        text.push('\n');
    }
    if apps.is_empty() {
        text.push_str("(no applications)\n");
    }
    let bytes = text.as_bytes();
    let n = bytes.len().min(max.saturating_sub(1));
    out[..n].copy_from_slice(&bytes[..n]);
    out[n] = 0;
    n + 1
}

impl Services {
    /// Services with the identity, policy and keys from `cfg` and `keys`.
    pub fn new(cfg: &Config, keys: ServiceKeys) -> Services {
        let addr = Addr::new(cfg.node.address).unwrap_or(Addr::LOCAL);
        let (date, time) = start_date_time();
        let s = &cfg.services;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        Services {
            handler: Handler::new(ServiceConfig::new(Version::V2, addr)),
            identity: Identity {
                hostname: cfg.node.hostname.clone(),
                model: cfg.node.model.clone(),
                revision: cfg.node.revision.clone(),
                date,
                time,
            },
            policy: Policy {
                reboot_hook: s.reboot_hook.clone(),
                allow_reboot: s.allow_reboot,
                allow_shutdown: s.allow_shutdown,
                clock_hook: s.clock_hook.clone(),
                allow_unauthenticated: s.allow_unauthenticated,
            },
            keys,
            hook: None,
            next_hook: None,
            clock_hook: None,
            nonce: seed,
            refused: HookRefusals::default(),
            dropped: ServiceDrops::default(),
        }
    }

    /// Answer a request for a service port, saying what became of it so
    /// the daemon counts it once, by that outcome.
    pub fn answer(&mut self, request: Request<'_>, node: &NodeView<'_>) -> Answer {
        let header = request.header;
        if header.dport.get() > crate::config::LAST_SERVICE_PORT {
            return Answer::NotAService;
        }
        let Ok(packet) = ServicePacket::with_data(*header, request.data) else {
            return Answer::TooLarge;
        };
        match self.handle(packet, request.version, node) {
            Some((h, body)) => Answer::Reply(h, body),
            None => Answer::Handled,
        }
    }

    fn handle(
        &mut self,
        mut request: ServicePacket,
        version: Version,
        node: &NodeView<'_>,
    ) -> Option<(Header, Vec<u8>)> {
        let header = request.header;
        // Whatever trailers the request carries are checked; none is
        // required (libcsp's service socket has no *REQ option), but only
        // an HMAC-signed request may change state unless the policy says.
        let check = SecurityOptions {
            crc: true,
            hmac: self.keys.hmac,
            xtea: self.keys.xtea.filter(|_| version == Version::V1),
            accept_missing: true,
            ..SecurityOptions::NONE
        };
        let verified = match check.verify(&mut request, version) {
            Ok(v) => v,
            Err(e) => {
                self.dropped.count_security(e);
                log::debug!("service request from {}: {e}", header.src);
                return None;
            }
        };
        let mut out = vec![0u8; crate::MAX_IPC_DATA];
        let mut ctx = Context {
            identity: &self.identity,
            node,
            authenticated: verified.hmac,
            policy: &self.policy,
            clock_set: None,
            clock_refusal: None,
        };
        let outcome = self
            .handler
            .handle(&request.header, request.data(), &mut ctx, &mut out);
        let (clock_set, clock_refusal) = (ctx.clock_set, ctx.clock_refusal);
        if let Some(t) = clock_set {
            self.run_clock_hook(t, header.src);
        }
        match outcome {
            ServiceOutcome::Reply(reply) => {
                let mut packet = ServicePacket::with_data(reply.header, &out[..reply.len]).ok()?;
                // The reply carries what the request carried (CSP_O_SAME).
                let flags = reply.header.flags;
                let same = SecurityOptions {
                    crc: flags.contains(Flags::CRC32),
                    hmac: self.keys.hmac.filter(|_| flags.contains(Flags::HMAC)),
                    xtea: self.keys.xtea.filter(|_| verified.xtea_nonce.is_some()),
                    ..SecurityOptions::NONE
                };
                self.nonce = self.nonce.wrapping_add(1);
                if let Err(e) = same.append(&mut packet, version, self.nonce) {
                    log::warn!("service reply to {}: {e}", header.src);
                    return None;
                }
                Some((packet.header, packet.data().to_vec()))
            }
            ServiceOutcome::Event(event) => {
                self.on_event(event, header.src, verified.hmac);
                None
            }
            ServiceOutcome::NoReply(why) => {
                if matches!(why, NoReply::Malformed(_)) {
                    self.dropped.malformed += 1;
                } else if why == NoReply::UnknownInterface {
                    self.dropped.unknown_interface += 1;
                } else {
                    self.dropped.ignored += 1;
                }
                log::debug!("service port {}: no reply ({why:?})", header.dport);
                None
            }
            ServiceOutcome::Refused(why) => {
                match (why, clock_refusal) {
                    (Refusal::ClockSetDeclined, Some(Denial::Unauthenticated)) => {
                        self.dropped.unauthenticated += 1
                    }
                    _ => self.dropped.not_allowed += 1,
                }
                log::info!("service request from {} refused: {why:?}", header.src);
                None
            }
        }
    }

    fn on_event(&mut self, event: ServiceEvent, from: Addr, authenticated: bool) {
        let (kind, allowed) = match event {
            ServiceEvent::Reboot => ("reboot", self.policy.allow_reboot),
            ServiceEvent::Shutdown => ("shutdown", self.policy.allow_shutdown),
        };
        if !allowed {
            self.dropped.not_allowed += 1;
            log::warn!("{kind} requested by node {from}: refused (services.allow_{kind} is off)");
            return;
        }
        if !authenticated && !self.policy.allow_unauthenticated {
            self.dropped.unauthenticated += 1;
            log::warn!("{kind} requested by node {from}: refused (no valid HMAC)");
            return;
        }
        // Only a configured hook acts on a request; it never runs twice
        // at once and starts at most once per HOOK_PERIOD, so a flood of
        // requests from the space link can not fork-bomb the ground host.
        let Some(hook) = self.policy.reboot_hook.clone() else {
            self.refused.no_hook += 1;
            log::warn!("{kind} requested by node {from}: ignored (no services.reboot_hook)");
            return;
        };
        self.reap_hooks();
        if self.hook.is_some() {
            self.refused.busy += 1;
            log::info!("{kind} requested by node {from}: hook still running");
            return;
        }
        let now = Instant::now();
        if self.next_hook.is_some_and(|t| now < t) {
            self.refused.rate_limited += 1;
            log::info!("{kind} requested by node {from}: hook ran less than {HOOK_PERIOD:?} ago");
            return;
        }
        log::warn!("{kind} requested by node {from}: running hook");
        match Command::new("sh")
            .arg("-c")
            .arg(&hook)
            .env("CSP_REQUEST", kind)
            .env("CSP_FROM", from.to_string())
            .spawn()
        {
            Ok(child) => {
                self.hook = Some(child);
                self.next_hook = Some(now + HOOK_PERIOD);
            }
            Err(e) => log::error!("reboot hook: {e}"),
        }
    }

    /// Start the clock hook for `time`, unless one is still running.
    fn run_clock_hook(&mut self, time: Timestamp, from: Addr) {
        let Some(hook) = self.policy.clock_hook.clone() else {
            return;
        };
        self.reap_hooks();
        if self.clock_hook.is_some() {
            self.refused.busy += 1;
            log::info!("clock set by node {from}: clock hook still running");
            return;
        }
        log::warn!("clock set to {} by node {from}: running hook", time.tv_sec);
        match Command::new("sh")
            .arg("-c")
            .arg(&hook)
            .env("CSP_CLOCK_SEC", time.tv_sec.to_string())
            .env("CSP_CLOCK_NSEC", time.tv_nsec.to_string())
            .env("CSP_FROM", from.to_string())
            .spawn()
        {
            Ok(child) => self.clock_hook = Some(child),
            Err(e) => log::error!("clock hook: {e}"),
        }
    }

    /// Collect hook processes that have finished, so they are not left
    /// zombies; the daemon calls this on SIGCHLD.
    pub fn reap_hooks(&mut self) {
        for (what, slot) in [("reboot", &mut self.hook), ("clock", &mut self.clock_hook)] {
            if let Some(child) = slot.as_mut() {
                match child.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => {
                        log::info!("{what} hook finished: {status}");
                        *slot = None;
                    }
                    Err(e) => {
                        log::warn!("{what} hook: {e}");
                        *slot = None;
                    }
                }
            }
        }
    }
}

/// What became of a packet for the daemon's own address and no application.
#[derive(Debug)]
pub enum Answer {
    /// The service's reply, to be routed.
    Reply(Header, Vec<u8>),
    /// Taken by a service with no reply (bad CRC, refused, reboot...).
    Handled,
    /// Larger than any service request can be.
    TooLarge,
    /// Not a service port.
    NotAService,
}

/// Shortest time between two runs of the reboot hook.
pub const HOOK_PERIOD: Duration = Duration::from_secs(10);

/// Reboot/shutdown requests the policy allowed but the hook did not run
/// for, by cause (STATS `hook_refused_*`).
#[derive(Debug, Default, Clone, Copy)]
pub struct HookRefusals {
    /// No `services.reboot_hook` configured.
    pub no_hook: u64,
    /// The hook (or the clock hook) was still running.
    pub busy: u64,
    /// The hook ran less than [`HOOK_PERIOD`] ago.
    pub rate_limited: u64,
}

/// Service requests dropped with no reply, by cause (STATS
/// `service_dropped_*`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceDrops {
    /// CRC32 trailer wrong or cut short.
    pub bad_crc: u64,
    /// HMAC trailer wrong (wrong key, altered data) or cut short.
    pub bad_hmac: u64,
    /// XTEA-encrypted request that did not decrypt to a valid packet.
    pub bad_xtea: u64,
    /// HMAC or XTEA flagged but the daemon holds no such key.
    pub no_key: u64,
    /// Refused by policy: peek, poke, route set, clock set without a
    /// clock hook, reboot/shutdown not allowed by the config.
    pub not_allowed: u64,
    /// Reboot, shutdown or clock set without a valid HMAC.
    pub unauthenticated: u64,
    /// Too short or malformed to answer.
    pub malformed: u64,
    /// Interface statistics for an interface the daemon does not have.
    pub unknown_interface: u64,
    /// Not answered, as libcsp answers none (CMP reply or unknown code,
    /// bad reboot magic).
    pub ignored: u64,
}

impl ServiceDrops {
    fn count_security(&mut self, e: SecurityError) {
        let counter = match e {
            SecurityError::CrcMismatch
            | SecurityError::TooShort {
                trailer: Trailer::Crc32,
                ..
            } => &mut self.bad_crc,
            SecurityError::HmacMismatch
            | SecurityError::TooShort {
                trailer: Trailer::Hmac,
                ..
            } => &mut self.bad_hmac,
            SecurityError::NoKey(_) => &mut self.no_key,
            _ => &mut self.bad_xtea,
        };
        *counter += 1;
    }

    /// Name and value of every counter, for STATS.
    pub fn named(&self) -> [(&'static str, u64); 9] {
        [
            ("service_dropped_bad_crc", self.bad_crc),
            ("service_dropped_bad_hmac", self.bad_hmac),
            ("service_dropped_bad_xtea", self.bad_xtea),
            ("service_dropped_no_key", self.no_key),
            ("service_dropped_not_allowed", self.not_allowed),
            ("service_dropped_unauthenticated", self.unauthenticated),
            ("service_dropped_malformed", self.malformed),
            ("service_dropped_unknown_interface", self.unknown_interface),
            ("service_dropped_ignored", self.ignored),
        ]
    }
}

/// Free memory as the memfree service reports it: what this process could
/// still get, the smallest of the host's `MemAvailable`, the room left
/// under each memory limit of its cgroup (v2, up to the root) and the room
/// left under its address-space limit (`RLIMIT_AS`); clamped to
/// [`MEMFREE_CLAMP`] when it does not fit the u32 field; 0 if unknown.
fn memfree() -> u32 {
    let bytes = [mem_available(), cgroup_room(), address_space_room()]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0);
    clamp_memfree(bytes)
}

/// `RLIMIT_AS` less the address space in use (`VmSize`); `None` without a
/// limit.
fn address_space_room() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _) = getrlimit(Resource::RLIMIT_AS).ok()?;
    if soft == RLIM_INFINITY {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(soft.saturating_sub(kib.saturating_mul(1024)))
}

/// Bytes as the u32 memfree field carries them.
fn clamp_memfree(bytes: u64) -> u32 {
    u32::try_from(bytes)
        .ok()
        .filter(|&b| b <= MEMFREE_CLAMP)
        .unwrap_or(MEMFREE_CLAMP)
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// The least room (`memory.max - memory.current`) along this process's
/// cgroup v2 path; `None` without cgroup v2 or without any limit.
fn cgroup_room() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(rel.trim_start_matches('/'));
    let mut room: Option<u64> = None;
    // Bounded by the path's depth.
    for d in dir
        .ancestors()
        .take_while(|d| d.starts_with("/sys/fs/cgroup"))
    {
        let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
        let Some(max) = read("memory.max").and_then(|m| m.trim().parse::<u64>().ok()) else {
            continue; // "max" (no limit) or no memory controller here
        };
        let current = read("memory.current")
            .and_then(|c| c.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let left = max.saturating_sub(current);
        room = Some(room.map_or(left, |r| r.min(left)));
    }
    room
}

/// Now (UTC) as `("Nov 26 2026", "07:00:00")`, the forms libcsp's ident
/// carries from the C compiler's `__DATE__` and `__TIME__`.
fn start_date_time() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    (
        format!("{} {:2} {y}", MONTHS[(m - 1) as usize], d),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the well-known
/// era-based conversion).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn meminfo_is_read() {
        assert!(mem_available().is_some_and(|m| m > 0));
        let m = memfree();
        assert!(m > 0 && m <= MEMFREE_CLAMP);
    }

    #[test]
    fn memfree_clamps_below_u32_max() {
        assert_eq!(clamp_memfree(0), 0);
        assert_eq!(clamp_memfree(1 << 20), 1 << 20);
        assert_eq!(clamp_memfree(u64::from(MEMFREE_CLAMP)), MEMFREE_CLAMP);
        assert_eq!(clamp_memfree(u64::from(MEMFREE_CLAMP) + 1), MEMFREE_CLAMP);
        assert_eq!(clamp_memfree(u64::from(u32::MAX)), MEMFREE_CLAMP);
        assert_eq!(clamp_memfree(64 << 30), MEMFREE_CLAMP);
    }

    #[test]
    fn ps_fits_one_packet_and_says_what_was_cut() {
        let apps: Vec<String> = (0..100)
            .map(|i| format!("{i:5} application-{i:<3} ports 1:{}", 10 + i % 20))
            .collect();
        let mut out = [0xAAu8; 1024];
        let n = ps_text(&apps, PS_MAX_LEN, &mut out);
        assert!(n <= PS_MAX_LEN);
        assert_eq!(out[n - 1], 0, "NUL-terminated");
        let text = std::str::from_utf8(&out[..n - 1]).unwrap();
        assert!(text.starts_with(&apps[0]), "{text}");
        let last = text.lines().last().unwrap();
        let shown = text.lines().count() - 1;
        assert_eq!(last, format!("(+{} more)", 100 - shown));
        let n = ps_text(&apps[..2], PS_MAX_LEN, &mut out);
        assert_eq!(
            &out[..n],
            format!("{}\n{}\n\0", apps[0], apps[1]).as_bytes()
        );
        let n = ps_text(&[], PS_MAX_LEN, &mut out);
        assert_eq!(&out[..n], b"(no applications)\n\0");
    }
}
