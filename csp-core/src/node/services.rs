//! The standard services answered by the node itself, with a context made
//! of what the node knows (uptime, buffers, ident, interface counters).

use super::*;
use crate::service::{IfStats, ServiceContext};

/// What the service handler may ask of the node. Interface statistics are
/// answered by interface name; clock, route set, peek and poke are declined.
struct NodeCtx<'a, const IFACES: usize> {
    values: ServiceValues<'static>,
    ifaces: &'a heapless::Vec<IfaceConfig, IFACES>,
    stats: &'a [IfStats; IFACES],
}

impl<const IFACES: usize> ServiceContext for NodeCtx<'_, IFACES> {
    fn uptime_s(&self) -> u32 {
        self.values.uptime_s
    }
    fn memfree(&self) -> u32 {
        self.values.memfree
    }
    fn buf_free(&self) -> u32 {
        self.values.buf_free
    }
    fn ident(&self) -> Ident<'_> {
        self.values.ident
    }
    fn if_stats(&self, name: &str) -> Option<IfStats> {
        let i = self.ifaces.iter().position(|c| c.name == name)?;
        self.stats.get(i).copied()
    }
}

impl<
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    > Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>
{
    /// Answer a service request (ports 0..=6, nothing bound).
    pub(super) fn serve(
        &mut self,
        now: Instant,
        mut packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        bump(&mut self.counters.rx_service);
        let check = SecurityOptions {
            hmac: self.service_key,
            accept_missing: true,
            ..SecurityOptions::NONE
        };
        check
            .verify(&mut packet, version)
            .map_err(RxDrop::Security)?;
        let mut ctx = NodeCtx {
            values: ServiceValues {
                uptime_s: whole_seconds(now.saturating_duration_since(self.boot).as_millis()),
                memfree: self.memfree,
                buf_free: u32::try_from(self.free_buffers()).unwrap_or(u32::MAX),
                ident: self.ident,
                clock: None,
            },
            ifaces: &self.ifaces,
            stats: &self.iface_stats,
        };
        self.services.config.version = version;
        self.services.config.own_addr = self.addr;
        let mut out = [0u8; PKT];
        let room = Packet::<PKT>::CAPACITY.saturating_sub(MAX_SECURITY_OVERHEAD);
        let outcome =
            self.services
                .handle(&packet.header, packet.data(), &mut ctx, &mut out[..room]);
        match outcome {
            ServiceOutcome::Reply(r) => {
                let mut header = r.header;
                let flags = header.flags;
                // Trailers are re-added by `queue_packet` to match the flags.
                header.flags = flags.without(Flags::CRC32 | Flags::HMAC | Flags::XTEA);
                if header.src == Addr::LOCAL || header.src.is_broadcast(version) {
                    header.src = self.addr;
                }
                let reply = out
                    .get(..r.len)
                    .ok_or(PacketError::TooLong {
                        len: r.len,
                        capacity: out.len(),
                    })
                    .and_then(|data| Packet::with_data(header, data))
                    .map_err(|e| RxDrop::ReplyFailed(e.into()))?;
                let security = SecurityOptions {
                    crc: flags.contains(Flags::CRC32),
                    hmac: if flags.contains(Flags::HMAC) {
                        self.service_key
                    } else {
                        None
                    },
                    ..SecurityOptions::NONE
                };
                self.queue_packet(reply, &security).map_err(|e| match e {
                    NodeError::TxQueueFull => RxDrop::TxQueueFull,
                    e => RxDrop::ReplyFailed(e),
                })
            }
            ServiceOutcome::Event(ServiceEvent::Reboot) => {
                self.pending_reboot = true;
                Ok(())
            }
            ServiceOutcome::Event(ServiceEvent::Shutdown) => {
                self.pending_shutdown = true;
                Ok(())
            }
            // Counted by the service handler.
            ServiceOutcome::NoReply(_) | ServiceOutcome::Refused(_) => Ok(()),
        }
    }
}

/// `ms / 1000` saturated to `u32`, with 32-bit divisions only: a Cortex-M
/// divides 32 bits in hardware, while a 64-bit `/` links compiler-builtins'
/// software division (about 1 KiB of flash) for this one use.
pub(super) fn whole_seconds(ms: u64) -> u32 {
    // Beyond u32::MAX seconds (136 years) the answer saturates.
    if ms >= 1000 << 32 {
        return u32::MAX;
    }
    // ms / 1000 == (ms / 8) / 125; ms / 8 < 125 * 2^32, so long division
    // by 125 in 16-bit digits keeps every dividend below 125 * 2^16.
    let x = ms >> 3;
    let hi = (x >> 32) as u32; // < 125
    let lo = x as u32;
    let mid = (hi << 16) | (lo >> 16);
    let (q1, r1) = (mid / 125, mid % 125);
    let low = (r1 << 16) | (lo & 0xffff);
    (q1 << 16) | (low / 125)
}

#[cfg(test)]
mod tests {
    use super::whole_seconds;

    #[test]
    fn whole_seconds_is_division_by_1000() {
        let edges = [0, 1, 999, 1000, 1001, 59_999, 1 << 32, (1000 << 32) - 1];
        for ms in edges {
            assert_eq!(u64::from(whole_seconds(ms)), ms / 1000, "{ms}");
        }
        assert_eq!(whole_seconds(1000 << 32), u32::MAX);
        assert_eq!(whole_seconds(u64::MAX), u32::MAX);
        // A spread of values over the whole range (a multiplicative walk).
        let mut ms: u64 = 7;
        for _ in 0..100_000 {
            let want = u32::try_from(ms / 1000).unwrap_or(u32::MAX);
            assert_eq!(whole_seconds(ms), want, "{ms}");
            ms = ms
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                >> (ms % 40);
        }
    }
}
