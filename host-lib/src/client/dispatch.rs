//! Receiving: each frame from the daemon acted on in order; DATA checked
//! (trailers, SFP) and queued on its socket.

use std::time::Instant;

use csp_core::{Flags, Header, Version};
use csp_ipc::{Message, Status};

use super::{Client, Pending, Reply};
use crate::event::Event;
use crate::ipc::Incoming;
use crate::socket::{Datagram, IpcPacket};

impl Client {
    /// Act on one frame; true if it was the answer to a pending request.
    pub(super) fn on_frame(&mut self, frame: Incoming) -> bool {
        let reply = match frame {
            Incoming::Data(bytes) => {
                self.on_data(&bytes);
                return false;
            }
            Incoming::RegisterAck { status, port } => Reply::Register { status, port },
            Incoming::UnregisterAck { status } => Reply::Unregister { status },
            Incoming::ControlReply { text, more } => {
                // Pages of one reply arrive in a row: gather them, bounded.
                self.control_pages.push_str(&text);
                if more {
                    if self.control_pages.len() > super::MAX_CONTROL_REPLY {
                        self.lose_link("control reply too long".into());
                    }
                    return false;
                }
                Reply::Control(std::mem::take(&mut self.control_pages))
            }
            Incoming::Bye(reason) => {
                self.lose_link(format!("csp-muxd said goodbye ({reason:?})"));
                return false;
            }
            Incoming::Error { code, message } => {
                self.stats.daemon_errors += 1;
                log::warn!("csp-muxd: {message} ({code:?})");
                self.push_event(Event::DaemonError { code, message });
                return false;
            }
            Incoming::HelloAck { .. } => {
                self.lose_link("second HELLO_ACK".into());
                return false;
            }
            // A Client never starts a capture (that is `capture::Capture`'s
            // own connection): the daemon is confused.
            Incoming::CaptureLink { .. }
            | Incoming::CaptureStarted { .. }
            | Incoming::CaptureFrame(_)
            | Incoming::CaptureEnd { .. } => {
                self.lose_link("capture message on a connection that captures nothing".into());
                return false;
            }
        };
        match self.pending.pop_front() {
            Some(Pending::Wanted) => {
                self.replies.push_back(reply);
                true
            }
            Some(Pending::Abandoned) => {
                if let Reply::Register {
                    status: Status::Ok,
                    port,
                } = reply
                {
                    // A bind we gave up waiting for succeeded after all:
                    // give the port back, or it would stay ours, unused,
                    // until we disconnect.
                    let unregister = Message::Unregister {
                        addr: csp_ipc::ADDR_DAEMON,
                        port,
                    };
                    if self
                        .link
                        .as_mut()
                        .is_some_and(|l| l.queue(&unregister).is_ok())
                    {
                        self.pending.push_back(Pending::Abandoned);
                    }
                }
                false
            }
            None => {
                log::warn!("csp-muxd answered a request never made: {reply:?}");
                false
            }
        }
    }

    fn on_data(&mut self, frame: &[u8]) {
        let Ok(mut packet) = IpcPacket::from_frame(frame, Version::V2) else {
            self.stats.bad_packets += 1;
            return;
        };
        let dport = packet.header.dport.get();
        let exact = self
            .sockets
            .iter()
            .find(|(_, e)| e.registered && e.port == dport)
            .or_else(|| {
                self.sockets
                    .iter()
                    .find(|(_, e)| e.registered && e.port == csp_ipc::PORT_ANY)
            })
            .map(|(&id, _)| id);
        let Some(id) = exact else {
            self.stats.no_socket += 1;
            return;
        };
        let now = self.core_now(Instant::now());
        self.use_counter += 1;
        let tick = self.use_counter;
        let queue_len = self.cfg.queue_len.max(1);
        let Some(entry) = self.sockets.get_mut(&id) else {
            return;
        };
        entry.stats.rx_packets += 1;
        if packet.header.flags.contains(Flags::RDP) {
            // A segment for a connection (local port, peer) or a SYN for a
            // listener: the node's. Anywhere else nobody takes it.
            if entry.rdp {
                self.rdp_input(frame);
            } else {
                entry.stats.dropped_rdp += 1;
            }
            return;
        }
        if entry.rdp {
            entry.stats.dropped_connectionless += 1;
            return;
        }
        let options = entry.options;
        if let Err(e) = options
            .security()
            .verify(&mut packet, options.security_version())
        {
            log::debug!(
                "port {dport}: packet from {}:{} dropped: {e}",
                packet.header.src,
                packet.header.sport
            );
            entry.stats.dropped_security += 1;
            return;
        }
        let header = packet.header;
        let data = if header.flags.contains(Flags::FRAG) && options.sfp {
            match entry.reassemble(now, tick, &packet) {
                Some(whole) => whole,
                None => return,
            }
        } else {
            packet.data().to_vec()
        };
        let header = Header {
            flags: if options.sfp {
                header.flags.without(Flags::FRAG)
            } else {
                header.flags
            },
            ..header
        };
        if entry.queue.len() >= queue_len {
            entry.queue.pop_front();
            entry.stats.dropped_overflow += 1;
        }
        entry.queue.push_back(Datagram { header, data });
        entry.stats.delivered += 1;
    }
}
