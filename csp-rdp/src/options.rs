//! Connection options: the six words a SYN carries, plus local limits that
//! never go on the wire (retransmission bound, backoff cap, close wait).

use crate::header::SynOptions;
use crate::time::Duration;
use core::fmt;

/// The largest timeout accepted anywhere (one hour): a bound, so that a
/// peer's SYN can not park a connection forever.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(3_600_000);

/// The largest window a peer may ask for. Twice the window must stay well
/// inside half the 16-bit sequence space for wrap-aware comparisons.
pub const MAX_PEER_WINDOW: u32 = 0x3fff;

/// Options of one connection. The first six are negotiated (the client
/// sends them, the server adopts them); the rest are local policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options {
    /// Segments in flight at most (libcsp default 4).
    pub window: u16,
    /// No segment from the peer for this long fails the connection, idle
    /// or not (libcsp default 10 s; libcsp 1.x also closed idle connections).
    pub conn_timeout: Duration,
    /// First retransmission timeout (libcsp default 1 s); doubles per try.
    pub packet_timeout: Duration,
    /// Delay acknowledgements (libcsp default on).
    pub delayed_acks: bool,
    /// Longest an acknowledgement is delayed (libcsp default 250 ms).
    pub ack_timeout: Duration,
    /// Acknowledge at once when more than this many segments are unacknowledged (libcsp default 2).
    pub ack_delay_count: u16,
    /// Retransmissions of one segment before the connection fails (local).
    pub max_retransmissions: u8,
    /// Cap of the exponential retransmission backoff (local).
    pub max_backoff: Duration,
    /// How long a closing connection waits for the peer's reset, and how long
    /// a passively closed one stays to answer repeated resets (local).
    pub close_wait: Duration,
}

impl Default for Options {
    /// libcsp's defaults on the wire; 8 retransmissions, backoff capped at
    /// 4 s, close wait of one connection timeout.
    fn default() -> Self {
        Options {
            window: 4,
            conn_timeout: Duration::from_millis(10_000),
            packet_timeout: Duration::from_millis(1_000),
            delayed_acks: true,
            ack_timeout: Duration::from_millis(250),
            ack_delay_count: 2,
            max_retransmissions: 8,
            max_backoff: Duration::from_millis(4_000),
            close_wait: Duration::from_millis(10_000),
        }
    }
}

/// Why options were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OptionsError {
    /// Window of zero, or larger than the connection's capacity (or, for a
    /// peer's SYN, than [`MAX_PEER_WINDOW`]).
    Window,
    /// A timeout of zero or above [`MAX_TIMEOUT`].
    Timeout,
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Window => f.write_str("RDP window out of range"),
            OptionsError::Timeout => f.write_str("RDP timeout zero or too large"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OptionsError {}

fn timeout_ok(d: Duration) -> bool {
    d > Duration::ZERO && d <= MAX_TIMEOUT
}

impl Options {
    /// Check the options for a connection with capacity for `capacity` segments in flight.
    pub fn validate(&self, capacity: usize) -> Result<(), OptionsError> {
        if self.window == 0 || usize::from(self.window) > capacity {
            return Err(OptionsError::Window);
        }
        self.validate_timeouts()
    }

    fn validate_timeouts(&self) -> Result<(), OptionsError> {
        let all = [
            self.conn_timeout,
            self.packet_timeout,
            self.ack_timeout,
            self.max_backoff,
            self.close_wait,
        ];
        if all.iter().all(|d| timeout_ok(*d)) {
            Ok(())
        } else {
            Err(OptionsError::Timeout)
        }
    }

    /// The option block a client sends in its SYN.
    pub fn to_syn(&self) -> SynOptions {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        SynOptions {
            window: u32::from(self.window),
            conn_timeout_ms: ms(self.conn_timeout),
            packet_timeout_ms: ms(self.packet_timeout),
            delayed_acks: u32::from(self.delayed_acks),
            ack_timeout_ms: ms(self.ack_timeout),
            ack_delay_count: u32::from(self.ack_delay_count),
        }
    }

    /// The server side: adopt a client's negotiated values, keep the local
    /// policy of `self`. The peer's window may exceed our capacity (we then
    /// send at most `capacity` segments and hold at most `capacity`
    /// out-of-order ones; the rest is retransmitted by the peer).
    pub fn adopt(&self, syn: &SynOptions) -> Result<Options, OptionsError> {
        if syn.window == 0 || syn.window > MAX_PEER_WINDOW {
            return Err(OptionsError::Window);
        }
        let d = |ms: u32| Duration::from_millis(u64::from(ms));
        let o = Options {
            window: syn.window as u16,
            conn_timeout: d(syn.conn_timeout_ms),
            packet_timeout: d(syn.packet_timeout_ms),
            delayed_acks: syn.delayed_acks != 0,
            ack_timeout: d(syn.ack_timeout_ms),
            ack_delay_count: u16::try_from(syn.ack_delay_count).unwrap_or(u16::MAX),
            ..*self
        };
        o.validate_timeouts()?;
        Ok(o)
    }

    /// The server side, after [`adopt`](Self::adopt): a window larger than
    /// the `capacity` we can hold is cut to it. `true` if it was, and the
    /// SYN-ACK must then tell the client (see [`adopt_syn_ack`](Self::adopt_syn_ack)).
    pub fn fit_window(&mut self, capacity: usize) -> bool {
        let cap = u16::try_from(capacity).unwrap_or(u16::MAX).max(1);
        if self.window > cap {
            self.window = cap;
            true
        } else {
            false
        }
    }

    /// The client side: a SYN-ACK with options (only ours sends them, and
    /// only when the server holds less than we asked) lowers our window to
    /// the server's. Nothing else changes, and nothing is ever raised.
    pub fn adopt_syn_ack(&mut self, syn_ack: &SynOptions) {
        if let Ok(w) = u16::try_from(syn_ack.window) {
            if w > 0 && w < self.window {
                self.window = w;
            }
        }
    }

    /// Retransmission timeout before try `tries + 1`, given `tries` sends so
    /// far: the packet timeout doubled per earlier retransmission, capped at
    /// `max_backoff` and at a quarter of the connection timeout (so that a
    /// few retries fit before silence fails the connection), but never
    /// below the packet timeout.
    pub fn rto(&self, tries: u8) -> Duration {
        let shift = u32::from(tries.saturating_sub(1)).min(20);
        let quarter = Duration::from_millis(self.conn_timeout.as_millis() / 4);
        let cap = self.max_backoff.min(quarter).max(self.packet_timeout);
        let d = self.packet_timeout.saturating_mul(1u64 << shift);
        if d > cap {
            cap
        } else {
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_libcsp_and_round_trip() {
        let o = Options::default();
        let syn = o.to_syn();
        assert_eq!(
            syn.to_be_bytes(),
            [0, 0, 0, 4, 0, 0, 0x27, 0x10, 0, 0, 3, 0xe8, 0, 0, 0, 1, 0, 0, 0, 0xfa, 0, 0, 0, 2]
        );
        assert_eq!(o.adopt(&syn), Ok(o));
        assert_eq!(o.validate(4), Ok(()));
        assert_eq!(o.validate(3), Err(OptionsError::Window));
    }

    #[test]
    fn validation_rejects_zero_and_huge() {
        let mut o = Options {
            window: 0,
            ..Options::default()
        };
        assert_eq!(o.validate(8), Err(OptionsError::Window));
        o.window = 2;
        o.packet_timeout = Duration::ZERO;
        assert_eq!(o.validate(8), Err(OptionsError::Timeout));
        o.packet_timeout = Duration::from_millis(3_600_001);
        assert_eq!(o.validate(8), Err(OptionsError::Timeout));
        let mut syn = Options::default().to_syn();
        syn.window = 0;
        assert_eq!(Options::default().adopt(&syn), Err(OptionsError::Window));
        syn.window = 8;
        syn.ack_timeout_ms = 0;
        assert_eq!(Options::default().adopt(&syn), Err(OptionsError::Timeout));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let o = Options::default();
        // Capped at a quarter of the 10 s connection timeout.
        let ms: [u64; 6] = [1000, 1000, 2000, 2500, 2500, 2500];
        for (tries, want) in ms.iter().enumerate() {
            assert_eq!(o.rto(tries as u8).as_millis(), *want, "tries {tries}");
        }
        assert_eq!(o.rto(255).as_millis(), 2500);
        let long = Options {
            conn_timeout: Duration::from_millis(60_000),
            ..o
        };
        assert_eq!(long.rto(4).as_millis(), 4000);
        let slow = Options {
            packet_timeout: Duration::from_millis(5_000),
            ..o
        };
        assert_eq!(slow.rto(4).as_millis(), 5000);
    }
}
