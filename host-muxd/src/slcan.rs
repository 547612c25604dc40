//! The serial-line CAN (slcan / LAWICEL) ASCII protocol of common USB-CAN
//! adapters: the codec, sans-IO; `[[can]]` links (`kiss.rs` stream machinery)
//! use it.
//!
//! A frame is one line ending in CR: `T` + 8 hex digits of a 29-bit id +
//! 1 digit DLC + 2 hex digits per data byte for extended frames (what CFP
//! uses), `t` + 3 hex id for standard ones. Some adapters append a 4-digit
//! timestamp, acknowledge a sent frame with `z`/`Z` + CR, a command with a
//! bare CR, and refuse one with BEL (0x07).

use csp_core::cfp::{CanFrame, CAN_DATA_LEN};

/// Longest line kept: `T` + 8 + 1 + 16 + a 4-digit timestamp.
pub const MAX_LINE: usize = 1 + 8 + 1 + 2 * CAN_DATA_LEN + 4;

/// Commands that bring an adapter onto the bus: close, set the bit rate
/// (`S0`..`S8`: 10 kbit/s..1 Mbit/s), open.
pub fn open_commands(bitrate_code: u8) -> Option<String> {
    (bitrate_code <= 8).then(|| format!("C\rS{bitrate_code}\rO\r"))
}

/// The slcan line for an extended frame.
pub fn encode(frame: &CanFrame) -> String {
    let mut line = format!("T{:08X}{}", frame.id, frame.dlc());
    for b in frame.data() {
        line.push_str(&format!("{b:02X}"));
    }
    line.push('\r');
    line
}

/// What one line from the adapter was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// An extended frame.
    Frame(CanFrame),
    /// A standard (11-bit) frame: CFP never uses them; counted, dropped.
    Standard,
    /// `z`/`Z`/empty line: the adapter acknowledged a frame or command.
    Ack,
    /// BEL: the adapter refused a command or frame.
    Refused,
}

/// Why a line was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlcanError {
    /// Longer than [`MAX_LINE`]; the rest up to the next CR is skipped.
    TooLong,
    /// Not hex where hex belongs, a DLC over 8, an id over 29 bits, or a
    /// length that does not match the DLC.
    Malformed,
    /// A line type this codec does not know (e.g. status replies).
    Unknown(u8),
}

/// Counters of a [`Decoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlcanStats {
    /// Extended frames decoded.
    pub frames: u64,
    /// Standard frames dropped.
    pub standard: u64,
    /// Acknowledgements.
    pub acks: u64,
    /// BEL refusals.
    pub refused: u64,
    /// Lines over [`MAX_LINE`].
    pub too_long: u64,
    /// Malformed or unknown lines.
    pub malformed: u64,
}

/// Byte-at-a-time line decoder with a bounded line buffer.
#[derive(Debug, Default)]
pub struct Decoder {
    line: Vec<u8>,
    overflow: bool,
    stats: SlcanStats,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder {
            line: Vec::with_capacity(MAX_LINE),
            ..Decoder::default()
        }
    }

    /// The counters.
    pub fn stats(&self) -> &SlcanStats {
        &self.stats
    }

    /// Forgets a half-received line (the stream was replaced).
    pub fn reset(&mut self) {
        self.line.clear();
        self.overflow = false;
    }

    /// Takes one byte; a completed line gives `Some`.
    pub fn push(&mut self, byte: u8) -> Option<Result<Line, SlcanError>> {
        match byte {
            0x07 => {
                self.reset();
                self.stats.refused += 1;
                Some(Ok(Line::Refused))
            }
            b'\r' | b'\n' => {
                if std::mem::take(&mut self.overflow) {
                    self.line.clear();
                    self.stats.too_long += 1;
                    return Some(Err(SlcanError::TooLong));
                }
                if byte == b'\n' && self.line.is_empty() {
                    // The LF of a CR LF pair.
                    return None;
                }
                let r = parse(&self.line);
                self.line.clear();
                match &r {
                    Ok(Line::Frame(_)) => self.stats.frames += 1,
                    Ok(Line::Standard) => self.stats.standard += 1,
                    Ok(Line::Ack) => self.stats.acks += 1,
                    Ok(Line::Refused) => self.stats.refused += 1,
                    Err(_) => self.stats.malformed += 1,
                }
                Some(r)
            }
            _ => {
                if self.line.len() >= MAX_LINE {
                    self.overflow = true;
                } else if !self.overflow {
                    self.line.push(byte);
                }
                None
            }
        }
    }
}

fn hex(digits: &[u8]) -> Result<u32, SlcanError> {
    if digits.is_empty() || digits.len() > 8 {
        return Err(SlcanError::Malformed);
    }
    let mut v = 0u32;
    for &d in digits {
        let n = (d as char).to_digit(16).ok_or(SlcanError::Malformed)?;
        v = v << 4 | n;
    }
    Ok(v)
}

/// One line, without its CR.
pub fn parse(line: &[u8]) -> Result<Line, SlcanError> {
    let Some((&kind, rest)) = line.split_first() else {
        return Ok(Line::Ack);
    };
    let id_len = match kind {
        b'T' => 8,
        b't' => 3,
        b'z' | b'Z' if rest.is_empty() => return Ok(Line::Ack),
        other => return Err(SlcanError::Unknown(other)),
    };
    let id = hex(rest.get(..id_len).ok_or(SlcanError::Malformed)?)?;
    let dlc = hex(rest.get(id_len..id_len + 1).ok_or(SlcanError::Malformed)?)? as usize;
    if dlc > CAN_DATA_LEN {
        return Err(SlcanError::Malformed);
    }
    let body = rest.get(id_len + 1..).unwrap_or_default();
    // Data, then optionally a 4-digit timestamp.
    if body.len() != 2 * dlc && body.len() != 2 * dlc + 4 {
        return Err(SlcanError::Malformed);
    }
    let mut data = [0u8; CAN_DATA_LEN];
    for (i, pair) in body.chunks(2).take(dlc).enumerate() {
        data[i] = hex(pair)? as u8;
    }
    if kind == b't' {
        return Ok(Line::Standard);
    }
    CanFrame::new(id, &data[..dlc])
        .map(Line::Frame)
        .map_err(|_| SlcanError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extended_frame_line() {
        let f = CanFrame::new(0x0347_C003, &[0x86, 0x92, 0xA1, 0x00]).unwrap();
        assert_eq!(encode(&f), "T0347C00348692A100\r");
        let mut d = Decoder::new();
        let got: Vec<_> = encode(&f).bytes().filter_map(|b| d.push(b)).collect();
        assert_eq!(got, vec![Ok(Line::Frame(f))]);
    }

    #[test]
    fn adapter_lines() {
        let mut d = Decoder::new();
        let mut lines = Vec::new();
        for b in b"\rz\r\x07t12320102\rT000000010\r1234\rT1FFFFFFF9\rT200000000" {
            lines.extend(d.push(*b));
        }
        assert_eq!(
            lines,
            vec![
                Ok(Line::Ack),
                Ok(Line::Ack),
                Ok(Line::Refused),
                Ok(Line::Standard),
                Ok(Line::Frame(CanFrame::new(1, &[]).unwrap())),
                Err(SlcanError::Unknown(b'1')),
                Err(SlcanError::Malformed),
            ]
        );
        // An id over 29 bits.
        assert_eq!(d.push(b'\r'), Some(Err(SlcanError::Malformed)));
        assert_eq!(d.stats().malformed, 3);
        // Timestamped frame.
        assert_eq!(
            parse(b"T000000011AB1234"),
            Ok(Line::Frame(CanFrame::new(1, &[0xAB]).unwrap()))
        );
        assert_eq!(open_commands(8).as_deref(), Some("C\rS8\rO\r"));
        assert_eq!(open_commands(9), None);
    }

    #[test]
    fn overlong_lines_are_skipped_whole() {
        let mut d = Decoder::new();
        let long = [b'T'; 100];
        assert!(long.iter().all(|&b| d.push(b).is_none()));
        assert_eq!(d.push(b'\r'), Some(Err(SlcanError::TooLong)));
        assert_eq!(d.stats().too_long, 1);
        let f = CanFrame::new(5, &[1, 2]).unwrap();
        let got: Vec<_> = encode(&f).bytes().filter_map(|b| d.push(b)).collect();
        assert_eq!(got, vec![Ok(Line::Frame(f))]);
    }

    proptest! {
        #[test]
        fn frames_round_trip(id in 0u32..=0x1FFF_FFFF, data in prop::collection::vec(any::<u8>(), 0..=8)) {
            let f = CanFrame::new(id, &data).unwrap();
            let mut d = Decoder::new();
            let got: Vec<_> = encode(&f).bytes().filter_map(|b| d.push(b)).collect();
            prop_assert_eq!(got, vec![Ok(Line::Frame(f))]);
        }

        #[test]
        fn any_bytes_are_total(bytes in prop::collection::vec(any::<u8>(), 0..500)) {
            let mut d = Decoder::new();
            for b in bytes {
                let _ = d.push(b);
                prop_assert!(d.line.len() <= MAX_LINE);
            }
        }
    }
}
