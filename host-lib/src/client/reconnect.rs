//! Losing and finding the daemon: backoff from 250 ms doubling to 16 s,
//! the same ports registered again, events for what changed.

use std::time::Instant;

use csp_ipc::Status;

use super::{Client, RECONNECT_MAX, RECONNECT_MIN};
use crate::error::Error;
use crate::event::Event;
use crate::ipc::{Incoming, Link};
use crate::socket::Socket;

impl Client {
    pub(super) fn lose_link(&mut self, reason: String) {
        if self.link.take().is_none() {
            return;
        }
        log::warn!("lost csp-muxd at {}: {reason}", self.endpoint);
        for e in self.sockets.values_mut() {
            e.registered = false;
        }
        self.replies.clear();
        self.control_pages.clear();
        self.pending.clear();
        self.more_to_read = false;
        // Answers to requests of the old connection mean nothing now; its
        // packets are still delivered.
        self.inbox.retain(|f| matches!(f, Incoming::Data(_)));
        self.retry_delay = RECONNECT_MIN;
        self.retry_at = Some(Instant::now() + self.retry_delay);
        self.push_event(Event::Disconnected {
            reason: reason.clone(),
        });
        // Never silent: every RDP connection fails now, with the reason.
        self.rdp_link_lost(&reason);
    }

    pub(super) fn try_reconnect(&mut self) {
        match Link::connect(&self.endpoint, &self.cfg.name, self.cfg.request_timeout) {
            Ok((link, hello)) => {
                if let Err(e) = self.on_hello(hello.node, hello.mtu) {
                    log::warn!("reconnect: {e}");
                    return self.schedule_retry();
                }
                self.link = Some(link);
                self.rdp_reconnected();
                self.retry_at = None;
                self.retry_delay = RECONNECT_MIN;
                self.stats.reconnects += 1;
                if self.rebind_all() {
                    self.handle_readable();
                    log::info!("reconnected to csp-muxd at {}", self.endpoint);
                    self.push_event(Event::Reconnected);
                }
            }
            Err(e) => {
                log::debug!("reconnect to {}: {e}", self.endpoint);
                self.stats.failed_attempts += 1;
                self.schedule_retry();
            }
        }
    }

    fn schedule_retry(&mut self) {
        self.retry_delay = (self.retry_delay * 2).min(RECONNECT_MAX);
        self.retry_at = Some(Instant::now() + self.retry_delay);
    }

    /// Register every socket again; false if the link was lost meanwhile.
    fn rebind_all(&mut self) -> bool {
        let mut ids: Vec<u64> = self.sockets.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(e) = self.sockets.get(&id) else {
                continue;
            };
            // An ephemeral port can not be asked for by number: ask for any
            // ephemeral port again and say if it changed.
            let (bind, old) = (e.bind, e.port);
            let socket = Socket { id };
            match self.register(bind) {
                Ok(port) => {
                    if let Some(e) = self.sockets.get_mut(&id) {
                        e.registered = true;
                        e.lost = None;
                        e.port = port;
                        e.sfp.clear();
                    }
                    if port != old {
                        self.push_event(Event::PortChanged {
                            socket,
                            old,
                            new: port,
                        });
                    }
                }
                Err(Error::Disconnected { .. }) => return false,
                Err(error) => {
                    log::warn!("port {old} could not be registered again: {error}");
                    let status = match &error {
                        Error::PortInUse { .. } => Some(Status::PortInUse),
                        Error::Register { status, .. } => Some(*status),
                        _ => None,
                    };
                    if let (Some(e), Some(status)) = (self.sockets.get_mut(&id), status) {
                        e.lost = Some(status);
                    }
                    self.push_event(Event::RebindFailed { socket, error });
                }
            }
            if self.link.is_none() {
                return false;
            }
        }
        true
    }
}
