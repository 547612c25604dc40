//! Checking Python arguments before host-lib sees them, so a wrong value
//! is an `InvalidArgument` naming the argument (never an overflow, never a
//! panic), and the keyword options shared by `bind`, `listen`, `connect`.

use std::time::Duration;

use host_lib::{Bind, ConnOptions, Options};
use pyo3::prelude::*;

use crate::errors::invalid;

/// libcsp's CSP_ANY: bind every port no other socket holds.
pub const ANY: i64 = 255;
/// Highest CSP port.
pub const MAX_PORT: i64 = 63;
/// Highest CSP v2 address.
pub const MAX_ADDR: i64 = 16383;

/// A key given as `bytes` or `str` (libcsp keys are strings).
#[derive(FromPyObject)]
pub enum Key {
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Text, used as its UTF-8 bytes.
    Text(String),
}

impl Key {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Key::Bytes(b) => b,
            Key::Text(s) => s.as_bytes(),
        }
    }
}

/// A destination port, 0..=63.
pub fn port(py: Python<'_>, what: &str, v: i64) -> PyResult<u8> {
    if (0..=MAX_PORT).contains(&v) {
        Ok(v as u8)
    } else {
        Err(invalid(py, format!("{what} {v} is outside 0..={MAX_PORT}")))
    }
}

/// A CSP address, 0..=16383.
pub fn addr(py: Python<'_>, what: &str, v: i64) -> PyResult<u16> {
    if (0..=MAX_ADDR).contains(&v) {
        Ok(v as u16)
    } else {
        Err(invalid(py, format!("{what} {v} is outside 0..={MAX_ADDR}")))
    }
}

/// What `bind` takes: a port, `ANY` (255), or `None` for an ephemeral one.
pub fn bind(py: Python<'_>, v: Option<i64>) -> PyResult<Bind> {
    match v {
        None => Ok(Bind::Ephemeral),
        Some(ANY) => Ok(Bind::Any),
        Some(p) => port(py, "port", p).map(Bind::Port).map_err(|_| {
            invalid(
                py,
                format!("port {p} is outside 0..={MAX_PORT} (or cspmux.ANY, or None)"),
            )
        }),
    }
}

/// Socket options from `bind`'s keywords.
pub fn options(crc: bool, hmac_key: Option<Key>, xtea_key: Option<Key>, sfp: bool) -> Options {
    let mut o = Options::NONE;
    if crc {
        o = o.with_crc();
    }
    if let Some(k) = hmac_key {
        o = o.with_hmac_key(k.bytes());
    }
    if let Some(k) = xtea_key {
        o = o.with_xtea_key(k.bytes());
    }
    if sfp {
        o = o.with_sfp();
    }
    o
}

/// RDP connection options from `listen`'s and `connect`'s keywords.
pub struct RdpArgs {
    pub window: Option<i64>,
    pub segment: Option<i64>,
    pub crc: bool,
    pub hmac_key: Option<Key>,
    pub conn_timeout: Option<f64>,
}

impl RdpArgs {
    pub fn options(&self, py: Python<'_>) -> PyResult<ConnOptions> {
        let mut o = ConnOptions::default();
        if self.crc {
            o = o.with_crc();
        }
        if let Some(k) = &self.hmac_key {
            o = o.with_hmac_key(k.bytes());
        }
        if let Some(w) = self.window {
            let w = u16::try_from(w)
                .map_err(|_| invalid(py, format!("window {w} is not a segment count")))?;
            o = o.with_window(w);
        }
        if let Some(s) = self.segment {
            let s = usize::try_from(s)
                .map_err(|_| invalid(py, format!("segment {s} is not a byte count")))?;
            o = o.with_segment(s);
        }
        if let Some(t) = crate::wait::timeout(py, self.conn_timeout)? {
            o = o.with_conn_timeout(t.max(Duration::from_millis(1)));
        }
        // host-lib checks the ranges against the daemon's MTU.
        Ok(o)
    }
}
