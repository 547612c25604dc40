//! CAN on a controller with `embedded-can`'s non-blocking `Can` trait: CFP
//! ([`CanLink`]) between the controller's frames and a [`Node`]'s CSP frames.

use embedded_can::nb::Can;
use embedded_can::{ExtendedId, Frame, Id};

use super::PortError;
use crate::cfp::{CanFrame, CanLink, CfpError, CfpStats, CAN_DATA_LEN};
use crate::header::{Addr, Version};
use crate::node::{RxDrop, Transmit};
use crate::route::IfaceId;
use crate::service::IfStats;
use crate::time::Instant;
use crate::Node;

/// What became of the CAN frames a [`CanPort::poll`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CanRx {
    /// A packet was completed and the node took it (its events and
    /// transmissions are ready).
    Delivered,
    /// CFP dropped a frame or a packet: counted in the link's
    /// [`CfpStats`] and the interface's `rx_error` (no reassembly slot free,
    /// as libcsp counts a missing buffer) or `frame` (anything else).
    CfpDropped(CfpError),
    /// The node dropped the completed packet (counted by the node; the
    /// reason is for logging).
    NodeDropped(RxDrop),
}

/// What a [`CanPort`] counted beyond CFP's own [`CfpStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CanPortStats {
    /// Frames read from the controller.
    pub rx_frames: u32,
    /// Frames the controller took for sending.
    pub tx_frames: u32,
    /// Standard-id or remote frames read and left alone: CFP uses extended
    /// data frames only, and a shared bus carries other protocols too.
    pub ignored: u32,
    /// Frames the controller handed back because a frame of higher priority
    /// took their place (`Ok(Some(frame))` from `transmit`); each is queued
    /// again before anything else.
    pub displaced: u32,
    /// Displaced frames the HAL's frame type could not rebuild (lost).
    pub displaced_lost: u32,
}

/// A frame the controller handed back, kept in a HAL-neutral form until it
/// is queued again.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: Id,
    remote: bool,
    dlc: u8,
    data: [u8; CAN_DATA_LEN],
}

impl Held {
    fn of<F: Frame>(frame: &F) -> Held {
        let mut data = [0u8; CAN_DATA_LEN];
        let src = frame.data();
        let n = src.len().min(CAN_DATA_LEN);
        if let (Some(to), Some(from)) = (data.get_mut(..n), src.get(..n)) {
            to.copy_from_slice(from);
        }
        Held {
            id: frame.id(),
            remote: frame.is_remote_frame(),
            dlc: frame.dlc().min(CAN_DATA_LEN) as u8,
            data,
        }
    }

    fn rebuild<F: Frame>(&self) -> Option<F> {
        if self.remote {
            F::new_remote(self.id, usize::from(self.dlc))
        } else {
            F::new(self.id, self.data.get(..usize::from(self.dlc))?)
        }
    }
}

/// How far [`CanPort`] got with the packet in progress.
enum Step {
    /// Every frame is with the controller.
    Done,
    /// The controller would block, or handed a frame back (held).
    Wait,
    /// The HAL's frame type refused a CFP frame: the packet can not go.
    Refused,
}

/// Frames handed back in a row that one call queues again at most, so that
/// a HAL that keeps handing frames back can not hold the caller's loop.
const REQUEUE_MAX: usize = 8;

/// The packet a [`CanPort`] is sending: its CSP frame, next hop, the CFP
/// counter it went out with, and how many of its CAN frames the controller
/// has taken.
struct Sending<const MTU: usize> {
    frame: [u8; MTU],
    len: usize,
    via: Option<Addr>,
    counter: u16,
    sent: usize,
}

/// A CAN interface of a [`Node`] on a controller with `embedded-can`'s
/// non-blocking `Can` trait (feature `embedded-can`): CFP of one version
/// ([`CanLink`]: `SLOTS` packets in reassembly at once, CSP frames of at
/// most `MTU` bytes, header included), the packet being sent, and a frame
/// the controller handed back.
///
/// Never blocks: [`poll`](Self::poll) reads what the controller has
/// received, [`transmit`](Self::transmit) hands it frames until it would
/// block, and the rest of a packet goes on the next call. The caller drives
/// the reassembly timeouts with [`poll_timeout`](Self::poll_timeout) /
/// [`handle_timeout`](Self::handle_timeout) beside the node's own.
///
/// Frame order: CFP reassembles a packet only from frames that arrive in
/// order, so the controller must put them on the bus in the order they were
/// queued: a transmit FIFO (bxCAN's TXFP mode, for one) or a single
/// mailbox. A controller that arbitrates between its mailboxes by id can
/// reorder them: CFP1's later frames have the higher priority (`remain`
/// counts down), and CFP2's 3-bit fragment index wraps after 8 frames. A
/// frame the controller hands back (displaced by one of higher priority)
/// is queued again before anything else.
///
/// ```
/// # #[cfg(feature = "embedded-can")] {
/// use std::collections::VecDeque;
/// use csp_core::adapter::CanPort;
/// use csp_core::node::{IfaceConfig, NodeConfig};
/// use csp_core::time::Instant;
/// use csp_core::{Addr, Node, Version};
/// use embedded_can::{nb::Can, ExtendedId, Frame, Id};
///
/// // The frame type and controller of your HAL; here a loop back to itself.
/// #[derive(Clone, Debug)]
/// struct Fr { id: Id, data: Vec<u8> }
/// impl Frame for Fr {
///     fn new(id: impl Into<Id>, data: &[u8]) -> Option<Self> {
///         (data.len() <= 8).then(|| Fr { id: id.into(), data: data.to_vec() })
///     }
///     fn new_remote(_: impl Into<Id>, _: usize) -> Option<Self> { None }
///     fn is_extended(&self) -> bool { matches!(self.id, Id::Extended(_)) }
///     fn is_remote_frame(&self) -> bool { false }
///     fn id(&self) -> Id { self.id }
///     fn dlc(&self) -> usize { self.data.len() }
///     fn data(&self) -> &[u8] { &self.data }
/// }
/// struct Controller(VecDeque<Fr>);
/// impl Can for Controller {
///     type Frame = Fr;
///     type Error = core::convert::Infallible;
///     fn transmit(&mut self, f: &Fr) -> nb::Result<Option<Fr>, Self::Error> {
///         self.0.push_back(f.clone());
///         Ok(None)
///     }
///     fn receive(&mut self) -> nb::Result<Fr, Self::Error> {
///         self.0.pop_front().ok_or(nb::Error::WouldBlock)
///     }
/// }
///
/// let mut node: Node<128, 2, 2, 2, 1, 4, 100, 1, 1> =
///     Node::new(NodeConfig::new(Addr::new(10).unwrap()));
/// let iface = node.add_iface(IfaceConfig::new("CAN", Version::V2, 6 + 100)).unwrap();
/// node.routes_mut().set_default(iface, None).unwrap();
/// // Reassembly of 2 packets at once, CSP frames up to 106 bytes.
/// let mut port: CanPort<2, 106> = CanPort::new(iface, Version::V2, Addr::new(10).unwrap());
/// let mut can = Controller(VecDeque::new());
/// let mut buf = [0u8; 128];
///
/// // Each turn of the main loop:
/// let now = Instant::from_millis(0);
/// while let Some(_rx) = port.poll(&mut node, now, &mut can).unwrap() {
///     // Application events here: `node.poll_event()`.
/// }
/// port.transmit(&mut node, now, &mut buf, &mut can).unwrap();
/// if port.poll_timeout().is_some_and(|t| t <= now) {
///     port.handle_timeout(now);
/// }
/// # }
/// ```
pub struct CanPort<const SLOTS: usize, const MTU: usize> {
    iface: IfaceId,
    link: CanLink<SLOTS, MTU>,
    sending: Sending<MTU>,
    held: Option<Held>,
    stats: CanPortStats,
}

impl<const SLOTS: usize, const MTU: usize> CanPort<SLOTS, MTU> {
    /// The most frames one [`poll`](Self::poll) reads: enough for a packet of
    /// the largest size the port takes (one frame per 8 bytes, and one for
    /// the first frame's fields), so a call gets through one packet but
    /// never spins on a busy bus.
    pub const POLL_FRAMES_MAX: usize = MTU / CAN_DATA_LEN + 2;

    /// A port for the node's interface `iface`, speaking CFP of `version`
    /// (with the same CSP header version), whose own address on the bus is
    /// `addr` (CFP2's sender field). `const`, so firmware can keep it in a
    /// static.
    pub const fn new(iface: IfaceId, version: Version, addr: Addr) -> Self {
        CanPort {
            iface,
            link: CanLink::new(version, addr),
            sending: Sending {
                frame: [0; MTU],
                len: 0,
                via: None,
                counter: 0,
                sent: 0,
            },
            held: None,
            stats: CanPortStats {
                rx_frames: 0,
                tx_frames: 0,
                ignored: 0,
                displaced: 0,
                displaced_lost: 0,
            },
        }
    }

    /// The node interface this port feeds.
    pub const fn iface(&self) -> IfaceId {
        self.iface
    }

    /// The CFP link (version, reassembly counters, timeout setting).
    pub fn link(&self) -> &CanLink<SLOTS, MTU> {
        &self.link
    }

    /// The CFP link, writable (`set_timeout`).
    pub fn link_mut(&mut self) -> &mut CanLink<SLOTS, MTU> {
        &mut self.link
    }

    /// CFP's reassembly counters.
    pub fn cfp_stats(&self) -> &CfpStats {
        self.link.stats()
    }

    /// What the port counted.
    pub const fn stats(&self) -> &CanPortStats {
        &self.stats
    }

    /// True while a packet is part-way out (the controller would block) or
    /// a displaced frame waits to be queued again: call
    /// [`transmit`](Self::transmit) again once the controller has room.
    pub fn is_sending(&self) -> bool {
        self.sending.len != 0 || self.held.is_some()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work to do
    /// (a half-received packet's deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// Gives up half-received packets whose time ran out (counted lost in
    /// [`CfpStats`]); returns how many.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        self.link.handle_timeout(now)
    }

    /// Reads what `can` has received, without blocking, until a packet is
    /// completed (its outcome is returned; the frames after it stay in the
    /// controller for the next call, so the application handles each
    /// packet's events in turn) or nothing is left (`None`). Reads at most
    /// [`Self::POLL_FRAMES_MAX`] frames. A controller error is counted as the
    /// interface's `rx_error` and returned; the port stays usable.
    #[allow(clippy::too_many_arguments)]
    pub fn poll<
        C: Can,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        can: &mut C,
    ) -> Result<Option<CanRx>, PortError<C::Error>> {
        for _ in 0..Self::POLL_FRAMES_MAX {
            let frame = match can.receive() {
                Ok(frame) => frame,
                Err(nb::Error::WouldBlock) => break,
                Err(nb::Error::Other(e)) => {
                    count(node, self.iface, |st| &mut st.rx_error);
                    return Err(PortError::Link(e));
                }
            };
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            let id = match frame.id() {
                Id::Extended(id) if !frame.is_remote_frame() => id.as_raw(),
                _ => {
                    self.stats.ignored = self.stats.ignored.wrapping_add(1);
                    continue;
                }
            };
            match self.link.receive(now, id, frame.data()) {
                Ok(None) => {}
                Ok(Some(packet)) => {
                    return Ok(Some(match node.handle_frame(now, self.iface, packet) {
                        Ok(()) => CanRx::Delivered,
                        Err(d) => CanRx::NodeDropped(d),
                    }));
                }
                Err(e) => {
                    count(node, self.iface, |st| match e {
                        CfpError::NoSlot => &mut st.rx_error,
                        _ => &mut st.frame,
                    });
                    return Ok(Some(CanRx::CfpDropped(e)));
                }
            }
        }
        Ok(None)
    }

    /// Hands `can` the frames of every packet `node` has for this port,
    /// using `buf` (at least the node's packet size) to take each from the
    /// node. Returns `Ok(None)` when the node has nothing left or the
    /// controller would block (the rest goes on the next call; see
    /// [`is_sending`](Self::is_sending)), and stops at a frame for another
    /// interface, returned with its bytes in `buf[..len]`. A packet CFP can
    /// not carry (too long for the port's `MTU` or for CFP1, a header that
    /// does not fit) is skipped and counted as the interface's `tx_error`;
    /// so is one the controller fails on, whose error is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn transmit<
        C: Can,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        buf: &mut [u8],
        can: &mut C,
    ) -> Result<Option<Transmit>, PortError<C::Error>> {
        // Each turn queues a held frame, finishes the packet in progress or
        // takes a packet off the node, so this ends.
        loop {
            match self.send_held(can) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => {
                    count(node, self.iface, |st| &mut st.tx_error);
                    return Err(e);
                }
            }
            if self.sending.len != 0 {
                match self.send_rest(can) {
                    Ok(Step::Done) => self.sending.len = 0,
                    Ok(Step::Refused) => {
                        self.sending.len = 0;
                        count(node, self.iface, |st| &mut st.tx_error);
                    }
                    // A displaced frame to queue first.
                    Ok(Step::Wait) if self.held.is_some() => continue,
                    Ok(Step::Wait) => return Ok(None),
                    Err(e) => {
                        self.sending.len = 0;
                        count(node, self.iface, |st| &mut st.tx_error);
                        return Err(e);
                    }
                }
            }
            let Some(t) = node.poll_transmit(now, buf) else {
                return Ok(None);
            };
            if t.iface != self.iface {
                return Ok(Some(t));
            }
            if !self.start(buf.get(..t.len), t.via) {
                count(node, self.iface, |st| &mut st.tx_error);
            }
        }
    }

    /// Takes the CSP frame `frame` as the packet to send next; false if
    /// CFP can not carry it (nothing taken).
    fn start(&mut self, frame: Option<&[u8]>, via: Option<Addr>) -> bool {
        let Some(frame) = frame else { return false };
        let Some(to) = self.sending.frame.get_mut(..frame.len()) else {
            return false;
        };
        to.copy_from_slice(frame);
        let counter = self.link.counter();
        // Checks the packet (and moves the counter on); the frames are made
        // again as the controller takes them.
        let Some(to) = self.sending.frame.get(..frame.len()) else {
            return false;
        };
        if self.link.transmit(to, via).is_err() {
            return false;
        }
        let s = &mut self.sending;
        (s.len, s.via, s.counter, s.sent) = (frame.len(), via, counter, 0);
        true
    }

    /// Queues the frames of the packet in progress that the controller has
    /// not taken yet.
    fn send_rest<C: Can>(&mut self, can: &mut C) -> Result<Step, PortError<C::Error>> {
        let s = &mut self.sending;
        let frame = s.frame.get(..s.len).unwrap_or_default();
        // `start` checked the packet, so this succeeds.
        let Ok(frames) = self.link.fragments(frame, s.via, s.counter) else {
            return Ok(Step::Refused);
        };
        for f in frames.skip(s.sent) {
            let Some(hal) = to_hal::<C::Frame>(&f) else {
                // Every CFP frame has a 29-bit id and at most 8 bytes; a HAL
                // that refuses one can not carry this packet.
                return Ok(Step::Refused);
            };
            match can.transmit(&hal) {
                Ok(displaced) => {
                    s.sent += 1;
                    self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
                    if let Some(back) = displaced {
                        self.stats.displaced = self.stats.displaced.wrapping_add(1);
                        self.held = Some(Held::of(&back));
                        return Ok(Step::Wait);
                    }
                }
                Err(nb::Error::WouldBlock) => return Ok(Step::Wait),
                Err(nb::Error::Other(e)) => return Err(PortError::Link(e)),
            }
        }
        Ok(Step::Done)
    }

    /// Queues the frame the controller handed back, if any: `Ok(true)` when
    /// there is none left to queue, `Ok(false)` when it would block (or
    /// handed frames back [`REQUEUE_MAX`] times in a row: the rest waits for
    /// the next call).
    fn send_held<C: Can>(&mut self, can: &mut C) -> Result<bool, PortError<C::Error>> {
        // A frame handed back in place of this one is held in turn.
        for _ in 0..REQUEUE_MAX {
            let Some(held) = self.held else {
                return Ok(true);
            };
            let Some(frame) = held.rebuild::<C::Frame>() else {
                self.stats.displaced_lost = self.stats.displaced_lost.wrapping_add(1);
                self.held = None;
                break;
            };
            match can.transmit(&frame) {
                Ok(back) => {
                    self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
                    self.held = back.as_ref().map(Held::of);
                    if back.is_some() {
                        self.stats.displaced = self.stats.displaced.wrapping_add(1);
                    }
                }
                Err(nb::Error::WouldBlock) => return Ok(false),
                Err(nb::Error::Other(e)) => {
                    self.held = None;
                    return Err(PortError::Link(e));
                }
            }
        }
        Ok(self.held.is_none())
    }
}

/// A CFP frame as the HAL's frame type (extended id, data frame).
fn to_hal<F: Frame>(frame: &CanFrame) -> Option<F> {
    F::new(ExtendedId::new(frame.id)?, frame.data())
}

/// Adds one to the interface counter `which` picks.
#[allow(clippy::too_many_arguments)]
fn count<
    const PKT: usize,
    const RXQ: usize,
    const TXQ: usize,
    const BINDS: usize,
    const CONNS: usize,
    const W: usize,
    const SEG: usize,
    const IFACES: usize,
    const ROUTES: usize,
>(
    node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
    iface: IfaceId,
    which: impl FnOnce(&mut IfStats) -> &mut u32,
) {
    if let Some(st) = node.iface_stats_mut(iface) {
        let c = which(st);
        *c = c.wrapping_add(1);
    }
}
