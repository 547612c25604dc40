//! The receive path: frames in, to sockets, connections, services or onwards.

use super::*;
use crate::security::{SecurityError, Trailer};

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
    /// A frame (CSP header, data, trailers) arrived on `iface`. Anything it
    /// can not use is counted and reported as the `Err`, for logging; the
    /// node is fine either way.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        iface: IfaceId,
        frame: &[u8],
    ) -> Result<(), RxDrop> {
        bump(&mut self.counters.rx_frames);
        // Counted on arrival, as a link driver would: a request for the
        // interface statistics sees itself.
        if let Some(st) = self.iface_stats_mut(iface) {
            bump(&mut st.rx);
            st.rxbytes = st.rxbytes.wrapping_add(frame.len() as u32);
        }
        let r = self.rx_frame(now, iface, frame);
        if let Err(d) = r {
            self.count_drop(d);
            csp_trace!("node: dropped frame from {}: {}", iface.0, d);
            if let Some(st) = self.iface_stats_mut(iface) {
                bump(match d {
                    RxDrop::Malformed(_) | RxDrop::TooLong { .. } => &mut st.rx_error,
                    RxDrop::Security(
                        SecurityError::HmacMismatch
                        | SecurityError::NoKey(Trailer::Hmac)
                        | SecurityError::MissingFlag(Trailer::Hmac),
                    ) => &mut st.autherr,
                    _ => &mut st.drop,
                });
            }
        }
        r
    }

    pub(super) fn count_drop(&mut self, d: RxDrop) {
        let c = &mut self.counters;
        bump(match d {
            RxDrop::UnknownIface(_) => &mut c.rx_unknown_iface,
            RxDrop::Malformed(_) => &mut c.rx_malformed,
            RxDrop::TooLong { .. } => &mut c.rx_too_long,
            RxDrop::NotForUs => &mut c.rx_not_for_us,
            RxDrop::NoRoute(_) => &mut c.no_route,
            RxDrop::NoSocket(_) => &mut c.rx_no_socket,
            RxDrop::NoConnection => &mut c.rx_no_connection,
            RxDrop::RxQueueFull => &mut c.rx_queue_full,
            RxDrop::Security(_) => &mut c.rx_security,
            RxDrop::ConnectionlessRefused | RxDrop::RdpRefused => &mut c.rx_refused,
            RxDrop::BacklogFull | RxDrop::BadSyn => &mut c.rx_syn_refused,
            RxDrop::TxQueueFull => &mut c.tx_queue_full,
            RxDrop::ReplyFailed(NodeError::NoRoute(_)) => &mut c.no_route,
            RxDrop::ReplyFailed(_) => &mut c.tx_dropped,
        });
    }

    pub(super) fn rx_frame(
        &mut self,
        now: Instant,
        iface: IfaceId,
        frame: &[u8],
    ) -> Result<(), RxDrop> {
        let version = self
            .iface(iface)
            .ok_or(RxDrop::UnknownIface(iface))?
            .version;
        let packet = Packet::<PKT>::from_frame(frame, version).map_err(|e| match e {
            PacketError::Header(h) => RxDrop::Malformed(h),
            _ => RxDrop::TooLong { len: frame.len() },
        })?;
        let dst = packet.header.dst;
        if dst == self.addr || dst == Addr::LOCAL || dst.is_broadcast(version) {
            return self.deliver(now, packet, version);
        }
        if !self.forward {
            return Err(RxDrop::NotForUs);
        }
        self.forward_packet(packet, iface)
    }

    pub(super) fn forward_packet(
        &mut self,
        packet: Packet<PKT>,
        from: IfaceId,
    ) -> Result<(), RxDrop> {
        let dst = packet.header.dst;
        let hop = self.routes.lookup(dst).ok_or(RxDrop::NoRoute(dst))?;
        if hop.iface == from && hop.via.is_none() {
            // Back where it came from: a loop or a neighbour's broadcast domain.
            return Err(RxDrop::NoRoute(dst));
        }
        if self.tx.is_full() {
            return Err(RxDrop::TxQueueFull);
        }
        let _ = self.tx.push_back(TxEntry {
            out: Out::Iface(hop),
            packet,
        });
        bump(&mut self.counters.forwarded);
        Ok(())
    }

    /// A packet for this node (from a link or the loopback).
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        if packet.header.flags.contains(Flags::RDP) {
            return self.deliver_rdp(now, packet, version);
        }
        let h = packet.header;
        let binding = self.ports.lookup_binding(h.dst, h.dport).copied();
        let service_port = self.services_on && h.dport.get() <= LAST_SERVICE_PORT;
        match binding {
            Some(b) if b.key.port == BindPort::Any && service_port => {
                self.serve(now, packet, version)
            }
            Some(b) => match b.owner {
                Owner::Socket(i) => self.queue_rx(usize::from(i), packet, version),
                Owner::Conn(_) => Err(RxDrop::NoSocket(h.dport)),
            },
            None if service_port => self.serve(now, packet, version),
            None => Err(RxDrop::NoSocket(h.dport)),
        }
    }

    pub(super) fn queue_rx(
        &mut self,
        i: usize,
        mut packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        let sock = self
            .sockets
            .get(i)
            .and_then(Option::as_ref)
            .ok_or(RxDrop::NoSocket(packet.header.dport))?;
        if !sock.opts.connectionless {
            return Err(RxDrop::ConnectionlessRefused);
        }
        if sock.opts.rx_limit != 0 && sock.queued >= sock.opts.rx_limit {
            return Err(RxDrop::RxQueueFull);
        }
        let security = sock.opts.security;
        let free = self
            .rx
            .iter()
            .position(Option::is_none)
            .ok_or(RxDrop::RxQueueFull)?;
        security
            .verify(&mut packet, version)
            .map_err(RxDrop::Security)?;
        self.rx_seq = self.rx_seq.wrapping_add(1);
        self.rx[free] = Some(RxEntry {
            socket: i as u8,
            seq: self.rx_seq,
            announced: false,
            packet,
        });
        if let Some(s) = self.sockets[i].as_mut() {
            s.queued = s.queued.saturating_add(1);
        }
        bump(&mut self.counters.rx_delivered);
        Ok(())
    }

    pub(super) fn deliver_rdp(
        &mut self,
        now: Instant,
        mut packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        let h = packet.header;
        let existing = self.conns.iter().position(|c| {
            c.as_ref()
                .is_some_and(|c| c.remote == h.src && c.rport == h.sport && c.lport == h.dport)
        });
        if let Some(i) = existing {
            let Some(slot) = self.conns.at(i) else {
                return Err(RxDrop::NoConnection);
            };
            let finished = matches!(slot.conn.state(), ConnState::Closed | ConnState::TimeWait);
            if !(finished && slot.end_reported && is_syn_under(&slot.security, &packet, version)) {
                slot.security
                    .verify(&mut packet, version)
                    .map_err(RxDrop::Security)?;
                slot.conn.handle_segment(now, packet.data());
                bump(&mut self.counters.rx_segments);
                return Ok(());
            }
            // A peer reusing its port for a new connection while ours waits
            // out its close (libcsp rotates through only eight ports): the
            // old one is over and reported, so the SYN opens a new one.
            self.free_conn(i);
        }
        // Not a known connection: only a SYN to a listener opens one.
        let owner = self.ports.lookup(h.dst, h.dport).copied();
        let Some(Owner::Socket(l)) = owner else {
            return Err(RxDrop::NoConnection);
        };
        let l = usize::from(l);
        let sock = *self
            .sockets
            .get(l)
            .and_then(Option::as_ref)
            .ok_or(RxDrop::NoConnection)?;
        if !sock.opts.rdp {
            return Err(RxDrop::RdpRefused);
        }
        sock.opts
            .security
            .verify(&mut packet, version)
            .map_err(RxDrop::Security)?;
        if !is_syn(packet.data()) {
            return Err(RxDrop::NoConnection);
        }
        // The peer's options, clamped (see `syn`).
        let mut syn = [0u8; syn::SYN_LEN];
        let data = match self.syn.rewrite(packet.data(), &mut syn) {
            Some(()) => &syn[..],
            None => packet.data(),
        };
        let isn = self.random() as u16;
        let plan = Connection::<W, SEG>::check_syn(data, sock.opts.rdp_options)
            .map_err(|_| RxDrop::BadSyn)?;
        // Only a SYN that makes a connection may displace a half-open one.
        let index = self.make_room_for_syn(l, h.src, sock.opts.max_conns)?;
        // Built straight into the slot: a connection is kilobytes, and a
        // firmware's stack has few of them to spare.
        let Some(slot) = self.conns.get_mut(index) else {
            return Err(RxDrop::NoConnection);
        };
        *slot = Some(ConnSlot {
            conn: Connection::accepted(now, &plan, isn),
            remote: h.src,
            rport: h.sport,
            lport: h.dport,
            prio: h.prio,
            security: mirror(&sock.opts.security, h.flags),
            listener: Some(l as u8),
            readahead: None,
            announced: false,
            stash: Stash::default(),
            opened: false,
            end_reported: false,
            half_open_until: Some(now + self.syn.syn_received_timeout),
        });
        if let Some(s) = self.sockets[l].as_mut() {
            s.conns = s.conns.saturating_add(1);
        }
        bump(&mut self.counters.rx_segments);
        csp_debug!("node: SYN from {}:{} to port {}", h.src, h.sport, h.dport);
        Ok(())
    }

    /// A free connection slot for a SYN from `src` to listener `l`, within
    /// the half-open bounds of [`SynLimits`]: a source at its bound is
    /// refused; a listener at its bound (or at `max_conns`, or a node
    /// without a free slot) drops its oldest half-open connection for the
    /// new SYN, so a flood of made-up SYNs can not lock real clients out.
    fn make_room_for_syn(&mut self, l: usize, src: Addr, max_conns: u16) -> Result<usize, RxDrop> {
        let mut from_src = 0u16;
        let mut of_listener = 0u16;
        let mut oldest: Option<(Instant, usize)> = None;
        let mut oldest_anywhere: Option<(Instant, usize)> = None;
        for (i, c) in self.conns.iter().enumerate() {
            let Some((c, until)) = c.as_ref().and_then(|c| half_open(c).map(|t| (c, t))) else {
                continue;
            };
            if c.remote == src {
                from_src += 1;
            }
            if oldest_anywhere.is_none_or(|(t, _)| until < t) {
                oldest_anywhere = Some((until, i));
            }
            if c.listener == Some(l as u8) {
                of_listener += 1;
                if oldest.is_none_or(|(t, _)| until < t) {
                    oldest = Some((until, i));
                }
            }
        }
        if from_src >= self.syn.half_open_per_source {
            return Err(RxDrop::BacklogFull);
        }
        let conns = self
            .sockets
            .get(l)
            .and_then(Option::as_ref)
            .map_or(0, |s| s.conns);
        let listener_full = of_listener >= self.syn.half_open_per_listener
            || (max_conns != 0 && conns >= max_conns);
        if listener_full {
            let (_, victim) = oldest.ok_or(RxDrop::BacklogFull)?;
            self.drop_half_open(victim);
        }
        if let Some(free) = self.conns.free_index() {
            return Ok(free);
        }
        let (_, victim) = oldest_anywhere.ok_or(RxDrop::BacklogFull)?;
        self.drop_half_open(victim);
        Ok(victim)
    }

    /// Forget a connection that never completed its handshake: the
    /// application never heard of it, so it hears nothing now either.
    pub(super) fn drop_half_open(&mut self, index: usize) {
        bump(&mut self.counters.half_open_dropped);
        self.free_conn(index);
    }
}

/// When a half-open (SYN-RECEIVED, accepted) connection expires; `None`
/// for any other connection.
pub(super) fn half_open<const W: usize, const SEG: usize>(c: &ConnSlot<W, SEG>) -> Option<Instant> {
    c.half_open_until
        .filter(|_| c.conn.state() == ConnState::SynRcvd)
}
