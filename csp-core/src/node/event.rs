//! Events for the application, and the timers.

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
    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.pending_error.take() {
            return Some(Event::Error(e));
        }
        if core::mem::take(&mut self.pending_reboot) {
            return Some(Event::Reboot);
        }
        if core::mem::take(&mut self.pending_shutdown) {
            return Some(Event::Shutdown);
        }
        let next_rx = self
            .rx
            .iter_mut()
            .flatten()
            .filter(|e| !e.announced)
            .min_by_key(|e| e.seq);
        if let Some(e) = next_rx {
            e.announced = true;
            let socket = usize::from(e.socket);
            return Some(Event::Received {
                socket: self.socket_id(socket),
            });
        }
        for k in 0..CONNS {
            let i = (self.next_event_conn + k) % CONNS;
            if let Some(ev) = self.conn_event(i) {
                self.next_event_conn = (i + 1) % CONNS;
                return Some(ev);
            }
        }
        None
    }

    pub(super) fn conn_event(&mut self, i: usize) -> Option<Event> {
        let conn = self.conn_id(i);
        let listener = {
            let slot = self.conns.at(i)?;
            pump(slot);
            slot.listener
        };
        let socket = listener.map(|l| self.socket_id(usize::from(l)));
        let slot = self.conns.at(i)?;
        if core::mem::take(&mut slot.stash.connected) {
            slot.opened = true;
            return Some(match (slot.conn.role(), socket) {
                (csp_rdp::Role::Server, Some(socket)) => Event::Accepted { socket, conn },
                _ => Event::Connected { conn },
            });
        }
        if let Some(through) = slot.stash.acked.take() {
            return Some(Event::Acknowledged { conn, through });
        }
        if slot.readahead.is_some() {
            if slot.announced {
                return None;
            }
            slot.announced = true;
            return Some(Event::Readable { conn });
        }
        let end = slot.stash.end.take()?;
        slot.end_reported = true;
        if slot.conn.role() == csp_rdp::Role::Server && !slot.opened {
            // A handshake that never completed: the application never heard
            // of this connection, so it hears nothing of its end either.
            return None;
        }
        Some(match end {
            End::Closed(reason) => Event::Closed { conn, reason },
            End::Failed(reason) => Event::Failed { conn, reason },
        })
    }

    /// When `handle_timeout` should be called next (`None`: no timer runs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .flat_map(|c| [c.conn.poll_timeout(), rx::half_open(c)])
            .flatten()
            .min()
    }

    /// Let time pass: retransmissions, delayed acknowledgements, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Half-open connections expire on our SYN-RECEIVED timeout, not on
        // the connection timeout the peer's SYN asked for.
        for i in 0..CONNS {
            let expired = self
                .conns
                .get(i)
                .and_then(Option::as_ref)
                .and_then(rx::half_open)
                .is_some_and(|t| t <= now);
            if expired {
                self.drop_half_open(i);
            }
        }
        for slot in self.conns.iter_mut().flatten() {
            if slot.conn.poll_timeout().is_some_and(|t| t <= now) {
                slot.conn.handle_timeout(now);
            }
        }
    }
}
