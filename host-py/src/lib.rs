//! The native half of the Python package `cspmux`: host-lib's client
//! (a CSP node in the application's process, sharing csp-muxd) as Python
//! classes. The Python half (`python/cspmux/`) adds the exception classes,
//! `Client.status()` and the asyncio module; see docs/python.md.
//!
//! Every blocking call goes through [`wait::block_on`]: non-blocking
//! attempts, waits on the daemon's descriptor with the GIL released, and a
//! signal check between short slices so Ctrl-C works.

use pyo3::prelude::*;

mod args;
mod client;
mod conn;
mod errors;
mod service;
mod socket;
mod wait;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<socket::Socket>()?;
    m.add_class::<socket::Datagram>()?;
    m.add_class::<conn::Listener>()?;
    m.add_class::<conn::Connection>()?;
    m.add("ANY", args::ANY)?;
    m.add("MAX_PORT", args::MAX_PORT)?;
    m.add("MAX_ADDR", args::MAX_ADDR)?;
    Ok(())
}
