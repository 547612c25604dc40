//! The client side of the services: build requests as libcsp's client helpers
//! do (`csp_ping`, `csp_get_uptime`, `csp_cmp_ident`, `csp_reboot`, ...) and
//! read their replies.
//!
//! A [`Request`] knows its port, the flags libcsp's helper would use (CRC32
//! for everything but ping, whose options the caller picks) and its payload;
//! the caller picks the source port, sends, and hands the reply data (trailers
//! stripped) to the matching `parse_*` function.

use super::cmp::{self, CmpCode, CmpType, MemData, MemHead};
use super::{Ident, IfStats, RouteSet, ServiceError, Timestamp, REBOOT_MAGIC, SHUTDOWN_MAGIC};
use crate::header::{Addr, Flags, Header, Port, Prio};

/// The single byte `csp_ping_noreply` and `csp_ps` send.
pub const NOREPLY_PING_BYTE: u8 = 0x55;

/// A service request, as one of libcsp's client helpers would send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request<'a> {
    /// Ping (port 1) with `size` payload bytes 0, 1, 2, ... (wrapping).
    Ping {
        /// Payload length.
        size: usize,
    },
    /// Ping whose reply nobody waits for: one byte 0x55.
    PingNoReply,
    /// Process list (port 2): one byte 0x55.
    Ps,
    /// Free memory (port 3): empty payload.
    Memfree,
    /// Free buffers (port 5): empty payload.
    BufFree,
    /// Uptime (port 6): empty payload.
    Uptime,
    /// Reboot (port 4): the reboot magic; no reply.
    Reboot,
    /// Shutdown (port 4): the shutdown magic; no reply.
    Shutdown,
    /// CMP ident: the whole zeroed 93-byte message.
    Ident,
    /// CMP clock: `tv_sec` 0 only reads the clock, anything else sets it first.
    Clock(Timestamp),
    /// CMP interface statistics of the named interface.
    IfStats(&'a str),
    /// CMP route set (v1 form without netmask, v2 form with).
    RouteSet(RouteSet<'a>),
    /// CMP peek: read `len` bytes at `addr`.
    Peek {
        /// Remote address.
        addr: u32,
        /// Bytes to read (at most 200).
        len: u8,
    },
    /// CMP poke: write `data` at `addr`.
    Poke {
        /// Remote address.
        addr: u32,
        /// Bytes to write (at most 200).
        data: &'a [u8],
    },
}

impl Request<'_> {
    /// The service port the request goes to.
    pub const fn port(&self) -> Port {
        match self {
            Request::Ping { .. } | Request::PingNoReply => Port::PING,
            Request::Ps => Port::PS,
            Request::Memfree => Port::MEMFREE,
            Request::BufFree => Port::BUF_FREE,
            Request::Uptime => Port::UPTIME,
            Request::Reboot | Request::Shutdown => Port::REBOOT,
            Request::Ident
            | Request::Clock(_)
            | Request::IfStats(_)
            | Request::RouteSet(_)
            | Request::Peek { .. }
            | Request::Poke { .. } => Port::CMP,
        }
    }

    /// The flags libcsp's helper sets: CRC32 on all but ping (whose options
    /// come from its caller; none here, add CRC32 with [`Flags::with`]).
    pub const fn flags(&self) -> Flags {
        match self {
            Request::Ping { .. } => Flags::NONE,
            _ => Flags::CRC32,
        }
    }

    /// True if a reply is expected.
    pub const fn expects_reply(&self) -> bool {
        !matches!(
            self,
            Request::PingNoReply | Request::Reboot | Request::Shutdown
        )
    }

    /// Header of the request from `src`:`sport` to `dst`, at normal priority
    /// with [`flags`](Self::flags).
    pub const fn header(&self, src: Addr, dst: Addr, sport: Port) -> Header {
        Header {
            prio: Prio::Normal,
            src,
            dst,
            dport: self.port(),
            sport,
            flags: self.flags(),
        }
    }

    /// Writes the payload into `out` and returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, ServiceError> {
        let fixed = |bytes: &[u8], out: &mut [u8]| match out.get_mut(..bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Ok(bytes.len())
            }
            None => Err(ServiceError::OutTooSmall {
                needed: bytes.len(),
                got: out.len(),
            }),
        };
        match *self {
            Request::Ping { size } => {
                let got = out.len();
                let dst = out
                    .get_mut(..size)
                    .ok_or(ServiceError::OutTooSmall { needed: size, got })?;
                for (i, b) in dst.iter_mut().enumerate() {
                    *b = i as u8;
                }
                Ok(size)
            }
            Request::PingNoReply | Request::Ps => fixed(&[NOREPLY_PING_BYTE], out),
            Request::Memfree | Request::BufFree | Request::Uptime => Ok(0),
            Request::Reboot => fixed(&REBOOT_MAGIC.to_be_bytes(), out),
            Request::Shutdown => fixed(&SHUTDOWN_MAGIC.to_be_bytes(), out),
            Request::Ident => Ident::default().emit(CmpType::Request, out),
            Request::Clock(t) => t.emit(CmpType::Request, out),
            Request::IfStats(name) => IfStats::default().emit(CmpType::Request, name, out),
            Request::RouteSet(r) => r.emit(CmpType::Request, out),
            Request::Peek { addr, len } => MemHead::emit(
                CmpType::Request,
                CmpCode::Peek,
                addr,
                MemData::Zeros(len),
                out,
            ),
            Request::Poke { addr, data } => MemHead::emit(
                CmpType::Request,
                CmpCode::Poke,
                addr,
                MemData::Bytes(data),
                out,
            ),
        }
    }
}

/// The value of a memfree, buffer free or uptime reply: exactly four bytes,
/// big-endian.
pub fn parse_u32(reply: &[u8]) -> Result<u32, ServiceError> {
    let b: [u8; 4] = reply.try_into().map_err(|_| ServiceError::Length {
        expected: 4,
        got: reply.len(),
    })?;
    Ok(u32::from_be_bytes(b))
}

/// Checks a ping reply is the echo of what was sent (libcsp compares both).
pub fn check_ping(sent: &[u8], reply: &[u8]) -> Result<(), ServiceError> {
    if sent == reply {
        Ok(())
    } else {
        Err(ServiceError::PingMismatch)
    }
}

/// The strings of an ident reply (exactly 93 bytes, type 0xFF, code 1); each
/// string ends at its first NUL.
pub fn parse_ident(reply: &[u8]) -> Result<Ident<'_>, ServiceError> {
    Ident::parse_body(cmp::reply_body(reply, CmpCode::Ident, cmp::IDENT_LEN)?)
}

/// The time in a clock reply.
pub fn parse_clock(reply: &[u8]) -> Result<Timestamp, ServiceError> {
    Timestamp::parse_body(cmp::reply_body(reply, CmpCode::Clock, cmp::CLOCK_LEN)?)
}

/// Interface name and counters of an interface stats reply.
pub fn parse_if_stats(reply: &[u8]) -> Result<(&str, IfStats), ServiceError> {
    IfStats::parse_body(cmp::reply_body(reply, CmpCode::IfStats, cmp::IF_STATS_LEN)?)
}

/// The route a route set reply confirms (the server echoes the request);
/// `v2` picks the form that was sent.
pub fn parse_route_set(reply: &[u8], v2: bool) -> Result<RouteSet<'_>, ServiceError> {
    if v2 {
        RouteSet::parse_v2(cmp::reply_body(
            reply,
            CmpCode::RouteSetV2,
            cmp::ROUTE_SET_V2_LEN,
        )?)
    } else {
        RouteSet::parse_v1(cmp::reply_body(
            reply,
            CmpCode::RouteSetV1,
            cmp::ROUTE_SET_V1_LEN,
        )?)
    }
}

/// The bytes a peek reply carries (the length byte says how many; the reply
/// must hold exactly that many).
pub fn parse_peek(reply: &[u8]) -> Result<&[u8], ServiceError> {
    let (_, _, body) = cmp::split(reply)?;
    let mem = MemHead::parse_body(body)?;
    cmp::reply_body(reply, CmpCode::Peek, mem.message_len())?;
    Ok(&reply[cmp::MEM_HEAD_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_flags_follow_libcsp_helpers() {
        assert_eq!(Request::Ping { size: 3 }.port(), Port::PING);
        assert_eq!(Request::Ping { size: 3 }.flags(), Flags::NONE);
        assert_eq!(Request::PingNoReply.flags(), Flags::CRC32);
        assert_eq!(Request::Uptime.port(), Port::UPTIME);
        assert_eq!(Request::Memfree.port(), Port::MEMFREE);
        assert_eq!(Request::BufFree.port(), Port::BUF_FREE);
        assert_eq!(Request::Reboot.port(), Port::REBOOT);
        assert_eq!(Request::Ident.port(), Port::CMP);
        assert!(!Request::Shutdown.expects_reply());
        assert!(Request::Clock(Timestamp::default()).expects_reply());
    }

    #[test]
    fn payloads() {
        let mut out = [0xEEu8; 128];
        assert_eq!(Request::Ping { size: 5 }.emit(&mut out), Ok(5));
        assert_eq!(&out[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(Request::Uptime.emit(&mut out), Ok(0));
        assert_eq!(Request::Reboot.emit(&mut out), Ok(4));
        assert_eq!(&out[..4], &[0x80, 0x07, 0x80, 0x07]);
        assert_eq!(Request::Shutdown.emit(&mut out), Ok(4));
        assert_eq!(&out[..4], &[0xD1, 0xE5, 0x52, 0x9A]);
        assert_eq!(Request::Ident.emit(&mut out), Ok(93));
        assert_eq!(&out[..2], &[0, 1]);
        assert!(out[2..93].iter().all(|&b| b == 0));
        assert_eq!(Request::Peek { addr: 0x20, len: 3 }.emit(&mut out), Ok(10));
        assert_eq!(&out[..10], &[0, 4, 0, 0, 0, 0x20, 3, 0, 0, 0]);
        assert_eq!(
            Request::Poke {
                addr: 1,
                data: &[9, 8]
            }
            .emit(&mut out),
            Ok(9)
        );
        assert_eq!(&out[..9], &[0, 5, 0, 0, 0, 1, 2, 9, 8]);
    }

    #[test]
    fn ping_wraps_and_refuses_small_out() {
        let mut out = [0u8; 300];
        assert_eq!(Request::Ping { size: 300 }.emit(&mut out), Ok(300));
        assert_eq!(out[256], 0);
        assert_eq!(out[299], 43);
        assert_eq!(
            Request::Ping { size: 301 }.emit(&mut out),
            Err(ServiceError::OutTooSmall {
                needed: 301,
                got: 300
            })
        );
    }

    #[test]
    fn u32_reply_must_be_four_bytes() {
        assert_eq!(parse_u32(&[0, 0, 1, 0xEF]), Ok(0x1EF));
        assert_eq!(
            parse_u32(&[0, 1, 2]),
            Err(ServiceError::Length {
                expected: 4,
                got: 3
            })
        );
        assert!(parse_u32(&[0; 5]).is_err());
    }

    #[test]
    fn cmp_reply_checks_type_code_and_length() {
        let mut msg = [0u8; 93];
        Ident {
            hostname: "h",
            ..Ident::default()
        }
        .emit(CmpType::Reply, &mut msg)
        .unwrap();
        assert_eq!(parse_ident(&msg).unwrap().hostname, "h");
        assert!(matches!(
            parse_ident(&msg[..92]),
            Err(ServiceError::Length { .. })
        ));
        msg[0] = 0;
        assert!(matches!(
            parse_ident(&msg),
            Err(ServiceError::WrongType { .. })
        ));
        msg[0] = 0xFF;
        msg[1] = 6;
        assert!(matches!(
            parse_ident(&msg),
            Err(ServiceError::WrongCode { .. })
        ));
        assert!(parse_ident(&[]).is_err());
    }

    #[test]
    fn peek_reply() {
        let reply = [0xFF, 4, 0, 0, 0, 1, 2, 0xAB, 0xCD];
        assert_eq!(parse_peek(&reply), Ok(&[0xAB, 0xCD][..]));
        assert!(parse_peek(&reply[..8]).is_err());
        assert!(parse_peek(&[0xFF, 4, 0, 0]).is_err());
    }

    #[test]
    fn check_ping_compares() {
        assert_eq!(check_ping(&[1, 2], &[1, 2]), Ok(()));
        assert_eq!(check_ping(&[1, 2], &[1]), Err(ServiceError::PingMismatch));
    }
}
