//! The TCP IPC endpoint's token check: constant-time comparison, failures
//! counted, guessing slowed per source address, and log lines rate-limited
//! so a guesser can neither go fast nor flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Shortest token the configuration accepts (`ipc.tcp_token`).
pub const MIN_TOKEN_LEN: usize = 16;
/// Failures from one source before it is slowed down.
const FREE_FAILURES: u32 = 3;
/// The penalty after the first slowed failure; it doubles with each next.
const FIRST_PENALTY: Duration = Duration::from_millis(50);
/// The longest penalty.
const MAX_PENALTY: Duration = Duration::from_secs(2);
/// Sources remembered; past this the one failing least recently is
/// forgotten (the TCP endpoint is loopback-only, so this is plenty).
const MAX_SOURCES: usize = 256;
/// At most one log line per source per this period.
const LOG_PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Source {
    failures: u32,
    /// Connections from this source are refused until then.
    blocked_until: Instant,
    last_failure: Instant,
    next_log: Instant,
    /// Failures not yet logged.
    unlogged: u64,
}

/// The token and what guessers have done.
#[derive(Debug)]
pub struct TokenGate {
    token: Vec<u8>,
    sources: HashMap<IpAddr, Source>,
    /// HELLOs over TCP with a wrong token.
    pub failures: u64,
    /// Connections refused because their source was being slowed down.
    pub throttled: u64,
}

/// Equal without an early exit: the time taken does not tell how many
/// leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

impl TokenGate {
    /// A gate for `token`.
    pub fn new(token: &str) -> TokenGate {
        TokenGate {
            token: token.as_bytes().to_vec(),
            sources: HashMap::new(),
            failures: 0,
            throttled: 0,
        }
    }

    /// Whether a new connection from `peer` may try now; a slowed source's
    /// connection is refused (and counted) until its penalty has passed.
    pub fn admits(&mut self, peer: IpAddr, now: Instant) -> bool {
        match self.sources.get(&peer) {
            Some(s) if now < s.blocked_until => {
                self.throttled += 1;
                false
            }
            _ => true,
        }
    }

    /// Check the token a client from `peer` presented.
    pub fn check(&mut self, peer: IpAddr, presented: &str, now: Instant) -> bool {
        if constant_time_eq(presented.as_bytes(), &self.token) {
            // A right token clears the record: the penalty is for guessing.
            self.sources.remove(&peer);
            return true;
        }
        self.failures += 1;
        if !self.sources.contains_key(&peer) && self.sources.len() >= MAX_SOURCES {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_failure)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.sources.remove(&a);
            }
        }
        let s = self.sources.entry(peer).or_insert(Source {
            failures: 0,
            blocked_until: now,
            last_failure: now,
            next_log: now,
            unlogged: 0,
        });
        s.failures = s.failures.saturating_add(1);
        s.last_failure = now;
        if s.failures > FREE_FAILURES {
            let doublings = (s.failures - FREE_FAILURES - 1).min(16);
            let penalty = (FIRST_PENALTY * (1u32 << doublings)).min(MAX_PENALTY);
            s.blocked_until = now + penalty;
        }
        s.unlogged += 1;
        if now >= s.next_log {
            log::warn!(
                "tcp: {} wrong token(s) from {peer} ({} in a row)",
                s.unlogged,
                s.failures
            );
            s.unlogged = 0;
            s.next_log = now + LOG_PERIOD;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn comparison() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn failures_slow_the_source_down_and_a_right_token_clears_it() {
        let mut g = TokenGate::new("0123456789abcdef");
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(!g.check(PEER, "guess", t0));
            assert!(g.admits(PEER, t0), "the first failures are free");
        }
        assert!(!g.check(PEER, "guess", t0));
        assert!(!g.admits(PEER, t0));
        assert!(g.admits(PEER, t0 + FIRST_PENALTY));
        assert!(!g.check(PEER, "guess", t0 + FIRST_PENALTY));
        assert!(!g.admits(PEER, t0 + FIRST_PENALTY * 2), "penalty doubled");
        for i in 0..40 {
            g.check(PEER, "guess", t0 + Duration::from_secs(i));
        }
        let t = t0 + Duration::from_secs(39);
        assert!(!g.admits(PEER, t + MAX_PENALTY - Duration::from_millis(1)));
        assert!(g.admits(PEER, t + MAX_PENALTY), "penalty is capped");
        assert!(g.check(PEER, "0123456789abcdef", t + MAX_PENALTY));
        assert!(g.admits(PEER, t + MAX_PENALTY));
        assert_eq!((g.failures, g.throttled), (45, 3));
    }

    #[test]
    fn sources_are_bounded() {
        let mut g = TokenGate::new("0123456789abcdef");
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 50) {
            g.check(
                IpAddr::V4(i.into()),
                "x",
                now + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(g.sources.len(), MAX_SOURCES);
    }
}
