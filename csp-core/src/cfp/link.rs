//! A node's CAN interface: the glue between [`crate::Node`]'s whole CSP
//! frames and the bus's `(id, data)` frames, one per CAN interface.
//!
//! Out: each frame from `Node::poll_transmit` for this interface goes to
//! [`CanLink::transmit`] with the route's next hop (`Transmit::via`) and
//! comes back as CAN frames. In: each CAN frame goes to
//! [`CanLink::receive`]; a completed packet comes back as a CSP frame for
//! `Node::handle_frame`. No I/O, no clock: the driver owns both.

use super::{fragment, CanFrame, CfpError, CfpStats, Fragments, Reassembler, TxLink};
use crate::header::{Addr, Header, Version};
use crate::time::{Duration, Instant};

/// One CAN interface of a node: CFP of one version, the interface's own
/// address (CFP2's sender field), its packet counter, `SLOTS` packets in
/// reassembly, frames (header included) of at most `MTU` bytes.
pub struct CanLink<const SLOTS: usize, const MTU: usize> {
    addr: Addr,
    counter: u16,
    rx: Reassembler<SLOTS, MTU>,
    frame: [u8; MTU],
}

impl<const SLOTS: usize, const MTU: usize> CanLink<SLOTS, MTU> {
    /// A CAN interface speaking CFP of `version`, whose own address is `addr`.
    pub const fn new(version: Version, addr: Addr) -> Self {
        CanLink {
            addr,
            counter: 0,
            rx: Reassembler::new(version),
            frame: [0; MTU],
        }
    }

    /// The CFP (and CSP header) version.
    pub fn version(&self) -> Version {
        self.rx.version()
    }

    /// The reassembly counters.
    pub fn stats(&self) -> &CfpStats {
        self.rx.stats()
    }

    /// Sets how long a half-received packet waits for its next frame.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.rx.set_timeout(timeout);
    }

    /// When [`CanLink::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rx.poll_timeout()
    }

    /// Gives up half-received packets whose time ran out (counted lost).
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        self.rx.handle_timeout(now)
    }

    /// The CAN frames for one CSP frame (header, data, trailers) leaving
    /// through this interface towards `via` (the route's next hop). Each call
    /// is one packet: the interface counter moves on.
    pub fn transmit<'a>(
        &mut self,
        frame: &'a [u8],
        via: Option<Addr>,
    ) -> Result<Fragments<'a>, CfpError> {
        let frames = self.fragments(frame, via, self.counter)?;
        self.counter = self.counter.wrapping_add(1);
        Ok(frames)
    }

    /// The counter the next [`transmit`](Self::transmit) puts in its frames.
    pub fn counter(&self) -> u16 {
        self.counter
    }

    /// The CAN frames of a packet [`transmit`](Self::transmit) took when
    /// [`counter`](Self::counter) was `counter`, again and without moving the
    /// counter on: for a driver whose controller took only part of them and
    /// that resumes the rest later (skipping those sent).
    pub fn fragments<'a>(
        &self,
        frame: &'a [u8],
        via: Option<Addr>,
        counter: u16,
    ) -> Result<Fragments<'a>, CfpError> {
        let version = self.version();
        let header = Header::parse(frame, version)?;
        let data = frame.get(version.header_len()..).unwrap_or_default();
        let link = TxLink {
            via,
            iface_addr: self.addr,
            counter,
        };
        fragment(version, &header, data, link)
    }

    /// One CAN frame from the bus, received at `now`. When it completes a
    /// packet, the whole CSP frame (header first) for `Node::handle_frame`.
    pub fn receive(
        &mut self,
        now: Instant,
        id: u32,
        data: &[u8],
    ) -> Result<Option<&[u8]>, CfpError> {
        let frame = match CanFrame::new(id, data) {
            Ok(f) => f,
            Err(e) => {
                self.rx.count_malformed();
                return Err(e);
            }
        };
        let version = self.version();
        let Some(packet) = self.rx.push(now, &frame)? else {
            return Ok(None);
        };
        let hlen = version.header_len();
        let len = hlen + packet.data.len();
        let out = self
            .frame
            .get_mut(..len)
            .ok_or(CfpError::TooLong { len, max: MTU })?;
        packet.header.emit(out, version)?;
        out[hlen..].copy_from_slice(packet.data);
        Ok(Some(out))
    }
}
