//! The one way a Python call blocks: try the non-blocking operation, and
//! while it is not done wait on the daemon's descriptor in short slices
//! with the GIL released, checking for signals (Ctrl-C) between slices.

use std::time::{Duration, Instant};

use host_lib::{Client, Error};
use pyo3::prelude::*;

use crate::errors::{check, invalid};

/// Longest wait between two signal checks: what Ctrl-C may take to act.
/// Data arriving ends a wait at once, so this costs nothing when busy.
pub const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// A Python timeout in seconds (`None`: no limit) as a duration.
pub fn timeout(py: Python<'_>, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| invalid(py, format!("timeout {s}: {e}"))),
        Some(s) => Err(invalid(
            py,
            format!("timeout must be a number of seconds >= 0 or None, not {s}"),
        )),
    }
}

/// Run `attempt` until it gives a result or `limit` passes (then
/// `host_lib::Error::Timeout`, or what `on_timeout` makes of it).
pub fn block_on<T>(
    py: Python<'_>,
    client: &mut Client,
    limit: Option<Duration>,
    mut attempt: impl FnMut(&mut Client) -> Option<host_lib::Result<T>>,
) -> PyResult<T> {
    let deadline = limit.map(|t| Instant::now() + t);
    loop {
        if let Some(r) = attempt(client) {
            return check(py, r);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return check(py, Err(Error::Timeout));
        }
        let slice = deadline.map_or(SIGNAL_SLICE, |d| (d - now).min(SIGNAL_SLICE));
        let waited = py.allow_threads(|| client.wait(Some(slice)));
        if let Err(e) = waited {
            // A lost daemon fails the operation first: say that.
            return check(py, attempt(client).unwrap_or(Err(e)));
        }
        py.check_signals()?;
    }
}
