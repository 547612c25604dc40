//! Reassembly of CFP frames into packets: a fixed table of slots, one per
//! packet in flight, keyed by the id bits the frames of one packet share.

use super::id::CfpId;
use super::{CanFrame, CfpError, CAN_DATA_LEN, V1_BEGIN_OVERHEAD, V2_BEGIN_OVERHEAD};
use crate::header::{Header, Version};
use crate::time::{Duration, Instant};

/// How long a slot waits for the next frame before its packet is lost
/// (libcsp's CAN reassembly gives up after one second too).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Counters of a [`Reassembler`]; they wrap, the owner reads differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CfpStats {
    /// Frames handed to [`Reassembler::push`].
    pub frames: u32,
    /// Packets completed.
    pub completed: u32,
    /// Packets begun and never completed (out of order, overlong, restarted
    /// by a new first frame with the same id, timed out).
    pub lost: u32,
    /// Continuation frames that were not the next one.
    pub out_of_order: u32,
    /// Packets longer than announced or than a slot holds.
    pub overlong: u32,
    /// Continuation frames with no packet in progress.
    pub orphans: u32,
    /// First frames dropped because every slot was busy.
    pub no_slot: u32,
    /// Packets lost because no frame came within the timeout.
    pub timeouts: u32,
    /// Repeats of the frame just received (ignored).
    pub duplicates: u32,
    /// First frames too short for their CFP fields.
    pub malformed: u32,
}

/// A packet put back together: its header and data (trailers included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reassembled<'a> {
    /// The CSP header (CFP1: parsed from BEGIN; CFP2: id and first 4 bytes).
    pub header: Header,
    /// The data after the header.
    pub data: &'a [u8],
}

#[derive(Clone)]
struct Slot<const MTU: usize> {
    /// The id key of the packet in flight; `None` when free.
    key: Option<u32>,
    header: Header,
    /// CFP1: the announced length. CFP2: unknown until `end`.
    expected: Option<usize>,
    /// The sequence field of the last frame taken (remain or fragment).
    last_seq: u8,
    /// Whether a continuation frame was taken (only those can repeat).
    continued: bool,
    deadline: Instant,
    len: usize,
    buf: [u8; MTU],
}

impl<const MTU: usize> Slot<MTU> {
    const FREE: Slot<MTU> = Slot {
        key: None,
        header: Header {
            prio: crate::header::Prio::Normal,
            src: crate::header::Addr::LOCAL,
            dst: crate::header::Addr::LOCAL,
            dport: crate::header::Port::CMP,
            sport: crate::header::Port::CMP,
            flags: crate::header::Flags::NONE,
        },
        expected: None,
        last_seq: 0,
        continued: false,
        deadline: Instant::from_millis(0),
        len: 0,
        buf: [0; MTU],
    };

    fn append(&mut self, bytes: &[u8]) -> Result<(), CfpError> {
        let end = self.len + bytes.len();
        if self.expected.is_some_and(|want| end > want) {
            return Err(CfpError::Overlong);
        }
        let dst = self.buf.get_mut(self.len..end).ok_or(CfpError::Overlong)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// Reassembles the frames of one CAN interface into packets of at most `MTU`
/// data bytes, with up to `SLOTS` packets in flight at once (from several
/// senders, or one sender's consecutive packets interleaved).
///
/// Frames must arrive in order within a packet (CAN keeps order per id); a
/// gap loses the packet, counted, never a corrupted one delivered. One limit
/// is the protocol's: CFP2 numbers frames with 3 bits, so exactly 8 lost
/// frames in a row look like no loss; use CRC32 where that matters.
pub struct Reassembler<const SLOTS: usize, const MTU: usize> {
    version: Version,
    timeout: Duration,
    slots: [Slot<MTU>; SLOTS],
    stats: CfpStats,
}

impl<const SLOTS: usize, const MTU: usize> Reassembler<SLOTS, MTU> {
    /// An empty reassembler for CFP of `version`, [`DEFAULT_TIMEOUT`].
    pub const fn new(version: Version) -> Self {
        Reassembler {
            version,
            timeout: DEFAULT_TIMEOUT,
            slots: [Slot::FREE; SLOTS],
            stats: CfpStats {
                frames: 0,
                completed: 0,
                lost: 0,
                out_of_order: 0,
                overlong: 0,
                orphans: 0,
                no_slot: 0,
                timeouts: 0,
                duplicates: 0,
                malformed: 0,
            },
        }
    }

    /// The CFP version this reassembler reads.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Sets how long a slot waits for its next frame.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The counters.
    pub fn stats(&self) -> &CfpStats {
        &self.stats
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.key.is_some()).count()
    }

    /// The earliest slot deadline, if any packet is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.key.is_some())
            .map(|s| s.deadline)
            .min()
    }

    /// Frees every slot whose deadline is at or before `now`, counting each
    /// as lost; returns how many.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        for slot in self.slots.iter_mut() {
            if slot.key.is_some() && slot.deadline <= now {
                slot.key = None;
                expired += 1;
            }
        }
        let n = expired as u32;
        self.stats.timeouts = self.stats.timeouts.wrapping_add(n);
        self.stats.lost = self.stats.lost.wrapping_add(n);
        expired
    }

    /// Takes one frame received at `now`. `Ok(Some(_))` when it completed a
    /// packet (valid until the next call), `Ok(None)` when more frames are
    /// needed (or it was a duplicate), an error when it was dropped.
    pub fn push(
        &mut self,
        now: Instant,
        frame: &CanFrame,
    ) -> Result<Option<Reassembled<'_>>, CfpError> {
        self.stats.frames = self.stats.frames.wrapping_add(1);
        self.handle_timeout(now);
        let id = CfpId::new(frame.id, self.version);
        let result = if id.is_begin() {
            self.begin(now, id, frame.data())
        } else {
            self.more(now, id, frame.data())
        };
        match result {
            Ok(Some(i)) => {
                self.stats.completed = self.stats.completed.wrapping_add(1);
                // Freed now; its bytes stay valid while the result borrows self.
                let slot = self.slots.get_mut(i).ok_or(CfpError::NoSlot)?;
                slot.key = None;
                Ok(Some(Reassembled {
                    header: slot.header,
                    data: slot.buf.get(..slot.len).unwrap_or_default(),
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                let counter = match e {
                    CfpError::Malformed | CfpError::Header(_) => &mut self.stats.malformed,
                    CfpError::Orphan => &mut self.stats.orphans,
                    CfpError::OutOfOrder => &mut self.stats.out_of_order,
                    CfpError::Overlong | CfpError::TooLong { .. } => &mut self.stats.overlong,
                    CfpError::NoSlot => &mut self.stats.no_slot,
                    CfpError::BadId(_) | CfpError::BadDlc(_) => &mut self.stats.malformed,
                };
                *counter = counter.wrapping_add(1);
                Err(e)
            }
        }
    }

    /// Counts a frame refused before it reached [`Reassembler::push`].
    pub(super) fn count_malformed(&mut self) {
        self.stats.malformed = self.stats.malformed.wrapping_add(1);
    }

    fn find(&self, key: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.key == Some(key))
    }

    fn lose(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.key = None;
        }
        self.stats.lost = self.stats.lost.wrapping_add(1);
    }

    fn begin(&mut self, now: Instant, id: CfpId, data: &[u8]) -> Result<Option<usize>, CfpError> {
        let key = id.key();
        // A new first frame for a key in flight: the earlier packet will
        // never complete.
        if let Some(i) = self.find(key) {
            self.lose(i);
        }
        let (header, expected, body) = match self.version {
            Version::V1 => {
                let fields = data.get(..V1_BEGIN_OVERHEAD).ok_or(CfpError::Malformed)?;
                let header = Header::parse(fields, Version::V1)?;
                let len = usize::from(u16::from_be_bytes([fields[4], fields[5]]));
                if len > MTU {
                    return Err(CfpError::TooLong { len, max: MTU });
                }
                (header, Some(len), &data[V1_BEGIN_OVERHEAD..])
            }
            Version::V2 => {
                let fields = data.get(..V2_BEGIN_OVERHEAD).ok_or(CfpError::Malformed)?;
                let raw = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]);
                (id.v2_header(raw), None, &data[V2_BEGIN_OVERHEAD..])
            }
        };
        let i = self
            .slots
            .iter()
            .position(|s| s.key.is_none())
            .ok_or(CfpError::NoSlot)?;
        let deadline = now + self.timeout;
        let slot = self.slots.get_mut(i).ok_or(CfpError::NoSlot)?;
        slot.key = Some(key);
        slot.header = header;
        slot.expected = expected;
        slot.last_seq = id.sequence();
        slot.continued = false;
        slot.deadline = deadline;
        slot.len = 0;
        if let Err(e) = slot.append(body) {
            self.lose(i);
            return Err(e);
        }
        self.finish_if_complete(i, id)
    }

    fn more(&mut self, now: Instant, id: CfpId, data: &[u8]) -> Result<Option<usize>, CfpError> {
        let i = self.find(id.key()).ok_or(CfpError::Orphan)?;
        let version = self.version;
        let deadline = now + self.timeout;
        let slot = self.slots.get_mut(i).ok_or(CfpError::Orphan)?;
        let seq = id.sequence();
        let (next, repeat) = match version {
            Version::V1 => (slot.last_seq.wrapping_sub(1), slot.last_seq),
            Version::V2 => ((slot.last_seq + 1) & 0x7, slot.last_seq),
        };
        if seq == repeat && slot.continued && data.len() == CAN_DATA_LEN {
            // The frame just taken, sent again (a retransmitting controller);
            // only full frames can repeat, a short one would have ended it.
            self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
            slot.deadline = deadline;
            return Ok(None);
        }
        if seq != next {
            self.lose(i);
            return Err(CfpError::OutOfOrder);
        }
        slot.last_seq = seq;
        slot.continued = true;
        slot.deadline = deadline;
        if let Err(e) = slot.append(data) {
            self.lose(i);
            return Err(e);
        }
        self.finish_if_complete(i, id)
    }

    /// A packet is complete on CFP2's end bit, or when CFP1's announced
    /// length has arrived; either must agree with the other frame fields.
    fn finish_if_complete(&mut self, i: usize, id: CfpId) -> Result<Option<usize>, CfpError> {
        let slot = self.slots.get(i).ok_or(CfpError::Orphan)?;
        let complete = match self.version {
            Version::V1 => {
                let full = slot.expected == Some(slot.len);
                let last = id.sequence() == 0;
                match (full, last) {
                    (true, true) => true,
                    (false, false) => false,
                    // Data and frame count disagree: the packet can not be trusted.
                    (true, false) | (false, true) => {
                        self.lose(i);
                        return Err(if full {
                            CfpError::Overlong
                        } else {
                            CfpError::OutOfOrder
                        });
                    }
                }
            }
            Version::V2 => id.is_end(),
        };
        Ok(complete.then_some(i))
    }
}
