//! Sending: header, trailers (CRC, HMAC, XTEA) and SFP fragments made here,
//! then one DATA frame per packet, with bounded buffering toward the daemon.

use std::time::Instant;

use csp_core::sfp;
use csp_core::{Addr, Flags, Header, Port, Version};
use csp_ipc::Message;

use super::Client;
use crate::error::{register_error, Error, Result};
use crate::ipc::Link;
use crate::options::Options;
use crate::socket::{IpcPacket, Socket};

impl Client {
    /// Send `data` from `socket` to (`dst`, `dport`) with the socket's
    /// options, waiting for room in the socket buffer if needed.
    pub fn sendto(&mut self, socket: &Socket, dst: u16, dport: u8, data: &[u8]) -> Result<()> {
        let options = self.entry(socket)?.options;
        self.sendto_with(socket, dst, dport, data, &options)
    }

    /// Send with `options` instead of the socket's.
    pub fn sendto_with(
        &mut self,
        socket: &Socket,
        dst: u16,
        dport: u8,
        data: &[u8],
        options: &Options,
    ) -> Result<()> {
        self.send_inner(socket, dst, dport, data, options, true)
    }

    /// Non-blocking send: [`Error::WouldBlock`] (and nothing sent) when the
    /// socket buffer is full.
    pub fn try_sendto(
        &mut self,
        socket: &Socket,
        dst: u16,
        dport: u8,
        data: &[u8],
        options: &Options,
    ) -> Result<()> {
        self.send_inner(socket, dst, dport, data, options, false)
    }

    fn send_inner(
        &mut self,
        socket: &Socket,
        dst: u16,
        dport: u8,
        data: &[u8],
        options: &Options,
        block: bool,
    ) -> Result<()> {
        let entry = self.entry(socket)?;
        if entry.port == csp_ipc::PORT_ANY {
            return Err(Error::NotAvailable(
                "a socket bound to ANY only receives: bind a port or Bind::Ephemeral to send",
            ));
        }
        if let (Some(status), Some(_)) = (entry.lost, &self.link) {
            return Err(register_error(entry.port, status));
        }
        if !entry.registered || self.link.is_none() {
            return Err(self.disconnected());
        }
        let header = Header {
            prio: options.prio,
            src: self.node,
            dst: Addr::new(dst).map_err(|_| Error::InvalidAddr(dst))?,
            dport: Port::new(dport).map_err(|_| Error::InvalidPort(dport))?,
            sport: Port::new(entry.port).map_err(|_| Error::InvalidPort(entry.port))?,
            flags: Flags::NONE,
        };
        let security = options.security();
        let version = options.security_version();
        let overhead = security.overhead();
        if options.sfp {
            let room = self.mtu.saturating_sub(overhead + sfp::TRAILER_LEN);
            let frag_mtu = options.sfp_mtu.unwrap_or(room).min(room);
            let fragments = sfp::split(data, frag_mtu).map_err(Error::Sfp)?;
            let n = fragments.len();
            if block {
                self.wait_for_room(n * (frag_mtu + 32))?;
            } else {
                self.check_room(n * (frag_mtu + 32))?;
            }
            for frag in fragments {
                let mut packet: IpcPacket =
                    frag.to_packet(header).map_err(|_| Error::TooLarge {
                        len: data.len(),
                        mtu: self.mtu,
                    })?;
                self.nonce = self.nonce.wrapping_add(1);
                security.append(&mut packet, version, self.nonce)?;
                self.queue_packet(&mut packet)?;
                self.entry_mut(socket)?.stats.tx_packets += 1;
                if block {
                    self.wait_for_room(0)?;
                }
            }
        } else {
            if data.len() + overhead > self.mtu {
                return Err(Error::TooLarge {
                    len: data.len() + overhead,
                    mtu: self.mtu,
                });
            }
            if block {
                self.wait_for_room(data.len() + 16)?;
            } else {
                self.check_room(data.len() + 16)?;
            }
            let mut packet = IpcPacket::with_data(header, data).map_err(|_| Error::TooLarge {
                len: data.len(),
                mtu: self.mtu,
            })?;
            self.nonce = self.nonce.wrapping_add(1);
            security.append(&mut packet, version, self.nonce)?;
            self.queue_packet(&mut packet)?;
            self.entry_mut(socket)?.stats.tx_packets += 1;
        }
        self.flush_link();
        if self.link.is_none() {
            return Err(self.disconnected());
        }
        Ok(())
    }

    fn queue_packet(&mut self, packet: &mut IpcPacket) -> Result<()> {
        let (dst, len, mtu) = (packet.header.dst.get(), packet.len(), self.mtu);
        let frame = packet.frame(Version::V2).map_err(|e| match e {
            csp_core::packet::PacketError::Header(_) => Error::InvalidAddr(dst),
            _ => Error::TooLarge { len, mtu },
        })?;
        match self.link.as_mut() {
            Some(link) => link.queue(&Message::Data { frame }),
            None => Err(self.disconnected()),
        }
    }

    fn check_room(&mut self, extra: usize) -> Result<()> {
        self.flush_link();
        let pending = self.link.as_ref().map_or(0, Link::pending_write);
        if pending > 0 && pending + extra > self.cfg.write_buffer {
            return Err(Error::WouldBlock);
        }
        Ok(())
    }

    /// Block until `extra` more bytes fit the write buffer.
    fn wait_for_room(&mut self, extra: usize) -> Result<()> {
        let deadline = Instant::now() + self.cfg.send_timeout;
        loop {
            match self.check_room(extra) {
                Err(Error::WouldBlock) => {}
                other => return other,
            }
            let Some(link) = &self.link else {
                return Err(self.disconnected());
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            link.wait(deadline - now)
                .map_err(Error::io("waiting for csp-muxd"))?;
            self.handle_readable();
        }
    }

    pub(super) fn flush_link(&mut self) {
        if let Some(link) = self.link.as_mut() {
            if let Err(e) = link.flush() {
                self.lose_link(format!("writing to csp-muxd: {e}"));
            }
        }
    }
}
