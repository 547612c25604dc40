//! The node's RDP connection slots.
//!
//! A slot table that grows into its fixed capacity as connections are
//! made, instead of an array of `CONNS` empty slots. An empty
//! `Option<ConnSlot>` is still as large as a full one (kilobytes), and the
//! compiler builds an array of them by copying a whole empty slot per
//! element through the stack: with two slots `Node::new` needed a 10 KiB
//! frame, more than a 16 KiB firmware has left for its stack. A
//! `heapless::Vec` starts as a length and uninitialised storage, so a new
//! node costs no copies at all; a slot is added (in a frame of its own)
//! only when a connection needs one, and stays for reuse after.
//!
//! Indices are stable: a slot once added is never removed, only emptied.

use core::ops::{Deref, DerefMut};

use super::ConnSlot;

/// At most `CONNS` connection slots; derefs to the slots added so far.
pub(super) struct ConnTable<const W: usize, const SEG: usize, const CONNS: usize> {
    slots: heapless::Vec<Option<ConnSlot<W, SEG>>, CONNS>,
}

impl<const W: usize, const SEG: usize, const CONNS: usize> ConnTable<W, SEG, CONNS> {
    pub(super) const fn new() -> Self {
        ConnTable {
            slots: heapless::Vec::new(),
        }
    }

    /// The index of an empty slot, adding one while there is room; `None`
    /// when all `CONNS` are in use.
    #[inline(never)]
    pub(super) fn free_index(&mut self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            return Some(i);
        }
        let i = self.slots.len();
        self.slots.push(None).ok()?;
        Some(i)
    }

    /// The connection in slot `i`, if there is one.
    pub(super) fn at(&mut self, i: usize) -> Option<&mut ConnSlot<W, SEG>> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }
}

impl<const W: usize, const SEG: usize, const CONNS: usize> Deref for ConnTable<W, SEG, CONNS> {
    type Target = [Option<ConnSlot<W, SEG>>];

    fn deref(&self) -> &Self::Target {
        &self.slots
    }
}

impl<const W: usize, const SEG: usize, const CONNS: usize> DerefMut for ConnTable<W, SEG, CONNS> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.slots
    }
}
