//! host-lib's `Error` as the Python exceptions of `cspmux.errors`.
//!
//! The classes live in Python (errors.py) so they can have two bases
//! (`Timeout` is also a `TimeoutError`, `ConnectionFailed` a
//! `ConnectionError`), which exceptions made in Rust can not.

use host_lib::Error;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The class of `cspmux.errors` an error maps to.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::Timeout | Error::SendTimeout { .. } => "Timeout",
        Error::NotRunning { .. }
        | Error::PermissionDenied { .. }
        | Error::Disconnected { .. }
        | Error::Refused { .. }
        | Error::VersionMismatch { .. } => "DaemonUnavailable",
        Error::PortInUse { .. } => "PortInUse",
        Error::ConnectionFailed { .. } => "ConnectionFailed",
        Error::ConnectionClosed => "ConnectionClosed",
        Error::UnknownSocket | Error::UnknownConn => "Closed",
        Error::InvalidAddr(_)
        | Error::InvalidPort(_)
        | Error::TooLarge { .. }
        | Error::InvalidOptions(_)
        | Error::NotAvailable(_)
        | Error::Security(_) => "InvalidArgument",
        _ => "CspError",
    }
}

/// Raise `name` from `cspmux.errors` with `message`.
pub fn raise(py: Python<'_>, name: &str, message: String) -> PyErr {
    let made = py
        .import("cspmux.errors")
        .and_then(|m| m.getattr(name))
        .and_then(|cls| cls.call1(PyTuple::new(py, [message])?));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        // The package's Python half is missing (a bare `_native` import):
        // still an exception, never a crash.
        Err(e) => e,
    }
}

/// The Python exception for a host-lib error.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let err = raise(py, class_of(&e), e.to_string());
    if let Error::SendTimeout { sent } = e {
        // How much of the data went out: the rest may be sent again.
        let _ = err.value(py).setattr("sent", sent);
    }
    err
}

/// Map a host-lib result.
pub fn check<T>(py: Python<'_>, r: host_lib::Result<T>) -> PyResult<T> {
    r.map_err(|e| to_py(py, e))
}

/// A bad argument (range, size) found before host-lib sees it.
pub fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, "InvalidArgument", message.into())
}
