//! The standard CSP services, as pure request -> reply functions.
//!
//! Ports 0..=6 are the services every libcsp node answers: CMP (0), ping (1),
//! process list (2), free memory (3), reboot/shutdown (4), free buffers (5)
//! and uptime (6). [`Services::handle`] takes a request's header and data and
//! writes the reply data into a caller buffer; everything the core cannot know
//! (uptime, memory, names, interface counters, the clock, the route table,
//! memory access) comes from a [`ServiceContext`] the caller implements (or
//! the plain [`ServiceValues`]). Nothing here reboots, sets a clock or touches
//! memory by itself: a reboot request comes back as [`ServiceEvent`], the rest
//! are calls into the context, whose owner decides.
//!
//! Replies behave as libcsp's `csp_service_handler`: same priority and flags
//! as the request (`CSP_O_SAME`; a CRC-flagged request gets a CRC-flagged
//! reply, the trailer itself being added by the caller's security layer),
//! addresses and ports swapped, and no reply at all where libcsp sends none
//! (unknown port, a CMP message that is not a request, an unknown CMP code,
//! an unknown interface, a refused route or clock change, a reboot request).
//!
//! The client side, building requests and reading replies, is in [`client`];
//! the CMP message layouts both sides share are in [`cmp`].
//!
//! ```
//! use csp_core::service::{client::{self, Request}, *};
//! use csp_core::{Addr, Port, Version};
//!
//! let (me, ground) = (Addr::new(1).unwrap(), Addr::new(2).unwrap());
//! let mut services = Services::new(ServiceConfig::new(Version::V2, me));
//! let mut node = ServiceValues { uptime_s: 42, ..ServiceValues::default() };
//!
//! // Ground asks for the uptime...
//! let request = Request::Uptime.header(ground, me, Port::new(20).unwrap());
//! let mut payload = [0u8; 8];
//! let n = Request::Uptime.emit(&mut payload).unwrap();
//!
//! // ...the node answers (the reply keeps the request's CRC32 flag)...
//! let mut out = [0u8; 8];
//! let ServiceOutcome::Reply(reply) =
//!     services.handle(&request, &payload[..n], &mut node, &mut out)
//! else {
//!     panic!("uptime is always answered")
//! };
//! assert_eq!((reply.header.dst, reply.header.flags), (ground, request.flags));
//!
//! // ...and ground reads it.
//! assert_eq!(client::parse_u32(&out[..reply.len]), Ok(42));
//! ```

use core::fmt;

use crate::header::{Addr, Header, Port, Version};

pub mod client;
pub mod cmp;

pub use cmp::{Ident, IfStats, RouteSet, Timestamp};

/// Reboot request magic (port 4 payload, big-endian).
pub const REBOOT_MAGIC: u32 = 0x8007_8007;
/// Shutdown request magic (port 4 payload, big-endian).
pub const SHUTDOWN_MAGIC: u32 = 0xD1E5_529A;

/// Why service bytes could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServiceError {
    /// Fewer bytes than the message needs.
    Truncated {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The message must have exactly `expected` bytes.
    Length {
        /// Bytes the message must have.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// The output buffer is too small.
    OutTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// CMP type byte other than the one expected (0x00 request, 0xFF reply).
    WrongType {
        /// The type byte expected.
        expected: u8,
        /// The type byte found.
        got: u8,
    },
    /// CMP code other than the one asked for.
    WrongCode {
        /// The code expected.
        expected: u8,
        /// The code found.
        got: u8,
    },
    /// A text field is not UTF-8.
    NotText,
    /// An interface name longer than its field allows.
    NameTooLong {
        /// Longest name that fits.
        max: usize,
        /// Length given.
        got: usize,
    },
    /// A value does not fit the message form (route set v1 has 8-bit addresses).
    ValueTooLarge,
    /// Peek/poke length above the 200 bytes libcsp allows.
    MemTooLong(u8),
    /// A ping reply that is not the echo of the request.
    PingMismatch,
    /// A CMP reply that should echo the request (interface name, route,
    /// poke) differs from it.
    EchoMismatch,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServiceError::Truncated { needed, got } => {
                write!(f, "service message needs {needed} bytes, has {got}")
            }
            ServiceError::Length { expected, got } => {
                write!(f, "service message must be {expected} bytes, is {got}")
            }
            ServiceError::OutTooSmall { needed, got } => {
                write!(f, "output needs {needed} bytes, buffer has {got}")
            }
            ServiceError::WrongType { expected, got } => {
                write!(f, "CMP type {got:#04x}, expected {expected:#04x}")
            }
            ServiceError::WrongCode { expected, got } => {
                write!(f, "CMP code {got}, expected {expected}")
            }
            ServiceError::NotText => write!(f, "text field is not UTF-8"),
            ServiceError::NameTooLong { max, got } => {
                write!(f, "interface name of {got} bytes, at most {max} fit")
            }
            ServiceError::ValueTooLarge => write!(f, "value does not fit the message field"),
            ServiceError::MemTooLong(n) => write!(f, "peek/poke of {n} bytes, at most 200"),
            ServiceError::PingMismatch => write!(f, "ping reply differs from the request"),
            ServiceError::EchoMismatch => write!(f, "CMP reply does not echo the request"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ServiceError {}

/// A context hook declined to do what a request asked (unknown interface,
/// route not accepted, clock not settable, memory not accessible).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Declined;

/// What the node knows about itself, asked for by [`Services::handle`].
///
/// Only the four plain values are required; every hook that changes state or
/// reads memory has a default that declines, so a node offers exactly what
/// its owner implements.
pub trait ServiceContext {
    /// Seconds since boot (uptime service, port 6).
    fn uptime_s(&self) -> u32;
    /// Free memory in bytes (memfree service, port 3).
    fn memfree(&self) -> u32;
    /// Free packet buffers (buffer free service, port 5).
    fn buf_free(&self) -> u32;
    /// Identification strings (CMP ident).
    fn ident(&self) -> Ident<'_>;

    /// Counters of the interface called `name` (CMP interface stats); `None`
    /// if there is no such interface, which gets no reply.
    fn if_stats(&self, _name: &str) -> Option<IfStats> {
        None
    }

    /// The current time (CMP clock); `None` if the node has no clock, which
    /// gets no reply.
    fn clock_get(&self) -> Option<Timestamp> {
        None
    }

    /// Set the clock (CMP clock with a non-zero `tv_sec`). Declining means no
    /// reply, as libcsp sends none when setting fails.
    fn clock_set(&mut self, _time: Timestamp) -> Result<(), Declined> {
        Err(Declined)
    }

    /// Apply a route set request (CMP codes 2 and 7) to the route table.
    /// Declining (unknown interface, table full, not allowed) means no reply.
    fn route_set(&mut self, _route: &RouteSet<'_>) -> Result<(), Declined> {
        Err(Declined)
    }

    /// Write a process list for the ps service (port 2) into `out` and return
    /// its length; 0 (the default) means no reply.
    fn ps(&mut self, _request: &[u8], _out: &mut [u8]) -> usize {
        0
    }

    /// Read `buf.len()` bytes at `addr` (CMP peek). Only asked when
    /// [`ServiceConfig::allow_peek_poke`] is set.
    fn peek(&mut self, _addr: u32, _buf: &mut [u8]) -> Result<(), Declined> {
        Err(Declined)
    }

    /// Write `data` at `addr` (CMP poke). Only asked when
    /// [`ServiceConfig::allow_peek_poke`] is set.
    fn poke(&mut self, _addr: u32, _data: &[u8]) -> Result<(), Declined> {
        Err(Declined)
    }
}

/// A context made of plain values, for nodes that offer no hooks (no clock
/// setting, no routes, no memory access): fill it and refresh `uptime_s` etc.
/// before handling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServiceValues<'a> {
    /// Seconds since boot.
    pub uptime_s: u32,
    /// Free memory in bytes.
    pub memfree: u32,
    /// Free packet buffers.
    pub buf_free: u32,
    /// Identification strings.
    pub ident: Ident<'a>,
    /// The current time, if the node has a clock (read only here).
    pub clock: Option<Timestamp>,
}

impl ServiceContext for ServiceValues<'_> {
    fn uptime_s(&self) -> u32 {
        self.uptime_s
    }
    fn memfree(&self) -> u32 {
        self.memfree
    }
    fn buf_free(&self) -> u32 {
        self.buf_free
    }
    fn ident(&self) -> Ident<'_> {
        self.ident
    }
    fn clock_get(&self) -> Option<Timestamp> {
        self.clock
    }
}

/// How the service handler behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServiceConfig {
    /// Header version in force: decides which destination is the broadcast
    /// address.
    pub version: Version,
    /// The node's address, used as the source of a reply to a broadcast
    /// request (libcsp replies from the interface address, not broadcast).
    pub own_addr: Addr,
    /// Answer CMP peek and poke (reading and writing arbitrary memory). Off by
    /// default: a refused request gets no reply and counts as refused.
    pub allow_peek_poke: bool,
}

impl ServiceConfig {
    /// Peek and poke refused.
    pub const fn new(version: Version, own_addr: Addr) -> Self {
        ServiceConfig {
            version,
            own_addr,
            allow_peek_poke: false,
        }
    }
}

/// Counters of the service handler (wrapping adds; the owner reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServiceCounters {
    /// Requests handled (every call).
    pub requests: u32,
    /// Replies produced.
    pub replies: u32,
    /// Events produced (reboot, shutdown).
    pub events: u32,
    /// Requests too short or malformed to answer.
    pub malformed: u32,
    /// Requests libcsp would not answer either (wrong port, not a request,
    /// unknown code, unknown interface, bad magic, nothing to report).
    pub ignored: u32,
    /// Requests refused: peek/poke disabled, or a hook declined.
    pub refused: u32,
    /// Replies that did not fit the output buffer.
    pub out_too_small: u32,
}

/// Something the node's owner must act on; the core never does it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServiceEvent {
    /// A reboot was requested (port 4, magic 0x80078007). No reply is sent.
    Reboot,
    /// A shutdown was requested (port 4, magic 0xD1E5529A). No reply is sent.
    Shutdown,
}

/// Why a request gets no reply (libcsp would send none either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NoReply {
    /// The destination port is not a service port (0..=6).
    NotAServicePort(u8),
    /// The request is malformed or truncated.
    Malformed(ServiceError),
    /// A CMP message whose type is not 0x00 (request): carries the type.
    CmpNotARequest(u8),
    /// A CMP code libcsp does not define.
    UnknownCmpCode(u8),
    /// Interface stats for an interface the context does not know.
    UnknownInterface,
    /// A reboot request whose magic is neither reboot nor shutdown.
    BadRebootMagic(u32),
    /// The ps hook has no process list to send.
    NoProcessList,
    /// A clock request on a node without a clock.
    NoClock,
    /// The reply does not fit the output buffer.
    OutTooSmall {
        /// Bytes the reply needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
}

/// Why a request was refused (no reply is sent, as libcsp sends none when
/// the handler fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// CMP peek or poke while [`ServiceConfig::allow_peek_poke`] is off.
    PeekPokeDisabled,
    /// The context declined a peek or poke.
    MemoryAccessDeclined,
    /// The context declined a route set.
    RouteSetDeclined,
    /// The context declined to set the clock.
    ClockSetDeclined,
}

/// A reply to send: `header`, then the first `len` bytes of the output buffer
/// (then whatever trailers `header.flags` ask for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reply {
    /// Header of the reply: addresses and ports swapped, priority and flags kept.
    pub header: Header,
    /// Bytes of reply data written to the output buffer.
    pub len: usize,
}

/// The result of handling one service request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServiceOutcome {
    /// Send this reply.
    Reply(Reply),
    /// No reply; the owner must act on this event.
    Event(ServiceEvent),
    /// No reply, nothing to do.
    NoReply(NoReply),
    /// No reply: the request was refused.
    Refused(Refusal),
}

/// What a service step produced before the reply header is attached.
enum Step {
    Reply(usize),
    Event(ServiceEvent),
    NoReply(NoReply),
    Refused(Refusal),
}

impl From<ServiceError> for Step {
    fn from(e: ServiceError) -> Step {
        match e {
            ServiceError::OutTooSmall { needed, got } => {
                Step::NoReply(NoReply::OutTooSmall { needed, got })
            }
            e => Step::NoReply(NoReply::Malformed(e)),
        }
    }
}

/// The service handler: configuration plus counters.
#[derive(Debug, Clone)]
pub struct Services {
    /// How requests are answered.
    pub config: ServiceConfig,
    counters: ServiceCounters,
}

impl Services {
    /// A handler with zeroed counters.
    pub const fn new(config: ServiceConfig) -> Self {
        Services {
            config,
            counters: ServiceCounters {
                requests: 0,
                replies: 0,
                events: 0,
                malformed: 0,
                ignored: 0,
                refused: 0,
                out_too_small: 0,
            },
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &ServiceCounters {
        &self.counters
    }

    /// The header of a reply to `request`: swapped, same priority and flags,
    /// and from our own address if the request went to broadcast.
    pub fn reply_header(&self, request: &Header) -> Header {
        let mut h = request.reply();
        if request.dst.is_broadcast(self.config.version) {
            h.src = self.config.own_addr;
        }
        h
    }

    /// Handles one request (`data` is the payload with trailers already
    /// verified and stripped). Reply data goes to `out`; it never exceeds
    /// `out`, and a reply that would gets [`NoReply::OutTooSmall`].
    pub fn handle<C: ServiceContext + ?Sized>(
        &mut self,
        request: &Header,
        data: &[u8],
        ctx: &mut C,
        out: &mut [u8],
    ) -> ServiceOutcome {
        let c = &mut self.counters;
        c.requests = c.requests.wrapping_add(1);
        let step = match dispatch(&self.config, request.dport, data, ctx, out) {
            Ok(s) | Err(s) => s,
        };
        let c = &mut self.counters;
        let outcome = match step {
            Step::Reply(len) => {
                c.replies = c.replies.wrapping_add(1);
                ServiceOutcome::Reply(Reply {
                    header: self.reply_header(request),
                    len,
                })
            }
            Step::Event(e) => {
                c.events = c.events.wrapping_add(1);
                ServiceOutcome::Event(e)
            }
            Step::NoReply(r) => {
                let counter = match r {
                    NoReply::Malformed(_) => &mut c.malformed,
                    NoReply::OutTooSmall { .. } => &mut c.out_too_small,
                    _ => &mut c.ignored,
                };
                *counter = counter.wrapping_add(1);
                ServiceOutcome::NoReply(r)
            }
            Step::Refused(r) => {
                c.refused = c.refused.wrapping_add(1);
                ServiceOutcome::Refused(r)
            }
        };
        csp_trace!("service port {} -> {:?}", request.dport.get(), outcome);
        outcome
    }
}

/// Writes a big-endian u32 reply.
fn reply_u32(v: u32, out: &mut [u8]) -> Result<Step, Step> {
    reply_copy(&v.to_be_bytes(), out)
}

/// Copies `bytes` to the front of `out`.
fn reply_copy(bytes: &[u8], out: &mut [u8]) -> Result<Step, Step> {
    let got = out.len();
    let dst = out
        .get_mut(..bytes.len())
        .ok_or(Step::NoReply(NoReply::OutTooSmall {
            needed: bytes.len(),
            got,
        }))?;
    dst.copy_from_slice(bytes);
    Ok(Step::Reply(bytes.len()))
}

// `Err` carries every early exit, so `?` works on both service errors and steps.
fn dispatch<C: ServiceContext + ?Sized>(
    config: &ServiceConfig,
    port: Port,
    data: &[u8],
    ctx: &mut C,
    out: &mut [u8],
) -> Result<Step, Step> {
    match port {
        Port::CMP => cmp_request(config, data, ctx, out),
        Port::PING => reply_copy(data, out),
        Port::PS => {
            let n = ctx.ps(data, out).min(out.len());
            if n == 0 {
                return Err(Step::NoReply(NoReply::NoProcessList));
            }
            Ok(Step::Reply(n))
        }
        Port::MEMFREE => reply_u32(ctx.memfree(), out),
        Port::REBOOT => {
            // Exactly the four magic bytes: a reboot is too drastic to act on
            // a longer or shorter packet that happens to start with them.
            let magic: [u8; 4] = data.try_into().map_err(|_| ServiceError::Length {
                expected: 4,
                got: data.len(),
            })?;
            match u32::from_be_bytes(magic) {
                REBOOT_MAGIC => Ok(Step::Event(ServiceEvent::Reboot)),
                SHUTDOWN_MAGIC => Ok(Step::Event(ServiceEvent::Shutdown)),
                other => Err(Step::NoReply(NoReply::BadRebootMagic(other))),
            }
        }
        Port::BUF_FREE => reply_u32(ctx.buf_free(), out),
        Port::UPTIME => reply_u32(ctx.uptime_s(), out),
        other => Err(Step::NoReply(NoReply::NotAServicePort(other.get()))),
    }
}

/// Checks the reply will fit before a hook changes anything: a route set,
/// poke or clock set must not take effect for a request we cannot answer.
fn room(out: &[u8], len: usize) -> Result<(), Step> {
    if out.len() < len {
        return Err(ServiceError::OutTooSmall {
            needed: len,
            got: out.len(),
        }
        .into());
    }
    Ok(())
}

/// Copies the request's first `len` bytes as the reply, marked as a reply:
/// route set and poke answer with their own request, as libcsp does.
fn cmp_echo(data: &[u8], len: usize, out: &mut [u8]) -> Result<Step, Step> {
    let step = reply_copy(&data[..len], out)?;
    out[0] = cmp::CmpType::Reply.byte();
    Ok(step)
}

fn cmp_request<C: ServiceContext + ?Sized>(
    config: &ServiceConfig,
    data: &[u8],
    ctx: &mut C,
    out: &mut [u8],
) -> Result<Step, Step> {
    use cmp::{CmpCode, CmpType};
    let (ty, code, body) = cmp::split(data)?;
    if ty != CmpType::Request.byte() {
        return Err(Step::NoReply(NoReply::CmpNotARequest(ty)));
    }
    let code = CmpCode::from_byte(code).ok_or(Step::NoReply(NoReply::UnknownCmpCode(code)))?;
    match code {
        // libcsp ignores the request body and always answers the full message.
        CmpCode::Ident => Ok(Step::Reply(ctx.ident().emit(CmpType::Reply, out)?)),
        CmpCode::RouteSetV1 | CmpCode::RouteSetV2 => {
            let route = if code == CmpCode::RouteSetV1 {
                RouteSet::parse_v1(body)?
            } else {
                RouteSet::parse_v2(body)?
            };
            room(out, route.message_len())?;
            ctx.route_set(&route)
                .map_err(|Declined| Step::Refused(Refusal::RouteSetDeclined))?;
            cmp_echo(data, route.message_len(), out)
        }
        CmpCode::IfStats => {
            let name = IfStats::parse_name(body)?;
            let stats = ctx
                .if_stats(name)
                .ok_or(Step::NoReply(NoReply::UnknownInterface))?;
            room(out, cmp::IF_STATS_LEN)?;
            // The name goes back as the requester wrote it.
            let head = cmp::HEAD_LEN + cmp::IFACE_LEN;
            cmp_echo(data, head, out)?;
            stats.emit_counters(out);
            Ok(Step::Reply(cmp::IF_STATS_LEN))
        }
        CmpCode::Peek | CmpCode::Poke => {
            if !config.allow_peek_poke {
                return Err(Step::Refused(Refusal::PeekPokeDisabled));
            }
            let mem = cmp::MemHead::parse_body(body)?;
            let len = mem.message_len();
            room(out, len)?;
            if code == CmpCode::Poke {
                let bytes = data
                    .get(cmp::MEM_HEAD_LEN..len)
                    .ok_or(ServiceError::Truncated {
                        needed: len,
                        got: data.len(),
                    })?;
                ctx.poke(mem.addr, bytes)
                    .map_err(|Declined| Step::Refused(Refusal::MemoryAccessDeclined))?;
                return cmp_echo(data, len, out);
            }
            // A peek request need not carry the room for its data: the reply
            // always has `len` bytes of it (room was checked above).
            // Address goes back big-endian as it came (libcsp's reply has it
            // in host order, a quirk no client reads).
            cmp_echo(data, cmp::MEM_HEAD_LEN, out)?;
            ctx.peek(mem.addr, &mut out[cmp::MEM_HEAD_LEN..len])
                .map_err(|Declined| Step::Refused(Refusal::MemoryAccessDeclined))?;
            Ok(Step::Reply(len))
        }
        CmpCode::Clock => {
            let time = Timestamp::parse_body(body)?;
            room(out, cmp::CLOCK_LEN)?;
            if time.tv_sec != 0 {
                ctx.clock_set(time)
                    .map_err(|Declined| Step::Refused(Refusal::ClockSetDeclined))?;
            }
            let now = ctx.clock_get().ok_or(Step::NoReply(NoReply::NoClock))?;
            Ok(Step::Reply(now.emit(CmpType::Reply, out)?))
        }
    }
}

#[cfg(test)]
mod tests;
