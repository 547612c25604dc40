//! RDP: listeners and connections.

use std::time::Duration;

use host_lib::{Conn, ConnState, Error};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::client::{borrow, Client};
use crate::errors::{check, raise};
use crate::wait::block_on;

/// How long `close()` waits by default for RDP's close (everything sent
/// acknowledged, then the close handshake).
pub const CLOSE_TIMEOUT: f64 = 5.0;

/// Largest `recv` in one call.
pub const MAX_RECV: usize = 1 << 20;

/// Accepts RDP connections on a port (from `Client.listen`).
#[pyclass(module = "cspmux._native")]
pub struct Listener {
    client: Py<Client>,
    handle: Option<host_lib::Listener>,
    /// The port listened on.
    #[pyo3(get)]
    port: u8,
}

impl Listener {
    pub fn new(client: Py<Client>, handle: host_lib::Listener, port: u8) -> Self {
        Listener {
            client,
            handle: Some(handle),
            port,
        }
    }

    fn handle(&self, py: Python<'_>) -> PyResult<host_lib::Listener> {
        self.handle
            .ok_or_else(|| raise(py, "Closed", "the listener is closed".into()))
    }
}

#[pymethods]
impl Listener {
    /// The next connection, waiting at most `timeout` seconds (None: for
    /// ever). Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout=None))]
    fn accept(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Connection> {
        let limit = crate::wait::timeout(py, timeout)?;
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let inner = c.inner(py)?;
        let conn = block_on(py, inner, limit, |c| c.try_accept(&h).transpose())?;
        Ok(Connection::new(self.client.clone_ref(py), conn))
    }

    /// A connection if one is waiting, else None (never blocks).
    fn try_accept(&self, py: Python<'_>) -> PyResult<Option<Connection>> {
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let conn = check(py, c.inner(py)?.try_accept(&h))?;
        Ok(conn.map(|conn| Connection::new(self.client.clone_ref(py), conn)))
    }

    /// Stop listening; the port goes back. Idempotent.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.handle.is_none() {
            return Ok(());
        }
        let mut c = borrow(py, &self.client)?;
        let Some(h) = self.handle.take() else {
            return Ok(());
        };
        match c.inner(py) {
            Ok(inner) => check(py, py.allow_threads(|| inner.close_listener(h))),
            Err(_) => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<cspmux.Listener port={}>", self.port)
    }
}

/// An RDP connection: reliable, ordered bytes. A context manager.
#[pyclass(module = "cspmux._native")]
pub struct Connection {
    client: Py<Client>,
    handle: Option<Conn>,
}

impl Connection {
    pub fn new(client: Py<Client>, conn: Conn) -> Self {
        Connection {
            client,
            handle: Some(conn),
        }
    }

    fn handle(&self, py: Python<'_>) -> PyResult<Conn> {
        self.handle
            .ok_or_else(|| raise(py, "Closed", "the connection is closed".into()))
    }
}

#[pymethods]
impl Connection {
    /// Queue all of `data`, waiting while RDP's window is full (at most
    /// `timeout` seconds: `Timeout` with `.sent`, the bytes queued).
    /// Returning means queued; `wait_acked()` says the peer has it.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let limit = crate::wait::timeout(py, timeout)?;
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let inner = c.inner(py)?;
        let mut sent = 0;
        let r = block_on(py, inner, limit, |c| {
            while sent < data.len() {
                match c.try_send(&h, &data[sent..]) {
                    Ok(0) | Err(Error::WouldBlock) => return None,
                    Ok(n) => sent += n,
                    Err(e) => return Some(Err(e)),
                }
            }
            Some(Ok(()))
        });
        match r {
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => {
                Err(check(py, Err::<(), _>(Error::SendTimeout { sent })).unwrap_err())
            }
            r => r,
        }
    }

    /// Queue what fits the window now; how many bytes (never blocks).
    fn try_send(&self, py: Python<'_>, data: &[u8]) -> PyResult<usize> {
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        match c.inner(py)?.try_send(&h, data) {
            Err(Error::WouldBlock) => Ok(0),
            r => check(py, r),
        }
    }

    /// Up to `max_bytes` received bytes, waiting at most `timeout` seconds
    /// for some. `b""` once the peer closed and all was read;
    /// `ConnectionFailed` if the connection failed.
    #[pyo3(signature = (max_bytes=65536, timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        max_bytes: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = crate::wait::timeout(py, timeout)?;
        let h = self.handle(py)?;
        let mut buf = vec![0u8; max_bytes.clamp(1, MAX_RECV)];
        let mut c = borrow(py, &self.client)?;
        let inner = c.inner(py)?;
        let n = block_on(py, inner, limit, |c| match c.try_recv(&h, &mut buf) {
            Err(Error::WouldBlock) => None,
            r => Some(r),
        })?;
        Ok(PyBytes::new(py, &buf[..n]))
    }

    /// Received bytes if any (up to `max_bytes`), `b""` at the end, None
    /// if nothing is there yet (never blocks).
    #[pyo3(signature = (max_bytes=65536))]
    fn try_recv<'py>(
        &self,
        py: Python<'py>,
        max_bytes: usize,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let h = self.handle(py)?;
        let mut buf = vec![0u8; max_bytes.clamp(1, MAX_RECV)];
        let mut c = borrow(py, &self.client)?;
        match c.inner(py)?.try_recv(&h, &mut buf) {
            Err(Error::WouldBlock) => Ok(None),
            r => check(py, r).map(|n| Some(PyBytes::new(py, &buf[..n]))),
        }
    }

    /// Wait (at most `timeout` seconds) until the peer acknowledged
    /// everything sent so far.
    #[pyo3(signature = (timeout=None))]
    fn wait_acked(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let limit = crate::wait::timeout(py, timeout)?;
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        let inner = c.inner(py)?;
        block_on(py, inner, limit, |c| match c.is_acked(&h) {
            Ok(false) => None,
            Ok(true) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        })
    }

    /// True once everything sent so far is acknowledged (never blocks).
    fn is_acked(&self, py: Python<'_>) -> PyResult<bool> {
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        check(py, c.inner(py)?.is_acked(&h))
    }

    /// (address, port) of the other end.
    #[getter]
    fn peer(&self, py: Python<'_>) -> PyResult<(u16, u8)> {
        let h = self.handle(py)?;
        let mut c = borrow(py, &self.client)?;
        check(py, c.inner(py)?.conn_peer(&h))
    }

    /// "connecting", "open", "closing", "closed" or "failed".
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<&'static str> {
        let Some(h) = self.handle else {
            return Ok("closed");
        };
        let mut c = borrow(py, &self.client)?;
        Ok(match check(py, c.inner(py)?.conn_state(&h))? {
            ConnState::Connecting => "connecting",
            ConnState::Open => "open",
            ConnState::Closing => "closing",
            ConnState::Closed(_) => "closed",
            ConnState::Failed(_) => "failed",
        })
    }

    /// RDP close: waits (at most `timeout` seconds) for everything sent
    /// to be acknowledged and the close handshake; `ConnectionFailed` if
    /// the data may not have arrived. The handle is gone either way.
    /// Idempotent.
    #[pyo3(signature = (timeout=CLOSE_TIMEOUT))]
    fn close(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let limit = crate::wait::timeout(py, timeout)?;
        if self.handle.is_none() {
            return Ok(());
        }
        let mut c = borrow(py, &self.client)?;
        let Some(h) = self.handle.take() else {
            return Ok(());
        };
        let Ok(inner) = c.inner(py) else {
            return Ok(());
        };
        // Bounded by `timeout` (the close can not be resumed once started).
        let limit = limit.unwrap_or(Duration::from_secs_f64(CLOSE_TIMEOUT));
        check(py, py.allow_threads(|| inner.close_conn(h, Some(limit))))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*exc))]
    fn __exit__(&mut self, py: Python<'_>, exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        let failing = exc.get_item(0).is_ok_and(|t| !t.is_none());
        let r = self.close(py, Some(CLOSE_TIMEOUT));
        // An exception already on its way matters more than the close's.
        if failing {
            return Ok(false);
        }
        r.map(|()| false)
    }

    fn __repr__(&self) -> String {
        match self.handle {
            Some(_) => "<cspmux.Connection>".into(),
            None => "<cspmux.Connection closed>".into(),
        }
    }
}
