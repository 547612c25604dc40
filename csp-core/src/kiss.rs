//! KISS framing for serial links (UARTs, ptys, TCP byte streams), as libcsp
//! puts CSP frames on the wire.
//!
//! One CSP frame is sent as `FEND 0x00 <escaped(header | data | CRC)> FEND`:
//! - `FEND` (0xC0) delimits frames; `0x00` is the KISS command byte "data
//!   frame, port 0".
//! - Inside the frame `FEND` becomes `FESC TFEND` (`DB DC`) and `FESC`
//!   becomes `FESC TFESC` (`DB DD`); header and CRC bytes are escaped too.
//! - The CRC is libcsp's KISS CRC: CRC-32C over the data after the header
//!   (never the header), big-endian. libcsp's KISS always appends it,
//!   whatever the header flags say, so a packet sent with the CSP CRC32
//!   option carries two CRCs: the CSP one is part of the data here.
//!
//! Sending: [`encode`] fills a slice, [`Encoder`] yields the same bytes one
//! at a time for a UART that is fed byte by byte. Neither allocates.
//!
//! Receiving: [`KissDecoder`] takes one byte at a time and hands out each
//! complete, CRC-checked frame (header | data, KISS CRC stripped). Its size
//! is fixed by the `MAX` frame length; whatever arrives, it never panics and
//! never grows. Everything it throws away is counted in [`KissStats`].

use core::fmt;

use crate::header::Version;
use crate::security::crc32c;

/// Frame end: delimits frames.
pub const FEND: u8 = 0xC0;
/// Frame escape: the next byte is a transposed `FEND` or `FESC`.
pub const FESC: u8 = 0xDB;
/// Transposed frame end: `FESC TFEND` stands for a `FEND` data byte.
pub const TFEND: u8 = 0xDC;
/// Transposed frame escape: `FESC TFESC` stands for a `FESC` data byte.
pub const TFESC: u8 = 0xDD;
/// KISS command byte of a data frame on TNC port 0: the only one that carries CSP.
pub const CMD_DATA: u8 = 0x00;
/// Length of the KISS CRC-32C trailer.
pub const CRC_LEN: usize = 4;

/// Why a frame could not be encoded, or why a received frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KissError {
    /// Encoding: the output buffer is too small.
    BufferTooSmall {
        /// Bytes the encoded frame takes.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// Encoding: the frame is shorter than the CSP header of the version,
    /// so there is no telling where the CRC-covered data starts.
    NoHeader {
        /// Bytes given.
        len: usize,
        /// Header length of the version.
        header_len: usize,
    },
    /// Decoding: `FESC` followed by this byte instead of `TFEND`/`TFESC`.
    BadEscape(u8),
    /// Decoding: the frame (header | data) would exceed the decoder's maximum.
    Oversize {
        /// The decoder's maximum frame length (header | data).
        max: usize,
    },
    /// Decoding: the frame is shorter than a header plus the KISS CRC.
    TooShort {
        /// Unescaped bytes received (header, data and CRC).
        len: usize,
        /// The least a frame can have: header length plus 4.
        min: usize,
    },
    /// Decoding: the KISS CRC does not match (neither the data-only form nor
    /// the header-inclusive form libcsp also accepts).
    BadCrc {
        /// The CRC carried by the frame.
        received: u32,
        /// The CRC-32C of the data after the header.
        computed: u32,
    },
}

impl fmt::Display for KissError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KissError::BufferTooSmall { needed, got } => {
                write!(f, "KISS frame needs {needed} bytes, buffer has {got}")
            }
            KissError::NoHeader { len, header_len } => {
                write!(f, "frame of {len} bytes has no {header_len}-byte header")
            }
            KissError::BadEscape(b) => write!(f, "KISS escape followed by {b:#04x}"),
            KissError::Oversize { max } => write!(f, "KISS frame longer than {max} bytes"),
            KissError::TooShort { len, min } => {
                write!(f, "KISS frame of {len} bytes, at least {min} needed")
            }
            KissError::BadCrc { received, computed } => {
                write!(f, "KISS CRC {received:#010x}, computed {computed:#010x}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KissError {}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// The KISS CRC of a CSP frame: CRC-32C of everything after the header,
/// big-endian; an error if the frame is shorter than the header.
fn kiss_crc(frame: &[u8], version: Version) -> Result<[u8; CRC_LEN], KissError> {
    let header_len = version.header_len();
    frame
        .get(header_len..)
        .map(|data| crc32c(data).to_be_bytes())
        .ok_or(KissError::NoHeader {
            len: frame.len(),
            header_len,
        })
}

/// Bytes a byte takes once escaped.
const fn escaped_len(b: u8) -> usize {
    if b == FEND || b == FESC {
        2
    } else {
        1
    }
}

/// The most bytes a frame of `frame_len` bytes (header | data) can take on
/// the wire: every byte escaped. Size a transmit buffer with this.
pub const fn max_encoded_len(frame_len: usize) -> usize {
    // FEND, command, the escaped frame and CRC, FEND.
    3 + 2 * (frame_len + CRC_LEN)
}

/// The exact number of bytes [`encode`] writes for `frame`.
pub fn encoded_len(frame: &[u8], version: Version) -> Result<usize, KissError> {
    let crc = kiss_crc(frame, version)?;
    Ok(3 + frame
        .iter()
        .chain(crc.iter())
        .map(|&b| escaped_len(b))
        .sum::<usize>())
}

/// Writes one KISS frame into `out` and returns its length.
///
/// `frame` is a complete CSP frame, header | data (data including any CSP
/// trailers), the header being of `version`: the KISS CRC covers only what
/// follows the header. On error nothing useful is in `out`.
pub fn encode(frame: &[u8], version: Version, out: &mut [u8]) -> Result<usize, KissError> {
    let crc = kiss_crc(frame, version)?;
    let mut pos = 0;
    let mut fits = true;
    // One bounds check per byte, no early return in the loop: the error path
    // (rare) counts the exact length afterwards.
    let mut put = |b: u8| match out.get_mut(pos) {
        Some(slot) => {
            *slot = b;
            pos += 1;
        }
        None => fits = false,
    };
    put(FEND);
    put(CMD_DATA);
    for &b in frame.iter().chain(crc.iter()) {
        match b {
            FEND => {
                put(FESC);
                put(TFEND);
            }
            FESC => {
                put(FESC);
                put(TFESC);
            }
            _ => put(b),
        }
    }
    put(FEND);
    if fits {
        Ok(pos)
    } else {
        Err(KissError::BufferTooSmall {
            needed: encoded_len(frame, version)?,
            got: out.len(),
        })
    }
}

/// The bytes of one KISS frame, one at a time: the same bytes [`encode`]
/// writes, for a UART driver that takes a byte whenever it has room.
///
/// ```
/// use csp_core::kiss::{encode, Encoder};
/// use csp_core::Version;
/// let frame = [0x82, 0x22, 0x94, 0x00, 0x01, 0xC0, 0x02];
/// let mut buf = [0u8; 32];
/// let n = encode(&frame, Version::V1, &mut buf).unwrap();
/// let enc = Encoder::new(&frame, Version::V1).unwrap();
/// assert!(enc.eq(buf[..n].iter().copied()));
/// ```
#[derive(Debug, Clone)]
pub struct Encoder<'a> {
    frame: &'a [u8],
    crc: [u8; CRC_LEN],
    /// Index into the unescaped sequence FEND, command, frame, CRC, FEND.
    pos: usize,
    /// Second byte of an escape sequence, due next.
    pending: Option<u8>,
}

impl<'a> Encoder<'a> {
    /// An encoder for `frame` (header | data, header of `version`).
    pub fn new(frame: &'a [u8], version: Version) -> Result<Self, KissError> {
        Ok(Encoder {
            frame,
            crc: kiss_crc(frame, version)?,
            pos: 0,
            pending: None,
        })
    }

    /// The first byte to send for frame byte `b`; the second of an escape
    /// sequence is kept for the next call.
    fn escape(&mut self, b: u8) -> u8 {
        match b {
            FEND => {
                self.pending = Some(TFEND);
                FESC
            }
            FESC => {
                self.pending = Some(TFESC);
                FESC
            }
            b => b,
        }
    }

    /// Unescaped bytes still to come (escapes may add up to as many again).
    fn remaining_unescaped(&self) -> usize {
        let total = 3 + self.frame.len() + CRC_LEN;
        total.saturating_sub(self.pos) + usize::from(self.pending.is_some())
    }
}

impl Iterator for Encoder<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if let Some(b) = self.pending.take() {
            return Some(b);
        }
        let n = self.frame.len();
        let byte = match self.pos {
            0 => FEND,
            1 => CMD_DATA,
            i => {
                let j = i - 2;
                match self.frame.get(j).or_else(|| self.crc.get(j - n)) {
                    Some(&b) => self.escape(b),
                    None if j == n + CRC_LEN => FEND,
                    // Done; `pos` stays put, so this repeats (fused).
                    None => return None,
                }
            }
        };
        self.pos += 1;
        Some(byte)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let lo = self.remaining_unescaped();
        (lo, Some(lo.saturating_mul(2)))
    }
}

impl core::iter::FusedIterator for Encoder<'_> {}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// What the decoder has thrown away, and how much it delivered. Counters wrap
/// (like interface counters): compare readings with `wrapping_sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KissStats {
    /// Frames delivered (CRC correct).
    pub frames_ok: u32,
    /// Of `frames_ok`, frames whose CRC covered the header as well (a form
    /// libcsp 2.x also accepts, and sends when built for CSP 2.1).
    pub crc_with_header: u32,
    /// Bytes outside any frame, before the first `FEND` seen.
    pub garbage_bytes: u32,
    /// Bytes discarded after a frame was abandoned (oversize, bad escape,
    /// non-data command), up to the next `FEND`.
    pub skipped_bytes: u32,
    /// Frames dropped for a wrong KISS CRC.
    pub bad_crc: u32,
    /// Frames dropped for exceeding the decoder's maximum.
    pub oversize: u32,
    /// Frames dropped for an escape followed by anything but `TFEND`/`TFESC`.
    pub bad_escape: u32,
    /// Frames dropped for being shorter than a header plus CRC.
    pub too_short: u32,
    /// KISS frames with a command byte other than data/port 0 (TNC parameter
    /// commands and the like): not CSP, ignored.
    pub non_data_command: u32,
}

impl KissStats {
    /// Frames dropped for any reason (non-data commands are not errors).
    pub fn dropped(&self) -> u32 {
        self.bad_crc
            .wrapping_add(self.oversize)
            .wrapping_add(self.bad_escape)
            .wrapping_add(self.too_short)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No `FEND` seen yet: we may have started listening mid-frame.
    Hunt,
    /// Just after a `FEND`: the next byte is a command byte (or another
    /// `FEND`, which makes an empty frame and is ignored).
    Command,
    /// Inside a data frame.
    Data,
    /// Inside a data frame, just after `FESC`.
    Escape,
    /// Discarding up to the next `FEND` (frame abandoned or not CSP).
    Skip,
}

/// Byte-at-a-time KISS receiver holding frames of at most `MAX` bytes of
/// header | data (the KISS CRC is not counted: it is held apart).
///
/// Feed it every received byte with [`push`](Self::push); it answers with a
/// frame when one is complete and correct, an error when a frame had to be
/// dropped, and nothing otherwise. Its size is fixed (`MAX` plus a few
/// words) whatever arrives.
///
/// Framing: a `FEND` always ends what came before it and opens the next
/// frame, so both `C0 00 .. C0 C0 00 .. C0` (libcsp: each frame has its own
/// delimiters) and `C0 00 .. C0 00 .. C0` (shared `FEND`) decode. Because of
/// that, a frame that arrives intact is decoded whatever came before it:
/// garbage, a truncated frame or an error never costs the next frame.
#[derive(Debug, Clone)]
pub struct KissDecoder<const MAX: usize> {
    version: Version,
    state: State,
    buf: [u8; MAX],
    len: usize,
    /// The last (up to) four unescaped bytes, not yet in `buf`. When the
    /// frame ends they are its CRC, big-endian, so `buf` never needs room
    /// for the CRC and `MAX` is the CSP frame length the user thinks in.
    tail: u32,
    tail_len: u8,
    stats: KissStats,
}

impl<const MAX: usize> KissDecoder<MAX> {
    /// A decoder for frames whose headers are of `version` (the KISS CRC
    /// covers the data after the header, so the decoder must know its length).
    pub const fn new(version: Version) -> Self {
        KissDecoder {
            version,
            state: State::Hunt,
            buf: [0; MAX],
            len: 0,
            tail: 0,
            tail_len: 0,
            stats: KissStats {
                frames_ok: 0,
                crc_with_header: 0,
                garbage_bytes: 0,
                skipped_bytes: 0,
                bad_crc: 0,
                oversize: 0,
                bad_escape: 0,
                too_short: 0,
                non_data_command: 0,
            },
        }
    }

    /// The header version the decoder checks CRCs for.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// The counters so far.
    pub const fn stats(&self) -> &KissStats {
        &self.stats
    }

    /// Forget any partial frame and wait for the next `FEND` (for instance
    /// after the serial port was reopened). The counters are kept.
    pub fn reset(&mut self) {
        self.state = State::Hunt;
        self.len = 0;
        self.tail_len = 0;
    }

    /// Takes one received byte.
    ///
    /// - `Some(Ok(frame))`: a complete frame, header | data, KISS CRC checked
    ///   and removed. It stays valid until the next call.
    /// - `Some(Err(e))`: a frame was dropped (counted in the stats).
    /// - `None`: nothing to report yet.
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], KissError>> {
        if byte == FEND {
            // A FEND ends whatever was going on and opens the next frame.
            let before = self.state;
            self.state = State::Command;
            return match before {
                State::Data => self.finish(),
                State::Escape => Some(Err(self.count(KissError::BadEscape(FEND)))),
                State::Hunt | State::Command | State::Skip => None,
            };
        }
        match self.state {
            State::Hunt => {
                self.stats.garbage_bytes = self.stats.garbage_bytes.wrapping_add(1);
                None
            }
            State::Skip => {
                self.stats.skipped_bytes = self.stats.skipped_bytes.wrapping_add(1);
                None
            }
            State::Command => {
                if byte == CMD_DATA {
                    self.len = 0;
                    self.tail_len = 0;
                    self.state = State::Data;
                } else {
                    csp_trace!("kiss: command byte {} is not data, ignored", byte);
                    self.stats.non_data_command = self.stats.non_data_command.wrapping_add(1);
                    self.state = State::Skip;
                }
                None
            }
            State::Data if byte == FESC => {
                self.state = State::Escape;
                None
            }
            State::Data => self.store(byte).map(Err),
            State::Escape => {
                let unescaped = match byte {
                    TFEND => FEND,
                    TFESC => FESC,
                    other => {
                        self.state = State::Skip;
                        return Some(Err(self.count(KissError::BadEscape(other))));
                    }
                };
                self.state = State::Data;
                self.store(unescaped).map(Err)
            }
        }
    }

    /// Appends one unescaped byte: it goes into the CRC delay line, and the
    /// byte that falls out of it (no longer a CRC candidate) into the buffer.
    fn store(&mut self, byte: u8) -> Option<KissError> {
        let out = (self.tail >> 24) as u8;
        self.tail = (self.tail << 8) | u32::from(byte);
        if usize::from(self.tail_len) < CRC_LEN {
            self.tail_len += 1;
            return None;
        }
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = out;
                self.len += 1;
                None
            }
            None => {
                self.state = State::Skip;
                Some(self.count(KissError::Oversize { max: MAX }))
            }
        }
    }

    /// The frame just ended with a `FEND`: check length and CRC.
    fn finish(&mut self) -> Option<Result<&[u8], KissError>> {
        let header_len = self.version.header_len();
        let len = self.len + usize::from(self.tail_len);
        let min = header_len + CRC_LEN;
        if len < min {
            return Some(Err(self.count(KissError::TooShort { len, min })));
        }
        // len >= min means the delay line is full: `tail` is the CRC.
        let frame = self.buf.get(..self.len).unwrap_or(&[]);
        let data = frame.get(header_len..).unwrap_or(&[]);
        let received = self.tail;
        let computed = crc32c(data);
        if computed != received {
            if crc32c(frame) != received {
                return Some(Err(self.count(KissError::BadCrc { received, computed })));
            }
            self.stats.crc_with_header = self.stats.crc_with_header.wrapping_add(1);
        }
        self.stats.frames_ok = self.stats.frames_ok.wrapping_add(1);
        Some(Ok(self.buf.get(..self.len).unwrap_or(&[])))
    }

    /// Counts a dropped frame under its reason.
    fn count(&mut self, e: KissError) -> KissError {
        csp_debug!("kiss: frame dropped: {}", e);
        let s = &mut self.stats;
        let counter = match e {
            KissError::BadEscape(_) => &mut s.bad_escape,
            KissError::Oversize { .. } => &mut s.oversize,
            KissError::TooShort { .. } => &mut s.too_short,
            KissError::BadCrc { .. } => &mut s.bad_crc,
            // Encoding errors never come out of the decoder.
            KissError::BufferTooSmall { .. } | KissError::NoHeader { .. } => return e,
        };
        *counter = counter.wrapping_add(1);
        e
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const V1: Version = Version::V1;
    const V2: Version = Version::V2;

    fn enc(frame: &[u8], version: Version) -> Vec<u8> {
        let mut out = std::vec![0u8; max_encoded_len(frame.len())];
        let n = encode(frame, version, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Feeds `bytes` and collects the frames and the errors, in order.
    fn feed<const M: usize>(
        dec: &mut KissDecoder<M>,
        bytes: &[u8],
    ) -> (Vec<Vec<u8>>, Vec<KissError>) {
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        for &b in bytes {
            match dec.push(b) {
                Some(Ok(f)) => frames.push(f.to_vec()),
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
        (frames, errors)
    }

    /// A v1 frame with an easy header and `data`.
    fn frame_v1(data: &[u8]) -> Vec<u8> {
        let mut f = std::vec![0x82, 0x22, 0x94, 0x00];
        f.extend_from_slice(data);
        f
    }

    /// `FEND CMD_DATA <escaped body> FEND`, by hand, independently of `encode`.
    fn wrap(body: &[u8]) -> Vec<u8> {
        let mut out = std::vec![0xC0, 0x00];
        for &b in body {
            match b {
                0xC0 => out.extend_from_slice(&[0xDB, 0xDC]),
                0xDB => out.extend_from_slice(&[0xDB, 0xDD]),
                b => out.push(b),
            }
        }
        out.push(0xC0);
        out
    }

    /// The KISS bytes of `frame`, by hand.
    fn by_hand(frame: &[u8], version: Version) -> Vec<u8> {
        let mut body = frame.to_vec();
        body.extend(crc32c(&frame[version.header_len()..]).to_be_bytes());
        wrap(&body)
    }

    #[test]
    fn encode_escapes_fend_and_fesc_only() {
        let frame = frame_v1(&[0xC0, 0xDB, 0xDC, 0xDD]);
        let out = enc(&frame, V1);
        let crc = crc32c(&[0xC0, 0xDB, 0xDC, 0xDD]).to_be_bytes();
        let mut want = std::vec![0xC0, 0x00, 0x82, 0x22, 0x94, 0x00, 0xDB, 0xDC, 0xDB, 0xDD];
        want.extend_from_slice(&[0xDC, 0xDD]);
        for b in crc {
            match b {
                0xC0 => want.extend_from_slice(&[0xDB, 0xDC]),
                0xDB => want.extend_from_slice(&[0xDB, 0xDD]),
                b => want.push(b),
            }
        }
        want.push(0xC0);
        assert_eq!(out, want);
        assert_eq!(encoded_len(&frame, V1), Ok(out.len()));
    }

    #[test]
    fn crc_covers_data_not_header() {
        // Same data, different headers: the same CRC bytes at the end.
        let a = enc(&[1, 2, 3, 4, 9, 9], V1);
        let b = enc(&[5, 6, 7, 8, 9, 9], V1);
        assert_eq!(a[a.len() - 5..], b[b.len() - 5..]);
        // The header length depends on the version.
        let f = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_ne!(enc(&f, V1)[10..], enc(&f, V2)[10..]);
    }

    #[test]
    fn encode_refuses_small_buffers_and_headerless_frames() {
        let frame = frame_v1(&[0xC0; 10]);
        let need = encoded_len(&frame, V1).unwrap();
        let mut out = std::vec![0u8; need - 1];
        assert_eq!(
            encode(&frame, V1, &mut out),
            Err(KissError::BufferTooSmall {
                needed: need,
                got: need - 1
            })
        );
        let mut out = std::vec![0u8; need];
        assert_eq!(encode(&frame, V1, &mut out), Ok(need));
        let no_header = [1, 2, 3, 4, 5];
        let want = Err(KissError::NoHeader {
            len: 5,
            header_len: 6,
        });
        assert_eq!(encode(&no_header, V2, &mut out), want);
        assert_eq!(encoded_len(&no_header, V2), want);
        assert!(Encoder::new(&no_header, V2).is_err());
        // A bare header (no data) is a frame.
        assert!(encode(&no_header[..4], V1, &mut out).is_ok());
    }

    #[test]
    fn decodes_one_frame_and_counts_nothing_else() {
        let frame = frame_v1(&[0xC0, 0xDB, 7]);
        let mut dec = KissDecoder::<64>::new(V1);
        let (frames, errors) = feed(&mut dec, &enc(&frame, V1));
        assert_eq!(frames, [frame]);
        assert!(errors.is_empty());
        assert_eq!(
            *dec.stats(),
            KissStats {
                frames_ok: 1,
                ..KissStats::default()
            }
        );
    }

    #[test]
    fn garbage_before_first_fend_is_counted() {
        let frame = frame_v1(b"hi");
        let mut bytes = std::vec![0x00, 0x11, 0xDB, 0xDC];
        bytes.extend(enc(&frame, V1));
        let mut dec = KissDecoder::<64>::new(V1);
        let (frames, errors) = feed(&mut dec, &bytes);
        assert_eq!(frames, [frame]);
        assert!(errors.is_empty());
        assert_eq!(dec.stats().garbage_bytes, 4);
    }

    #[test]
    fn separate_and_shared_fends() {
        let (a, b) = (frame_v1(b"first"), frame_v1(b"second"));
        let (ea, eb) = (enc(&a, V1), enc(&b, V1));
        // libcsp style: each frame with its own delimiters, plus extra FENDs.
        let mut own = std::vec![0xC0, 0xC0];
        own.extend(&ea);
        own.extend([0xC0, 0xC0]);
        own.extend(&eb);
        // Shared: the closing FEND of `a` opens `b`.
        let mut shared = ea.clone();
        shared.extend(&eb[1..]);
        for bytes in [own, shared] {
            let mut dec = KissDecoder::<64>::new(V1);
            let (frames, errors) = feed(&mut dec, &bytes);
            assert_eq!(frames, [a.clone(), b.clone()]);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(dec.stats().dropped(), 0);
        }
    }

    #[test]
    fn bad_escape_drops_the_frame_and_the_next_one_survives() {
        let good = frame_v1(b"ok");
        let mut bytes = enc(&frame_v1(b"broken"), V1);
        bytes.insert(6, 0xDB); // FESC followed by a plain byte
        bytes.extend(enc(&good, V1));
        let mut dec = KissDecoder::<64>::new(V1);
        let (frames, errors) = feed(&mut dec, &bytes);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0], good);
        assert!(matches!(errors[..], [KissError::BadEscape(_)]));
        assert_eq!(dec.stats().bad_escape, 1);
        assert!(dec.stats().skipped_bytes > 0);

        // FESC right before the closing FEND: the FEND still opens the next frame.
        let mut bytes = std::vec![0xC0, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0xDB];
        bytes.extend(&enc(&good, V1)[..]);
        let (frames, errors) = feed(&mut dec, &bytes);
        assert_eq!(frames, [good]);
        assert_eq!(errors, [KissError::BadEscape(0xC0)]);
        assert_eq!(dec.stats().bad_escape, 2);
    }

    #[test]
    fn oversize_frames_are_dropped_and_the_next_one_survives() {
        const MAX: usize = 16;
        let fits = frame_v1(&[7; MAX - 4]);
        let too_big = frame_v1(&[7; MAX - 3]);
        let mut bytes = enc(&too_big, V1);
        bytes.extend(enc(&fits, V1));
        let mut dec = KissDecoder::<MAX>::new(V1);
        let (frames, errors) = feed(&mut dec, &bytes);
        assert_eq!(frames, [fits]);
        assert_eq!(errors, [KissError::Oversize { max: MAX }]);
        assert_eq!(dec.stats().oversize, 1);
        // A long run without FEND right after a frame: the first 0x00 opens a
        // data frame, 20 bytes fill the buffer and the CRC delay line, the
        // 22nd overflows it, and the rest costs nothing but a counter.
        let skipped = dec.stats().skipped_bytes;
        let (frames, errors) = feed(&mut dec, &[0x00; 10_000]);
        assert!(frames.is_empty());
        assert_eq!(errors, [KissError::Oversize { max: MAX }]);
        assert_eq!(dec.stats().skipped_bytes - skipped, 10_000 - 22);
    }

    #[test]
    fn short_frames_are_dropped() {
        let mut dec = KissDecoder::<64>::new(V2);
        // Command byte only, then header + 3 bytes: both too short for v2 + CRC.
        let (frames, errors) = feed(
            &mut dec,
            &[0xC0, 0x00, 0xC0, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        );
        assert!(frames.is_empty());
        assert_eq!(errors, [KissError::TooShort { len: 0, min: 10 }]);
        let (_, errors) = feed(&mut dec, &[0xC0]);
        assert_eq!(errors, [KissError::TooShort { len: 9, min: 10 }]);
        assert_eq!(dec.stats().too_short, 2);
        // Exactly header + CRC: an empty packet, accepted.
        let (frames, _) = feed(&mut dec, &enc(&[1, 2, 3, 4, 5, 6], V2));
        assert_eq!(frames, [std::vec![1, 2, 3, 4, 5, 6]]);
    }

    #[test]
    fn bad_crc_is_dropped() {
        let good = frame_v1(b"payload");
        let mut bytes = enc(&good, V1);
        bytes[8] ^= 0x01; // a payload byte ('y' -> 'x')
        bytes.extend(enc(&good, V1));
        let mut dec = KissDecoder::<64>::new(V1);
        let (frames, errors) = feed(&mut dec, &bytes);
        assert_eq!(frames, [good]);
        assert!(matches!(errors[..], [KissError::BadCrc { .. }]));
        assert_eq!(dec.stats().bad_crc, 1);
        // Decoding with the wrong version moves the CRC boundary: dropped.
        let mut v2 = KissDecoder::<64>::new(V2);
        let (frames, _) = feed(&mut v2, &enc(&frame_v1(b"payload"), V1));
        assert!(frames.is_empty());
        assert_eq!(v2.stats().bad_crc, 1);
    }

    #[test]
    fn header_inclusive_crc_is_accepted() {
        // libcsp 2.x accepts a CRC over header and data too (CSP 2.1 sends it).
        let frame = frame_v1(b"abc");
        let mut with_crc = frame.clone();
        with_crc.extend(crc32c(&frame).to_be_bytes());
        let bytes = wrap(&with_crc);
        let mut dec = KissDecoder::<64>::new(V1);
        let (frames, _) = feed(&mut dec, &bytes);
        assert_eq!(frames, [frame]);
        assert_eq!(dec.stats().crc_with_header, 1);
        assert_eq!(dec.stats().frames_ok, 1);
    }

    #[test]
    fn non_data_commands_are_ignored() {
        let good = frame_v1(b"csp");
        // TNC parameter command (TXDELAY 0x01), a return command, then data.
        let mut bytes = std::vec![0xC0, 0x01, 0x32, 0xC0, 0xC0, 0xFF, 0xC0];
        bytes.extend(enc(&good, V1));
        let mut dec = KissDecoder::<64>::new(V1);
        let (frames, errors) = feed(&mut dec, &bytes);
        assert_eq!(frames, [good]);
        assert!(errors.is_empty());
        assert_eq!(dec.stats().non_data_command, 2);
        assert_eq!(dec.stats().dropped(), 0);
    }

    #[test]
    fn reset_drops_a_partial_frame() {
        let good = frame_v1(b"x");
        let bytes = enc(&good, V1);
        let mut dec = KissDecoder::<64>::new(V1);
        feed(&mut dec, &bytes[..5]);
        dec.reset();
        // Without its opening FEND the rest is garbage.
        let (frames, _) = feed(&mut dec, &bytes[5..]);
        assert!(frames.is_empty());
        let (frames, _) = feed(&mut dec, &bytes);
        assert_eq!(frames, [good]);
    }

    #[test]
    fn decoder_has_a_fixed_small_size() {
        let size = core::mem::size_of::<KissDecoder<256>>();
        assert!((256..256 + 64).contains(&size), "{size}");
    }

    fn arb_frame(version: Version, max: usize) -> impl Strategy<Value = Vec<u8>> {
        let h = version.header_len();
        // Bias towards the bytes that need escaping.
        let byte = prop_oneof![any::<u8>(), Just(FEND), Just(FESC), Just(TFEND)];
        proptest::collection::vec(byte, h..=max)
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        prop_oneof![Just(V1), Just(V2)]
    }

    proptest! {
        #[test]
        fn stream_encoder_equals_slice_encoder(
            (version, frame) in arb_version().prop_flat_map(|v| (Just(v), arb_frame(v, 300)))
        ) {
            let slice = enc(&frame, version);
            prop_assert_eq!(&slice, &by_hand(&frame, version));
            let it = Encoder::new(&frame, version).unwrap();
            let (lo, hi) = it.size_hint();
            prop_assert!(lo <= slice.len() && slice.len() <= hi.unwrap());
            let mut it = it;
            let streamed: Vec<u8> = it.by_ref().collect();
            prop_assert_eq!(&streamed, &slice);
            prop_assert_eq!(it.next(), None);
            prop_assert_eq!(it.size_hint().0, 0);
            prop_assert_eq!(encoded_len(&frame, version), Ok(slice.len()));
            prop_assert!(slice.len() <= max_encoded_len(frame.len()));
            // FEND only as delimiters.
            prop_assert!(!slice[1..slice.len() - 1].contains(&FEND));
        }

        /// The issue's property: decode(encode(frames)) == frames with garbage
        /// (without FEND) between frames. A garbage run that starts with 0x00
        /// right after a frame looks like a data frame and is dropped by its
        /// CRC; a random run passing the CRC (2^-32) would add a frame.
        #[test]
        fn round_trip_with_garbage_between_frames(
            (version, items) in arb_version().prop_flat_map(|v| (
                Just(v),
                proptest::collection::vec(
                    (arb_frame(v, 64), proptest::collection::vec(
                        any::<u8>().prop_filter("no FEND", |&b| b != FEND), 0..40)),
                    0..8,
                ),
            ))
        ) {
            let mut bytes = Vec::new();
            for (frame, garbage) in &items {
                bytes.extend(garbage);
                bytes.extend(enc(frame, version));
            }
            let mut dec = KissDecoder::<64>::new(version);
            let (frames, _) = feed(&mut dec, &bytes);
            let want: Vec<Vec<u8>> = items.iter().map(|(f, _)| f.clone()).collect();
            prop_assert_eq!(&frames, &want);
            prop_assert_eq!(dec.stats().frames_ok as usize, want.len());
        }

        /// With arbitrary garbage, FENDs included, what is guaranteed is that
        /// every frame that arrives intact is decoded, in order: its opening
        /// FEND resets the decoder whatever state the garbage left it in.
        /// Extra frames can only come from garbage that itself holds a
        /// frame with a valid CRC, which is therefore delivered as such.
        #[test]
        fn every_intact_frame_survives_arbitrary_garbage(
            (version, items, tail) in arb_version().prop_flat_map(|v| (
                Just(v),
                proptest::collection::vec(
                    (arb_frame(v, 64), proptest::collection::vec(
                        prop_oneof![any::<u8>(), Just(FEND), Just(FESC), Just(CMD_DATA)], 0..40)),
                    0..8,
                ),
                proptest::collection::vec(any::<u8>(), 0..40),
            ))
        ) {
            let mut bytes = Vec::new();
            for (frame, garbage) in &items {
                bytes.extend(garbage);
                bytes.extend(enc(frame, version));
            }
            bytes.extend(&tail);
            let mut dec = KissDecoder::<64>::new(version);
            let (frames, _) = feed(&mut dec, &bytes);
            // Every intact frame comes out, in order; anything else that
            // comes out must really have been framed in the garbage. (Garbage
            // can hold a valid frame: `C0 00` + a zero header + `00 00 00 00`
            // + `C0` is an empty packet, whose CRC-32C is 0.)
            let mut wanted = items.iter().map(|(f, _)| f).peekable();
            for f in &frames {
                if wanted.peek() == Some(&f) {
                    wanted.next();
                    continue;
                }
                let e = enc(f, version);
                let body = &e[1..e.len() - 1]; // without the FENDs the encoder adds
                prop_assert!(
                    bytes.windows(body.len()).any(|w| w == body),
                    "frame {:02x?} came out of nowhere", f
                );
            }
            prop_assert!(wanted.next().is_none(), "an intact frame was lost");
        }

        /// Any byte stream: no panic, every delivered frame within bounds and
        /// correct, and the counters add up to what `push` reported.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(FEND), Just(FESC), Just(CMD_DATA)], 0..500),
            version in arb_version(),
        ) {
            let mut dec = KissDecoder::<32>::new(version);
            let (mut ok, mut errs) = (0u32, 0u32);
            for &b in &bytes {
                match dec.push(b) {
                    Some(Ok(f)) => {
                        ok += 1;
                        prop_assert!(f.len() <= 32 && f.len() >= version.header_len());
                    }
                    Some(Err(_)) => errs += 1,
                    None => {}
                }
            }
            let s = *dec.stats();
            prop_assert_eq!(s.frames_ok, ok);
            prop_assert_eq!(s.dropped(), errs);
            // Every byte is accounted for at most once as garbage or skipped.
            prop_assert!(s.garbage_bytes as usize + s.skipped_bytes as usize <= bytes.len());
        }

        /// Oversize frames are dropped, and the frame right after is decoded.
        #[test]
        fn oversize_then_next_frame(big in 33usize..200, small in 4usize..=32) {
            let mut dec = KissDecoder::<32>::new(V1);
            let mut bytes = enc(&std::vec![0x5A; big], V1);
            bytes.extend(enc(&std::vec![0xA5; small], V1));
            let (frames, errors) = feed(&mut dec, &bytes);
            prop_assert_eq!(frames, std::vec![std::vec![0xA5; small]]);
            prop_assert_eq!(errors, std::vec![KissError::Oversize { max: 32 }]);
        }

        /// A frame cut off anywhere, then a good frame: the good one survives.
        #[test]
        fn truncated_frame_then_next_frame(
            (version, cut, good, cut_at) in arb_version().prop_flat_map(|v| (
                Just(v), arb_frame(v, 64), arb_frame(v, 64), any::<prop::sample::Index>()))
        ) {
            let broken = enc(&cut, version);
            let at = cut_at.index(broken.len() - 1); // drop at least the closing FEND
            let mut bytes = broken[..at].to_vec();
            bytes.extend(enc(&good, version));
            let mut dec = KissDecoder::<64>::new(version);
            let (frames, _) = feed(&mut dec, &bytes);
            prop_assert_eq!(frames, std::vec![good]);
        }
    }
}
