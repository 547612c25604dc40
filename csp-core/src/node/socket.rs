//! The application's sockets: bind, receive, and connectionless sends.

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
    /// Bind `port` (or [`BindPort::Any`]: every port nothing else took).
    pub fn bind(&mut self, port: BindPort, opts: SocketOptions) -> Result<SocketId, NodeError> {
        let index = self.free_socket()?;
        self.ports
            .bind(BindAddr::Any, port, Owner::Socket(index as u8))?;
        Ok(self.install_socket(index, port, opts))
    }

    /// Bind a free ephemeral port (a source port for connectionless requests).
    pub fn bind_ephemeral(&mut self, opts: SocketOptions) -> Result<(SocketId, Port), NodeError> {
        let index = self.free_socket()?;
        let port = self
            .ports
            .bind_ephemeral(BindAddr::Any, Owner::Socket(index as u8))?;
        Ok((self.install_socket(index, BindPort::Port(port), opts), port))
    }

    /// Bind `port` for RDP connections only: [`bind`](Self::bind) with
    /// [`SocketOptions::listener`] and `security`.
    pub fn listen(
        &mut self,
        port: BindPort,
        security: SecurityOptions,
    ) -> Result<SocketId, NodeError> {
        self.bind(port, SocketOptions::listener().with_security(security))
    }

    pub(super) fn free_socket(&self) -> Result<usize, NodeError> {
        self.sockets
            .iter()
            .position(Option::is_none)
            .ok_or(NodeError::Bind(crate::bind::BindError::TableFull))
    }

    pub(super) fn install_socket(
        &mut self,
        index: usize,
        port: BindPort,
        opts: SocketOptions,
    ) -> SocketId {
        self.sockets[index] = Some(SocketSlot {
            port,
            opts,
            queued: 0,
            conns: 0,
        });
        SocketId {
            index: index as u8,
            gen: self.socket_gen[index],
        }
    }

    pub(super) fn socket_index(&self, id: SocketId) -> Result<usize, NodeError> {
        let i = id.index();
        match self.sockets.get(i) {
            Some(Some(_)) if self.socket_gen[i] == id.gen => Ok(i),
            _ => Err(NodeError::BadHandle),
        }
    }

    pub(super) fn socket_id(&self, index: usize) -> SocketId {
        SocketId {
            index: index as u8,
            // As `conn_id`: an index out of range gets an id no lookup takes.
            gen: self.socket_gen.get(index).copied().unwrap_or_default(),
        }
    }

    /// The port a socket is bound to.
    pub fn socket_port(&self, socket: SocketId) -> Result<BindPort, NodeError> {
        let i = self.socket_index(socket)?;
        self.sockets[i]
            .as_ref()
            .map(|s| s.port)
            .ok_or(NodeError::BadHandle)
    }

    /// Unbind a socket: its queued packets are dropped; connections it
    /// accepted live on.
    pub fn unbind(&mut self, socket: SocketId) -> Result<(), NodeError> {
        let i = self.socket_index(socket)?;
        let Some(slot) = self.sockets[i].take() else {
            return Err(NodeError::BadHandle);
        };
        let _ = self.ports.unbind(BindAddr::Any, slot.port);
        for e in self.rx.iter_mut() {
            if e.as_ref().is_some_and(|e| usize::from(e.socket) == i) {
                *e = None;
            }
        }
        for c in self.conns.iter_mut().flatten() {
            if c.listener == Some(i as u8) {
                c.listener = None;
            }
        }
        self.socket_gen[i] = self.socket_gen[i].wrapping_add(1);
        Ok(())
    }

    /// Copy the oldest connectionless packet queued on `socket` into `buf`
    /// (data only, trailers stripped). `WouldBlock` if there is none; a
    /// too small `buf` leaves the packet queued.
    pub fn recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<Received, NodeError> {
        let i = self.socket_index(socket)?;
        let at = self
            .rx
            .iter()
            .enumerate()
            .filter_map(|(k, e)| e.as_ref().map(|e| (k, e)))
            .filter(|(_, e)| usize::from(e.socket) == i)
            .min_by_key(|(_, e)| e.seq)
            .map(|(k, _)| k)
            .ok_or(NodeError::WouldBlock)?;
        let entry = self
            .rx
            .get(at)
            .and_then(Option::as_ref)
            .ok_or(NodeError::WouldBlock)?;
        let data = entry.packet.data();
        let got = buf.len();
        let out = buf.get_mut(..data.len()).ok_or(NodeError::BufferTooSmall {
            needed: data.len(),
            got,
        })?;
        out.copy_from_slice(data);
        let received = Received {
            header: entry.packet.header,
            len: data.len(),
        };
        self.rx[at] = None;
        if let Some(s) = self.sockets[i].as_mut() {
            s.queued = s.queued.saturating_sub(1);
        }
        Ok(received)
    }

    /// Send one connectionless packet from this node, with `security`'s
    /// trailers. It is queued for `poll_transmit` (or the loopback).
    pub fn send_to(
        &mut self,
        datagram: &Datagram,
        security: &SecurityOptions,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let header = Header {
            prio: datagram.prio,
            src: self.addr,
            dst: datagram.dst,
            dport: datagram.dport,
            sport: datagram.sport,
            flags: datagram.flags.without(Flags::RDP),
        };
        let packet = Packet::with_data(header, data)?;
        self.queue_packet(packet, security)
    }

    /// Answer a packet received on `socket`: addresses and ports swapped,
    /// same priority, and the CRC32/HMAC trailers the request carried (HMAC
    /// keyed by the socket's options), as libcsp's `CSP_O_SAME`.
    pub fn reply(
        &mut self,
        socket: SocketId,
        request: &Header,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let i = self.socket_index(socket)?;
        let opts = self.sockets[i].as_ref().ok_or(NodeError::BadHandle)?.opts;
        let mut header = request.reply();
        header.src = self.addr;
        header.flags = Flags::NONE;
        let security = mirror(&opts.security, request.flags);
        let packet = Packet::with_data(header, data)?;
        self.queue_packet(packet, &security)
    }

    /// Route `packet`, add its trailers for the outgoing version, queue it.
    pub(super) fn queue_packet(
        &mut self,
        mut packet: Packet<PKT>,
        security: &SecurityOptions,
    ) -> Result<(), NodeError> {
        let (out, version) = self.route_out(packet.header.dst)?;
        packet.header.check(version)?;
        let nonce = self.random() as u32;
        security.append(&mut packet, version, nonce)?;
        if let Out::Iface(hop) = out {
            self.check_mtu(hop.iface, version.header_len() + packet.len())?;
        }
        if self.tx.is_full() {
            return Err(NodeError::TxQueueFull);
        }
        let _ = self.tx.push_back(TxEntry { out, packet });
        Ok(())
    }

    /// Where a packet this node originates goes, and in which header version.
    pub(super) fn route_out(&self, dst: Addr) -> Result<(Out, Version), NodeError> {
        if dst == self.addr || dst == Addr::LOCAL {
            return Ok((Out::Loopback, LOOPBACK_VERSION));
        }
        let hop = self.routes.lookup(dst).ok_or(NodeError::NoRoute(dst))?;
        let iface = self
            .iface(hop.iface)
            .ok_or(NodeError::UnknownIface(hop.iface))?;
        Ok((Out::Iface(hop), iface.version))
    }

    pub(super) fn check_mtu(&self, iface: IfaceId, len: usize) -> Result<(), NodeError> {
        let mtu = self.iface(iface).map_or(0, |i| i.mtu);
        if len > mtu {
            return Err(NodeError::ExceedsMtu { len, mtu });
        }
        Ok(())
    }
}
