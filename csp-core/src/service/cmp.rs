//! CSP Management Protocol (CMP, port 0) message layouts.
//!
//! Every CMP message is `type:u8 | code:u8 | body`, where type is
//! [`CmpType::Request`] (0x00) or [`CmpType::Reply`] (0xFF) and the body is
//! one of libcsp's packed `struct csp_cmp_message` union members. Numbers in
//! the bodies are big-endian; text fields are fixed-size and NUL padded.
//! The same layouts serve the server (parse a request, emit the reply) and the
//! client (emit a request, parse the reply), so they live here once.

use super::ServiceError;

/// Size of the `type` and `code` bytes in front of every body.
pub const HEAD_LEN: usize = 2;
/// Ident `hostname` field (libcsp `CSP_HOSTNAME_LEN`).
pub const HOSTNAME_LEN: usize = 20;
/// Ident `model` field (libcsp `CSP_MODEL_LEN`).
pub const MODEL_LEN: usize = 30;
/// Ident `revision` field.
pub const REVISION_LEN: usize = 20;
/// Ident `date` field (C `__DATE__` is 11 characters plus NUL).
pub const DATE_LEN: usize = 12;
/// Ident `time` field (C `__TIME__` is 8 characters plus NUL).
pub const TIME_LEN: usize = 9;
/// A whole ident message: libcsp sends this size in both directions.
pub const IDENT_LEN: usize =
    HEAD_LEN + HOSTNAME_LEN + MODEL_LEN + REVISION_LEN + DATE_LEN + TIME_LEN;
/// Interface name field of route set and interface stats messages.
pub const IFACE_LEN: usize = 11;
/// A whole interface statistics message: name then ten u32 counters.
pub const IF_STATS_LEN: usize = HEAD_LEN + IFACE_LEN + 10 * 4;
/// A whole route set v1 message: u8 destination, u8 via, name.
pub const ROUTE_SET_V1_LEN: usize = HEAD_LEN + 2 + IFACE_LEN;
/// A whole route set v2 message: u16 destination, u16 via, u16 netmask, name.
pub const ROUTE_SET_V2_LEN: usize = HEAD_LEN + 6 + IFACE_LEN;
/// A whole clock message: `tv_sec:u32 | tv_nsec:u32`.
pub const CLOCK_LEN: usize = HEAD_LEN + 8;
/// Peek/poke message before its data: `addr:u32 | len:u8`.
pub const MEM_HEAD_LEN: usize = HEAD_LEN + 5;
/// Most bytes one peek or poke may move (libcsp `CSP_CMP_PEEK_MAX_LEN`).
pub const MEM_MAX_LEN: usize = 200;

/// The CMP `type` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CmpType {
    /// 0x00: a request; the only type a server answers.
    Request,
    /// 0xFF: a reply.
    Reply,
}

impl CmpType {
    /// The byte on the wire.
    pub const fn byte(self) -> u8 {
        match self {
            CmpType::Request => 0x00,
            CmpType::Reply => 0xFF,
        }
    }
}

/// The CMP `code` byte: which union member the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CmpCode {
    /// 1: identification (hostname, model, revision, build date and time).
    Ident = 1,
    /// 2: set a route, 8-bit addresses, host route (libcsp 1.x form).
    RouteSetV1 = 2,
    /// 3: interface statistics by interface name.
    IfStats = 3,
    /// 4: read memory.
    Peek = 4,
    /// 5: write memory.
    Poke = 5,
    /// 6: read (and, with a non-zero `tv_sec`, first set) the clock.
    Clock = 6,
    /// 7: set a route, 16-bit addresses and a netmask.
    RouteSetV2 = 7,
}

impl CmpCode {
    /// The code for a byte, if it is one libcsp defines.
    pub const fn from_byte(b: u8) -> Option<CmpCode> {
        Some(match b {
            1 => CmpCode::Ident,
            2 => CmpCode::RouteSetV1,
            3 => CmpCode::IfStats,
            4 => CmpCode::Peek,
            5 => CmpCode::Poke,
            6 => CmpCode::Clock,
            7 => CmpCode::RouteSetV2,
            _ => return None,
        })
    }

    /// The byte on the wire.
    pub const fn byte(self) -> u8 {
        self as u8
    }
}

/// Splits a CMP message into its raw `type`, raw `code` and body.
pub fn split(msg: &[u8]) -> Result<(u8, u8, &[u8]), ServiceError> {
    match msg {
        [ty, code, body @ ..] => Ok((*ty, *code, body)),
        _ => Err(ServiceError::Truncated {
            needed: HEAD_LEN,
            got: msg.len(),
        }),
    }
}

/// The body of a reply, after checking type, code and the exact length
/// (libcsp's client refuses a reply whose length differs from what it asked).
pub(crate) fn reply_body(msg: &[u8], code: CmpCode, len: usize) -> Result<&[u8], ServiceError> {
    let (ty, got_code, body) = split(msg)?;
    if ty != CmpType::Reply.byte() {
        return Err(ServiceError::WrongType {
            expected: CmpType::Reply.byte(),
            got: ty,
        });
    }
    if got_code != code.byte() {
        return Err(ServiceError::WrongCode {
            expected: code.byte(),
            got: got_code,
        });
    }
    if msg.len() != len {
        return Err(ServiceError::Length {
            expected: len,
            got: msg.len(),
        });
    }
    Ok(body)
}

/// Writes the `type | code` head, checking `out` holds `len` bytes first.
fn head(out: &mut [u8], ty: CmpType, code: CmpCode, len: usize) -> Result<(), ServiceError> {
    if out.len() < len {
        return Err(ServiceError::OutTooSmall {
            needed: len,
            got: out.len(),
        });
    }
    out[0] = ty.byte();
    out[1] = code.byte();
    Ok(())
}

/// The text of a NUL-padded field: up to the first NUL, or the whole field
/// if it has none (libcsp does not always leave one).
pub fn text(field: &[u8]) -> Result<&str, ServiceError> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..end]).map_err(|_| ServiceError::NotText)
}

/// Fills a NUL-padded field with as much of `s` as fits while keeping a final
/// NUL, cut at a character boundary so the far end can still read it as text
/// (libcsp's `strncpy` plus forced NUL, minus the broken characters).
fn put_text_truncated(field: &mut [u8], s: &str) {
    field.fill(0);
    let mut n = s.len().min(field.len().saturating_sub(1));
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    // `n` fits both (`get` keeps a panic path out of firmware images).
    if let (Some(to), Some(from)) = (field.get_mut(..n), s.as_bytes().get(..n)) {
        to.copy_from_slice(from);
    }
}

/// Fills the interface name field, refusing a name that does not fit with its
/// NUL: a truncated name would address a different interface.
fn put_iface(field: &mut [u8], name: &str) -> Result<(), ServiceError> {
    if name.len() >= IFACE_LEN {
        return Err(ServiceError::NameTooLong {
            max: IFACE_LEN - 1,
            got: name.len(),
        });
    }
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    Ok(())
}

/// The big-endian word at `at`; callers check the length first (`need`), and
/// a word past the end reads as 0 instead of panicking.
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..)
        .and_then(<[u8]>::first_chunk::<4>)
        .map_or(0, |w| u32::from_be_bytes(*w))
}

fn need(body: &[u8], len: usize) -> Result<(), ServiceError> {
    if body.len() < len {
        return Err(ServiceError::Truncated {
            needed: HEAD_LEN + len,
            got: HEAD_LEN + body.len(),
        });
    }
    Ok(())
}

/// Identification strings of a node (CMP code 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ident<'a> {
    /// Host name (at most 19 bytes go on the wire).
    pub hostname: &'a str,
    /// Model (at most 29 bytes).
    pub model: &'a str,
    /// Software revision (at most 19 bytes).
    pub revision: &'a str,
    /// Build date, C `__DATE__` style, e.g. `"Nov 23 2026"` (at most 11 bytes).
    pub date: &'a str,
    /// Build time, C `__TIME__` style, e.g. `"15:16:57"` (at most 8 bytes).
    pub time: &'a str,
}

impl<'a> Ident<'a> {
    /// Writes the whole [`IDENT_LEN`]-byte message; longer strings are cut to
    /// their field. A request carries the same message with empty strings.
    pub fn emit(&self, ty: CmpType, out: &mut [u8]) -> Result<usize, ServiceError> {
        head(out, ty, CmpCode::Ident, IDENT_LEN)?;
        let mut at = HEAD_LEN;
        for (s, len) in [
            (self.hostname, HOSTNAME_LEN),
            (self.model, MODEL_LEN),
            (self.revision, REVISION_LEN),
            (self.date, DATE_LEN),
            (self.time, TIME_LEN),
        ] {
            // `head` checked that `out` holds the whole message.
            if let Some(field) = out.get_mut(at..at + len) {
                put_text_truncated(field, s);
            }
            at += len;
        }
        Ok(IDENT_LEN)
    }

    /// Reads the strings from an ident body (the bytes after type and code).
    pub fn parse_body(body: &'a [u8]) -> Result<Ident<'a>, ServiceError> {
        need(body, IDENT_LEN - HEAD_LEN)?;
        let mut at = 0;
        let mut field = |len: usize| {
            let t = text(&body[at..at + len]);
            at += len;
            t
        };
        Ok(Ident {
            hostname: field(HOSTNAME_LEN)?,
            model: field(MODEL_LEN)?,
            revision: field(REVISION_LEN)?,
            date: field(DATE_LEN)?,
            time: field(TIME_LEN)?,
        })
    }
}

/// libcsp's `csp_timestamp_t`: seconds and nanoseconds, both u32 big-endian
/// on the wire (CMP code 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timestamp {
    /// Seconds (since the epoch the node uses; 0 in a request means "only read").
    pub tv_sec: u32,
    /// Nanoseconds.
    pub tv_nsec: u32,
}

impl Timestamp {
    /// Writes the whole [`CLOCK_LEN`]-byte clock message.
    pub fn emit(&self, ty: CmpType, out: &mut [u8]) -> Result<usize, ServiceError> {
        head(out, ty, CmpCode::Clock, CLOCK_LEN)?;
        out[2..6].copy_from_slice(&self.tv_sec.to_be_bytes());
        out[6..10].copy_from_slice(&self.tv_nsec.to_be_bytes());
        Ok(CLOCK_LEN)
    }

    /// Reads a clock body.
    pub fn parse_body(body: &[u8]) -> Result<Timestamp, ServiceError> {
        need(body, CLOCK_LEN - HEAD_LEN)?;
        Ok(Timestamp {
            tv_sec: be32(body, 0),
            tv_nsec: be32(body, 4),
        })
    }
}

/// Interface counters as libcsp keeps them per interface (CMP code 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IfStats {
    /// Packets sent.
    pub tx: u32,
    /// Packets received.
    pub rx: u32,
    /// Send errors.
    pub tx_error: u32,
    /// Receive errors.
    pub rx_error: u32,
    /// Packets dropped.
    pub drop: u32,
    /// Authentication (HMAC) errors.
    pub autherr: u32,
    /// Framing errors.
    pub frame: u32,
    /// Bytes sent.
    pub txbytes: u32,
    /// Bytes received.
    pub rxbytes: u32,
    /// Interrupts (driver defined).
    pub irq: u32,
}

impl IfStats {
    fn fields(&self) -> [u32; 10] {
        [
            self.tx,
            self.rx,
            self.tx_error,
            self.rx_error,
            self.drop,
            self.autherr,
            self.frame,
            self.txbytes,
            self.rxbytes,
            self.irq,
        ]
    }

    /// Writes the whole [`IF_STATS_LEN`]-byte message for interface `name`
    /// (a request carries zero counters).
    pub fn emit(&self, ty: CmpType, name: &str, out: &mut [u8]) -> Result<usize, ServiceError> {
        head(out, ty, CmpCode::IfStats, IF_STATS_LEN)?;
        put_iface(&mut out[HEAD_LEN..HEAD_LEN + IFACE_LEN], name)?;
        self.emit_counters(out);
        Ok(IF_STATS_LEN)
    }

    /// Writes only the counters of an [`IF_STATS_LEN`]-byte message.
    pub(crate) fn emit_counters(&self, msg: &mut [u8]) {
        let mut at = HEAD_LEN + IFACE_LEN;
        for v in self.fields() {
            msg[at..at + 4].copy_from_slice(&v.to_be_bytes());
            at += 4;
        }
    }

    /// Reads the interface name and the counters of an interface stats body.
    pub fn parse_body(body: &[u8]) -> Result<(&str, IfStats), ServiceError> {
        need(body, IF_STATS_LEN - HEAD_LEN)?;
        let name = text(&body[..IFACE_LEN])?;
        let c = |i: usize| be32(body, IFACE_LEN + 4 * i);
        let stats = IfStats {
            tx: c(0),
            rx: c(1),
            tx_error: c(2),
            rx_error: c(3),
            drop: c(4),
            autherr: c(5),
            frame: c(6),
            txbytes: c(7),
            rxbytes: c(8),
            irq: c(9),
        };
        Ok((name, stats))
    }

    /// Reads only the interface name of a body (all a request needs).
    pub fn parse_name(body: &[u8]) -> Result<&str, ServiceError> {
        need(body, IFACE_LEN)?;
        text(&body[..IFACE_LEN])
    }
}

/// A route set request (CMP codes 2 and 7): send packets for `dest` (under
/// `netmask`) out of interface `iface`, via the node `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RouteSet<'a> {
    /// Destination address (8 bits in the v1 form).
    pub dest: u16,
    /// Next hop address (8 bits in the v1 form; libcsp's "no via" value is
    /// passed through unchanged).
    pub via: u16,
    /// Netmask bits: `None` for the v1 form, which always sets a host route
    /// (all address bits).
    pub netmask: Option<u16>,
    /// Name of the outgoing interface.
    pub iface: &'a str,
}

impl<'a> RouteSet<'a> {
    /// Code 2 without a netmask, 7 with one.
    pub const fn code(&self) -> CmpCode {
        match self.netmask {
            None => CmpCode::RouteSetV1,
            Some(_) => CmpCode::RouteSetV2,
        }
    }

    /// Length of the message in the form [`code`](Self::code) picks.
    pub const fn message_len(&self) -> usize {
        match self.netmask {
            None => ROUTE_SET_V1_LEN,
            Some(_) => ROUTE_SET_V2_LEN,
        }
    }

    /// Writes the message: v1 form if there is no netmask (then `dest` and
    /// `via` must fit 8 bits), v2 form otherwise.
    pub fn emit(&self, ty: CmpType, out: &mut [u8]) -> Result<usize, ServiceError> {
        let len = self.message_len();
        head(out, ty, self.code(), len)?;
        let name_at = match self.netmask {
            None => {
                let dest = u8::try_from(self.dest).map_err(|_| ServiceError::ValueTooLarge)?;
                let via = u8::try_from(self.via).map_err(|_| ServiceError::ValueTooLarge)?;
                out[2] = dest;
                out[3] = via;
                4
            }
            Some(mask) => {
                out[2..4].copy_from_slice(&self.dest.to_be_bytes());
                out[4..6].copy_from_slice(&self.via.to_be_bytes());
                out[6..8].copy_from_slice(&mask.to_be_bytes());
                8
            }
        };
        put_iface(&mut out[name_at..name_at + IFACE_LEN], self.iface)?;
        Ok(len)
    }

    /// Reads a v1 body (`dest:u8 | via:u8 | iface[11]`).
    pub fn parse_v1(body: &'a [u8]) -> Result<RouteSet<'a>, ServiceError> {
        need(body, ROUTE_SET_V1_LEN - HEAD_LEN)?;
        Ok(RouteSet {
            dest: body[0].into(),
            via: body[1].into(),
            netmask: None,
            iface: text(&body[2..2 + IFACE_LEN])?,
        })
    }

    /// Reads a v2 body (`dest:u16 | via:u16 | netmask:u16 | iface[11]`).
    pub fn parse_v2(body: &'a [u8]) -> Result<RouteSet<'a>, ServiceError> {
        need(body, ROUTE_SET_V2_LEN - HEAD_LEN)?;
        let u16_at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
        Ok(RouteSet {
            dest: u16_at(0),
            via: u16_at(2),
            netmask: Some(u16_at(4)),
            iface: text(&body[6..6 + IFACE_LEN])?,
        })
    }
}

/// The fixed part of a peek or poke body: `addr:u32 | len:u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MemHead {
    /// Memory address on the remote node.
    pub addr: u32,
    /// Number of bytes to read or write (at most [`MEM_MAX_LEN`]).
    pub len: u8,
}

impl MemHead {
    /// Reads the address and length; a length above [`MEM_MAX_LEN`] is refused
    /// as libcsp refuses it.
    pub fn parse_body(body: &[u8]) -> Result<MemHead, ServiceError> {
        need(body, MEM_HEAD_LEN - HEAD_LEN)?;
        let head = MemHead {
            addr: be32(body, 0),
            len: body[4],
        };
        if usize::from(head.len) > MEM_MAX_LEN {
            return Err(ServiceError::MemTooLong(head.len));
        }
        Ok(head)
    }

    /// Bytes of the whole message carrying `len` data bytes.
    pub const fn message_len(&self) -> usize {
        MEM_HEAD_LEN + self.len as usize
    }

    /// Writes `type | code | addr | len` and `data` (`data.len()` is the length;
    /// a peek request carries `len` zero bytes where the reply puts the data).
    pub fn emit(
        ty: CmpType,
        code: CmpCode,
        addr: u32,
        data: MemData<'_>,
        out: &mut [u8],
    ) -> Result<usize, ServiceError> {
        let n = match data {
            MemData::Bytes(d) => d.len(),
            MemData::Zeros(n) => n.into(),
        };
        if n > MEM_MAX_LEN {
            return Err(ServiceError::MemTooLong(n.min(255) as u8));
        }
        let len = MEM_HEAD_LEN + n;
        head(out, ty, code, len)?;
        out[2..6].copy_from_slice(&addr.to_be_bytes());
        out[6] = n as u8;
        match data {
            MemData::Bytes(d) => out[MEM_HEAD_LEN..len].copy_from_slice(d),
            MemData::Zeros(_) => out[MEM_HEAD_LEN..len].fill(0),
        }
        Ok(len)
    }
}

/// What follows a [`MemHead`] when emitting a peek or poke message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MemData<'a> {
    /// These bytes (a poke, or a peek reply).
    Bytes(&'a [u8]),
    /// This many zero bytes (a peek request: room for the reply's data).
    Zeros(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_libcsp_packed_structs() {
        assert_eq!(IDENT_LEN, 93);
        assert_eq!(IF_STATS_LEN, 53);
        assert_eq!(ROUTE_SET_V1_LEN, 15);
        assert_eq!(ROUTE_SET_V2_LEN, 19);
        assert_eq!(CLOCK_LEN, 10);
        assert_eq!(MEM_HEAD_LEN, 7);
    }

    #[test]
    fn code_bytes_round_trip() {
        for b in 0..=255u8 {
            if let Some(c) = CmpCode::from_byte(b) {
                assert_eq!(c.byte(), b);
            } else {
                assert!(b == 0 || b > 7);
            }
        }
    }

    #[test]
    fn ident_round_trip_and_truncation() {
        let id = Ident {
            hostname: "a-very-long-hostname-that-does-not-fit",
            model: "m",
            revision: "r1",
            date: "Nov 23 2026",
            time: "15:16:57",
        };
        let mut out = [0xAAu8; IDENT_LEN];
        assert_eq!(id.emit(CmpType::Reply, &mut out), Ok(IDENT_LEN));
        assert_eq!(&out[..2], &[0xFF, 0x01]);
        assert_eq!(out[2 + HOSTNAME_LEN - 1], 0, "field keeps its NUL");
        let back = Ident::parse_body(&out[2..]).unwrap();
        assert_eq!(back.hostname, &id.hostname[..HOSTNAME_LEN - 1]);
        assert_eq!((back.model, back.revision), ("m", "r1"));
        assert_eq!((back.date, back.time), (id.date, id.time));
    }

    #[test]
    fn ident_truncation_keeps_utf8_whole() {
        // 9 two-byte characters = 18 bytes, then one more: 20 bytes do not fit 19.
        let host = "éééééééééé";
        let id = Ident {
            hostname: host,
            ..Ident::default()
        };
        let mut out = [0u8; IDENT_LEN];
        id.emit(CmpType::Reply, &mut out).unwrap();
        let back = Ident::parse_body(&out[2..]).unwrap();
        assert_eq!(back.hostname, "ééééééééé");
    }

    #[test]
    fn text_without_nul_takes_whole_field_and_rejects_bad_utf8() {
        assert_eq!(text(b"abc"), Ok("abc"));
        assert_eq!(text(b"ab\0c"), Ok("ab"));
        assert_eq!(text(&[0xFF, 0]), Err(ServiceError::NotText));
    }

    #[test]
    fn if_stats_round_trip() {
        let s = IfStats {
            tx: 1,
            rx: 2,
            tx_error: 3,
            rx_error: 4,
            drop: 5,
            autherr: 6,
            frame: 7,
            txbytes: 0x0102_0304,
            rxbytes: 9,
            irq: 10,
        };
        let mut out = [0u8; IF_STATS_LEN];
        assert_eq!(s.emit(CmpType::Reply, "KISS", &mut out), Ok(IF_STATS_LEN));
        assert_eq!(&out[2..7], b"KISS\0");
        assert_eq!(&out[13 + 28..13 + 32], &[1, 2, 3, 4]);
        assert_eq!(IfStats::parse_body(&out[2..]), Ok(("KISS", s)));
        assert_eq!(
            s.emit(CmpType::Reply, "ELEVENCHARS", &mut out),
            Err(ServiceError::NameTooLong { max: 10, got: 11 })
        );
    }

    #[test]
    fn route_set_both_forms() {
        let v2 = RouteSet {
            dest: 0x1234,
            via: 0x0506,
            netmask: Some(8),
            iface: "ZMQHUB",
        };
        let mut out = [0u8; 32];
        assert_eq!(v2.emit(CmpType::Request, &mut out), Ok(ROUTE_SET_V2_LEN));
        assert_eq!(&out[..8], &[0, 7, 0x12, 0x34, 0x05, 0x06, 0, 8]);
        assert_eq!(RouteSet::parse_v2(&out[2..ROUTE_SET_V2_LEN]), Ok(v2));

        let v1 = RouteSet {
            dest: 10,
            via: 3,
            netmask: None,
            iface: "CAN",
        };
        assert_eq!(v1.emit(CmpType::Request, &mut out), Ok(ROUTE_SET_V1_LEN));
        assert_eq!(&out[..4], &[0, 2, 10, 3]);
        assert_eq!(RouteSet::parse_v1(&out[2..ROUTE_SET_V1_LEN]), Ok(v1));

        let too_big = RouteSet { dest: 256, ..v1 };
        assert_eq!(
            too_big.emit(CmpType::Request, &mut out),
            Err(ServiceError::ValueTooLarge)
        );
    }

    #[test]
    fn clock_round_trip_is_big_endian() {
        let t = Timestamp {
            tv_sec: 0x0102_0304,
            tv_nsec: 0x0506_0708,
        };
        let mut out = [0u8; CLOCK_LEN];
        t.emit(CmpType::Reply, &mut out).unwrap();
        assert_eq!(out, [0xFF, 6, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Timestamp::parse_body(&out[2..]), Ok(t));
    }

    #[test]
    fn mem_head_limits() {
        let mut body = [0u8, 0, 0x10, 0, 200];
        assert_eq!(
            MemHead::parse_body(&body),
            Ok(MemHead {
                addr: 0x1000,
                len: 200
            })
        );
        body[4] = 201;
        assert_eq!(
            MemHead::parse_body(&body),
            Err(ServiceError::MemTooLong(201))
        );
        assert!(matches!(
            MemHead::parse_body(&body[..4]),
            Err(ServiceError::Truncated { needed: 7, got: 6 })
        ));
        let mut out = [0u8; 300];
        let big = [0u8; 201];
        assert!(MemHead::emit(
            CmpType::Request,
            CmpCode::Poke,
            0,
            MemData::Bytes(&big),
            &mut out
        )
        .is_err());
    }

    #[test]
    fn emit_refuses_small_out() {
        let mut out = [0u8; IDENT_LEN - 1];
        assert_eq!(
            Ident::default().emit(CmpType::Request, &mut out),
            Err(ServiceError::OutTooSmall {
                needed: IDENT_LEN,
                got: IDENT_LEN - 1
            })
        );
    }
}
