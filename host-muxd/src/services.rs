//! The built-in services on the daemon's own address (ping, uptime, memfree,
//! buffer free, CMP ident, ...), answered through csp-core's pure service
//! handler. The daemon is the endpoint here, so it checks a request's CRC32
//! and puts one on the reply as libcsp does; HMAC-protected requests can not
//! be answered (the daemon holds no keys) and are dropped.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use csp_core::security::SecurityOptions;
use csp_core::service::{
    Ident, ServiceConfig, ServiceContext, ServiceEvent, ServiceOutcome, Services as Handler,
};
use csp_core::{Addr, Header, Packet, Version};

use crate::config::Config;

/// Room for any packet the daemon carries, header included.
type ServicePacket = Packet<{ crate::MAX_IPC_DATA + 6 }>;

/// What CMP ident reports.
struct Identity {
    hostname: String,
    model: String,
    revision: String,
    /// Start date and time in libcsp's `__DATE__` / `__TIME__` forms.
    date: String,
    time: String,
}

/// The daemon's service state.
pub struct Services {
    handler: Handler,
    identity: Identity,
    reboot_hook: Option<String>,
    /// The hook process while it runs: one at a time.
    hook: Option<Child>,
    /// When the hook may start again (rate limit).
    next_hook: Option<Instant>,
    /// Reboot/shutdown requests not acted on, by cause.
    pub refused: HookRefusals,
    /// Requests dropped because a trailer did not verify.
    pub bad_trailers: u64,
}

/// What the service handler may ask about the daemon.
struct Context<'a> {
    identity: &'a Identity,
    uptime_s: u32,
    buf_free: u32,
}

impl ServiceContext for Context<'_> {
    fn uptime_s(&self) -> u32 {
        self.uptime_s
    }
    fn memfree(&self) -> u32 {
        mem_available().unwrap_or(0)
    }
    fn buf_free(&self) -> u32 {
        self.buf_free
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
}

impl Services {
    /// Services with the identity and hook from `cfg`.
    pub fn new(cfg: &Config) -> Services {
        let addr = Addr::new(cfg.node.address).unwrap_or(Addr::LOCAL);
        let (date, time) = start_date_time();
        Services {
            handler: Handler::new(ServiceConfig::new(Version::V2, addr)),
            identity: Identity {
                hostname: cfg.node.hostname.clone(),
                model: cfg.node.model.clone(),
                revision: cfg.node.revision.clone(),
                date,
                time,
            },
            reboot_hook: cfg.services.reboot_hook.clone(),
            hook: None,
            next_hook: None,
            refused: HookRefusals::default(),
            bad_trailers: 0,
        }
    }

    /// Answer a request for a service port, saying what became of it so
    /// the daemon counts it once, by that outcome.
    pub fn answer(&mut self, header: &Header, data: &[u8], uptime_s: u64, buf_free: u32) -> Answer {
        if header.dport.get() > crate::config::LAST_SERVICE_PORT {
            return Answer::NotAService;
        }
        let Ok(request) = ServicePacket::with_data(*header, data) else {
            return Answer::TooLarge;
        };
        match self.handle(request, header, uptime_s, buf_free) {
            Some((h, body)) => Answer::Reply(h, body),
            None => Answer::Handled,
        }
    }

    fn handle(
        &mut self,
        mut request: ServicePacket,
        header: &Header,
        uptime_s: u64,
        buf_free: u32,
    ) -> Option<(Header, Vec<u8>)> {
        // Check the trailers the request carries; it arrived with a v2 header
        // on IPC, or was re-parsed from a link, and either form is accepted.
        let check = SecurityOptions {
            crc: true,
            accept_missing: true,
            ..SecurityOptions::NONE
        };
        if let Err(e) = check.verify(&mut request, Version::V2) {
            self.bad_trailers += 1;
            log::debug!("service request from {}: {e}", header.src);
            return None;
        }
        let mut out = vec![0u8; crate::MAX_IPC_DATA];
        let mut ctx = Context {
            identity: &self.identity,
            uptime_s: u32::try_from(uptime_s).unwrap_or(u32::MAX),
            buf_free,
        };
        let outcome = self
            .handler
            .handle(&request.header, request.data(), &mut ctx, &mut out);
        match outcome {
            ServiceOutcome::Reply(reply) => {
                let mut packet = ServicePacket::with_data(reply.header, &out[..reply.len]).ok()?;
                let crc = SecurityOptions {
                    crc: reply.header.flags.contains(csp_core::Flags::CRC32),
                    ..SecurityOptions::NONE
                };
                crc.append(&mut packet, Version::V2, 0).ok()?;
                Some((packet.header, packet.data().to_vec()))
            }
            ServiceOutcome::Event(event) => {
                self.on_event(event, header.src);
                None
            }
            ServiceOutcome::NoReply(why) => {
                log::debug!("service port {}: no reply ({why:?})", header.dport);
                None
            }
            ServiceOutcome::Refused(why) => {
                log::info!("service request from {} refused: {why:?}", header.src);
                None
            }
        }
    }

    fn on_event(&mut self, event: ServiceEvent, from: Addr) {
        let kind = match event {
            ServiceEvent::Reboot => "reboot",
            ServiceEvent::Shutdown => "shutdown",
        };
        // Only a configured hook acts on a request; it never runs twice
        // at once and starts at most once per HOOK_PERIOD, so a flood of
        // requests from the space link can not fork-bomb the ground host.
        let Some(hook) = self.reboot_hook.clone() else {
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

    /// Collect the hook process if it has finished, so it is not left a
    /// zombie; the daemon calls this on SIGCHLD.
    pub fn reap_hooks(&mut self) {
        if let Some(child) = self.hook.as_mut() {
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    log::info!("reboot hook finished: {status}");
                    self.hook = None;
                }
                Err(e) => {
                    log::warn!("reboot hook: {e}");
                    self.hook = None;
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

/// Reboot/shutdown requests refused, by cause (STATS `hook_refused_*`).
#[derive(Debug, Default, Clone, Copy)]
pub struct HookRefusals {
    /// No `services.reboot_hook` configured.
    pub no_hook: u64,
    /// The hook was still running.
    pub busy: u64,
    /// The hook ran less than [`HOOK_PERIOD`] ago.
    pub rate_limited: u64,
}

/// `MemAvailable` from /proc/meminfo, in bytes, saturated to u32.
fn mem_available() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(u32::try_from(kib.saturating_mul(1024)).unwrap_or(u32::MAX))
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
    }
}
