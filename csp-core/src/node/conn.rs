//! The application's RDP connections: open, send, read, close.

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
    /// Open an RDP connection to (`dst`, `dport`) from an ephemeral port.
    /// [`Event::Connected`] (or `Failed`) follows; the SYN leaves with the
    /// next `poll_transmit`.
    pub fn connect(
        &mut self,
        now: Instant,
        dst: Addr,
        dport: Port,
        opts: &ConnectOptions,
    ) -> Result<ConnId, NodeError> {
        self.open_conn(now, None, dst, dport, opts)
    }

    /// [`connect`](Self::connect) from a given local port (e.g. one a
    /// daemon assigned). The port is bound like a socket's, so it must be
    /// bindable under the node's [`BindConfig`] and free.
    pub fn connect_from(
        &mut self,
        now: Instant,
        sport: Port,
        dst: Addr,
        dport: Port,
        opts: &ConnectOptions,
    ) -> Result<ConnId, NodeError> {
        self.open_conn(now, Some(sport), dst, dport, opts)
    }

    pub(super) fn open_conn(
        &mut self,
        now: Instant,
        sport: Option<Port>,
        dst: Addr,
        dport: Port,
        opts: &ConnectOptions,
    ) -> Result<ConnId, NodeError> {
        let (_, version) = self.route_out(dst)?;
        // XTEA exists only with v1 headers: refuse now rather than have every
        // segment dropped at transmit.
        if opts.security.xtea.is_some() && version != Version::V1 {
            return Err(NodeError::Security(
                crate::security::SecurityError::XteaNeedsV1,
            ));
        }
        opts.rdp.validate(W).map_err(NodeError::Options)?;
        let index = self.conns.free_index().ok_or(NodeError::NoFreeConnection)?;
        let owner = Owner::Conn(index as u8);
        let lport = match sport {
            Some(p) => {
                self.ports.bind(BindAddr::Any, BindPort::Port(p), owner)?;
                p
            }
            None => self.ports.bind_ephemeral(BindAddr::Any, owner)?,
        };
        let isn = self.random() as u16;
        let conn = match Connection::connect(now, opts.rdp, isn) {
            Ok(c) => c,
            Err(e) => {
                // Validated above; undo the binding all the same.
                let _ = self.ports.unbind(BindAddr::Any, BindPort::Port(lport));
                return Err(NodeError::Options(e));
            }
        };
        let Some(entry) = self.conns.get_mut(index) else {
            return Err(NodeError::NoFreeConnection);
        };
        *entry = Some(ConnSlot {
            conn,
            remote: dst,
            rport: dport,
            lport,
            prio: opts.prio,
            security: opts.security,
            listener: None,
            readahead: None,
            announced: false,
            stash: Stash::default(),
            opened: false,
            end_reported: false,
            half_open_until: None,
        });
        csp_debug!("node: connect to {}:{} from {}", dst, dport, lport);
        Ok(self.conn_id(index))
    }

    pub(super) fn conn_id(&self, index: usize) -> ConnId {
        ConnId {
            index: index as u8,
            // Callers pass a slot index; one out of range would get an id
            // that `slot_ref` refuses (no generation matches it).
            gen: self.conn_gen.get(index).copied().unwrap_or_default(),
        }
    }

    pub(super) fn slot_ref(&self, id: ConnId) -> Result<&ConnSlot<W, SEG>, NodeError> {
        let i = id.index();
        if self.conn_gen.get(i) != Some(&id.gen) {
            return Err(NodeError::BadHandle);
        }
        self.conns
            .get(i)
            .and_then(Option::as_ref)
            .ok_or(NodeError::BadHandle)
    }

    pub(super) fn slot(&mut self, id: ConnId) -> Result<&mut ConnSlot<W, SEG>, NodeError> {
        let i = id.index();
        if self.conn_gen.get(i) != Some(&id.gen) {
            return Err(NodeError::BadHandle);
        }
        self.conns
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(NodeError::BadHandle)
    }

    /// Queue one segment (at most `SEG` bytes); returns its RDP sequence
    /// number, which [`Event::Acknowledged`] reports once the peer has it.
    /// A full window is [`NodeError::WouldBlock`]; a segment whose frame
    /// would exceed the route's MTU is refused.
    pub fn send(&mut self, now: Instant, conn: ConnId, data: &[u8]) -> Result<u16, NodeError> {
        let slot = self.slot(conn)?;
        let (dst, overhead) = (slot.remote, slot.security.overhead());
        if let Ok((Out::Iface(hop), version)) = self.route_out(dst) {
            let len = version.header_len() + data.len() + csp_rdp::header::HEADER_LEN + overhead;
            self.check_mtu(hop.iface, len)?;
        }
        let slot = self.slot(conn)?;
        slot.conn.send(now, data).map_err(|e| match e {
            csp_rdp::SendError::WouldBlock => NodeError::WouldBlock,
            e => NodeError::Send(e),
        })
    }

    /// Segments `send` takes right now.
    pub fn send_capacity(&self, conn: ConnId) -> Result<usize, NodeError> {
        Ok(self.slot_ref(conn)?.conn.send_capacity())
    }

    /// Copy the next received segment into `buf` and return its length.
    /// `WouldBlock` if none is there yet, `Closed` once the connection is
    /// finished and everything was read.
    pub fn recv_conn(&mut self, conn: ConnId, buf: &mut [u8]) -> Result<usize, NodeError> {
        let slot = self.slot(conn)?;
        pump(slot);
        let Some(data) = slot.readahead.as_ref() else {
            return Err(if slot.stash.end.is_some() || slot.end_reported {
                NodeError::Closed
            } else {
                NodeError::WouldBlock
            });
        };
        let (len, got) = (data.len(), buf.len());
        buf.get_mut(..len)
            .ok_or(NodeError::BufferTooSmall { needed: len, got })?
            .copy_from_slice(data);
        slot.readahead = None;
        slot.announced = false;
        pump(slot);
        Ok(len)
    }

    /// Close a connection: once everything sent is acknowledged the close
    /// handshake runs; [`Event::Closed`] (or `Failed`) follows.
    pub fn close(&mut self, now: Instant, conn: ConnId) -> Result<(), NodeError> {
        let slot = self.slot(conn)?;
        slot.conn.close(now);
        Ok(())
    }

    /// The connection's state.
    pub fn conn_state(&self, conn: ConnId) -> Result<ConnState, NodeError> {
        Ok(self.slot_ref(conn)?.conn.state())
    }

    /// The remote address and port and the local port of a connection.
    pub fn conn_endpoints(&self, conn: ConnId) -> Result<(Addr, Port, Port), NodeError> {
        let s = self.slot_ref(conn)?;
        Ok((s.remote, s.rport, s.lport))
    }

    /// The RDP counters of a connection.
    pub fn conn_counters(&self, conn: ConnId) -> Result<csp_rdp::Counters, NodeError> {
        Ok(*self.slot_ref(conn)?.conn.counters())
    }

    /// Connection slots in use.
    pub fn connections(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    pub(super) fn free_conn(&mut self, index: usize) {
        let Some(slot) = self.conns.get_mut(index).and_then(Option::take) else {
            return;
        };
        // Only an outgoing connection owns its port; an accepted one shares
        // its listener's (which may be unbound and bound again by now).
        let key = BindPort::Port(slot.lport);
        if self.ports.get(BindAddr::Any, key) == Some(&Owner::Conn(index as u8)) {
            let _ = self.ports.unbind(BindAddr::Any, key);
        }
        if let Some(s) = slot
            .listener
            .and_then(|l| self.sockets.get_mut(usize::from(l)))
            .and_then(Option::as_mut)
        {
            s.conns = s.conns.saturating_sub(1);
        }
        if let Some(generation) = self.conn_gen.get_mut(index) {
            *generation = generation.wrapping_add(1);
        }
        csp_debug!("node: connection slot {} freed", index);
    }
}
