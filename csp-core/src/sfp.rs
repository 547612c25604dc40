//! SFP, the Simple Fragmentation Protocol: a payload larger than one packet
//! is sent as a run of fragments over one connection and put back together
//! by the receiver.
//!
//! Each fragment is `data | offset:u32 | total:u32` (the 8-byte [`Trailer`],
//! big-endian) and carries the [`Flags::FRAG`] header flag. The trailer sits
//! innermost: RDP, HMAC and CRC trailers come after it and are stripped before
//! a fragment reaches the [`Reassembler`].
//!
//! Sending: [`split`] gives the fragments of a payload for a given MTU (data
//! bytes per fragment, trailer excluded, as in libcsp), each of which can
//! become a [`Packet`] through [`Fragment::to_packet`].
//!
//! Receiving: libcsp accepts fragments only strictly in order and aborts the
//! transfer on anything else. The [`Reassembler`] accepts in-order fragments
//! the same way, and also out-of-order and duplicated ones (over a link
//! without RDP nothing keeps them in order), tracking what arrived as a short
//! list of received byte ranges. Its memory is fixed by two const generics:
//! `CAP` bytes of payload and `GAPS` disjoint ranges; nothing grows.

use core::fmt;

use crate::header::{Flags, Header};
use crate::packet::{Packet, PacketError};
use crate::time::{Duration, Instant};

/// Bytes of the SFP trailer: offset and total size, both u32 big-endian.
pub const TRAILER_LEN: usize = 8;

/// Why splitting or reassembling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SfpError {
    /// An MTU of zero data bytes per fragment was asked for.
    InvalidMtu,
    /// The payload does not fit the u32 size field of the trailer.
    PayloadTooLarge {
        /// Bytes in the payload.
        len: usize,
    },
    /// The fragment is shorter than its trailer.
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The packet does not carry the FRAG flag.
    NotFragment,
    /// A fragment with no data in a transfer that is not empty: it can only
    /// be corrupt (libcsp refuses it too).
    EmptyFragment {
        /// Offset in the trailer.
        offset: u32,
        /// Total size in the trailer.
        total: u32,
    },
    /// The fragment's data reaches past the transfer's total size.
    BeyondTotal {
        /// Offset in the trailer.
        offset: u32,
        /// Data bytes in the fragment.
        len: u32,
        /// Total size in the trailer.
        total: u32,
    },
    /// The transfer is larger than the reassembly buffer.
    TotalTooLarge {
        /// Total size in the trailer.
        total: u32,
        /// Bytes the reassembler can hold.
        capacity: usize,
    },
    /// A fragment of the transfer in progress (offset not 0) names another
    /// total size.
    TotalChanged {
        /// Total size of the transfer in progress.
        expected: u32,
        /// Total size in the fragment.
        got: u32,
    },
    /// A fragment overlaps data already received and the bytes disagree.
    Conflict {
        /// First offset where they differ.
        offset: u32,
    },
    /// A fragment partly overlaps data already received (same bytes, but a
    /// sender with one MTU never cuts a transfer that way).
    Overlap {
        /// Offset in the trailer.
        offset: u32,
        /// Data bytes in the fragment.
        len: u32,
    },
    /// The fragment would open one more hole than the reassembler tracks.
    TooManyGaps {
        /// Disjoint ranges the reassembler tracks.
        capacity: usize,
    },
    /// No new data arrived for the transfer within the timeout.
    Timeout,
}

impl fmt::Display for SfpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SfpError::InvalidMtu => write!(f, "SFP mtu must be at least 1"),
            SfpError::PayloadTooLarge { len } => {
                write!(f, "SFP payload of {len} bytes does not fit a u32 size")
            }
            SfpError::Truncated { len } => {
                write!(f, "SFP fragment of {len} bytes has no room for its trailer")
            }
            SfpError::NotFragment => write!(f, "packet without the FRAG flag"),
            SfpError::EmptyFragment { offset, total } => {
                write!(f, "empty SFP fragment at {offset} of {total}")
            }
            SfpError::BeyondTotal { offset, len, total } => {
                write!(f, "SFP fragment {offset}+{len} beyond total {total}")
            }
            SfpError::TotalTooLarge { total, capacity } => {
                write!(
                    f,
                    "SFP transfer of {total} bytes exceeds capacity {capacity}"
                )
            }
            SfpError::TotalChanged { expected, got } => {
                write!(f, "SFP total changed from {expected} to {got} mid-transfer")
            }
            SfpError::Conflict { offset } => {
                write!(f, "SFP fragments disagree at offset {offset}")
            }
            SfpError::Overlap { offset, len } => {
                write!(
                    f,
                    "SFP fragment {offset}+{len} partly overlaps received data"
                )
            }
            SfpError::TooManyGaps { capacity } => {
                write!(f, "SFP transfer has more than {capacity} disjoint pieces")
            }
            SfpError::Timeout => write!(f, "SFP transfer timed out"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SfpError {}

/// The 8-byte SFP trailer: where a fragment's data goes and how large the
/// whole transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Trailer {
    /// Position of the fragment's first data byte in the payload.
    pub offset: u32,
    /// Size of the whole payload.
    pub total: u32,
}

impl Trailer {
    /// The wire form: offset then total, big-endian.
    pub fn to_be_bytes(self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[..4].copy_from_slice(&self.offset.to_be_bytes());
        b[4..].copy_from_slice(&self.total.to_be_bytes());
        b
    }

    /// Read the wire form.
    pub fn from_be_bytes(b: [u8; TRAILER_LEN]) -> Trailer {
        let [o0, o1, o2, o3, t0, t1, t2, t3] = b;
        Trailer {
            offset: u32::from_be_bytes([o0, o1, o2, o3]),
            total: u32::from_be_bytes([t0, t1, t2, t3]),
        }
    }
}

/// One fragment: a slice of the payload and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fragment<'a> {
    /// Position of `data` in the payload.
    pub offset: u32,
    /// Size of the whole payload.
    pub total: u32,
    /// The fragment's share of the payload.
    pub data: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Split received fragment bytes (`data | trailer`, outer trailers
    /// already stripped) into data and trailer. Nothing else is checked here:
    /// whether the numbers make sense is the reassembler's business.
    pub fn parse(bytes: &'a [u8]) -> Result<Fragment<'a>, SfpError> {
        let split = bytes
            .len()
            .checked_sub(TRAILER_LEN)
            .ok_or(SfpError::Truncated { len: bytes.len() })?;
        let (data, t) = bytes.split_at(split);
        let mut trailer = [0u8; TRAILER_LEN];
        trailer.copy_from_slice(t);
        let Trailer { offset, total } = Trailer::from_be_bytes(trailer);
        Ok(Fragment {
            offset,
            total,
            data,
        })
    }

    /// The trailer to append after `data`.
    pub fn trailer(&self) -> Trailer {
        Trailer {
            offset: self.offset,
            total: self.total,
        }
    }

    /// True if this fragment ends the payload.
    pub fn is_last(&self) -> bool {
        self.offset as u64 + self.data.len() as u64 >= self.total as u64
    }

    /// A packet carrying this fragment: `header` with the FRAG flag set, the
    /// data, then the SFP trailer. Further trailers (RDP, HMAC, CRC) are the
    /// caller's to add, after this one.
    pub fn to_packet<const N: usize>(&self, header: Header) -> Result<Packet<N>, PacketError> {
        let header = Header {
            flags: header.flags.with(Flags::FRAG),
            ..header
        };
        let mut p = Packet::with_data(header, self.data)?;
        p.extend(&self.trailer().to_be_bytes())?;
        Ok(p)
    }
}

/// Iterator over the fragments of one payload, from [`split`].
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    payload: &'a [u8],
    mtu: usize,
    offset: usize,
}

/// The fragments of `payload`, `mtu` data bytes each (the last one holds the
/// remainder), in order, as libcsp's `csp_sfp_send` cuts them.
///
/// An empty payload gives no fragments at all, as in libcsp: its receiver
/// could not take an empty transfer anyway (it allocates `total` bytes first).
pub fn split(payload: &[u8], mtu: usize) -> Result<Fragments<'_>, SfpError> {
    if mtu == 0 {
        return Err(SfpError::InvalidMtu);
    }
    if u32::try_from(payload.len()).is_err() {
        return Err(SfpError::PayloadTooLarge { len: payload.len() });
    }
    Ok(Fragments {
        payload,
        mtu,
        offset: 0,
    })
}

impl<'a> Iterator for Fragments<'a> {
    type Item = Fragment<'a>;

    fn next(&mut self) -> Option<Fragment<'a>> {
        let rest = self.payload.get(self.offset..).filter(|r| !r.is_empty())?;
        let data = &rest[..rest.len().min(self.mtu)];
        // Both fit: `split` checked the payload length against u32.
        let frag = Fragment {
            offset: self.offset as u32,
            total: self.payload.len() as u32,
            data,
        };
        self.offset += data.len();
        Some(frag)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest = self.payload.len() - self.offset;
        let n = rest.div_ceil(self.mtu);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Fragments<'_> {}

impl core::iter::FusedIterator for Fragments<'_> {}

/// What a fragment did to the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Progress<'a> {
    /// New data was stored; the transfer is not complete yet.
    Incomplete {
        /// Payload bytes received so far.
        received: u32,
        /// Size of the whole payload.
        total: u32,
    },
    /// The fragment repeated data already received, byte for byte: ignored.
    Duplicate,
    /// The payload is complete. It stays readable through
    /// [`Reassembler::completed`] until the next fragment arrives.
    Complete(&'a [u8]),
}

/// Counters of a [`Reassembler`]; they wrap, the owner reads differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SfpStats {
    /// Fragments that brought new data.
    pub fragments: u32,
    /// Fragments ignored as exact repeats.
    pub duplicates: u32,
    /// Transfers delivered whole.
    pub completed: u32,
    /// Fragments refused with an error.
    pub errors: u32,
    /// Transfers dropped because no data came within the timeout.
    pub timeouts: u32,
    /// Transfers dropped unfinished for any reason (errors, timeouts, a new
    /// transfer starting, [`Reassembler::reset`]).
    pub aborted: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Receiving {
        total: u32,
        received: u32,
        deadline: Instant,
    },
    Complete {
        total: u32,
    },
}

/// [`Progress`] without the borrow of the buffer.
#[derive(Debug, Clone, Copy)]
enum Step {
    Incomplete { received: u32, total: u32 },
    Duplicate,
    Complete { total: u32 },
}

/// Default inactivity timeout, libcsp's default connection timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Puts one transfer at a time back together, in at most `CAP` bytes, from
/// fragments in any order, keeping at most `GAPS` disjoint received pieces.
/// One reassembler serves one connection (SFP fragments carry no transfer id).
///
/// Policy:
/// - Every error aborts the transfer in progress, as libcsp does: a stream
///   that carried one bad fragment can not be trusted to yield a correct
///   payload. The offending fragment is dropped.
/// - A fragment at offset 0 with a total other than the current transfer's
///   starts a new transfer (the old one is counted as aborted); any other
///   change of total is [`SfpError::TotalChanged`]. (A new transfer of the
///   same size can not be told from the current one: its first differing
///   byte is a [`SfpError::Conflict`].)
/// - After completion the next fragment starts a new transfer.
/// - The timeout counts from the last fragment that brought new data (as
///   libcsp's timeout runs per read); duplicates do not keep a transfer alive.
///   An expired transfer is dropped by [`handle_timeout`](Self::handle_timeout),
///   which reports it, or silently (counted) by the next
///   [`push`](Self::push), which then treats its fragment as a fresh start.
#[derive(Clone)]
pub struct Reassembler<const CAP: usize, const GAPS: usize = 8> {
    buf: [u8; CAP],
    /// Received byte ranges `[start, end)`, sorted, disjoint, never touching
    /// (touching ranges are merged, so in-order reception uses one slot).
    ranges: heapless::Vec<(u32, u32), GAPS>,
    state: State,
    timeout: Duration,
    stats: SfpStats,
}

impl<const CAP: usize, const GAPS: usize> Default for Reassembler<CAP, GAPS> {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

impl<const CAP: usize, const GAPS: usize> fmt::Debug for Reassembler<CAP, GAPS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembler")
            .field("state", &self.state)
            .field("ranges", &self.ranges)
            .field("timeout", &self.timeout)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<const CAP: usize, const GAPS: usize> Reassembler<CAP, GAPS> {
    const GAPS_CHECK: () = assert!(GAPS > 0, "a reassembler needs at least one range slot");

    /// Bytes of payload the reassembler can hold.
    pub const CAPACITY: usize = CAP;

    /// An idle reassembler that drops a transfer after `timeout` without new data.
    pub const fn new(timeout: Duration) -> Self {
        #[allow(clippy::let_unit_value)]
        let _ = Self::GAPS_CHECK;
        Reassembler {
            buf: [0; CAP],
            ranges: heapless::Vec::new(),
            state: State::Idle,
            timeout,
            stats: SfpStats {
                fragments: 0,
                duplicates: 0,
                completed: 0,
                errors: 0,
                timeouts: 0,
                aborted: 0,
            },
        }
    }

    /// The inactivity timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Change the inactivity timeout; a transfer in progress keeps its deadline
    /// until its next fragment.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The counters.
    pub fn stats(&self) -> &SfpStats {
        &self.stats
    }

    /// `(received, total)` of the transfer in progress, if any.
    pub fn in_progress(&self) -> Option<(u32, u32)> {
        match self.state {
            State::Receiving {
                total, received, ..
            } => Some((received, total)),
            _ => None,
        }
    }

    /// The payload of the transfer just completed, until the next fragment.
    pub fn completed(&self) -> Option<&[u8]> {
        match self.state {
            State::Complete { total } => self.buf.get(..total as usize),
            _ => None,
        }
    }

    /// Forget everything; a transfer in progress is counted as aborted.
    pub fn reset(&mut self) {
        if matches!(self.state, State::Receiving { .. }) {
            self.stats.aborted = self.stats.aborted.wrapping_add(1);
        }
        self.state = State::Idle;
        self.ranges.clear();
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Receiving { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Drop the transfer in progress if its deadline has passed, reporting
    /// [`SfpError::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SfpError> {
        match self.state {
            State::Receiving {
                deadline,
                received,
                total,
            } if now >= deadline => {
                csp_debug!("sfp: transfer timed out at {} of {} bytes", received, total);
                self.stats.timeouts = self.stats.timeouts.wrapping_add(1);
                self.reset();
                Err(SfpError::Timeout)
            }
            _ => Ok(()),
        }
    }

    /// Take a received packet: it must carry the FRAG flag, and its data must
    /// end with the SFP trailer (RDP, HMAC and CRC trailers already removed).
    pub fn push_packet<const N: usize>(
        &mut self,
        now: Instant,
        packet: &Packet<N>,
    ) -> Result<Progress<'_>, SfpError> {
        if !packet.header.flags.contains(Flags::FRAG) {
            return Err(self.fail(SfpError::NotFragment));
        }
        self.push(now, packet.data())
    }

    /// Take one fragment, `data | SFP trailer`.
    pub fn push(&mut self, now: Instant, bytes: &[u8]) -> Result<Progress<'_>, SfpError> {
        let frag = Fragment::parse(bytes).map_err(|e| self.fail(e))?;
        // An expired transfer goes before anything else: this fragment may
        // well be the start of the next one.
        if self.handle_timeout(now).is_err() {
            csp_trace!("sfp: expired transfer dropped on push");
        }
        if matches!(self.state, State::Complete { .. }) {
            self.state = State::Idle;
            self.ranges.clear();
        }
        self.check_alone(&frag).map_err(|e| self.fail(e))?;

        match self.state {
            State::Receiving { total, .. } if total != frag.total => {
                if frag.offset != 0 {
                    return Err(self.fail(SfpError::TotalChanged {
                        expected: total,
                        got: frag.total,
                    }));
                }
                csp_debug!(
                    "sfp: new transfer of {} bytes replaces one of {}",
                    frag.total,
                    total
                );
                self.reset();
            }
            _ => {}
        }
        if self.state == State::Idle {
            self.ranges.clear();
            self.state = State::Receiving {
                total: frag.total,
                received: 0,
                deadline: now + self.timeout,
            };
        }
        // `store` answers without borrowing the buffer, so that an error can
        // still reset the state here.
        match self.store(now, &frag) {
            Ok(Step::Incomplete { received, total }) => {
                Ok(Progress::Incomplete { received, total })
            }
            Ok(Step::Duplicate) => Ok(Progress::Duplicate),
            Ok(Step::Complete { total }) => Ok(Progress::Complete(&self.buf[..total as usize])),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Checks that need no state: the fragment must fit its own total and us.
    fn check_alone(&self, frag: &Fragment<'_>) -> Result<(), SfpError> {
        if usize::try_from(frag.total).map_or(true, |t| t > CAP) {
            return Err(SfpError::TotalTooLarge {
                total: frag.total,
                capacity: CAP,
            });
        }
        // `total <= CAP` now, so a data length beyond u32 is beyond total too.
        let len = u32::try_from(frag.data.len()).unwrap_or(u32::MAX);
        if frag.offset as u64 + frag.data.len() as u64 > frag.total as u64 {
            return Err(SfpError::BeyondTotal {
                offset: frag.offset,
                len,
                total: frag.total,
            });
        }
        if frag.data.is_empty() && frag.total != 0 {
            return Err(SfpError::EmptyFragment {
                offset: frag.offset,
                total: frag.total,
            });
        }
        Ok(())
    }

    /// Merge a checked fragment into the transfer in progress.
    fn store(&mut self, now: Instant, frag: &Fragment<'_>) -> Result<Step, SfpError> {
        let State::Receiving {
            total,
            mut received,
            ..
        } = self.state
        else {
            // `push` always sets Receiving first; be total all the same.
            return Err(SfpError::Timeout);
        };
        let start = frag.offset;
        // check_alone bounded the end by total, a u32.
        let end = frag.offset + frag.data.len() as u32;

        let mut covered = 0u32;
        for &(s, e) in self.ranges.iter() {
            let (lo, hi) = (s.max(start), e.min(end));
            if lo >= hi {
                continue;
            }
            let old = &self.buf[lo as usize..hi as usize];
            let new = &frag.data[(lo - start) as usize..(hi - start) as usize];
            if let Some(i) = old.iter().zip(new).position(|(a, b)| a != b) {
                return Err(SfpError::Conflict {
                    offset: lo + i as u32,
                });
            }
            covered += hi - lo;
        }
        let len = end - start;
        if covered == len && len > 0 {
            self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
            return Ok(Step::Duplicate);
        }
        if covered > 0 {
            return Err(SfpError::Overlap { offset: start, len });
        }

        if len > 0 {
            let idx = self.ranges.iter().take_while(|r| r.0 < start).count();
            let left = idx.checked_sub(1).filter(|&i| self.ranges[i].1 == start);
            let right = Some(idx).filter(|&i| i < self.ranges.len() && self.ranges[i].0 == end);
            match (left, right) {
                (Some(l), Some(r)) => {
                    self.ranges[l].1 = self.ranges[r].1;
                    self.ranges.remove(r);
                }
                (Some(l), None) => self.ranges[l].1 = end,
                (None, Some(r)) => self.ranges[r].0 = start,
                (None, None) => {
                    if self.ranges.insert(idx, (start, end)).is_err() {
                        return Err(SfpError::TooManyGaps { capacity: GAPS });
                    }
                }
            }
            self.buf[start as usize..end as usize].copy_from_slice(frag.data);
            received += len;
        }
        self.stats.fragments = self.stats.fragments.wrapping_add(1);

        if received == total {
            csp_trace!("sfp: transfer of {} bytes complete", total);
            self.stats.completed = self.stats.completed.wrapping_add(1);
            self.state = State::Complete { total };
            self.ranges.clear();
            return Ok(Step::Complete { total });
        }
        self.state = State::Receiving {
            total,
            received,
            deadline: now + self.timeout,
        };
        Ok(Step::Incomplete { received, total })
    }

    /// Count an error and abort the transfer in progress (the policy above).
    fn fail(&mut self, e: SfpError) -> SfpError {
        csp_debug!("sfp: fragment refused: {}", e);
        self.stats.errors = self.stats.errors.wrapping_add(1);
        self.reset();
        e
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::header::{Addr, Port, Prio, Version};
    use proptest::prelude::*;

    type R = Reassembler<64, 4>;
    const T0: Instant = Instant::ZERO;

    fn wire(f: &Fragment<'_>) -> Vec<u8> {
        let mut v = f.data.to_vec();
        v.extend_from_slice(&f.trailer().to_be_bytes());
        v
    }

    fn frag(offset: u32, total: u32, data: &[u8]) -> Vec<u8> {
        wire(&Fragment {
            offset,
            total,
            data,
        })
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn trailer_wire_form() {
        let t = Trailer {
            offset: 0xC8,
            total: 0x258,
        };
        assert_eq!(t.to_be_bytes(), [0, 0, 0, 0xC8, 0, 0, 2, 0x58]);
        assert_eq!(Trailer::from_be_bytes(t.to_be_bytes()), t);
    }

    #[test]
    fn split_cuts_like_libcsp() {
        let p = payload(10);
        let f: Vec<_> = split(&p, 4).unwrap().collect();
        assert_eq!(f.len(), 3);
        assert_eq!((f[0].offset, f[0].total, f[0].data), (0, 10, &p[0..4]));
        assert_eq!((f[1].offset, f[1].data), (4, &p[4..8]));
        assert_eq!((f[2].offset, f[2].data), (8, &p[8..10]));
        assert!(f[2].is_last() && !f[1].is_last());
        assert_eq!(split(&p, 4).unwrap().len(), 3);
        assert_eq!(split(&p, 10).unwrap().len(), 1);
        assert_eq!(split(&p, 11).unwrap().len(), 1);
        assert_eq!(split(&[], 4).unwrap().count(), 0);
        assert_eq!(split(&p, 0).err(), Some(SfpError::InvalidMtu));
    }

    #[test]
    fn to_packet_sets_frag_and_appends_trailer() {
        let h = Header {
            prio: Prio::Normal,
            src: Addr::new(1).unwrap(),
            dst: Addr::new(2).unwrap(),
            dport: Port::new(12).unwrap(),
            sport: Port::new(18).unwrap(),
            flags: Flags::CRC32,
        };
        let p = payload(10);
        let f = split(&p, 4).unwrap().nth(1).unwrap();
        let mut pkt: Packet<32> = f.to_packet(h).unwrap();
        assert!(pkt.header.flags.contains(Flags::FRAG | Flags::CRC32));
        assert_eq!(pkt.data(), &frag(4, 10, &p[4..8])[..]);
        let back = Packet::<32>::from_frame(pkt.frame(Version::V1).unwrap(), Version::V1).unwrap();
        let mut r = R::default();
        assert_eq!(
            r.push_packet(T0, &back),
            Ok(Progress::Incomplete {
                received: 4,
                total: 10
            })
        );
        let too_small = f.to_packet::<12>(h);
        assert!(matches!(too_small, Err(PacketError::TooLong { .. })));
    }

    #[test]
    fn in_order_reassembly() {
        let p = payload(50);
        let mut r = R::default();
        let frags: Vec<_> = split(&p, 16).unwrap().map(|f| wire(&f)).collect();
        for (i, f) in frags.iter().enumerate() {
            let got = r.push(ms(i as u64), f).unwrap();
            if i + 1 < frags.len() {
                assert_eq!(
                    got,
                    Progress::Incomplete {
                        received: 16 * (i as u32 + 1),
                        total: 50
                    }
                );
            } else {
                assert_eq!(got, Progress::Complete(&p[..]));
            }
        }
        assert_eq!(r.completed(), Some(&p[..]));
        assert_eq!(r.stats().completed, 1);
        assert_eq!(r.stats().fragments, 4);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let p = payload(40);
        let f: Vec<_> = split(&p, 10).unwrap().map(|f| wire(&f)).collect();
        let mut r = R::default();
        assert!(matches!(r.push(T0, &f[3]), Ok(Progress::Incomplete { .. })));
        assert!(matches!(r.push(T0, &f[1]), Ok(Progress::Incomplete { .. })));
        assert_eq!(r.push(T0, &f[3]), Ok(Progress::Duplicate));
        assert!(matches!(r.push(T0, &f[0]), Ok(Progress::Incomplete { .. })));
        assert_eq!(r.push(T0, &f[1]), Ok(Progress::Duplicate));
        assert_eq!(r.push(T0, &f[2]), Ok(Progress::Complete(&p[..])));
        assert_eq!(r.stats().duplicates, 2);
        assert_eq!(r.stats().errors, 0);
    }

    #[test]
    fn empty_transfer_completes() {
        let mut r = R::default();
        assert_eq!(r.push(T0, &frag(0, 0, &[])), Ok(Progress::Complete(&[])));
    }

    #[test]
    fn conflict_aborts() {
        let mut r = R::default();
        r.push(T0, &frag(0, 20, &[1; 10])).unwrap();
        let mut bad = [1u8; 10];
        bad[3] = 9;
        assert_eq!(
            r.push(T0, &frag(0, 20, &bad)),
            Err(SfpError::Conflict { offset: 3 })
        );
        assert_eq!(r.in_progress(), None);
        assert_eq!(r.stats().aborted, 1);
        assert_eq!(r.stats().errors, 1);
    }

    #[test]
    fn partial_overlap_is_error_even_if_bytes_agree() {
        let p = payload(30);
        let mut r = R::default();
        r.push(T0, &frag(0, 30, &p[0..10])).unwrap();
        assert_eq!(
            r.push(T0, &frag(5, 30, &p[5..15])),
            Err(SfpError::Overlap { offset: 5, len: 10 })
        );
        assert_eq!(r.in_progress(), None);
    }

    #[test]
    fn total_too_large() {
        let mut r = R::default();
        assert_eq!(
            r.push(T0, &frag(0, 65, &[0; 8])),
            Err(SfpError::TotalTooLarge {
                total: 65,
                capacity: 64
            })
        );
        assert_eq!(
            r.push(T0, &frag(0, u32::MAX, &[0; 8])),
            Err(SfpError::TotalTooLarge {
                total: u32::MAX,
                capacity: 64
            })
        );
    }

    #[test]
    fn beyond_total() {
        let mut r = R::default();
        assert_eq!(
            r.push(T0, &frag(8, 10, &[0; 4])),
            Err(SfpError::BeyondTotal {
                offset: 8,
                len: 4,
                total: 10
            })
        );
        assert_eq!(
            r.push(T0, &frag(u32::MAX, 10, &[0; 1])),
            Err(SfpError::BeyondTotal {
                offset: u32::MAX,
                len: 1,
                total: 10
            })
        );
    }

    #[test]
    fn empty_fragment_of_nonempty_transfer() {
        let mut r = R::default();
        assert_eq!(
            r.push(T0, &frag(4, 10, &[])),
            Err(SfpError::EmptyFragment {
                offset: 4,
                total: 10
            })
        );
    }

    #[test]
    fn truncated_and_not_fragment() {
        let mut r = R::default();
        r.push(T0, &frag(0, 20, &[1; 10])).unwrap();
        assert_eq!(r.push(T0, &[0; 7]), Err(SfpError::Truncated { len: 7 }));
        assert_eq!(r.in_progress(), None, "errors abort the transfer");
        let h = Header {
            prio: Prio::Normal,
            src: Addr::new(1).unwrap(),
            dst: Addr::new(2).unwrap(),
            dport: Port::new(12).unwrap(),
            sport: Port::new(18).unwrap(),
            flags: Flags::NONE,
        };
        let pkt = Packet::<32>::with_data(h, &frag(0, 4, &[1; 4])).unwrap();
        assert_eq!(r.push_packet(T0, &pkt), Err(SfpError::NotFragment));
        assert_eq!(r.stats().errors, 2);
    }

    #[test]
    fn total_changed_mid_transfer() {
        let mut r = R::default();
        r.push(T0, &frag(0, 20, &[1; 10])).unwrap();
        assert_eq!(
            r.push(T0, &frag(10, 30, &[1; 10])),
            Err(SfpError::TotalChanged {
                expected: 20,
                got: 30
            })
        );
        assert_eq!(r.in_progress(), None);
    }

    #[test]
    fn offset_zero_with_new_total_restarts() {
        let mut r = R::default();
        r.push(T0, &frag(0, 20, &[1; 10])).unwrap();
        assert_eq!(
            r.push(T0, &frag(0, 12, &[2; 10])),
            Ok(Progress::Incomplete {
                received: 10,
                total: 12
            })
        );
        assert_eq!(r.stats().aborted, 1);
        assert_eq!(r.stats().errors, 0);
        assert_eq!(r.push(T0, &frag(10, 12, &[3; 2])).unwrap(), {
            let mut want = [2u8; 12];
            want[10..].fill(3);
            Progress::Complete(&want.clone())
        });
    }

    #[test]
    fn too_many_gaps() {
        let mut r = Reassembler::<64, 2>::default();
        r.push(T0, &frag(0, 64, &[0; 4])).unwrap();
        r.push(T0, &frag(8, 64, &[0; 4])).unwrap();
        assert_eq!(
            r.push(T0, &frag(16, 64, &[0; 4])),
            Err(SfpError::TooManyGaps { capacity: 2 })
        );
        // Filling a hole merges and needs no new slot.
        r.push(T0, &frag(0, 64, &[0; 4])).unwrap();
        r.push(T0, &frag(8, 64, &[0; 4])).unwrap();
        assert_eq!(
            r.push(T0, &frag(4, 64, &[0; 4])),
            Ok(Progress::Incomplete {
                received: 12,
                total: 64
            })
        );
    }

    #[test]
    fn timeout_via_handle_timeout() {
        let mut r = R::new(Duration::from_millis(100));
        r.push(ms(1000), &frag(0, 20, &[1; 10])).unwrap();
        assert_eq!(r.poll_timeout(), Some(ms(1100)));
        assert_eq!(r.handle_timeout(ms(1099)), Ok(()));
        assert!(r.in_progress().is_some());
        assert_eq!(r.handle_timeout(ms(1100)), Err(SfpError::Timeout));
        assert_eq!(r.in_progress(), None);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.stats().timeouts, 1);
        assert_eq!(r.handle_timeout(ms(5000)), Ok(()), "only once");
    }

    #[test]
    fn new_data_extends_deadline_duplicates_do_not() {
        let mut r = R::new(Duration::from_millis(100));
        r.push(ms(0), &frag(0, 30, &[1; 10])).unwrap();
        r.push(ms(50), &frag(10, 30, &[1; 10])).unwrap();
        assert_eq!(r.poll_timeout(), Some(ms(150)));
        assert_eq!(
            r.push(ms(120), &frag(10, 30, &[1; 10])),
            Ok(Progress::Duplicate)
        );
        assert_eq!(r.poll_timeout(), Some(ms(150)));
    }

    #[test]
    fn expired_transfer_dropped_on_push() {
        let mut r = R::new(Duration::from_millis(100));
        r.push(ms(0), &frag(0, 20, &[1; 10])).unwrap();
        // The rest arrives too late: the old part is gone, this one starts over.
        assert_eq!(
            r.push(ms(200), &frag(10, 20, &[1; 10])),
            Ok(Progress::Incomplete {
                received: 10,
                total: 20
            })
        );
        assert_eq!(r.stats().timeouts, 1);
    }

    #[test]
    fn completion_then_next_transfer() {
        let mut r = R::default();
        assert!(matches!(
            r.push(T0, &frag(0, 4, &[5; 4])),
            Ok(Progress::Complete(_))
        ));
        assert_eq!(r.completed(), Some(&[5u8; 4][..]));
        assert_eq!(
            r.push(T0, &frag(0, 4, &[6; 4])),
            Ok(Progress::Complete(&[6; 4]))
        );
        r.reset();
        assert_eq!(r.completed(), None);
    }

    /// A shuffled, duplicated delivery order of `n` fragments, from a seed list.
    fn order(n: usize, keys: &[u32], dups: &[usize]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by_key(|&i| keys.get(i).copied().unwrap_or(0));
        for &d in dups {
            if n > 0 {
                let at = d % (idx.len() + 1);
                idx.insert(at.max(1).min(idx.len()), d % n);
            }
        }
        idx
    }

    proptest! {
        #[test]
        fn shuffled_and_duplicated_fragments_reassemble(
            p in proptest::collection::vec(any::<u8>(), 1..=256),
            mtu in 1usize..64,
            keys in proptest::collection::vec(any::<u32>(), 256),
            dups in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let frags: Vec<_> = split(&p, mtu).unwrap().map(|f| wire(&f)).collect();
            let ord = order(frags.len(), &keys, &dups);
            // Worst case every other fragment arrives first: n/2 + 1 pieces.
            let mut r = Reassembler::<256, 160>::default();
            let mut done = None;
            for (k, &i) in ord.iter().enumerate() {
                match r.push(ms(k as u64), &frags[i]).unwrap() {
                    Progress::Complete(d) => {
                        done = Some(d.to_vec());
                        break;
                    }
                    Progress::Incomplete { .. } | Progress::Duplicate => {}
                }
            }
            prop_assert_eq!(done.as_deref(), Some(&p[..]));
            prop_assert_eq!(r.stats().errors, 0);
            prop_assert_eq!(r.stats().fragments as usize, frags.len());
        }

        #[test]
        fn in_order_split_for_many_mtus(
            p in proptest::collection::vec(any::<u8>(), 1..=300),
            mtu in 1usize..320,
        ) {
            let it = split(&p, mtu).unwrap();
            prop_assert_eq!(it.len(), p.len().div_ceil(mtu));
            let mut r = Reassembler::<300, 1>::default();
            let mut out = None;
            let mut next = 0u32;
            for f in it {
                prop_assert_eq!(f.offset, next);
                prop_assert!(f.data.len() == mtu || f.is_last());
                next += f.data.len() as u32;
                if let Progress::Complete(d) = r.push(T0, &wire(&f)).unwrap() {
                    out = Some(d.to_vec());
                }
            }
            prop_assert_eq!(out.as_deref(), Some(&p[..]));
        }

        #[test]
        fn corrupted_repeat_is_a_conflict(
            p in proptest::collection::vec(any::<u8>(), 2..=64),
            mtu in 1usize..16,
            pick in any::<usize>(),
            flip in 1u8..=255,
        ) {
            let frags: Vec<_> = split(&p, mtu).unwrap().collect();
            prop_assume!(frags.len() > 1);
            let f = frags[pick % frags.len()];
            let mut r = Reassembler::<64, 64>::default();
            r.push(T0, &wire(&f)).unwrap();
            let mut bad = f.data.to_vec();
            let at = pick % bad.len();
            bad[at] ^= flip;
            prop_assert_eq!(
                r.push(T0, &frag(f.offset, f.total, &bad)),
                Err(SfpError::Conflict { offset: f.offset + at as u32 })
            );
            prop_assert_eq!(r.in_progress(), None);
        }

        #[test]
        fn garbage_never_panics(
            frames in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..24),
                 0u32..40, prop_oneof![0u32..40, any::<u32>()], any::<bool>(), 0u64..50),
                0..40),
        ) {
            let mut r = Reassembler::<32, 3>::new(Duration::from_millis(20));
            let mut now = 0u64;
            for (data, offset, total, raw, dt) in frames {
                now += dt;
                let bytes = if raw { data } else { frag(offset, total, &data) };
                let before = r.stats().errors;
                match r.push(ms(now), &bytes) {
                    Ok(Progress::Complete(d)) => prop_assert!(d.len() <= 32),
                    Ok(_) => {}
                    Err(_) => {
                        prop_assert_eq!(r.stats().errors, before.wrapping_add(1));
                        prop_assert_eq!(r.in_progress(), None);
                    }
                }
                if let Some((got, total)) = r.in_progress() {
                    prop_assert!(got < total && total <= 32);
                }
                let _ = r.handle_timeout(ms(now));
            }
        }
    }
}
