//! Sockets: what an application binds, what it receives, and the per-socket
//! state the client keeps (queue, options, SFP reassembly, counters).

use std::collections::VecDeque;

use csp_core::sfp::{Progress, Reassembler};
use csp_core::{Addr, Header, Packet, Port};
use csp_ipc::Status;

use crate::options::Options;

/// Largest packet (header room included) the IPC socket carries.
pub(crate) const PACKET_CAP: usize = csp_core::header::MAX_HEADER_LEN + csp_ipc::MAX_FRAME_LEN;
/// A packet as carried on the IPC socket.
pub(crate) type IpcPacket = Packet<PACKET_CAP>;

/// Largest payload SFP reassembles (per sender, per socket).
pub const MAX_SFP_LEN: usize = 64 * 1024;
/// Senders whose SFP transfers one socket reassembles at once; the least
/// recently used one is dropped for a new sender.
const SFP_SENDERS: usize = 4;

/// What to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// One port by number (0..=63, within the daemon's bindable range).
    Port(u8),
    /// Every port of the node not bound by someone else (`CSP_ANY`).
    Any,
    /// A free port of the daemon's ephemeral range, for a client that only
    /// needs somewhere for replies to come back to.
    Ephemeral,
}

impl Bind {
    pub(crate) fn raw(self) -> u8 {
        match self {
            Bind::Port(p) => p,
            Bind::Any => csp_ipc::PORT_ANY,
            Bind::Ephemeral => csp_ipc::PORT_EPHEMERAL,
        }
    }
}

/// A bound socket: a handle into its [`Client`](crate::Client). Copying it does not bind
/// anything twice; [`Client::close`](crate::Client::close) releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket {
    pub(crate) id: u64,
}

/// One received packet, trailers checked and stripped (and, with SFP, the
/// whole reassembled payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The header as received (FRAG cleared for a reassembled payload).
    pub header: Header,
    /// The data.
    pub data: Vec<u8>,
}

impl Datagram {
    /// Sender's address.
    pub fn src(&self) -> u16 {
        self.header.src.get()
    }
    /// Sender's port (where a reply goes).
    pub fn sport(&self) -> u8 {
        self.header.sport.get()
    }
    /// The port it was sent to.
    pub fn dport(&self) -> u8 {
        self.header.dport.get()
    }
}

/// Counters of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketStats {
    /// Packets handed to the socket by the daemon.
    pub rx_packets: u64,
    /// Datagrams delivered to the application's queue.
    pub delivered: u64,
    /// Packets dropped because a trailer was missing or did not verify
    /// (wrong HMAC key, bad CRC).
    pub dropped_security: u64,
    /// Datagrams dropped because the socket's queue was full.
    pub dropped_overflow: u64,
    /// SFP fragments refused (and transfers aborted or timed out).
    pub sfp_errors: u64,
    /// RDP segments to a socket that takes none (a connectionless socket:
    /// RDP goes to [`Client::listen`](crate::Client::listen) ports and
    /// outgoing connections).
    pub dropped_rdp: u64,
    /// Connectionless packets to a port that takes only RDP (a listener's
    /// or an outgoing connection's).
    pub dropped_connectionless: u64,
    /// Packets sent (each SFP fragment counts).
    pub tx_packets: u64,
}

/// Reassembly state for one sender.
pub(crate) struct SfpRx {
    pub(crate) from: (Addr, Port),
    pub(crate) last_use: u64,
    pub(crate) rx: Box<Reassembler<MAX_SFP_LEN>>,
}

/// One bound socket's state.
pub(crate) struct Entry {
    pub(crate) bind: Bind,
    /// The port the daemon gave us (255 for ANY).
    pub(crate) port: u8,
    pub(crate) registered: bool,
    /// The port belongs to an RDP listener or an outgoing connection: RDP
    /// segments to it go to the client's node.
    pub(crate) rdp: bool,
    /// Why registering again after a reconnect failed.
    pub(crate) lost: Option<Status>,
    pub(crate) options: Options,
    pub(crate) queue: VecDeque<Datagram>,
    pub(crate) sfp: Vec<SfpRx>,
    pub(crate) stats: SocketStats,
}

impl Entry {
    /// Feed one fragment to the sender's reassembler; the whole payload
    /// once complete.
    pub(crate) fn reassemble(
        &mut self,
        now: csp_core::time::Instant,
        tick: u64,
        packet: &IpcPacket,
    ) -> Option<Vec<u8>> {
        let from = (packet.header.src, packet.header.sport);
        let idx = match self.sfp.iter().position(|s| s.from == from) {
            Some(i) => i,
            None => {
                if self.sfp.len() >= SFP_SENDERS {
                    let oldest = self
                        .sfp
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.last_use)
                        .map_or(0, |(i, _)| i);
                    self.sfp.swap_remove(oldest);
                }
                self.sfp.push(SfpRx {
                    from,
                    last_use: tick,
                    rx: Box::default(),
                });
                self.sfp.len() - 1
            }
        };
        let slot = &mut self.sfp[idx];
        slot.last_use = tick;
        match slot.rx.push_packet(now, packet) {
            Ok(Progress::Complete(data)) => Some(data.to_vec()),
            Ok(_) => None,
            Err(e) => {
                log::debug!("SFP from {}:{}: {e}", from.0, from.1);
                self.stats.sfp_errors += 1;
                None
            }
        }
    }
}
