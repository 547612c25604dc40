//! The protocol between `csp-muxd` and the processes that share its CSP node.
//!
//! One home for the IPC wire format: the daemon (host-muxd) and the client
//! library (host-lib) both encode and decode through this crate, so the two
//! ends can not drift apart. The format is described for people in
//! `docs/ipc.md`; this code is the reference.
//!
//! A frame is `len:u16 BE | type:u8 | body`, where `len` counts the type byte
//! and the body. Decoding is total: any byte string yields messages, "need
//! more bytes", or an [`IpcError`]; nothing a client sends is trusted.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

#[cfg(feature = "std")]
pub mod record;

/// Protocol version spoken by this crate; HELLO carries it and the daemon
/// refuses any other. 2: CONTROL_REPLY pages with a `more` byte and
/// records, and the CAPTURE messages (version 1 had one text reply).
pub const VERSION: u16 = 2;

/// Bytes in front of every frame's type byte (the length field).
pub const LEN_PREFIX: usize = 2;

/// Largest `len` a frame may declare (type byte + body). Big enough for any
/// CSP packet the daemon carries (6-byte header + up to 4 KiB of data and
/// trailers, plus slack); a larger length is a protocol error, so a client
/// can never make the daemon buffer more than this per connection.
pub const MAX_FRAME_LEN: usize = 4200;

/// Longest text (client name, error message, control reply line set) carried.
pub const MAX_TEXT_LEN: usize = 4096;

/// Longest client name the daemon keeps from HELLO. A longer name is cut at
/// a character boundary: names only label logs and status, and a daemon that
/// stored whatever a client sent would let one client grow every status reply.
pub const MAX_NAME_LEN: usize = 64;

/// Port value in REGISTER meaning "every port" (`CSP_ANY`, libcsp's 255).
pub const PORT_ANY: u8 = 255;
/// Port value in REGISTER meaning "any free ephemeral port, daemon's choice".
pub const PORT_EPHEMERAL: u8 = 254;
/// Address value in REGISTER meaning "the daemon's own address".
pub const ADDR_DAEMON: u16 = 0;

mod code {
    pub const HELLO: u8 = 0x01;
    pub const REGISTER: u8 = 0x02;
    pub const UNREGISTER: u8 = 0x03;
    pub const DATA: u8 = 0x04;
    pub const CONTROL: u8 = 0x05;
    pub const CAPTURE_START: u8 = 0x06;
    pub const CAPTURE_STOP: u8 = 0x07;
    pub const HELLO_ACK: u8 = 0x81;
    pub const REGISTER_ACK: u8 = 0x82;
    pub const UNREGISTER_ACK: u8 = 0x83;
    pub const CONTROL_REPLY: u8 = 0x85;
    pub const BYE: u8 = 0x86;
    pub const CAPTURE_LINK: u8 = 0x87;
    pub const CAPTURE_STARTED: u8 = 0x88;
    pub const CAPTURE_FRAME: u8 = 0x89;
    pub const CAPTURE_END: u8 = 0x8A;
    pub const ERROR: u8 = 0xEE;
}

/// Result of REGISTER / UNREGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// Another client holds that (address, port).
    PortInUse = 1,
    /// Port or address out of range, or not allowed for clients.
    Invalid = 2,
    /// UNREGISTER of something this client does not hold.
    NotRegistered = 3,
    /// The daemon's port table is full.
    TableFull = 4,
    /// No free port left in the ephemeral range.
    NoEphemeralPort = 5,
    /// The address is not one of the daemon's.
    NotLocalAddr = 6,
    /// This client holds as many bindings of that kind as the daemon's
    /// per-client quota allows (`ipc.max_ports_per_client`,
    /// `ipc.max_ephemeral_per_client`).
    QuotaExceeded = 7,
}

impl Status {
    fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::PortInUse,
            2 => Status::Invalid,
            3 => Status::NotRegistered,
            4 => Status::TableFull,
            5 => Status::NoEphemeralPort,
            6 => Status::NotLocalAddr,
            7 => Status::QuotaExceeded,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::PortInUse => "port in use by another application",
            Status::Invalid => "invalid address or port",
            Status::NotRegistered => "not registered",
            Status::TableFull => "port table full",
            Status::NoEphemeralPort => "no free ephemeral port",
            Status::QuotaExceeded => "per-application binding quota reached",
            Status::NotLocalAddr => "address is not the daemon's",
        })
    }
}

/// Control requests a client may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Control {
    /// Node address, links, uptime, registered applications.
    Status = 1,
    /// Counters per link, per client, per route.
    Stats = 2,
    /// The routing table.
    Routes = 3,
}

impl Control {
    fn from_u8(v: u8) -> Option<Control> {
        Some(match v {
            1 => Control::Status,
            2 => Control::Stats,
            3 => Control::Routes,
            _ => return None,
        })
    }
}

/// Why the daemon closes a connection or refuses a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The frame's type byte is unknown.
    UnknownType = 1,
    /// The frame's length is zero, too large, or wrong for its type.
    BadLength = 2,
    /// HELLO with a protocol version the daemon does not speak.
    BadVersion = 3,
    /// A message other than HELLO before HELLO.
    NoHello = 4,
    /// DATA whose source (address, port) the client has not registered.
    Spoofed = 5,
    /// DATA that is not a valid CSP packet.
    BadPacket = 6,
    /// The body does not parse (bad text, bad field value).
    BadBody = 7,
    /// The daemon does not trust this client for the request (capture).
    NotAllowed = 8,
    /// The request is well formed but can not be served now (no such
    /// link, too many captures, one running already on this connection).
    Unavailable = 9,
    /// Anything else.
    Other = 255,
}

impl ErrorCode {
    fn from_u8(v: u8) -> Option<ErrorCode> {
        Some(match v {
            1 => ErrorCode::UnknownType,
            2 => ErrorCode::BadLength,
            3 => ErrorCode::BadVersion,
            4 => ErrorCode::NoHello,
            5 => ErrorCode::Spoofed,
            6 => ErrorCode::BadPacket,
            7 => ErrorCode::BadBody,
            8 => ErrorCode::NotAllowed,
            9 => ErrorCode::Unavailable,
            255 => ErrorCode::Other,
            _ => return None,
        })
    }
}

/// Why a daemon says goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ByeReason {
    /// The daemon is shutting down (SIGINT/SIGTERM).
    Shutdown = 1,
    /// The client fell too far behind or broke the protocol.
    Dropped = 2,
}

/// Which way a captured frame went, seen from the daemon; the values are
/// pcapng's `epb_flags` direction bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// Arrived at the daemon (from a link, or DATA from an application).
    Inbound = 1,
    /// Sent by the daemon (on a link, or DATA to an application).
    Outbound = 2,
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CaptureEnd {
    /// The client sent CAPTURE_STOP.
    Stopped = 1,
    /// The frame count asked for in CAPTURE_START was reached.
    CountReached = 2,
    /// The daemon is shutting down (BYE follows).
    Shutdown = 3,
}

/// Largest frame a CAPTURE_FRAME carries: a maximum IPC frame less the
/// type byte and the fixed fields. Longer frames (a UDP datagram can be
/// 64 KiB) are cut to this, their length on the link kept in `orig_len`.
pub const MAX_CAPTURE_BYTES: usize = MAX_FRAME_LEN - 1 - CAPTURE_FRAME_FIXED;

/// Fixed part of a CAPTURE_FRAME body: link, direction, time, length.
const CAPTURE_FRAME_FIXED: usize = 1 + 1 + 8 + 4;

/// One IPC message. Byte fields borrow from the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Client -> daemon, first message: protocol version and a name for logs.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
        /// Free-form client name (UTF-8), shown in `csp status`.
        name: &'a str,
    },
    /// Daemon -> client: the version accepted and the node it joined.
    HelloAck {
        /// Protocol version the daemon speaks.
        version: u16,
        /// The daemon's CSP address.
        node_addr: u16,
        /// Largest CSP data length (after the header) the daemon carries.
        mtu: u16,
    },
    /// Client -> daemon: bind a CSP (address, port).
    Register {
        /// Local CSP address ([`ADDR_DAEMON`] = the daemon's).
        addr: u16,
        /// 0..=63, [`PORT_ANY`] or [`PORT_EPHEMERAL`].
        port: u8,
    },
    /// Daemon -> client: the outcome of REGISTER with what was assigned.
    RegisterAck {
        /// Outcome.
        status: Status,
        /// Address bound.
        addr: u16,
        /// Port bound (the chosen one for an ephemeral request).
        port: u8,
    },
    /// Client -> daemon: release a binding.
    Unregister {
        /// Address.
        addr: u16,
        /// Port.
        port: u8,
    },
    /// Daemon -> client: outcome of UNREGISTER.
    UnregisterAck {
        /// Outcome.
        status: Status,
        /// Address.
        addr: u16,
        /// Port.
        port: u8,
    },
    /// Either way: one CSP packet, a v2 header (6 bytes) then data and
    /// trailers. IPC always uses the v2 header whatever the links speak.
    Data {
        /// Header and data.
        frame: &'a [u8],
    },
    /// Client -> daemon: a control request.
    Control(Control),
    /// Daemon -> client: one page of the answer to a control request. A
    /// reply is one or more pages; the last has `more` false.
    ControlReply {
        /// The request answered.
        request: Control,
        /// More pages of this reply follow.
        more: bool,
        /// UTF-8 text: whole records ([`record`]), one per line.
        text: &'a str,
    },
    /// Daemon -> client: the connection ends now.
    Bye(ByeReason),
    /// Client -> daemon: start capturing frames on this connection (only
    /// for clients the daemon trusts for it; else `ERROR NotAllowed`).
    CaptureStart {
        /// Stop after this many frames; 0: until CAPTURE_STOP.
        count: u32,
        /// Capture only this link (its name, or `local` for the
        /// applications' traffic); empty: every link.
        link: &'a str,
    },
    /// Client -> daemon: stop the capture; CAPTURE_END follows the frames
    /// still queued.
    CaptureStop,
    /// Daemon -> client: a link the capture covers, before CAPTURE_STARTED.
    CaptureLink {
        /// Id that CAPTURE_FRAME uses for it.
        id: u8,
        /// CSP header version of the frames on it (1 or 2).
        version: u8,
        /// The link's name (`udp`, a `[[kiss]]`/`[[zmq]]`/`[[can]]` name,
        /// or `local`).
        name: &'a str,
    },
    /// Daemon -> client: the capture runs; frames follow.
    CaptureStarted {
        /// Frames the daemon queues for this capture before it drops.
        queue_len: u32,
    },
    /// Daemon -> client: one frame exactly as it went over a link.
    CaptureFrame {
        /// The link's id from CAPTURE_LINK.
        link: u8,
        /// Which way it went.
        direction: Direction,
        /// When the daemon saw it: nanoseconds since the Unix epoch.
        time_ns: u64,
        /// The frame's length on the link (more than `frame.len()` when
        /// it was cut to [`MAX_CAPTURE_BYTES`]).
        orig_len: u32,
        /// Header, data and trailers (cut at [`MAX_CAPTURE_BYTES`]).
        frame: &'a [u8],
    },
    /// Daemon -> client: the capture is over; nothing of it follows.
    CaptureEnd {
        /// Why.
        reason: CaptureEnd,
        /// Frames queued for this client.
        captured: u64,
        /// Frames dropped because the capture's queue was full.
        dropped: u64,
    },
    /// Daemon -> client: a protocol error (the connection is closed after
    /// errors on framing; other errors are reported and serving continues).
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// A message for a person.
        message: &'a str,
    },
}

/// A frame that can not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcError {
    /// Declared length zero or above [`MAX_FRAME_LEN`]: framing is lost.
    BadLength(usize),
    /// Unknown type byte.
    UnknownType(u8),
    /// A body of the wrong size or content for its type.
    BadBody(u8),
    /// Output buffer too small for the encoded frame.
    BufferTooSmall,
    /// A field too long to encode (text above [`MAX_TEXT_LEN`], frame above the maximum).
    TooLong,
}

impl IpcError {
    /// The code the daemon answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            IpcError::BadLength(_) | IpcError::TooLong => ErrorCode::BadLength,
            IpcError::UnknownType(_) => ErrorCode::UnknownType,
            IpcError::BadBody(_) | IpcError::BufferTooSmall => ErrorCode::BadBody,
        }
    }

    /// True if the byte stream can no longer be trusted to be framed, so the
    /// connection must be closed; otherwise the frame is skipped.
    pub fn is_fatal(&self) -> bool {
        // Every decode error is fatal: a peer that sends an unknown type or a
        // malformed body is not speaking this protocol, and keeping it around
        // only hides bugs.
        true
    }
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpcError::BadLength(n) => {
                write!(f, "frame length {n} outside 1..={MAX_FRAME_LEN}")
            }
            IpcError::UnknownType(t) => write!(f, "unknown frame type {t:#04x}"),
            IpcError::BadBody(t) => write!(f, "malformed body for frame type {t:#04x}"),
            IpcError::BufferTooSmall => f.write_str("output buffer too small"),
            IpcError::TooLong => f.write_str("field too long to encode"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for IpcError {}

/// Decode the first frame in `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((message,
/// consumed)))` for a complete frame. A declared length out of range is
/// reported as soon as the two length bytes are in, so a hostile length never
/// makes the reader wait for (or buffer) megabytes.
pub fn decode(buf: &[u8]) -> Result<Option<(Message<'_>, usize)>, IpcError> {
    let Some(len_bytes) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(IpcError::BadLength(len));
    }
    let Some(frame) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    let (ty, body) = (frame[0], &frame[1..]);
    let msg = decode_body(ty, body)?;
    Ok(Some((msg, LEN_PREFIX + len)))
}

fn decode_body(ty: u8, body: &[u8]) -> Result<Message<'_>, IpcError> {
    let bad = IpcError::BadBody(ty);
    let u16_at = |i: usize| -> Result<u16, IpcError> {
        body.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(bad)
    };
    let exact = |n: usize| if body.len() == n { Ok(()) } else { Err(bad) };
    let text = |b: &'_ [u8]| -> Result<(), IpcError> {
        if b.len() > MAX_TEXT_LEN {
            return Err(bad);
        }
        Ok(())
    };
    Ok(match ty {
        code::HELLO => {
            let version = u16_at(0)?;
            let name = &body[2..];
            text(name)?;
            Message::Hello {
                version,
                name: core::str::from_utf8(name).map_err(|_| bad)?,
            }
        }
        code::HELLO_ACK => {
            exact(6)?;
            Message::HelloAck {
                version: u16_at(0)?,
                node_addr: u16_at(2)?,
                mtu: u16_at(4)?,
            }
        }
        code::REGISTER | code::UNREGISTER => {
            exact(3)?;
            let (addr, port) = (u16_at(0)?, body[2]);
            if ty == code::REGISTER {
                Message::Register { addr, port }
            } else {
                Message::Unregister { addr, port }
            }
        }
        code::REGISTER_ACK | code::UNREGISTER_ACK => {
            exact(4)?;
            let status = Status::from_u8(body[0]).ok_or(bad)?;
            let (addr, port) = (u16_at(1)?, body[3]);
            if ty == code::REGISTER_ACK {
                Message::RegisterAck { status, addr, port }
            } else {
                Message::UnregisterAck { status, addr, port }
            }
        }
        code::DATA => Message::Data { frame: body },
        code::CONTROL => {
            exact(1)?;
            Message::Control(Control::from_u8(body[0]).ok_or(bad)?)
        }
        code::CONTROL_REPLY => {
            let request = body.first().and_then(|&b| Control::from_u8(b)).ok_or(bad)?;
            let more = match body.get(1) {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(bad),
            };
            text(&body[2..])?;
            Message::ControlReply {
                request,
                more,
                text: core::str::from_utf8(&body[2..]).map_err(|_| bad)?,
            }
        }
        code::BYE => {
            exact(1)?;
            Message::Bye(match body[0] {
                1 => ByeReason::Shutdown,
                2 => ByeReason::Dropped,
                _ => return Err(bad),
            })
        }
        code::CAPTURE_START => {
            let count = body
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(bad)?;
            let link = &body[4..];
            text(link)?;
            Message::CaptureStart {
                count,
                link: core::str::from_utf8(link).map_err(|_| bad)?,
            }
        }
        code::CAPTURE_STOP => {
            exact(0)?;
            Message::CaptureStop
        }
        code::CAPTURE_LINK => {
            let (id, version) = match body {
                [id, v @ (1 | 2), ..] => (*id, *v),
                _ => return Err(bad),
            };
            text(&body[2..])?;
            Message::CaptureLink {
                id,
                version,
                name: core::str::from_utf8(&body[2..]).map_err(|_| bad)?,
            }
        }
        code::CAPTURE_STARTED => {
            exact(4)?;
            Message::CaptureStarted {
                queue_len: u32_at(body, 0).ok_or(bad)?,
            }
        }
        code::CAPTURE_FRAME => {
            if body.len() < CAPTURE_FRAME_FIXED {
                return Err(bad);
            }
            let direction = match body[1] {
                1 => Direction::Inbound,
                2 => Direction::Outbound,
                _ => return Err(bad),
            };
            let time_ns = u64_at(body, 2).ok_or(bad)?;
            let orig_len = u32_at(body, 10).ok_or(bad)?;
            let frame = &body[CAPTURE_FRAME_FIXED..];
            // A cut frame is shorter than it was, never longer.
            if frame.len() as u64 > u64::from(orig_len) {
                return Err(bad);
            }
            Message::CaptureFrame {
                link: body[0],
                direction,
                time_ns,
                orig_len,
                frame,
            }
        }
        code::CAPTURE_END => {
            exact(17)?;
            let reason = match body[0] {
                1 => CaptureEnd::Stopped,
                2 => CaptureEnd::CountReached,
                3 => CaptureEnd::Shutdown,
                _ => return Err(bad),
            };
            Message::CaptureEnd {
                reason,
                captured: u64_at(body, 1).ok_or(bad)?,
                dropped: u64_at(body, 9).ok_or(bad)?,
            }
        }
        code::ERROR => {
            let code = body
                .first()
                .and_then(|&b| ErrorCode::from_u8(b))
                .ok_or(bad)?;
            text(&body[1..])?;
            Message::Error {
                code,
                message: core::str::from_utf8(&body[1..]).map_err(|_| bad)?,
            }
        }
        other => return Err(IpcError::UnknownType(other)),
    })
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    let b = b.get(i..i + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    let b = b.get(i..i + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

/// Encode `msg` into `out`, returning the number of bytes written.
pub fn encode(msg: &Message<'_>, out: &mut [u8]) -> Result<usize, IpcError> {
    let mut w = Writer {
        out,
        pos: LEN_PREFIX,
    };
    match *msg {
        Message::Hello { version, name } => {
            w.u8(code::HELLO)?;
            w.u16(version)?;
            w.text(name)?;
        }
        Message::HelloAck {
            version,
            node_addr,
            mtu,
        } => {
            w.u8(code::HELLO_ACK)?;
            w.u16(version)?;
            w.u16(node_addr)?;
            w.u16(mtu)?;
        }
        Message::Register { addr, port } => {
            w.u8(code::REGISTER)?;
            w.u16(addr)?;
            w.u8(port)?;
        }
        Message::Unregister { addr, port } => {
            w.u8(code::UNREGISTER)?;
            w.u16(addr)?;
            w.u8(port)?;
        }
        Message::RegisterAck { status, addr, port } => {
            w.u8(code::REGISTER_ACK)?;
            w.u8(status as u8)?;
            w.u16(addr)?;
            w.u8(port)?;
        }
        Message::UnregisterAck { status, addr, port } => {
            w.u8(code::UNREGISTER_ACK)?;
            w.u8(status as u8)?;
            w.u16(addr)?;
            w.u8(port)?;
        }
        Message::Data { frame } => {
            w.u8(code::DATA)?;
            w.bytes(frame)?;
        }
        Message::Control(c) => {
            w.u8(code::CONTROL)?;
            w.u8(c as u8)?;
        }
        Message::ControlReply {
            request,
            more,
            text,
        } => {
            w.u8(code::CONTROL_REPLY)?;
            w.u8(request as u8)?;
            w.u8(u8::from(more))?;
            w.text(text)?;
        }
        Message::Bye(reason) => {
            w.u8(code::BYE)?;
            w.u8(reason as u8)?;
        }
        Message::CaptureStart { count, link } => {
            w.u8(code::CAPTURE_START)?;
            w.bytes(&count.to_be_bytes())?;
            w.text(link)?;
        }
        Message::CaptureStop => w.u8(code::CAPTURE_STOP)?,
        Message::CaptureLink { id, version, name } => {
            w.u8(code::CAPTURE_LINK)?;
            w.u8(id)?;
            w.u8(version)?;
            w.text(name)?;
        }
        Message::CaptureStarted { queue_len } => {
            w.u8(code::CAPTURE_STARTED)?;
            w.bytes(&queue_len.to_be_bytes())?;
        }
        Message::CaptureFrame {
            link,
            direction,
            time_ns,
            orig_len,
            frame,
        } => {
            // What decoding would refuse is not encoded either.
            if frame.len() as u64 > u64::from(orig_len) {
                return Err(IpcError::TooLong);
            }
            w.u8(code::CAPTURE_FRAME)?;
            w.u8(link)?;
            w.u8(direction as u8)?;
            w.bytes(&time_ns.to_be_bytes())?;
            w.bytes(&orig_len.to_be_bytes())?;
            w.bytes(frame)?;
        }
        Message::CaptureEnd {
            reason,
            captured,
            dropped,
        } => {
            w.u8(code::CAPTURE_END)?;
            w.u8(reason as u8)?;
            w.bytes(&captured.to_be_bytes())?;
            w.bytes(&dropped.to_be_bytes())?;
        }
        Message::Error { code: c, message } => {
            w.u8(code::ERROR)?;
            w.u8(c as u8)?;
            w.text(message)?;
        }
    }
    let len = w.pos - LEN_PREFIX;
    if len > MAX_FRAME_LEN {
        return Err(IpcError::TooLong);
    }
    w.out[..LEN_PREFIX].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(w.pos)
}

/// Append a whole CAPTURE_FRAME for a frame given in `parts` (a header
/// and its data, say) to `out`, cut at [`MAX_CAPTURE_BYTES`] with
/// `orig_len` the parts' whole length: the daemon builds each captured
/// frame's message in one buffer, without joining the parts first.
#[cfg(feature = "std")]
pub fn encode_capture_frame(
    link: u8,
    direction: Direction,
    time_ns: u64,
    parts: &[&[u8]],
    out: &mut std::vec::Vec<u8>,
) {
    let orig_len: usize = parts.iter().map(|p| p.len()).sum();
    let caplen = orig_len.min(MAX_CAPTURE_BYTES);
    let len = 1 + CAPTURE_FRAME_FIXED + caplen;
    out.reserve(LEN_PREFIX + len);
    // `len` is at most MAX_FRAME_LEN: it fits the u16.
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(code::CAPTURE_FRAME);
    out.push(link);
    out.push(direction as u8);
    out.extend_from_slice(&time_ns.to_be_bytes());
    out.extend_from_slice(&u32::try_from(orig_len).unwrap_or(u32::MAX).to_be_bytes());
    let mut room = caplen;
    for p in parts {
        let take = p.len().min(room);
        out.extend_from_slice(&p[..take]);
        room -= take;
    }
}

/// Where csp-muxd listens by default: `$XDG_RUNTIME_DIR/csp-muxd.sock`, else
/// `/tmp/csp-muxd-$UID.sock`. Daemon and clients both call this, so they meet
/// without configuration.
#[cfg(feature = "std")]
pub fn default_socket_path() -> std::path::PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => std::path::Path::new(&dir).join("csp-muxd.sock"),
        _ => std::path::PathBuf::from(format!("/tmp/csp-muxd-{}.sock", current_uid())),
    }
}

/// Our uid: the owner of our own /proc entry (no unsafe libc call needed).
#[cfg(feature = "std")]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// Encode into a fresh `Vec` (host convenience).
#[cfg(feature = "std")]
pub fn encode_to_vec(msg: &Message<'_>) -> Result<std::vec::Vec<u8>, IpcError> {
    let mut buf = std::vec![0u8; LEN_PREFIX + MAX_FRAME_LEN];
    let n = encode(msg, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), IpcError> {
        let end = self.pos + b.len();
        if end - LEN_PREFIX > MAX_FRAME_LEN {
            return Err(IpcError::TooLong);
        }
        self.out
            .get_mut(self.pos..end)
            .ok_or(IpcError::BufferTooSmall)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), IpcError> {
        self.bytes(&[v])
    }
    fn u16(&mut self, v: u16) -> Result<(), IpcError> {
        self.bytes(&v.to_be_bytes())
    }
    fn text(&mut self, s: &str) -> Result<(), IpcError> {
        if s.len() > MAX_TEXT_LEN {
            return Err(IpcError::TooLong);
        }
        self.bytes(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_messages() -> std::vec::Vec<Message<'static>> {
        std::vec![
            Message::Hello {
                version: VERSION,
                name: "archiver"
            },
            Message::HelloAck {
                version: 1,
                node_addr: 1,
                mtu: 256
            },
            Message::Register {
                addr: 0,
                port: PORT_EPHEMERAL
            },
            Message::RegisterAck {
                status: Status::PortInUse,
                addr: 1,
                port: 10
            },
            Message::Unregister { addr: 1, port: 10 },
            Message::UnregisterAck {
                status: Status::Ok,
                addr: 1,
                port: 10
            },
            Message::Data {
                frame: &[0x80, 0, 0x40, 0x04, 0xa5, 0, 1, 2, 3]
            },
            Message::Control(Control::Stats),
            Message::ControlReply {
                request: Control::Routes,
                more: true,
                text: "0/0 udp\n"
            },
            Message::Bye(ByeReason::Shutdown),
            Message::CaptureStart {
                count: 1000,
                link: "radio"
            },
            Message::CaptureStart { count: 0, link: "" },
            Message::CaptureStop,
            Message::CaptureLink {
                id: 3,
                version: 1,
                name: "local"
            },
            Message::CaptureStarted { queue_len: 1024 },
            Message::CaptureFrame {
                link: 0,
                direction: Direction::Outbound,
                time_ns: 1_700_000_000_123_456_789,
                orig_len: 9000,
                frame: &[0x80, 0, 0x40, 0x04, 0xa5, 0, 1]
            },
            Message::CaptureEnd {
                reason: CaptureEnd::CountReached,
                captured: 1234,
                dropped: 5
            },
            Message::Error {
                code: ErrorCode::NotAllowed,
                message: "capture is for uid 1000"
            },
            Message::Error {
                code: ErrorCode::Spoofed,
                message: "port 10 is not yours"
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let bytes = encode_to_vec(&m).unwrap();
            assert_eq!(decode(&bytes).unwrap(), Some((m, bytes.len())));
            // Every strict prefix asks for more bytes instead of failing.
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]).unwrap(), None, "{m:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn framing_errors() {
        assert_eq!(decode(&[0, 0]), Err(IpcError::BadLength(0)));
        assert_eq!(decode(&[0xff, 0xff]), Err(IpcError::BadLength(65535)));
        assert_eq!(decode(&[0, 1, 0x42]), Err(IpcError::UnknownType(0x42)));
        assert_eq!(
            decode(&[0, 2, code::CONTROL, 9]),
            Err(IpcError::BadBody(code::CONTROL))
        );
        assert_eq!(
            decode(&[0, 3, code::REGISTER, 0, 1]),
            Err(IpcError::BadBody(code::REGISTER))
        );
        assert_eq!(
            decode(&[0, 4, code::HELLO, 0, 1, 0xff]),
            Err(IpcError::BadBody(code::HELLO)),
            "name must be UTF-8"
        );
        let mut small = [0u8; 4];
        assert_eq!(
            encode(
                &Message::Hello {
                    version: 1,
                    name: "x"
                },
                &mut small
            ),
            Err(IpcError::BufferTooSmall)
        );
        let big = [0u8; MAX_FRAME_LEN];
        assert_eq!(
            encode_to_vec(&Message::Data { frame: &big }),
            Err(IpcError::TooLong)
        );
    }

    #[test]
    fn capture_bodies_are_checked() {
        let bad = |ty: u8, body: &[u8]| {
            let mut f = ((body.len() + 1) as u16).to_be_bytes().to_vec();
            f.push(ty);
            f.extend_from_slice(body);
            assert_eq!(decode(&f), Err(IpcError::BadBody(ty)), "{ty:#x} {body:?}");
        };
        bad(code::CAPTURE_START, &[0, 0, 1]);
        bad(code::CAPTURE_START, &[0, 0, 0, 1, 0xff]);
        bad(code::CAPTURE_STOP, &[0]);
        bad(code::CAPTURE_LINK, &[0]);
        bad(code::CAPTURE_LINK, &[0, 3, b'x']);
        bad(code::CAPTURE_STARTED, &[0, 0, 4]);
        let mut frame = vec![0, 1];
        frame.extend_from_slice(&[0; 8]);
        frame.extend_from_slice(&2u32.to_be_bytes());
        bad(code::CAPTURE_FRAME, &frame[..13]);
        let mut longer = frame.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        bad(code::CAPTURE_FRAME, &longer);
        let mut wrong_dir = frame.clone();
        wrong_dir[1] = 3;
        bad(code::CAPTURE_FRAME, &wrong_dir);
        bad(code::CAPTURE_END, &[4; 17]);
        bad(code::CAPTURE_END, &[1; 16]);
        // The longest frame a CAPTURE_FRAME holds fits exactly.
        let big = [0u8; MAX_CAPTURE_BYTES];
        let m = Message::CaptureFrame {
            link: 0,
            direction: Direction::Inbound,
            time_ns: 0,
            orig_len: 65535,
            frame: &big,
        };
        let bytes = encode_to_vec(&m).unwrap();
        assert_eq!(bytes.len(), LEN_PREFIX + MAX_FRAME_LEN);
        let over = [0u8; MAX_CAPTURE_BYTES + 1];
        let m = Message::CaptureFrame {
            link: 0,
            direction: Direction::Inbound,
            time_ns: 0,
            orig_len: 65535,
            frame: &over,
        };
        assert_eq!(encode_to_vec(&m), Err(IpcError::TooLong));
    }

    #[test]
    fn capture_frames_from_parts_decode() {
        for (parts, orig) in [
            (std::vec![&[1u8, 2, 3][..], &[4, 5][..]], 5usize),
            (std::vec![&[7u8; 6][..], &[8u8; 9000][..]], 9006),
            (std::vec![], 0),
        ] {
            let mut out = std::vec::Vec::new();
            encode_capture_frame(3, Direction::Outbound, 42, &parts, &mut out);
            let (m, n) = decode(&out).unwrap().unwrap();
            assert_eq!(n, out.len());
            let Message::CaptureFrame {
                link,
                direction,
                time_ns,
                orig_len,
                frame,
            } = m
            else {
                panic!("{m:?}")
            };
            assert_eq!((link, direction, time_ns), (3, Direction::Outbound, 42));
            assert_eq!(orig_len as usize, orig);
            let joined: std::vec::Vec<u8> = parts.concat();
            assert_eq!(frame, &joined[..orig.min(MAX_CAPTURE_BYTES)]);
        }
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut bytes = encode_to_vec(&Message::Control(Control::Status)).unwrap();
        let first = bytes.len();
        bytes.extend(encode_to_vec(&Message::Bye(ByeReason::Dropped)).unwrap());
        let (m, n) = decode(&bytes).unwrap().unwrap();
        assert_eq!((m, n), (Message::Control(Control::Status), first));
        let (m, _) = decode(&bytes[n..]).unwrap().unwrap();
        assert_eq!(m, Message::Bye(ByeReason::Dropped));
    }

    #[test]
    fn default_path_has_the_daemons_shape() {
        let p = default_socket_path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name == "csp-muxd.sock" || (name.starts_with("csp-muxd-") && name.ends_with(".sock")),
            "{name}"
        );
    }

    proptest! {
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match decode(&bytes) {
                Ok(Some((m, n))) => {
                    prop_assert!(n <= bytes.len());
                    // Whatever decodes re-encodes to the same bytes.
                    let again = encode_to_vec(&m).unwrap();
                    prop_assert_eq!(&again[..], &bytes[..n]);
                }
                Ok(None) => prop_assert!(bytes.len() < LEN_PREFIX + MAX_FRAME_LEN),
                Err(_) => {}
            }
        }
    }
}
