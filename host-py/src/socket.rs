//! Connectionless sockets and the datagrams they receive.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::args;
use crate::client::{borrow, Client};
use crate::errors::{check, raise};
use crate::wait::block_on;

/// One received packet, trailers checked and stripped (with SFP, the whole
/// reassembled payload). Reply to (`src`, `sport`).
#[pyclass(module = "cspmux._native", frozen)]
pub struct Datagram {
    /// Sender's address.
    #[pyo3(get)]
    src: u16,
    /// Sender's port: where a reply goes.
    #[pyo3(get)]
    sport: u8,
    /// The address it was sent to.
    #[pyo3(get)]
    dst: u16,
    /// The port it was sent to.
    #[pyo3(get)]
    dport: u8,
    /// Header flags as received (CRC32 0x01, RDP 0x02, XTEA 0x04, HMAC 0x08,
    /// FRAG 0x10).
    #[pyo3(get)]
    flags: u8,
    data: Py<PyBytes>,
}

impl Datagram {
    fn from_lib(py: Python<'_>, d: host_lib::Datagram) -> Self {
        Datagram {
            src: d.src(),
            sport: d.sport(),
            dst: d.header.dst.get(),
            dport: d.dport(),
            flags: d.header.flags.bits(),
            data: PyBytes::new(py, &d.data).unbind(),
        }
    }
}

#[pymethods]
impl Datagram {
    /// The data, as bytes.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<Datagram {}:{} -> {}:{} flags=0x{:02x} {} bytes>",
            self.src,
            self.sport,
            self.dst,
            self.dport,
            self.flags,
            self.data.bind(py).as_bytes().len()
        )
    }
}

/// A bound connectionless socket (from `Client.bind`). A context manager;
/// `close()` releases the port.
#[pyclass(module = "cspmux._native")]
pub struct Socket {
    client: Py<Client>,
    handle: Option<host_lib::Socket>,
    port: u8,
}

impl Socket {
    pub fn new(client: Py<Client>, handle: host_lib::Socket, port: u8) -> Self {
        Socket {
            client,
            handle: Some(handle),
            port,
        }
    }

    fn handle(&self, py: Python<'_>) -> PyResult<host_lib::Socket> {
        self.handle
            .ok_or_else(|| raise(py, "Closed", "the socket is closed".into()))
    }
}

#[pymethods]
impl Socket {
    /// The port held (255 for ANY); an ephemeral port may change when the
    /// daemon restarts.
    #[getter]
    fn port(&self, py: Python<'_>) -> PyResult<u8> {
        let Some(h) = self.handle else {
            return Ok(self.port);
        };
        let mut c = borrow(py, &self.client)?;
        Ok(c.inner(py)
            .ok()
            .and_then(|i| i.local_port(&h).ok())
            .unwrap_or(self.port))
    }

    /// Send `data` (bytes-like) to (`dst`, `dport`) with the socket's
    /// options. Waits (bounded) only while the daemon's socket is full.
    fn sendto(&self, py: Python<'_>, dst: i64, dport: i64, data: &[u8]) -> PyResult<()> {
        let dst = args::addr(py, "dst", dst)?;
        let dport = args::port(py, "dport", dport)?;
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let inner = c.inner(py)?;
        check(py, py.allow_threads(|| inner.sendto(&h, dst, dport, data)))
    }

    /// The next datagram, waiting at most `timeout` seconds (None: for
    /// ever; `Timeout` after). Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout=None))]
    fn recvfrom(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Datagram> {
        let limit = crate::wait::timeout(py, timeout)?;
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let inner = c.inner(py)?;
        let d = block_on(py, inner, limit, |c| c.try_recvfrom(&h).transpose())?;
        Ok(Datagram::from_lib(py, d))
    }

    /// The next datagram if one is queued, else None (never blocks; for
    /// event loops, after `Client.process()`).
    fn try_recvfrom(&self, py: Python<'_>) -> PyResult<Option<Datagram>> {
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let d = check(py, c.inner(py)?.try_recvfrom(&h))?;
        Ok(d.map(|d| Datagram::from_lib(py, d)))
    }

    /// The socket's counters as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let s = check(py, c.inner(py)?.socket_stats(&h))?;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("rx_packets", s.rx_packets)?;
        d.set_item("delivered", s.delivered)?;
        d.set_item("dropped_security", s.dropped_security)?;
        d.set_item("dropped_overflow", s.dropped_overflow)?;
        d.set_item("sfp_errors", s.sfp_errors)?;
        d.set_item("tx_packets", s.tx_packets)?;
        Ok(d)
    }

    /// Release the port. Idempotent.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.handle.is_none() {
            return Ok(());
        }
        let mut c = borrow(py, &self.client)?;
        let Some(h) = self.handle.take() else {
            return Ok(());
        };
        match c.inner(py) {
            Ok(inner) => check(py, py.allow_threads(|| inner.close(h))),
            // The client is closed: the daemon released the port with it.
            Err(_) => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        _exc: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.handle.is_some() { "" } else { " closed" };
        format!("<cspmux.Socket port={}{state}>", self.port)
    }
}
