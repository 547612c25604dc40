//! `--rdpopt` / `CSP_RDPOPT`: default RDP options for every connection a
//! `csp` command makes, written as libcsp's `csp_rdp_set_opt` takes them
//! (and as csh's `rdpopt` sets them), so a mission's numbers carry over.

use host_lib::ConnOptions;

/// The six numbers of `csp_rdp_set_opt`, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdpOpt {
    /// Segments in flight.
    pub window: u16,
    /// Silence that fails a connection.
    pub conn_timeout_ms: u32,
    /// First retransmission timeout.
    pub packet_timeout_ms: u32,
    /// Delay acknowledgements.
    pub delayed_acks: bool,
    /// Longest an acknowledgement waits.
    pub ack_timeout_ms: u32,
    /// Acknowledge at once past this many unacknowledged segments.
    pub ack_delay_count: u16,
}

impl RdpOpt {
    /// `opts` with these RDP options (its trailers and segment size kept).
    pub fn apply(self, mut opts: ConnOptions) -> ConnOptions {
        let ms = |v: u32| csp_rdp::time::Duration::from_millis(u64::from(v));
        opts.rdp.window = self.window;
        opts.rdp.conn_timeout = ms(self.conn_timeout_ms);
        opts.rdp.packet_timeout = ms(self.packet_timeout_ms);
        opts.rdp.delayed_acks = self.delayed_acks;
        opts.rdp.ack_timeout = ms(self.ack_timeout_ms);
        opts.rdp.ack_delay_count = self.ack_delay_count;
        opts
    }
}

/// Parse `W,CONN,PKT,DELAYED,ACK,COUNT` (clap's value parser): six
/// unsigned numbers, each checked against what a connection can use.
pub fn parse(text: &str) -> Result<RdpOpt, String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let [w, conn, pkt, delayed, ack, count] = fields.as_slice() else {
        return Err(format!(
            "want 6 numbers (window, conn timeout ms, packet timeout ms, delayed acks 0/1, \
             ack timeout ms, ack delay count), got {}",
            fields.len()
        ));
    };
    let num = |name: &str, v: &str| -> Result<u32, String> {
        v.parse::<u32>()
            .map_err(|_| format!("{name} {v:?} is not a number"))
    };
    let window = num("window", w)?;
    if !(1..=host_lib::rdp::MAX_WINDOW as u32).contains(&window) {
        return Err(format!(
            "window {window} out of 1..={}",
            host_lib::rdp::MAX_WINDOW
        ));
    }
    let opt = RdpOpt {
        window: window as u16,
        conn_timeout_ms: num("connection timeout", conn)?,
        packet_timeout_ms: num("packet timeout", pkt)?,
        delayed_acks: match *delayed {
            "0" => false,
            "1" => true,
            other => return Err(format!("delayed acks is 0 or 1, not {other:?}")),
        },
        ack_timeout_ms: num("ack timeout", ack)?,
        ack_delay_count: u16::try_from(num("ack delay count", count)?)
            .map_err(|_| format!("ack delay count {count} too large"))?,
    };
    // The same checks a connection makes of its options (window within
    // what a connection holds, every timeout non-zero and bounded).
    opt.apply(ConnOptions::default())
        .rdp
        .validate(host_lib::rdp::MAX_WINDOW)
        .map_err(|e| format!("{e}"))?;
    Ok(opt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcsp_order_is_read_and_checked() {
        let o = parse("4,10000,1000,1,250,2").unwrap();
        assert_eq!(
            o,
            RdpOpt {
                window: 4,
                conn_timeout_ms: 10_000,
                packet_timeout_ms: 1000,
                delayed_acks: true,
                ack_timeout_ms: 250,
                ack_delay_count: 2,
            }
        );
        let c = o.apply(ConnOptions::default());
        assert!(c.rdp.delayed_acks);
        assert_eq!(c.rdp.ack_timeout, csp_rdp::time::Duration::from_millis(250));
        assert!(parse(" 8, 20000, 500, 0, 100, 4 ").is_ok());
        for bad in [
            "",
            "4,10000,1000,1,250",
            "4,10000,1000,1,250,2,9",
            "0,10000,1000,1,250,2",
            "99,10000,1000,1,250,2",
            "4,x,1000,1,250,2",
            "4,10000,1000,2,250,2",
            "4,0,1000,1,250,2",
            "4,10000,1000,1,250,70000",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
