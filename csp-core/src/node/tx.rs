//! The transmit path: queued packets, loopback, and RDP segments pulled lazily.

use super::*;

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
    /// Write the next frame to send into `buf` (at least
    /// [`MAX_FRAME_LEN`](Self::MAX_FRAME_LEN) bytes: RDP segments are pulled
    /// only into a buffer that big). Loopback packets are delivered on the
    /// way. A buffer too small for the next frame is counted, reported as
    /// [`Event::Error`], and the frame stays queued.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        // Only loopback deliveries can make new work without end (two local
        // services answering each other); every other step consumes a queued
        // packet or a segment, so the loop ends.
        let mut looped = 0;
        while looped < LOOPBACK_BUDGET {
            if let Some(entry) = self.tx.pop_front() {
                match entry.out {
                    Out::Loopback => {
                        looped += 1;
                        self.loopback(now, entry.packet);
                    }
                    Out::Iface(hop) => match self.emit_queued(hop, entry, buf) {
                        Pulled::Frame(t) => return Some(t),
                        Pulled::Progress | Pulled::Looped => {}
                        Pulled::Idle => return None,
                    },
                }
                continue;
            }
            match self.pull_segment(now, buf) {
                Pulled::Frame(t) => return Some(t),
                Pulled::Progress => {}
                Pulled::Looped => looped += 1,
                Pulled::Idle => return None,
            }
        }
        None
    }

    pub(super) fn loopback(&mut self, now: Instant, packet: Packet<PKT>) {
        bump(&mut self.counters.loopback);
        if let Err(d) = self.deliver(now, packet, LOOPBACK_VERSION) {
            self.count_drop(d);
        }
    }

    /// Frame a queued packet into `buf`: `Frame`, or `Progress` if it was
    /// dropped, or `Idle` if `buf` is too small (it goes back to the queue).
    pub(super) fn emit_queued(
        &mut self,
        hop: Hop,
        mut entry: TxEntry<PKT>,
        buf: &mut [u8],
    ) -> Pulled {
        let Some(&IfaceConfig { version, mtu, .. }) = self.iface(hop.iface) else {
            bump(&mut self.counters.tx_dropped);
            return Pulled::Progress;
        };
        let frame = match entry.packet.frame(version) {
            Ok(f) if f.len() <= mtu => f,
            _ => {
                bump(&mut self.counters.tx_dropped);
                if let Some(st) = self.iface_stats.get_mut(usize::from(hop.iface.0)) {
                    bump(&mut st.tx_error);
                }
                return Pulled::Progress;
            }
        };
        let len = frame.len();
        let Some(out) = buf.get_mut(..len) else {
            self.too_small(len, buf.len());
            let _ = self.tx.push_front(entry);
            return Pulled::Idle;
        };
        out.copy_from_slice(frame);
        bump(&mut self.counters.tx_frames);
        if let Some(st) = self.iface_stats.get_mut(usize::from(hop.iface.0)) {
            bump(&mut st.tx);
            st.txbytes = st.txbytes.wrapping_add(len as u32);
        }
        Pulled::Frame(Transmit {
            iface: hop.iface,
            via: hop.via,
            len,
        })
    }

    pub(super) fn too_small(&mut self, needed: usize, got: usize) {
        bump(&mut self.counters.tx_buf_too_small);
        self.pending_error = Some(NodeError::BufferTooSmall { needed, got });
    }

    /// The next segment of some connection (round robin), framed into `buf`.
    pub(super) fn pull_segment(&mut self, now: Instant, buf: &mut [u8]) -> Pulled {
        if buf.len() < Self::MAX_FRAME_LEN {
            if self.conns.iter().any(Option::is_some) {
                self.too_small(Self::MAX_FRAME_LEN, buf.len());
            }
            return Pulled::Idle;
        }
        for k in 0..CONNS {
            let i = (self.next_tx_conn + k) % CONNS;
            let addr = self.addr;
            let Some(slot) = self.conns.at(i) else {
                continue;
            };
            let Some(t) = slot.conn.poll_transmit(now, buf) else {
                if slot.conn.is_closed() && slot.end_reported && slot.readahead.is_none() {
                    self.free_conn(i);
                }
                continue;
            };
            self.next_tx_conn = (i + 1) % CONNS;
            let header = Header {
                prio: if t.prio_high { Prio::High } else { slot.prio },
                src: addr,
                dst: slot.remote,
                dport: slot.rport,
                sport: slot.lport,
                flags: Flags::RDP,
            };
            let security = slot.security;
            let Some(Ok(packet)) = buf
                .get(..t.len)
                .map(|data| Packet::<PKT>::with_data(header, data))
            else {
                bump(&mut self.counters.tx_dropped);
                return Pulled::Progress;
            };
            return self.send_segment(now, packet, &security, buf);
        }
        Pulled::Idle
    }

    pub(super) fn send_segment(
        &mut self,
        now: Instant,
        mut packet: Packet<PKT>,
        security: &SecurityOptions,
        buf: &mut [u8],
    ) -> Pulled {
        let (out, version) = match self.route_out(packet.header.dst) {
            Ok(r) => r,
            Err(_) => {
                // The segment is lost; RDP retransmits and eventually fails.
                bump(&mut self.counters.no_route);
                return Pulled::Progress;
            }
        };
        let nonce = self.random() as u32;
        if security.append(&mut packet, version, nonce).is_err() {
            bump(&mut self.counters.tx_dropped);
            return Pulled::Progress;
        }
        match out {
            Out::Loopback => {
                self.loopback(now, packet);
                Pulled::Looped
            }
            // `buf` holds any frame (checked by the caller), so never `Idle`.
            Out::Iface(hop) => self.emit_queued(hop, TxEntry { out, packet }, buf),
        }
    }
}
