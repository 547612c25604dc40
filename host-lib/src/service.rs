//! The standard services, asked for as libcsp's client helpers do (through
//! `csp_core::service::client`): ping, uptime, memfree, buffer free, ident.

use std::time::{Duration, Instant};

use csp_core::service::client::{self, Request};

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
            return Ok((Duration::ZERO, Vec::new()));
        }
        let deadline = started + timeout;
        let node = self.node();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            let d = self.recvfrom(&socket, Some(left))?;
            let from_dst = d.src() == dst || (dst == 0 && d.src() == node);
            if from_dst && d.sport() == port {
                return Ok((started.elapsed(), d.data));
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
        let id = client::parse_ident(&reply)?;
        Ok(IdentInfo {
            hostname: id.hostname.to_string(),
            model: id.model.to_string(),
            revision: id.revision.to_string(),
            date: id.date.to_string(),
            time: id.time.to_string(),
        })
    }
}
