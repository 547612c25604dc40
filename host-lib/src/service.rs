//! The standard services, asked for as libcsp's client helpers do (through
//! `csp_core::service::client`): ping, ps, uptime, memfree, buffer free,
//! reboot and shutdown, and CMP ident (also to every node at once),
//! interface statistics, route set, peek, poke and clock.
//!
//! A node that does not answer gives [`Error::Timeout`]; libcsp nodes (and
//! csp-muxd) send no reply at all when they refuse or do not understand a
//! request (unknown interface, peek not allowed, clock not settable), so a
//! caller can not tell these apart from a lost packet.

use std::time::{Duration, Instant};

use csp_core::service::client::{self, Request};
pub use csp_core::service::{IfStats, RouteSet, Timestamp};

use csp_core::service::ServiceError;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::socket::Bind;

/// What CMP ident returned, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentInfo {
    /// Host name.
    pub hostname: String,
    /// Model.
    pub model: String,
    /// Revision.
    pub revision: String,
    /// Build (or start) date.
    pub date: String,
    /// Build (or start) time.
    pub time: String,
}

impl Client {
    /// Send a service request to `dst` and wait (at most `timeout`) for
    /// the answer from the service's port; returns the round-trip time and
    /// the reply data, trailers stripped. Uses one ephemeral socket, bound
    /// on first use and kept.
    pub fn service_request(
        &mut self,
        dst: u16,
        request: Request<'_>,
        timeout: Duration,
    ) -> Result<(Duration, Vec<u8>)> {
        let mut first = None;
        self.service_exchange(dst, request, timeout, |src, rtt, data| {
            first = Some((src, rtt, data));
            false
        })?;
        match first {
            Some((_, rtt, data)) => Ok((rtt, data)),
            None if !request.expects_reply() => Ok((Duration::ZERO, Vec::new())),
            None => Err(Error::Timeout),
        }
    }

    /// Send `request` to `dst` and hand every answer from the service's
    /// port (source address, round-trip time, data) to `take` until it
    /// returns false or `timeout` passes. Only answers from `dst` count,
    /// or from anyone when `dst` is the broadcast address.
    fn service_exchange(
        &mut self,
        dst: u16,
        request: Request<'_>,
        timeout: Duration,
        mut take: impl FnMut(u16, Duration, Vec<u8>) -> bool,
    ) -> Result<()> {
        let socket = match self.service {
            Some(s) => s,
            None => {
                let s = self.bind_with(Bind::Ephemeral, self.service_options)?;
                self.service = Some(s);
                s
            }
        };
        // A late answer to an earlier request must not pass for this one.
        while self.try_recvfrom(&socket)?.is_some() {}
        let mut payload = vec![0u8; self.mtu().max(128)];
        let n = request.emit(&mut payload)?;
        payload.truncate(n);
        let mut options = self.service_options;
        options.crc |= request.flags().contains(csp_core::Flags::CRC32);
        let port = request.port().get();
        let started = Instant::now();
        self.sendto_with(&socket, dst, port, &payload, &options)?;
        if !request.expects_reply() {
            return Ok(());
        }
        let deadline = started + timeout;
        let node = self.node();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let d = match self.recvfrom(&socket, Some(left)) {
                Ok(d) => d,
                Err(Error::Timeout) => return Ok(()),
                Err(e) => return Err(e),
            };
            let from_dst = d.src() == dst || (dst == 0 && d.src() == node) || dst == BROADCAST;
            if from_dst && d.sport() == port {
                if !take(d.src(), started.elapsed(), d.data) {
                    return Ok(());
                }
                continue;
            }
            log::debug!("ignoring {}:{} on the service socket", d.src(), d.sport());
        }
    }

    /// Ping `dst` with `size` payload bytes; the round-trip time.
    pub fn ping(&mut self, dst: u16, size: usize, timeout: Duration) -> Result<Duration> {
        let request = Request::Ping { size };
        let mut sent = vec![0u8; size];
        request.emit(&mut sent)?;
        let (rtt, reply) = self.service_request(dst, request, timeout)?;
        client::check_ping(&sent, &reply)?;
        Ok(rtt)
    }

    /// Seconds `dst` has been up.
    pub fn uptime(&mut self, dst: u16, timeout: Duration) -> Result<u32> {
        let (_, reply) = self.service_request(dst, Request::Uptime, timeout)?;
        Ok(client::parse_u32(&reply)?)
    }

    /// Free memory of `dst`, in bytes.
    pub fn memfree(&mut self, dst: u16, timeout: Duration) -> Result<u32> {
        let (_, reply) = self.service_request(dst, Request::Memfree, timeout)?;
        Ok(client::parse_u32(&reply)?)
    }

    /// Free packet buffers of `dst`.
    pub fn buffree(&mut self, dst: u16, timeout: Duration) -> Result<u32> {
        let (_, reply) = self.service_request(dst, Request::BufFree, timeout)?;
        Ok(client::parse_u32(&reply)?)
    }

    /// Identification strings of `dst` (CMP ident).
    pub fn ident(&mut self, dst: u16, timeout: Duration) -> Result<IdentInfo> {
        let (_, reply) = self.service_request(dst, Request::Ident, timeout)?;
        IdentInfo::parse(&reply)
    }

    /// CMP ident to the broadcast address: every answer that arrives within
    /// `timeout`, one per node (the first if a node answers twice), in the
    /// order they came. No answer at all is an empty list, not an error.
    /// csp-muxd answers for itself and sends the request out on its route
    /// for the broadcast address (usually the default route).
    pub fn ident_all(&mut self, timeout: Duration) -> Result<Vec<(u16, IdentInfo)>> {
        let mut found: Vec<(u16, IdentInfo)> = Vec::new();
        let mut bad = None;
        self.service_exchange(BROADCAST, Request::Ident, timeout, |src, _, data| {
            match IdentInfo::parse(&data) {
                Ok(id) if !found.iter().any(|(a, _)| *a == src) => found.push((src, id)),
                Ok(_) => {}
                Err(e) => bad = Some((src, e)),
            }
            // Keep gathering until the timeout: there is no last answer.
            found.len() < MAX_IDENT_ANSWERS
        })?;
        if let Some((src, e)) = bad {
            log::warn!("ident answer from node {src}: {e}");
        }
        Ok(found)
    }

    /// The process list of `dst` (port 2): the text of its one reply packet,
    /// up to its first NUL (libcsp's client prints it as a C string).
    pub fn ps(&mut self, dst: u16, timeout: Duration) -> Result<String> {
        let (_, reply) = self.service_request(dst, Request::Ps, timeout)?;
        let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
        Ok(String::from_utf8_lossy(&reply[..end]).into_owned())
    }

    /// Ask `dst` to reboot (port 4). Nothing answers; whether the node acts
    /// on it is its policy (csp-muxd: `services.allow_reboot` and, by
    /// default, a valid HMAC: set this client's service options).
    pub fn reboot(&mut self, dst: u16) -> Result<()> {
        self.service_request(dst, Request::Reboot, Duration::ZERO)
            .map(|_| ())
    }

    /// Ask `dst` to shut down (port 4); see [`reboot`](Self::reboot).
    pub fn shutdown(&mut self, dst: u16) -> Result<()> {
        self.service_request(dst, Request::Shutdown, Duration::ZERO)
            .map(|_| ())
    }

    /// Counters of the interface called `name` on `dst` (CMP interface
    /// stats). A node without such an interface does not answer.
    pub fn if_stats(&mut self, dst: u16, name: &str, timeout: Duration) -> Result<IfStats> {
        let (_, reply) = self.service_request(dst, Request::IfStats(name), timeout)?;
        let (echoed, stats) = client::parse_if_stats(&reply)?;
        if echoed != name {
            return Err(Error::Service(ServiceError::EchoMismatch));
        }
        Ok(stats)
    }

    /// Set a route on `dst` (CMP route set; the v1 form, libcsp 1.x's
    /// `csp_cmp_route_set`, when `route.netmask` is `None`). The node
    /// echoes the request when it took the route and is silent otherwise.
    pub fn route_set(&mut self, dst: u16, route: RouteSet<'_>, timeout: Duration) -> Result<()> {
        let (_, reply) = self.service_request(dst, Request::RouteSet(route), timeout)?;
        let echoed = client::parse_route_set(&reply, route.netmask.is_some())?;
        if echoed != route {
            return Err(Error::Service(ServiceError::EchoMismatch));
        }
        Ok(())
    }

    /// Read `len` (at most 200) bytes at `addr` of `dst` (CMP peek).
    pub fn peek(&mut self, dst: u16, addr: u32, len: u8, timeout: Duration) -> Result<Vec<u8>> {
        let (_, reply) = self.service_request(dst, Request::Peek { addr, len }, timeout)?;
        let data = client::parse_peek(&reply)?;
        if data.len() != usize::from(len) {
            return Err(Error::Service(ServiceError::Length {
                expected: usize::from(len),
                got: data.len(),
            }));
        }
        Ok(data.to_vec())
    }

    /// Write `data` (at most 200 bytes) at `addr` of `dst` (CMP poke); the
    /// node echoes the request when it wrote it.
    pub fn poke(&mut self, dst: u16, addr: u32, data: &[u8], timeout: Duration) -> Result<()> {
        let (_, reply) = self.service_request(dst, Request::Poke { addr, data }, timeout)?;
        let mut sent = vec![0u8; csp_core::service::cmp::MEM_HEAD_LEN + data.len()];
        let n = Request::Poke { addr, data }.emit(&mut sent)?;
        sent[0] = csp_core::service::cmp::CmpType::Reply.byte();
        if reply != sent[..n] {
            return Err(Error::Service(ServiceError::EchoMismatch));
        }
        Ok(())
    }

    /// The clock of `dst` (CMP clock); with `set`, first set it to that
    /// time (a non-zero `tv_sec`). The node answers with its clock after
    /// setting, and not at all when it refused to set it.
    pub fn clock(
        &mut self,
        dst: u16,
        set: Option<Timestamp>,
        timeout: Duration,
    ) -> Result<Timestamp> {
        let t = set.unwrap_or_default();
        let (_, reply) = self.service_request(dst, Request::Clock(t), timeout)?;
        Ok(client::parse_clock(&reply)?)
    }
}

/// The CSP v2 broadcast address (all 14 bits set).
pub const BROADCAST: u16 = 0x3FFF;

/// Most ident answers one `ident_all` gathers (a bound on a flood).
pub const MAX_IDENT_ANSWERS: usize = 1024;

impl IdentInfo {
    /// Owned strings of an ident reply.
    fn parse(reply: &[u8]) -> Result<IdentInfo> {
        let id = client::parse_ident(reply)?;
        Ok(IdentInfo {
            hostname: id.hostname.to_string(),
            model: id.model.to_string(),
            revision: id.revision.to_string(),
            date: id.date.to_string(),
            time: id.time.to_string(),
        })
    }
}
