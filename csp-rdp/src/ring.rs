//! Fixed-capacity segment stores: what we sent and wait to see acknowledged,
//! and what we received and the owner has not read yet.
//!
//! Both are rings of `W` slots where slot `i` (counted from the front) holds
//! sequence number `front_seq + i`; the connection keeps `front_seq`.

use crate::time::Instant;

/// A sent segment, kept until it is acknowledged.
#[derive(Clone, Copy)]
pub struct TxSlot<const SEG: usize> {
    buf: [u8; SEG],
    len: usize,
    /// Transmissions so far.
    pub tries: u8,
    /// Must go out at the next `poll_transmit` (new, or its timer expired).
    pub pending: bool,
    /// The peer reported it received (EACK): never retransmit.
    pub sacked: bool,
    /// When to retransmit, once sent.
    pub deadline: Instant,
}

impl<const SEG: usize> TxSlot<SEG> {
    const EMPTY: Self = TxSlot {
        buf: [0; SEG],
        len: 0,
        tries: 0,
        pending: false,
        sacked: false,
        deadline: Instant::ZERO,
    };

    /// The user data.
    pub fn data(&self) -> &[u8] {
        // `get`, not indexing: `len <= SEG` always, and firmware images then
        // carry no panic path for it.
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Sent at least once, not yet acknowledged, and waiting on its timer.
    pub fn in_flight(&self) -> bool {
        self.tries > 0 && !self.pending && !self.sacked
    }
}

/// Segments sent (or queued to send) and not yet acknowledged.
pub struct TxQueue<const W: usize, const SEG: usize> {
    slots: [TxSlot<SEG>; W],
    head: usize,
    len: usize,
}

impl<const W: usize, const SEG: usize> TxQueue<W, SEG> {
    /// An empty queue.
    pub const fn new() -> Self {
        TxQueue {
            slots: [TxSlot::EMPTY; W],
            head: 0,
            len: 0,
        }
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append a segment, marked pending. `false` if full or `data` too long.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.len >= W || data.len() > SEG {
            return false;
        }
        let slot = &mut self.slots[(self.head + self.len) % W];
        *slot = TxSlot::EMPTY;
        slot.buf[..data.len()].copy_from_slice(data);
        slot.len = data.len();
        slot.pending = true;
        self.len += 1;
        true
    }

    /// Drop `n` segments from the front (they were acknowledged).
    pub fn pop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        if W > 0 {
            self.head = (self.head + n) % W;
        }
        self.len -= n;
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The `i`-th segment from the front.
    pub fn get(&self, i: usize) -> Option<&TxSlot<SEG>> {
        (i < self.len).then(|| &self.slots[(self.head + i) % W])
    }

    /// The `i`-th segment from the front, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut TxSlot<SEG>> {
        (i < self.len).then(|| &mut self.slots[(self.head + i) % W])
    }
}

/// One received segment.
#[derive(Clone, Copy)]
struct RxSlot<const SEG: usize> {
    buf: [u8; SEG],
    len: usize,
    full: bool,
}

/// Received segments: the in-order ones the owner has not read yet,
/// followed by out-of-order ones held until the gap before them fills.
pub struct RxQueue<const W: usize, const SEG: usize> {
    slots: [RxSlot<SEG>; W],
    head: usize,
}

/// What happened to a segment offered to the receive store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Kept.
    Stored,
    /// Already held: a duplicate.
    Duplicate,
    /// No room (beyond the store, or longer than a slot).
    NoRoom,
}

impl<const W: usize, const SEG: usize> RxQueue<W, SEG> {
    /// An empty store.
    pub const fn new() -> Self {
        RxQueue {
            slots: [RxSlot {
                buf: [0; SEG],
                len: 0,
                full: false,
            }; W],
            head: 0,
        }
    }

    /// Keep `data` at `offset` slots from the front.
    pub fn store(&mut self, offset: usize, data: &[u8]) -> Store {
        if offset >= W || data.len() > SEG {
            return Store::NoRoom;
        }
        let slot = &mut self.slots[(self.head + offset) % W];
        if slot.full {
            return Store::Duplicate;
        }
        slot.buf[..data.len()].copy_from_slice(data);
        slot.len = data.len();
        slot.full = true;
        Store::Stored
    }

    /// Whether the slot at `offset` holds a segment.
    pub fn is_full(&self, offset: usize) -> bool {
        offset < W && self.slots[(self.head + offset) % W].full
    }

    /// Take the front segment out with `f` (which copies it), freeing its slot.
    pub fn pop_front<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if W == 0 {
            return None;
        }
        let slot = self.slots.get_mut(self.head)?;
        if !slot.full {
            return None;
        }
        slot.full = false;
        let r = f(slot.buf.get(..slot.len).unwrap_or_default());
        self.head = (self.head + 1) % W;
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{vec, vec::Vec};

    #[test]
    fn tx_push_pop_wraps() {
        let mut q: TxQueue<3, 4> = TxQueue::new();
        assert!(q.push(b"ab"));
        assert!(q.push(b"cd"));
        assert!(q.push(b"ef"));
        assert!(!q.push(b"gh"));
        assert!(!TxQueue::<3, 4>::new().push(b"toolong"));
        q.pop_front(2);
        assert!(q.push(b"gh"));
        assert_eq!(q.get(0).unwrap().data(), b"ef");
        assert_eq!(q.get(1).unwrap().data(), b"gh");
        assert!(q.get(2).is_none());
        assert!(q.get(0).unwrap().pending);
        q.pop_front(10);
        assert!(q.is_empty());
    }

    #[test]
    fn rx_holds_out_of_order() {
        let mut q: RxQueue<3, 4> = RxQueue::new();
        assert_eq!(q.store(2, b"c"), Store::Stored);
        assert_eq!(q.store(2, b"c"), Store::Duplicate);
        assert_eq!(q.store(3, b"d"), Store::NoRoom);
        assert_eq!(q.store(0, b"12345"), Store::NoRoom);
        assert_eq!(q.pop_front(|d| d.to_vec()), None);
        assert_eq!(q.store(0, b"a"), Store::Stored);
        assert!(q.is_full(0) && !q.is_full(1) && q.is_full(2));
        assert_eq!(q.pop_front(|d| d.to_vec()), Some(b"a".to_vec()));
        assert_eq!(q.store(0, b"b"), Store::Stored);
        assert_eq!(q.store(2, b"d"), Store::Stored);
        let got: Vec<_> = core::iter::from_fn(|| q.pop_front(|d| d.to_vec())).collect();
        assert_eq!(got, vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    }
}
