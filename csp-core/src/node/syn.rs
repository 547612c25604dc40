//! What a listener accepts from a SYN: the one place where the options a
//! peer asks for are clamped and half-open connections are bounded.
//!
//! A SYN costs the sender one datagram and a made-up source address, but
//! it costs us a connection slot for as long as the options it carries say
//! (libcsp adopts them as they come: a connection timeout of an hour parks
//! the slot for an hour). So every option is clamped to a configured range
//! before the connection adopts it, half-open connections (SYN received,
//! handshake not completed) are bounded per listener and per source, and
//! they expire on our own SYN-RECEIVED timeout whatever the peer asked for.
//! When a listener's half-open bound is reached the oldest half-open
//! connection gives way to the new SYN, so a flood can delay a legitimate
//! client's handshake but not lock it out: its SYN always gets a slot, and
//! it keeps the slot for a whole round trip unless the flood sends more
//! than the bound's worth of SYNs within that round trip.

use csp_rdp::header::SynOptions;

use crate::time::Duration;

/// An inclusive range a SYN option is clamped into (milliseconds for the
/// timeouts, segments for the window and the ack count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OptionRange {
    /// Smallest value adopted.
    pub min: u32,
    /// Largest value adopted.
    pub max: u32,
}

impl OptionRange {
    /// `min..=max` milliseconds.
    pub const fn new(min: u32, max: u32) -> Self {
        OptionRange { min, max }
    }

    fn clamp(self, v: u32) -> u32 {
        v.max(self.min).min(self.max)
    }
}

/// Limits a listening node applies to incoming SYNs (see the module
/// documentation). Part of [`NodeConfig`](super::NodeConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SynLimits {
    /// Window (segments in flight) adopted from the SYN.
    pub window: OptionRange,
    /// Connection timeout adopted from the SYN.
    pub conn_timeout: OptionRange,
    /// Packet (retransmission) timeout adopted from the SYN.
    pub packet_timeout: OptionRange,
    /// Delayed-acknowledgement timeout adopted from the SYN.
    pub ack_timeout: OptionRange,
    /// Delayed-acknowledgement count adopted from the SYN.
    pub ack_delay_count: OptionRange,
    /// Half-open connections one listener holds at most; the oldest gives
    /// way to a new SYN beyond this.
    pub half_open_per_listener: u16,
    /// Half-open connections one source address holds at most (over all
    /// listeners); its further SYNs are refused while they last.
    pub half_open_per_source: u16,
    /// How long a half-open connection waits for the handshake's ACK
    /// before it is dropped: ours, not the peer's connection timeout.
    pub syn_received_timeout: Duration,
}

impl SynLimits {
    /// Wide enough for every libcsp default and for slow radio links
    /// (timeouts up to five minutes, windows up to 256), narrow enough that
    /// a made-up SYN costs a slot for seconds, not hours.
    pub const DEFAULT: SynLimits = SynLimits {
        window: OptionRange::new(1, 256),
        conn_timeout: OptionRange::new(1_000, 300_000),
        packet_timeout: OptionRange::new(100, 60_000),
        ack_timeout: OptionRange::new(10, 60_000),
        ack_delay_count: OptionRange::new(0, 256),
        half_open_per_listener: 8,
        half_open_per_source: 4,
        syn_received_timeout: Duration::from_millis(10_000),
    };

    /// The peer's options with every value moved into range. The delayed
    /// acknowledgement flag has only two values and is kept.
    pub fn clamp(&self, syn: &SynOptions) -> SynOptions {
        SynOptions {
            window: self.window.clamp(syn.window),
            conn_timeout_ms: self.conn_timeout.clamp(syn.conn_timeout_ms),
            packet_timeout_ms: self.packet_timeout.clamp(syn.packet_timeout_ms),
            delayed_acks: syn.delayed_acks,
            ack_timeout_ms: self.ack_timeout.clamp(syn.ack_timeout_ms),
            ack_delay_count: self.ack_delay_count.clamp(syn.ack_delay_count),
        }
    }

    /// The SYN segment (option block, then the 5-byte RDP header) with its
    /// options clamped, written to `out`. `None` when `syn` is not even a
    /// SYN's length: the connection's own parser refuses it then.
    pub(super) fn rewrite(&self, syn: &[u8], out: &mut [u8; SYN_LEN]) -> Option<()> {
        let hdr_at = syn.len().checked_sub(csp_rdp::header::HEADER_LEN)?;
        let opts = SynOptions::parse(&syn[..hdr_at]).ok()?;
        out[..SYN_OPTIONS_LEN].copy_from_slice(&self.clamp(&opts).to_be_bytes());
        out[SYN_OPTIONS_LEN..].copy_from_slice(&syn[hdr_at..]);
        Some(())
    }
}

impl Default for SynLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

const SYN_OPTIONS_LEN: usize = csp_rdp::header::SYN_OPTIONS_LEN;

/// A SYN segment as the listener hands it to the connection.
pub(super) const SYN_LEN: usize = SYN_OPTIONS_LEN + csp_rdp::header::HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_clamped_into_range() {
        let l = SynLimits::DEFAULT;
        let hour = 3_600_000;
        let huge = SynOptions {
            window: 0x3fff,
            conn_timeout_ms: hour,
            packet_timeout_ms: hour,
            delayed_acks: 1,
            ack_timeout_ms: hour,
            ack_delay_count: u32::MAX,
        };
        let c = l.clamp(&huge);
        assert_eq!(c.window, 256);
        assert_eq!(c.conn_timeout_ms, 300_000);
        assert_eq!(c.packet_timeout_ms, 60_000);
        assert_eq!(c.ack_timeout_ms, 60_000);
        assert_eq!(c.ack_delay_count, 256);
        let zero = SynOptions {
            window: 0,
            conn_timeout_ms: 0,
            packet_timeout_ms: 0,
            delayed_acks: 0,
            ack_timeout_ms: 0,
            ack_delay_count: 0,
        };
        let c = l.clamp(&zero);
        assert_eq!(
            (c.window, c.conn_timeout_ms, c.packet_timeout_ms),
            (1, 1_000, 100)
        );
        // libcsp's defaults pass unchanged.
        let d = csp_rdp::Options::default().to_syn();
        assert_eq!(l.clamp(&d), d);
    }

    #[test]
    fn rewrite_keeps_the_header_and_refuses_short_segments() {
        let l = SynLimits::DEFAULT;
        let mut syn = [0u8; SYN_LEN + 4];
        let opts = SynOptions {
            window: 9999,
            conn_timeout_ms: 3_600_000,
            packet_timeout_ms: 1000,
            delayed_acks: 1,
            ack_timeout_ms: 250,
            ack_delay_count: 2,
        };
        syn[..SYN_OPTIONS_LEN].copy_from_slice(&opts.to_be_bytes());
        // Four extra option bytes (ignored), then the header.
        syn[SYN_LEN - 1..].copy_from_slice(&[0x80, 0, 7, 0, 0]);
        let mut out = [0u8; SYN_LEN];
        assert_eq!(l.rewrite(&syn, &mut out), Some(()));
        let back = SynOptions::parse(&out[..SYN_OPTIONS_LEN]).unwrap();
        assert_eq!(back.window, 256);
        assert_eq!(back.conn_timeout_ms, 300_000);
        assert_eq!(&out[SYN_OPTIONS_LEN..], &[0x80, 0, 7, 0, 0]);
        for n in 0..SYN_LEN {
            assert_eq!(l.rewrite(&syn[..n], &mut out), None, "length {n}");
        }
    }
}
