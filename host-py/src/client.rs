//! `Client`: one connection to csp-muxd, the Python face of
//! `host_lib::Client`. Sockets, listeners and connections made from it
//! hold a reference to it and borrow it for each call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use csp_core::service::client::{self, Request};
use host_lib::{Client as Inner, ClientConfig, Control, Event};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{self, Key, RdpArgs};
use crate::conn::{Connection, Listener};
use crate::errors::{check, invalid, raise};
use crate::service::ServiceSocket;
use crate::socket::Socket;
use crate::wait::block_on;

/// A connection to csp-muxd: this process becomes a CSP node sharing the
/// daemon's address. Use it as a context manager, or call `close()`.
///
/// `Client(socket=None, tcp=None, token=None, name=None, reconnect=True)`:
/// `socket` is the daemon's Unix socket path (default: the daemon's
/// default); `tcp="127.0.0.1:9701"` with `token` uses its loopback TCP
/// listener instead. With `reconnect`, a restarted daemon is reconnected
/// to and every socket registered again.
#[pyclass(module = "cspmux._native", subclass)]
pub struct Client {
    inner: Option<Inner>,
    service: ServiceSocket,
}

/// Borrow the client a socket, listener or connection belongs to. Another
/// thread in a call on the same client is `Busy` (a `RuntimeError`), not a
/// wait: a wait here would hold the GIL and stop that thread too.
pub fn borrow<'py>(py: Python<'py>, client: &'py Py<Client>) -> PyResult<PyRefMut<'py, Client>> {
    borrow_bound(client.bind(py))
}

/// [`borrow`] for the client's own methods that hand out handles.
fn borrow_bound<'py>(client: &Bound<'py, Client>) -> PyResult<PyRefMut<'py, Client>> {
    client.try_borrow_mut().map_err(|_| {
        raise(
            client.py(),
            "Busy",
            "the client is in a call from another thread: give each thread its own Client".into(),
        )
    })
}

impl Client {
    /// A service request to `node`, waiting at most `timeout` seconds.
    fn service(
        &mut self,
        py: Python<'_>,
        node: i64,
        request: Request<'_>,
        timeout: f64,
    ) -> PyResult<(Duration, Vec<u8>)> {
        let node = args::addr(py, "node", node)?;
        let t = crate::wait::timeout(py, Some(timeout))?.unwrap_or_default();
        let Client { inner, service } = self;
        let inner = inner
            .as_mut()
            .ok_or_else(|| raise(py, "Closed", "the client is closed".into()))?;
        service.request(py, inner, node, request, t)
    }

    /// A service whose reply is one 32-bit number.
    fn service_u32(
        &mut self,
        py: Python<'_>,
        node: i64,
        request: Request<'_>,
        timeout: f64,
    ) -> PyResult<u32> {
        let (_, reply) = self.service(py, node, request, timeout)?;
        check(py, client::parse_u32(&reply).map_err(host_lib::Error::from))
    }

    /// The open client, or `Closed`.
    pub fn inner(&mut self, py: Python<'_>) -> PyResult<&mut Inner> {
        self.inner
            .as_mut()
            .ok_or_else(|| raise(py, "Closed", "the client is closed".into()))
    }
}

fn event_dict<'py>(py: Python<'py>, ev: Event) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let kind = match ev {
        Event::Disconnected { reason } => {
            d.set_item("reason", reason)?;
            "disconnected"
        }
        Event::Reconnected => "reconnected",
        Event::PortChanged { old, new, .. } => {
            d.set_item("old", old)?;
            d.set_item("new", new)?;
            "port_changed"
        }
        Event::RebindFailed { error, .. } => {
            d.set_item("error", error.to_string())?;
            "rebind_failed"
        }
        Event::ConnectionFailed { reason, .. } => {
            d.set_item("reason", reason)?;
            "connection_failed"
        }
        Event::ConnectionClosed { .. } => "connection_closed",
        Event::DaemonError { message, .. } => {
            d.set_item("message", message)?;
            "daemon_error"
        }
        _ => "other",
    };
    d.set_item("kind", kind)?;
    Ok(d)
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (socket=None, tcp=None, token=None, name=None, reconnect=true))]
    fn new(
        py: Python<'_>,
        socket: Option<PathBuf>,
        tcp: Option<String>,
        token: Option<String>,
        name: Option<String>,
        reconnect: bool,
    ) -> PyResult<Self> {
        let mut cfg = ClientConfig {
            socket,
            reconnect,
            ..ClientConfig::default()
        };
        if let Some(n) = name {
            cfg.name = n;
        }
        match (tcp, token) {
            (Some(addr), token) => {
                let addr: SocketAddr = addr
                    .parse()
                    .map_err(|e| invalid(py, format!("tcp address {addr:?}: {e}")))?;
                cfg.tcp = Some((addr, token.unwrap_or_default()));
            }
            (None, Some(_)) => return Err(invalid(py, "token is only used with tcp=")),
            (None, None) => {}
        }
        // Connecting waits (bounded) for the daemon's HELLO answer.
        let inner = check(py, py.allow_threads(|| Inner::with_config(cfg)))?;
        Ok(Client {
            inner: Some(inner),
            service: ServiceSocket::default(),
        })
    }

    /// The daemon's CSP address: this process's node address.
    #[getter]
    fn node(&mut self, py: Python<'_>) -> PyResult<u16> {
        Ok(self.inner(py)?.node())
    }

    /// Largest data one packet carries (trailers included).
    #[getter]
    fn mtu(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.inner(py)?.mtu())
    }

    /// True while connected to the daemon (False while it restarts).
    #[getter]
    fn connected(&self) -> bool {
        self.inner.as_ref().is_some_and(Inner::is_connected)
    }

    /// Bind a connectionless socket: `port` 0..63, `cspmux.ANY` (every
    /// port nobody else holds) or None (an ephemeral port). `crc`,
    /// `hmac_key`, `xtea_key` (bytes or str) and `sfp` are added on send and
    /// required on receive.
    #[pyo3(signature = (port=None, *, crc=false, hmac_key=None, xtea_key=None, sfp=false))]
    fn bind(
        slf: &Bound<'_, Self>,
        port: Option<i64>,
        crc: bool,
        hmac_key: Option<Key>,
        xtea_key: Option<Key>,
        sfp: bool,
    ) -> PyResult<Socket> {
        let py = slf.py();
        let bind = args::bind(py, port)?;
        let options = args::options(crc, hmac_key, xtea_key, sfp);
        let mut this = borrow_bound(slf)?;
        let inner = this.inner(py)?;
        let handle = check(py, inner.bind_with(bind, options))?;
        let port = check(py, inner.local_port(&handle))?;
        Ok(Socket::new(slf.clone().unbind(), handle, port))
    }

    /// Accept RDP connections on `port`; take them with `accept()`.
    #[pyo3(signature = (port, *, window=None, segment=None, crc=false, hmac_key=None, conn_timeout=None))]
    fn listen(
        slf: &Bound<'_, Self>,
        port: i64,
        window: Option<i64>,
        segment: Option<i64>,
        crc: bool,
        hmac_key: Option<Key>,
        conn_timeout: Option<f64>,
    ) -> PyResult<Listener> {
        let py = slf.py();
        let port = args::port(py, "port", port)?;
        let options = RdpArgs {
            window,
            segment,
            crc,
            hmac_key,
            conn_timeout,
        }
        .options(py)?;
        let mut this = borrow_bound(slf)?;
        let handle = check(py, this.inner(py)?.listen(port, options))?;
        Ok(Listener::new(slf.clone().unbind(), handle, port))
    }

    /// Open an RDP connection to (`dst`, `dport`) and wait at most
    /// `timeout` seconds for the handshake (`ConnectionFailed` otherwise).
    #[pyo3(signature = (dst, dport, *, window=None, segment=None, crc=false, hmac_key=None, conn_timeout=None, timeout=5.0))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        slf: &Bound<'_, Self>,
        dst: i64,
        dport: i64,
        window: Option<i64>,
        segment: Option<i64>,
        crc: bool,
        hmac_key: Option<Key>,
        conn_timeout: Option<f64>,
        timeout: Option<f64>,
    ) -> PyResult<Connection> {
        let py = slf.py();
        let dst = args::addr(py, "dst", dst)?;
        let dport = args::port(py, "dport", dport)?;
        let limit = crate::wait::timeout(py, timeout)?;
        let options = RdpArgs {
            window,
            segment,
            crc,
            hmac_key,
            conn_timeout,
        }
        .options(py)?;
        let mut this = borrow_bound(slf)?;
        let inner = this.inner(py)?;
        let conn = check(py, inner.start_connect(dst, dport, options))?;
        let opened = block_on(py, inner, limit, |c| match c.conn_state(&conn) {
            Ok(host_lib::ConnState::Connecting) => None,
            Ok(host_lib::ConnState::Open) => Some(Ok(())),
            Ok(other) => Some(Err(host_lib::Error::ConnectionFailed {
                reason: format!("connecting to {dst}:{dport}: {other:?}"),
            })),
            Err(e) => Some(Err(e)),
        });
        match opened {
            Ok(()) => Ok(Connection::new(slf.clone().unbind(), conn)),
            Err(e) => {
                // Give the handle back at once (the close goes on in the
                // background).
                let _ = inner.close_conn(conn, Some(Duration::ZERO));
                if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) {
                    return Err(raise(
                        py,
                        "ConnectionFailed",
                        format!(
                            "no answer from {dst}:{dport} in time: is anything listening \
                             there (with RDP, and these CRC/HMAC options)?"
                        ),
                    ));
                }
                Err(e)
            }
        }
    }

    /// Start opening an RDP connection without waiting for the handshake
    /// (for event loops): its `state` is "connecting" until "open" (or
    /// "failed").
    #[pyo3(signature = (dst, dport, *, window=None, segment=None, crc=false, hmac_key=None, conn_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn start_connect(
        slf: &Bound<'_, Self>,
        dst: i64,
        dport: i64,
        window: Option<i64>,
        segment: Option<i64>,
        crc: bool,
        hmac_key: Option<Key>,
        conn_timeout: Option<f64>,
    ) -> PyResult<Connection> {
        let py = slf.py();
        let dst = args::addr(py, "dst", dst)?;
        let dport = args::port(py, "dport", dport)?;
        let options = RdpArgs {
            window,
            segment,
            crc,
            hmac_key,
            conn_timeout,
        }
        .options(py)?;
        let mut this = borrow_bound(slf)?;
        let conn = check(py, this.inner(py)?.start_connect(dst, dport, options))?;
        Ok(Connection::new(slf.clone().unbind(), conn))
    }

    /// Ping `node` with `size` bytes; the round-trip time in seconds.
    #[pyo3(signature = (node, size=1, timeout=1.0))]
    fn ping(&mut self, py: Python<'_>, node: i64, size: usize, timeout: f64) -> PyResult<f64> {
        let mtu = self.inner(py)?.mtu();
        if size > mtu {
            return Err(invalid(
                py,
                format!("ping size {size} exceeds the MTU {mtu}"),
            ));
        }
        let request = Request::Ping { size };
        let mut sent = vec![0u8; size];
        check(py, request.emit(&mut sent).map_err(host_lib::Error::from))?;
        let (rtt, reply) = self.service(py, node, request, timeout)?;
        check(
            py,
            client::check_ping(&sent, &reply).map_err(host_lib::Error::from),
        )?;
        Ok(rtt.as_secs_f64())
    }

    /// Identification of `node` (CMP ident) as a dict: hostname, model,
    /// revision, date, time.
    #[pyo3(signature = (node, timeout=1.0))]
    fn ident<'py>(
        &mut self,
        py: Python<'py>,
        node: i64,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (_, reply) = self.service(py, node, Request::Ident, timeout)?;
        let id = check(
            py,
            client::parse_ident(&reply).map_err(host_lib::Error::from),
        )?;
        let d = PyDict::new(py);
        d.set_item("hostname", id.hostname)?;
        d.set_item("model", id.model)?;
        d.set_item("revision", id.revision)?;
        d.set_item("date", id.date)?;
        d.set_item("time", id.time)?;
        Ok(d)
    }

    /// Seconds `node` has been up.
    #[pyo3(signature = (node, timeout=1.0))]
    fn uptime(&mut self, py: Python<'_>, node: i64, timeout: f64) -> PyResult<u32> {
        self.service_u32(py, node, Request::Uptime, timeout)
    }

    /// Free memory of `node`, in bytes.
    #[pyo3(signature = (node, timeout=1.0))]
    fn memfree(&mut self, py: Python<'_>, node: i64, timeout: f64) -> PyResult<u32> {
        self.service_u32(py, node, Request::Memfree, timeout)
    }

    /// Free packet buffers of `node`.
    #[pyo3(signature = (node, timeout=1.0))]
    fn buffree(&mut self, py: Python<'_>, node: i64, timeout: f64) -> PyResult<u32> {
        self.service_u32(py, node, Request::BufFree, timeout)
    }

    /// The daemon's answer to a control request, as text: `"status"`,
    /// `"stats"` or `"routes"` (`status()` gives the parsed form).
    fn control(&mut self, py: Python<'_>, what: &str) -> PyResult<String> {
        let request = match what {
            "status" => Control::Status,
            "stats" => Control::Stats,
            "routes" => Control::Routes,
            other => {
                return Err(invalid(
                    py,
                    format!("control request {other:?}: use status, stats or routes"),
                ))
            }
        };
        let inner = self.inner(py)?;
        check(py, py.allow_threads(|| inner.control(request)))
    }

    // ---- for event loops (cspmux.asyncio) ------------------------------

    /// The descriptor to watch for reading; None while the daemon is away.
    /// It changes when the client reconnects.
    fn fileno(&self) -> Option<i32> {
        self.inner.as_ref().and_then(Inner::as_raw_fd)
    }

    /// True if bytes wait to be written: watch the descriptor for writing.
    fn wants_write(&self) -> bool {
        self.inner.as_ref().is_some_and(Inner::wants_write)
    }

    /// Seconds until `process()` must run again for timers (RDP
    /// retransmissions, reconnect attempts), 0 if due, None if no timer.
    fn next_timeout(&self) -> Option<f64> {
        let at = self.inner.as_ref()?.poll_timeout()?;
        Some(at.saturating_duration_since(Instant::now()).as_secs_f64())
    }

    /// Read what the daemon sent, write what is buffered, run due timers.
    /// Never blocks.
    fn process(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner(py)?;
        inner.handle_readable();
        inner.handle_writable();
        inner.handle_timeout(Instant::now());
        Ok(())
    }

    /// The next event as a dict with a `kind` ("disconnected",
    /// "reconnected", "port_changed", "rebind_failed",
    /// "connection_failed", "connection_closed", "daemon_error"), or None.
    fn poll_event<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        match self.inner(py)?.poll_event() {
            Some(ev) => event_dict(py, ev).map(Some),
            None => Ok(None),
        }
    }

    /// Disconnect from the daemon; its ports are released. Idempotent.
    fn close(&mut self) {
        self.inner = None;
        self.service = ServiceSocket::default();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            Some(c) => format!(
                "<cspmux.Client node={} endpoint={} connected={}>",
                c.node(),
                c.endpoint(),
                c.is_connected()
            ),
            None => "<cspmux.Client closed>".into(),
        }
    }

    #[classattr]
    #[allow(non_snake_case)]
    fn ANY() -> i64 {
        args::ANY
    }
}
