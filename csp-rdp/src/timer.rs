//! The connection's timers: a fixed table indexed by purpose, no heap.

use crate::time::Instant;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timer {
    /// Earliest retransmission (data, SYN or RST).
    Retransmit = 0,
    /// A delayed acknowledgement falls due.
    Ack = 1,
    /// No segment from the peer for the connection timeout while waiting for one.
    Conn = 2,
    /// End of close wait (our reset unanswered) or of lingering after the peer closed.
    Close = 3,
}

/// One deadline per [`Timer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 4],
}

impl TimerTable {
    /// Arm (or re-arm) a timer.
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.deadlines[t as usize] = Some(at);
    }

    /// Disarm a timer.
    pub fn stop(&mut self, t: Timer) {
        self.deadlines[t as usize] = None;
    }

    /// A timer's deadline, if armed.
    pub fn get(&self, t: Timer) -> Option<Instant> {
        self.deadlines[t as usize]
    }

    /// Set or clear in one call.
    pub fn set_opt(&mut self, t: Timer, at: Option<Instant>) {
        self.deadlines[t as usize] = at;
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarm and report the timer if it is due at `now`.
    pub fn expire(&mut self, t: Timer, now: Instant) -> bool {
        match self.deadlines[t as usize] {
            Some(at) if at <= now => {
                self.deadlines[t as usize] = None;
                true
            }
            _ => false,
        }
    }

    /// Disarm everything.
    pub fn clear(&mut self) {
        self.deadlines = [None; 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_and_expiry() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Conn, Instant::from_millis(50));
        t.set(Timer::Ack, Instant::from_millis(20));
        assert_eq!(t.next(), Some(Instant::from_millis(20)));
        assert!(!t.expire(Timer::Ack, Instant::from_millis(19)));
        assert!(t.expire(Timer::Ack, Instant::from_millis(20)));
        assert!(!t.expire(Timer::Ack, Instant::from_millis(20)));
        assert_eq!(t.next(), Some(Instant::from_millis(50)));
        t.clear();
        assert_eq!(t.next(), None);
    }
}
