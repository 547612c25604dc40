//! The standard services (ping, ident, uptime, memfree, buffree) with a
//! wait that Ctrl-C interrupts. host-lib's helpers wait inside one call, so
//! here the same csp-core requests and reply parsers are driven through
//! [`block_on`](crate::wait::block_on) on a service socket of our own.

use std::time::{Duration, Instant};

use csp_core::service::client::Request;
use csp_core::Flags;
use host_lib::{Bind, Client as Inner, Error, Options, Socket};
use pyo3::prelude::*;

use crate::errors::check;
use crate::wait::block_on;

/// The ephemeral socket service requests go out on (bound on first use,
/// kept: host-lib registers it again after a daemon restart).
#[derive(Default)]
pub struct ServiceSocket(Option<Socket>);

impl ServiceSocket {
    /// Send `request` to `dst` and wait at most `timeout` for the answer
    /// from the service's port; the round-trip time and the reply data.
    pub fn request(
        &mut self,
        py: Python<'_>,
        inner: &mut Inner,
        dst: u16,
        request: Request<'_>,
        timeout: Duration,
    ) -> PyResult<(Duration, Vec<u8>)> {
        let socket = match self.0 {
            Some(s) => s,
            None => *self.0.insert(check(py, inner.bind(Bind::Ephemeral))?),
        };
        // A late answer to an earlier request must not pass for this one.
        while check(py, inner.try_recvfrom(&socket))?.is_some() {}
        let mut payload = vec![0u8; inner.mtu().max(128)];
        let n = check(py, request.emit(&mut payload).map_err(Error::from))?;
        payload.truncate(n);
        // CRC32 where libcsp's client helpers add it (ident).
        let options = Options {
            crc: request.flags().contains(Flags::CRC32),
            ..Options::NONE
        };
        let port = request.port().get();
        let started = Instant::now();
        check(
            py,
            inner.sendto_with(&socket, dst, port, &payload, &options),
        )?;
        let node = inner.node();
        let reply = block_on(py, inner, Some(timeout), |c| loop {
            match c.try_recvfrom(&socket) {
                Ok(Some(d)) => {
                    let from_dst = d.src() == dst || (dst == 0 && d.src() == node);
                    if from_dst && d.sport() == port {
                        return Some(Ok(d.data));
                    }
                    // Someone else's packet on our ephemeral port: skip it.
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        })?;
        Ok((started.elapsed(), reply))
    }
}
