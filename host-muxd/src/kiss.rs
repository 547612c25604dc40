//! KISS links: CSP frames over a byte stream, framed as libcsp does
//! (`csp_core::kiss`: `C0 00 <escaped header | data | CRC32C> C0`).
//!
//! The byte stream is a serial device, a pty the daemon creates, a TCP
//! connection the daemon makes (and remakes), or one it accepts. Whatever
//! the stream, the link is the same: a KISS decoder fed by every byte read,
//! and a bounded queue of encoded frames written as the stream takes them.
//!
//! Reconnecting (tcp-client, and a serial device that fails): the first
//! attempt after a drop waits [`BACKOFF_FIRST`], each failed one doubles the
//! wait up to [`BACKOFF_MAX`]; a connection that lived [`STABLE`] resets it.
//! The daemon's poll sleeps until [`KissLink::deadline`], so a dead peer
//! costs one attempt per backoff period, never a busy loop. The frame that
//! was being written when the stream failed is sent again once on the next
//! stream (it may then arrive twice: CSP above KISS tolerates that, losing it
//! silently is worse); frames queued behind it wait for the new stream.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use csp_core::kiss::{encode, max_encoded_len, KissDecoder, KissStats};
use csp_core::Version;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::termios::{self, BaudRate, SetArg, Termios};

use crate::config::{KissConfig, KissMode, StreamFraming};
use crate::slcan;

/// A `[[can]]` link's state: slcan lines in, CFP reassembly, CFP out.
struct SlcanState {
    lines: slcan::Decoder,
    can: Box<csp_core::cfp::CanLink<8, MAX_FRAME>>,
    /// The CFP reassembler's clock starts with the link.
    epoch: Instant,
    bitrate_code: Option<u8>,
}

impl SlcanState {
    fn now(&self, now: Instant) -> csp_core::time::Instant {
        csp_core::time::Instant::from_millis(now.duration_since(self.epoch).as_millis() as u64)
    }
}

/// Largest CSP frame (header | data) any KISS link can be configured for;
/// the decoder of every link holds this much.
pub const MAX_FRAME: usize = 4096;
/// Wait before the first reconnect attempt after a drop.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the backoff.
pub const STABLE: Duration = Duration::from_secs(1);
/// A TCP connect still pending after this long is abandoned and retried
/// (a peer behind a firewall that drops SYNs would otherwise hold the link
/// for the kernel's minutes-long timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The termios speed for `baud`, if it is a standard rate.
pub fn baud_rate(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        1200 => BaudRate::B1200,
        2400 => BaudRate::B2400,
        4800 => BaudRate::B4800,
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        500_000 => BaudRate::B500000,
        921_600 => BaudRate::B921600,
        1_000_000 => BaudRate::B1000000,
        2_000_000 => BaudRate::B2000000,
        _ => return None,
    })
}

/// Counters of one KISS link beyond what the decoder counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KissLinkStats {
    /// Frames received intact (CRC good, within `max_frame`).
    pub rx_frames: u64,
    /// Bytes read from the stream.
    pub rx_bytes: u64,
    /// Frames that decoded but are longer than `max_frame`, dropped.
    pub rx_too_long: u64,
    /// Frames completely written to the stream.
    pub tx_frames: u64,
    /// Bytes written to the stream.
    pub tx_bytes: u64,
    /// Frames dropped because the send queue was full.
    pub tx_queue_full: u64,
    /// Frames not sent: longer than `max_frame`, header not expressible in
    /// the link's version, or failed twice (in flight on two dropped streams).
    pub tx_errors: u64,
    /// Frames sent again on a new stream after the old one failed mid-frame.
    pub tx_retried: u64,
    /// Streams established (connections made or accepted, device opened).
    pub connects: u64,
    /// Streams lost (EOF, reset, write error) or replaced.
    pub disconnects: u64,
    /// Failed connection or open attempts.
    pub connect_failures: u64,
}

/// The byte stream under a link.
#[derive(Debug)]
enum Stream {
    /// A pty master or a serial device, non-blocking.
    Tty(File),
    /// A TCP connection, possibly still being established.
    Tcp(TcpStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tty(f) => f.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tty(f) => f.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tty(f) => registry.register(&mut SourceFd(&f.as_raw_fd()), token, interest),
            Stream::Tcp(s) => registry.register(s, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = match self {
            Stream::Tty(f) => registry.deregister(&mut SourceFd(&f.as_raw_fd())),
            Stream::Tcp(s) => registry.deregister(s),
        };
    }
}

/// A live (or connecting) stream.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    /// A TCP connect still in progress: no reads or writes yet.
    connecting: bool,
    since: Instant,
}

/// One KISS link in the daemon's poll.
pub struct KissLink {
    /// Name routes use.
    pub name: String,
    /// How the stream is reached.
    pub mode: KissMode,
    /// Header version on the line.
    pub version: Version,
    max_frame: usize,
    queue_len: usize,
    device: Option<PathBuf>,
    baud: u32,
    connect: Option<SocketAddr>,
    /// Token of the stream; the listener (tcp-server) has the next one.
    token: Token,
    conn: Option<Conn>,
    listener: Option<TcpListener>,
    /// The pty's slave side, held open so that the master never sees a
    /// hang-up while no program has the pty open, and so its raw settings
    /// stay.
    pty_slave: Option<OwnedFd>,
    /// Path of the pty slave (mode pty).
    pub pty_path: Option<PathBuf>,
    pty_link: Option<PathBuf>,
    decoder: Box<KissDecoder<MAX_FRAME>>,
    /// Encoded frames waiting; the front one may be partly written.
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    head_written: usize,
    /// The front frame is already on its second stream.
    head_retried: bool,
    /// When to try connecting / opening again.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Counters.
    pub stats: KissLinkStats,
    /// Set for a `[[can]]` link: the stream carries slcan lines, not KISS.
    slcan: Option<SlcanState>,
}

impl std::fmt::Debug for KissLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KissLink")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl KissLink {
    /// Open the link of `cfg` and register it with `registry` under
    /// `token` (and `token + 1` for a tcp-server's listener). A pty is
    /// created, a serial device opened, a listener bound, a connection
    /// started; failing any of those is an error (a tcp-client's refused
    /// connection is not: it is retried).
    pub fn open(
        cfg: &KissConfig,
        token: Token,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<KissLink> {
        let version = cfg.header_version();
        let mut link = KissLink {
            name: cfg.name.clone(),
            mode: cfg.mode,
            version,
            max_frame: cfg.max_frame,
            queue_len: cfg.queue_len,
            device: cfg.device.clone(),
            baud: cfg.baud,
            connect: cfg.connect,
            token,
            conn: None,
            listener: None,
            pty_slave: None,
            pty_path: None,
            pty_link: cfg.pty_link.clone(),
            decoder: Box::new(KissDecoder::new(version)),
            queue: VecDeque::new(),
            head_written: 0,
            head_retried: false,
            retry_at: None,
            backoff: BACKOFF_FIRST,
            stats: KissLinkStats::default(),
            slcan: match cfg.framing {
                StreamFraming::Kiss => None,
                StreamFraming::Slcan { addr, bitrate_code } => Some(SlcanState {
                    lines: slcan::Decoder::new(),
                    can: Box::new(csp_core::cfp::CanLink::new(
                        version,
                        csp_core::Addr::new(addr).unwrap_or(csp_core::Addr::LOCAL),
                    )),
                    epoch: now,
                    bitrate_code,
                }),
            },
        };
        let ctx =
            |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        match cfg.mode {
            KissMode::Pty => link
                .open_pty(registry, now)
                .map_err(ctx(format!("kiss {}: pty", link.name)))?,
            KissMode::Serial => {
                let path = cfg.device.clone().unwrap_or_default();
                link.open_serial(registry, now).map_err(ctx(format!(
                    "kiss {}: {}",
                    link.name,
                    path.display()
                )))?
            }
            KissMode::TcpServer => {
                let addr = cfg
                    .listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                let mut l = TcpListener::bind(addr)
                    .map_err(ctx(format!("kiss {}: listen {addr}", link.name)))?;
                registry.register(&mut l, Token(token.0 + 1), Interest::READABLE)?;
                link.listener = Some(l);
            }
            KissMode::TcpClient => link.start_connect(registry, now),
        }
        Ok(link)
    }

    /// Whether `token` belongs to this link.
    pub fn owns(&self, token: Token) -> bool {
        token == self.token || (self.listener.is_some() && token.0 == self.token.0 + 1)
    }

    /// The decoder's counters.
    pub fn kiss_stats(&self) -> &KissStats {
        self.decoder.stats()
    }

    /// Frames waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// `up`, `connecting`, `listening` (server without a peer) or `down`.
    pub fn state(&self) -> &'static str {
        match (&self.conn, &self.listener) {
            (Some(c), _) if c.connecting => "connecting",
            (Some(_), _) => "up",
            (None, Some(_)) => "listening",
            (None, None) => "down",
        }
    }

    /// Where the link reaches its peer, for status lines.
    pub fn endpoint(&self) -> String {
        match self.mode {
            KissMode::Pty => self
                .pty_path
                .as_ref()
                .map_or("?".into(), |p| p.display().to_string()),
            KissMode::Serial => format!(
                "{}@{}",
                self.device
                    .as_ref()
                    .map_or("?".into(), |p| p.display().to_string()),
                self.baud
            ),
            KissMode::TcpClient => self.connect.map_or("?".into(), |a| a.to_string()),
            KissMode::TcpServer => self
                .listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map_or("?".into(), |a| a.to_string()),
        }
    }

    /// The tcp-server's bound address (tests bind port 0).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// When the link wants [`on_timer`](Self::on_timer) called.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.conn {
            Some(c) if c.connecting => Some(c.since + CONNECT_TIMEOUT),
            _ => self.retry_at,
        }
    }

    fn open_pty(&mut self, registry: &Registry, now: Instant) -> io::Result<()> {
        let pty = nix::pty::openpty(None, None)?;
        // Raw on the slave side: no echo, no line editing, no CR/NL
        // translation, all 256 byte values pass.
        let mut t = termios::tcgetattr(&pty.slave)?;
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &t)?;
        let path = nix::unistd::ttyname(&pty.slave)?;
        let master = File::from(pty.master);
        set_nonblocking(&master)?;
        if let Some(link) = &self.pty_link {
            // Replace a stale link from an earlier run, never a real file.
            if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(link)?;
            }
            std::os::unix::fs::symlink(&path, link)?;
        }
        log::info!("kiss {}: pty {}", self.name, path.display());
        // For a simulator started by a script; a closed stdout is no error.
        let _ = writeln!(io::stdout(), "kiss {} pty {}", self.name, path.display());
        self.pty_slave = Some(pty.slave);
        self.pty_path = Some(path);
        self.set_conn(Stream::Tty(master), false, registry, now)
    }

    fn open_serial(&mut self, registry: &Registry, now: Instant) -> io::Result<()> {
        let path = self.device.clone().unwrap_or_default();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)?;
        let mut t: Termios = termios::tcgetattr(&file)?;
        termios::cfmakeraw(&mut t);
        // Ignore modem control lines (a 3-wire UART has none) and enable the
        // receiver.
        t.control_flags |= termios::ControlFlags::CLOCAL | termios::ControlFlags::CREAD;
        let speed = baud_rate(self.baud).unwrap_or(BaudRate::B115200);
        termios::cfsetspeed(&mut t, speed)?;
        termios::tcsetattr(&file, SetArg::TCSANOW, &t)?;
        log::info!(
            "kiss {}: {} at {} baud",
            self.name,
            path.display(),
            self.baud
        );
        self.set_conn(Stream::Tty(file), false, registry, now)
    }

    fn start_connect(&mut self, registry: &Registry, now: Instant) {
        let Some(addr) = self.connect else { return };
        match TcpStream::connect(addr) {
            Ok(s) => {
                if let Err(e) = self.set_conn(Stream::Tcp(s), true, registry, now) {
                    self.connect_failed(now, &e);
                }
            }
            Err(e) => self.connect_failed(now, &e),
        }
    }

    fn connect_failed(&mut self, now: Instant, e: &io::Error) {
        self.stats.connect_failures += 1;
        log::debug!(
            "kiss {}: connecting to {}: {e}; next try in {:?}",
            self.name,
            self.endpoint(),
            self.backoff
        );
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn set_conn(
        &mut self,
        mut stream: Stream,
        connecting: bool,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<()> {
        stream.register(registry, self.token)?;
        self.conn = Some(Conn {
            stream,
            connecting,
            since: now,
        });
        self.retry_at = None;
        // Bytes of a half-received frame from the old stream must not
        // prefix the first frame of the new one.
        self.decoder.reset();
        if let Some(st) = self.slcan.as_mut() {
            st.lines.reset();
            // A real adapter is closed, set to the bit rate and opened
            // before anything else goes out on this stream.
            if let (KissMode::Serial, Some(code)) = (self.mode, st.bitrate_code) {
                if let Some(cmds) = slcan::open_commands(code) {
                    self.queue.push_front(cmds.into_bytes());
                    self.head_written = 0;
                }
            }
        }
        if !connecting {
            self.established(now);
        }
        Ok(())
    }

    fn established(&mut self, now: Instant) {
        self.stats.connects += 1;
        if let Some(c) = self.conn.as_mut() {
            c.connecting = false;
            c.since = now;
        }
        log::info!("kiss {}: up ({})", self.name, self.endpoint());
    }

    /// The stream failed or ended: drop it, keep the frame in flight for
    /// one more try, and arrange the next stream.
    fn lose(&mut self, registry: &Registry, now: Instant, why: &str) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        conn.stream.deregister(registry);
        if conn.connecting {
            self.stats.connect_failures += 1;
        } else {
            self.stats.disconnects += 1;
            log::info!("kiss {}: down: {why}", self.name);
            if now.duration_since(conn.since) >= STABLE {
                self.backoff = BACKOFF_FIRST;
            }
        }
        self.requeue_head();
        match self.mode {
            KissMode::TcpClient | KissMode::Serial => self.schedule_retry(now),
            // The listener waits for the next peer.
            KissMode::TcpServer => {}
            // The pty is ours and stays; nothing to reopen.
            KissMode::Pty => {}
        }
    }

    /// The front frame was (partly) written to a stream now gone: start it
    /// over on the next stream, once.
    fn requeue_head(&mut self) {
        if self.queue.is_empty() || self.head_written == 0 {
            return;
        }
        if self.head_retried {
            self.queue.pop_front();
            self.stats.tx_errors += 1;
            self.head_retried = false;
        } else {
            self.head_retried = true;
            self.stats.tx_retried += 1;
        }
        self.head_written = 0;
    }

    /// Time has passed: retry a connection or device whose backoff ran out.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) {
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.connecting && now >= c.since + CONNECT_TIMEOUT)
        {
            self.lose(registry, now, "connect timed out");
            log::debug!(
                "kiss {}: connect to {} timed out",
                self.name,
                self.endpoint()
            );
        }
        if self.retry_at.is_none_or(|t| t > now) {
            return;
        }
        self.retry_at = None;
        match self.mode {
            KissMode::TcpClient => self.start_connect(registry, now),
            KissMode::Serial => {
                if let Err(e) = self.open_serial(registry, now) {
                    self.connect_failed(now, &e);
                }
            }
            KissMode::Pty | KissMode::TcpServer => {}
        }
    }

    /// A poll event for one of this link's tokens: accept, read and decode
    /// (each intact frame appended to `frames`), write what is queued.
    pub fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        frames: &mut Vec<Vec<u8>>,
    ) {
        if token != self.token {
            self.accept(registry, now);
            self.flush(registry, now);
            return;
        }
        if self.conn.as_ref().is_some_and(|c| c.connecting) {
            self.check_connected(registry, now);
        }
        // Any event (an error or hang-up may come with neither readiness
        // flag) is answered by reading and writing until the stream would
        // block: that is where EOF and errors show.
        self.read_all(registry, now, frames);
        self.flush(registry, now);
    }

    fn check_connected(&mut self, registry: &Registry, now: Instant) {
        let Some(Conn {
            stream: Stream::Tcp(s),
            ..
        }) = self.conn.as_ref()
        else {
            return;
        };
        match s.take_error() {
            Ok(Some(e)) | Err(e) => {
                let why = e.to_string();
                self.lose(registry, now, &why);
                return;
            }
            Ok(None) => {}
        }
        match s.peer_addr() {
            Ok(_) => {
                let _ = s.set_nodelay(true);
                self.established(now);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => {
                let why = e.to_string();
                self.lose(registry, now, &why);
            }
        }
    }

    /// Accept every waiting peer; the last one wins (a peer that reconnects
    /// after a crash must not be locked out by its own half-dead socket).
    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((s, peer)) => {
                    if self.conn.is_some() {
                        self.lose(registry, now, &format!("replaced by {peer}"));
                    }
                    let _ = s.set_nodelay(true);
                    log::debug!("kiss {}: peer {peer}", self.name);
                    if let Err(e) = self.set_conn(Stream::Tcp(s), false, registry, now) {
                        log::warn!("kiss {}: register {peer}: {e}", self.name);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("kiss {}: accept: {e}", self.name);
                    return;
                }
            }
        }
    }

    fn read_all(&mut self, registry: &Registry, now: Instant, frames: &mut Vec<Vec<u8>>) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(conn) = self.conn.as_mut().filter(|c| !c.connecting) else {
                return;
            };
            match conn.stream.read(&mut buf) {
                Ok(0) => return self.lose(registry, now, "end of stream"),
                Ok(n) => {
                    self.stats.rx_bytes += n as u64;
                    if self.slcan.is_some() {
                        self.rx_slcan(&buf[..n], now, frames);
                        continue;
                    }
                    for &b in &buf[..n] {
                        match self.decoder.push(b) {
                            Some(Ok(frame)) if frame.len() > self.max_frame => {
                                self.stats.rx_too_long += 1;
                                log::debug!(
                                    "kiss {}: {}-byte frame over max_frame {}",
                                    self.name,
                                    frame.len(),
                                    self.max_frame
                                );
                            }
                            Some(Ok(frame)) => {
                                self.stats.rx_frames += 1;
                                frames.push(frame.to_vec());
                            }
                            Some(Err(e)) => log::debug!("kiss {}: dropped: {e}", self.name),
                            None => {}
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.mode == KissMode::Pty => {
                    // Our own pty: with the slave held open this does not
                    // happen; if it does, the pty stays (edge-triggered
                    // poll: no spin).
                    log::warn!("kiss {}: pty read: {e}", self.name);
                    return;
                }
                Err(e) => {
                    let why = e.to_string();
                    return self.lose(registry, now, &why);
                }
            }
        }
    }

    /// slcan bytes in: lines to CAN frames to CSP frames.
    fn rx_slcan(&mut self, bytes: &[u8], now: Instant, frames: &mut Vec<Vec<u8>>) {
        let Some(st) = self.slcan.as_mut() else {
            return;
        };
        let t = st.now(now);
        for &b in bytes {
            match st.lines.push(b) {
                Some(Ok(slcan::Line::Frame(f))) => match st.can.receive(t, f.id, f.data()) {
                    Ok(Some(frame)) if frame.len() > self.max_frame => {
                        self.stats.rx_too_long += 1;
                    }
                    Ok(Some(frame)) => {
                        self.stats.rx_frames += 1;
                        frames.push(frame.to_vec());
                    }
                    Ok(None) => {}
                    Err(e) => log::debug!("can {}: dropped: {e}", self.name),
                },
                Some(Ok(_)) | None => {}
                Some(Err(e)) => log::debug!("can {}: slcan line: {e:?}", self.name),
            }
        }
    }

    /// The slcan line counters and CFP reassembly counters of a `[[can]]` link.
    pub fn can_stats(&self) -> Option<(slcan::SlcanStats, csp_core::cfp::CfpStats)> {
        self.slcan
            .as_ref()
            .map(|st| (*st.lines.stats(), *st.can.stats()))
    }

    /// Queue `frame` (`header | data`) for the link, towards `via` (the
    /// route's next hop; CFP1 on a `[[can]]` link addresses it).
    pub fn send_via(
        &mut self,
        frame: &[u8],
        via: Option<csp_core::Addr>,
        registry: &Registry,
        now: Instant,
    ) -> bool {
        let Some(st) = self.slcan.as_mut() else {
            return self.send(frame, registry, now);
        };
        if frame.len() > self.max_frame {
            self.stats.tx_errors += 1;
            return false;
        }
        if self.queue.len() >= self.queue_len {
            self.stats.tx_queue_full += 1;
            return false;
        }
        // One queue entry per packet: all its CAN frames, in order.
        let wire = match st.can.transmit(frame, via) {
            Ok(frames) => frames.map(|f| slcan::encode(&f)).collect::<String>(),
            Err(e) => {
                self.stats.tx_errors += 1;
                log::debug!("can {}: {e}", self.name);
                return false;
            }
        };
        self.queue.push_back(wire.into_bytes());
        self.flush(registry, now);
        true
    }

    /// Queue `frame` (header | data, header of the link's version) and
    /// write what the stream takes now. False if it was dropped (counted).
    pub fn send(&mut self, frame: &[u8], registry: &Registry, now: Instant) -> bool {
        if frame.len() > self.max_frame {
            self.stats.tx_errors += 1;
            log::debug!(
                "kiss {}: {}-byte frame over max_frame {}, not sent",
                self.name,
                frame.len(),
                self.max_frame
            );
            return false;
        }
        if self.queue.len() >= self.queue_len {
            self.stats.tx_queue_full += 1;
            return false;
        }
        let mut wire = vec![0u8; max_encoded_len(frame.len())];
        match encode(frame, self.version, &mut wire) {
            Ok(n) => wire.truncate(n),
            Err(e) => {
                self.stats.tx_errors += 1;
                log::debug!("kiss {}: {e}", self.name);
                return false;
            }
        }
        self.queue.push_back(wire);
        self.flush(registry, now);
        true
    }

    /// Write queued frames until the stream would block or the queue is
    /// empty; a partial write resumes at the next WRITABLE event.
    fn flush(&mut self, registry: &Registry, now: Instant) {
        loop {
            let Some(conn) = self.conn.as_mut().filter(|c| !c.connecting) else {
                return;
            };
            let Some(front) = self.queue.front() else {
                return;
            };
            match conn.stream.write(&front[self.head_written..]) {
                Ok(0) => return self.lose(registry, now, "stream takes no bytes"),
                Ok(n) => {
                    self.stats.tx_bytes += n as u64;
                    self.head_written += n;
                    if self.head_written == front.len() {
                        self.queue.pop_front();
                        self.head_written = 0;
                        self.head_retried = false;
                        self.stats.tx_frames += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.mode == KissMode::Pty => {
                    log::warn!("kiss {}: pty write: {e}", self.name);
                    return;
                }
                Err(e) => {
                    // Count the failed frame as in flight even if none of
                    // it was written: it is the one the peer did not get.
                    self.head_written = self.head_written.max(1);
                    let why = e.to_string();
                    return self.lose(registry, now, &why);
                }
            }
        }
    }

    /// Remove the pty symlink (on shutdown).
    pub fn close(&mut self) {
        if let Some(link) = &self.pty_link {
            if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

/// A link dropped without [`KissLink::close`] (a start-up that failed
/// after it was opened) removes its pty symlink all the same.
impl Drop for KissLink {
    fn drop(&mut self) {
        self.close();
    }
}

fn set_nonblocking(f: &File) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(f, FcntlArg::F_GETFL)?);
    fcntl(f, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(mode: KissMode, poll: &mio::Poll) -> KissLink {
        let cfg = KissConfig {
            name: "t".into(),
            mode,
            // A port nobody listens on: the connect fails and is retried.
            connect: (mode == KissMode::TcpClient).then(|| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            }),
            queue_len: 2,
            ..KissConfig::default()
        };
        KissLink::open(&cfg, Token(0), poll.registry(), Instant::now()).unwrap()
    }

    #[test]
    fn frame_in_flight_is_retried_once_then_dropped() {
        let poll = mio::Poll::new().unwrap();
        let mut l = link(KissMode::TcpClient, &poll);
        let now = Instant::now();
        let frame = [0u8, 1, 2, 3, 4, 5, 0xC0];
        // Down (connecting): frames queue, up to queue_len.
        assert!(l.send(&frame, poll.registry(), now));
        assert!(l.send(&frame, poll.registry(), now));
        assert!(!l.send(&frame, poll.registry(), now));
        assert_eq!((l.queued(), l.stats.tx_queue_full), (2, 1));
        assert!(!l.send(&[0; 300], poll.registry(), now), "over max_frame");
        assert_eq!(l.stats.tx_errors, 1);

        // Not yet written: a lost stream does not touch it.
        l.requeue_head();
        assert_eq!((l.queued(), l.stats.tx_retried), (2, 0));
        // Partly written when the stream failed: restarted once...
        l.head_written = 5;
        l.requeue_head();
        assert_eq!((l.queued(), l.head_written, l.stats.tx_retried), (2, 0, 1));
        // ...and a second stream lost with nothing of it written keeps it...
        l.requeue_head();
        assert_eq!(l.queued(), 2);
        // ...but failing in flight a second time drops it.
        l.head_written = 1;
        l.requeue_head();
        assert_eq!(
            (l.queued(), l.stats.tx_errors, l.head_retried),
            (1, 2, false)
        );
    }

    #[test]
    fn frame_that_hits_a_dead_connection_goes_out_on_the_next() {
        let poll = mio::Poll::new().unwrap();
        let cfg = KissConfig {
            name: "srv".into(),
            mode: KissMode::TcpServer,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..KissConfig::default()
        };
        let mut l = KissLink::open(&cfg, Token(0), poll.registry(), Instant::now()).unwrap();
        let addr = l.listen_addr().unwrap();
        let accept = |l: &mut KissLink| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while l.state() != "up" {
                assert!(Instant::now() < deadline, "not accepted");
                std::thread::sleep(Duration::from_millis(5));
                l.on_event(Token(1), poll.registry(), Instant::now(), &mut Vec::new());
            }
        };
        let decode = |peer: &mut std::net::TcpStream| {
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut dec = KissDecoder::<64>::new(Version::V2);
            let mut b = [0u8; 1];
            loop {
                assert_eq!(peer.read(&mut b).unwrap(), 1, "peer got EOF");
                if let Some(Ok(f)) = dec.push(b[0]) {
                    return f.to_vec();
                }
            }
        };

        let first = std::net::TcpStream::connect(addr).unwrap();
        accept(&mut l);
        drop(first);
        let now = Instant::now();
        // The first write after the peer closed still succeeds (the peer's
        // kernel answers it with a reset): that frame is lost, as on any
        // TCP link. The next write fails: that frame is in flight.
        l.send(&[0, 0, 0, 0, 0, 0, 1], poll.registry(), now);
        std::thread::sleep(Duration::from_millis(100));
        l.send(&[0, 0, 0, 0, 0, 0, 2], poll.registry(), now);
        assert_eq!(l.state(), "listening", "write error noticed");
        assert_eq!((l.stats.tx_retried, l.queued()), (1, 1));

        let mut second = std::net::TcpStream::connect(addr).unwrap();
        accept(&mut l);
        assert_eq!(decode(&mut second), [0, 0, 0, 0, 0, 0, 2]);
        assert_eq!((l.stats.connects, l.stats.disconnects), (2, 1));
        assert_eq!(l.queued(), 0);
    }

    #[test]
    fn reconnect_backoff_doubles_to_the_ceiling_and_resets_after_a_stable_link() {
        let poll = mio::Poll::new().unwrap();
        let mut l = link(KissMode::TcpClient, &poll);
        let t0 = Instant::now();
        // A connect that hangs is given up after CONNECT_TIMEOUT.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.conn = Some(Conn {
            stream: Stream::Tcp(TcpStream::connect(listener.local_addr().unwrap()).unwrap()),
            connecting: true,
            since: t0,
        });
        let failures = l.stats.connect_failures;
        assert_eq!(l.deadline(), Some(t0 + CONNECT_TIMEOUT));
        l.on_timer(poll.registry(), t0 + CONNECT_TIMEOUT / 2);
        assert!(l.conn.is_some(), "not yet");
        l.on_timer(poll.registry(), t0 + CONNECT_TIMEOUT);
        assert!(l.conn.is_none());
        assert_eq!(l.stats.connect_failures, failures + 1);

        l.backoff = BACKOFF_FIRST;
        let mut waits = Vec::new();
        for _ in 0..8 {
            l.schedule_retry(t0);
            waits.push(l.deadline().unwrap() - t0);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // A timer that is not due does nothing.
        l.on_timer(poll.registry(), t0);
        assert_eq!(l.deadline(), Some(t0 + Duration::from_secs(5)));

        // A connection that lived STABLE resets the backoff when lost.
        l.conn = Some(Conn {
            stream: Stream::Tcp(TcpStream::connect(l.connect.unwrap()).unwrap()),
            connecting: false,
            since: t0,
        });
        l.lose(poll.registry(), t0 + STABLE, "test");
        assert_eq!(l.deadline(), Some(t0 + STABLE + BACKOFF_FIRST));
        assert_eq!(l.stats.disconnects, 1);
    }

    #[test]
    fn pty_mode_creates_a_raw_pty() {
        let poll = mio::Poll::new().unwrap();
        let mut l = link(KissMode::Pty, &poll);
        assert_eq!(l.state(), "up");
        let path = l.pty_path.clone().unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
            .open(&path)
            .unwrap();
        let t = termios::tcgetattr(&slave).unwrap();
        assert!(!t.local_flags.contains(termios::LocalFlags::ECHO));
        assert!(!t.local_flags.contains(termios::LocalFlags::ICANON));
        // Every byte value crosses unchanged (no CR/NL mapping).
        let frame: Vec<u8> = (0..=255u8).collect();
        assert!(l.send(&frame[..200], poll.registry(), Instant::now()));
        let mut got = vec![0u8; 1024];
        let mut f = &slave;
        let n = f.read(&mut got).unwrap();
        let mut dec = KissDecoder::<256>::new(Version::V2);
        let frames: Vec<Vec<u8>> = got[..n]
            .iter()
            .filter_map(|&b| dec.push(b).and_then(Result::ok).map(<[u8]>::to_vec))
            .collect();
        assert_eq!(frames, [frame[..200].to_vec()]);
    }
}
