//! The daemon's configuration: one TOML file, every key with an embedded
//! default, so `csp-muxd` with no arguments runs (address 1, UDP on 9700,
//! the default socket). `docs/config.md` describes it for operators;
//! [`DEFAULT_CONFIG`] is what `--print-default-config` prints, and a test
//! checks that it parses to exactly the built-in defaults.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// The commented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Everything the daemon reads from its config file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This CSP node.
    pub node: NodeConfig,
    /// The local socket applications connect to.
    pub ipc: IpcConfig,
    /// Port numbers handed to applications.
    pub ports: PortsConfig,
    /// The UDP link (libcsp 2.x compatible).
    pub udp: UdpConfig,
    /// Routes, one entry per string: `ADDR[/BITS] LINK [VIA | HOST:PORT]`.
    pub routes: Vec<toml::Spanned<String>>,
    /// Routes in libcsp's route-string syntax (`"0/0 UDP, 10 UDP 4"`),
    /// added after `routes`.
    pub route_string: Option<toml::Spanned<String>>,
    /// The built-in services.
    pub services: ServicesConfig,
    /// KISS links (serial device, pty, TCP client or server), `[[kiss]]`
    /// tables; routes name them by `name`.
    pub kiss: Vec<KissConfig>,
    /// ZeroMQ hub links (libcsp's `zmqproxy`), `[[zmq]]` tables; routes
    /// name them by `name`.
    pub zmq: Vec<ZmqConfig>,
    /// CAN links (CFP over slcan), `[[can]]` tables; routes name them by
    /// `name`. Each runs as a stream link (see [`KissConfig::framing`]).
    pub can: Vec<CanConfig>,
    /// Packet capture for `csp capture`: who may, and its bounds.
    pub capture: CaptureConfig,
    /// The Prometheus text endpoint (`docs/config.md`, "Metrics").
    pub metrics: MetricsConfig,
}

/// Packet capture (`[capture]`): frames streamed to trusted clients over
/// their IPC connection (`docs/capture.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Whether clients may capture at all.
    pub enabled: bool,
    /// Users (uids) allowed to capture over the Unix socket besides the
    /// daemon's own user (always allowed while `enabled`).
    pub allowed_uids: Vec<u32>,
    /// Whether clients of the TCP endpoint (token holders) may capture.
    pub allow_tcp: bool,
    /// Frames queued per capture for its client before new ones are
    /// dropped and counted.
    pub queue_len: usize,
    /// Captures running at once (each costs up to `queue_len` frames).
    pub max_captures: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            enabled: true,
            allowed_uids: Vec::new(),
            allow_tcp: false,
            queue_len: 1024,
            max_captures: 4,
        }
    }
}

/// `[metrics]`: where the Prometheus text endpoint listens, if anywhere.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A loopback address (`"127.0.0.1:9190"`); unset: no endpoint.
    pub listen: Option<SocketAddr>,
}

/// This CSP node's identity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The daemon's CSP address (v2 range 1..=16382; 0 is "localhost" and
    /// the top address is broadcast).
    #[serde(deserialize_with = "de_node_addr")]
    pub address: u16,
    /// Hostname reported by CMP ident (at most 19 bytes).
    pub hostname: String,
    /// Model reported by CMP ident (at most 29 bytes).
    pub model: String,
    /// Revision reported by CMP ident (at most 19 bytes).
    pub revision: String,
}

/// What happens when a client's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Drop the oldest queued packet to make room (fresh telemetry wins).
    DropOldest,
    /// Drop the packet that does not fit (what is queued stays in order).
    DropNewest,
}

/// The IPC endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpcConfig {
    /// Unix socket path; empty means the default
    /// (`$XDG_RUNTIME_DIR/csp-muxd.sock`, else `/tmp/csp-muxd-$UID.sock`).
    pub socket: Option<PathBuf>,
    /// Packets queued per client before the overflow policy applies.
    #[serde(deserialize_with = "de_queue_len")]
    pub queue_len: usize,
    /// Overflow policy for a full client queue.
    pub overflow: Overflow,
    /// Most clients connected at once; more are refused.
    pub max_clients: usize,
    /// A client that has not completed HELLO this long after connecting is
    /// closed and counted: silent connections can not hold the slots.
    pub hello_timeout_ms: u64,
    /// A frame begun and not completed within this long (and no whole
    /// frame in between) closes the client: a half-sent frame can not pin
    /// the connection.
    pub frame_timeout_ms: u64,
    /// Numbered ports and CSP_ANY one client may hold at once.
    pub max_ports_per_client: usize,
    /// Ephemeral ports one client may hold at once.
    pub max_ephemeral_per_client: usize,
    /// Optional TCP listener; must be a loopback address.
    pub tcp_listen: Option<SocketAddr>,
    /// Shared token a TCP client must present as its HELLO name; required
    /// when `tcp_listen` is set.
    pub tcp_token: Option<String>,
}

/// Port allocation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortsConfig {
    /// Largest port an application may register by number; the ports above
    /// it are handed out as ephemeral (source) ports only.
    pub max_bind: u8,
    /// First port of the ephemeral range (ports handed out on request).
    pub ephemeral_first: u8,
    /// Last port of the ephemeral range (inclusive, at most 63).
    pub ephemeral_last: u8,
}

/// The UDP link.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    /// Whether the link is opened at all.
    pub enabled: bool,
    /// Local address and port to bind.
    pub bind: SocketAddr,
    /// Peer for routes that name `udp` without HOST:PORT.
    pub peer: Option<SocketAddr>,
    /// CSP header version on this link (1 or 2).
    #[serde(deserialize_with = "de_header_version")]
    pub version: u8,
}

/// How a KISS link reaches its byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KissMode {
    /// A serial device (`device`, `baud`), opened raw.
    Serial,
    /// A pseudo-terminal the daemon creates; its path goes to the log, to
    /// stdout and, with `pty_link`, into a symlink.
    Pty,
    /// A TCP connection the daemon makes to `connect`, and remakes with
    /// backoff when it drops.
    TcpClient,
    /// A TCP listener on `listen`; one peer at a time, a new connection
    /// replaces the current one.
    TcpServer,
}

impl KissMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            KissMode::Serial => "serial",
            KissMode::Pty => "pty",
            KissMode::TcpClient => "tcp-client",
            KissMode::TcpServer => "tcp-server",
        }
    }
}

/// One KISS link (`[[kiss]]` table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KissConfig {
    /// Name routes use for the link; empty means `kissN`, N being the
    /// table's position (0-based).
    pub name: String,
    /// Where the byte stream comes from.
    pub mode: KissMode,
    /// Serial device path (mode `serial`).
    pub device: Option<PathBuf>,
    /// Serial line speed (mode `serial`).
    pub baud: u32,
    /// Where to put a symlink to the created pty (mode `pty`).
    pub pty_link: Option<PathBuf>,
    /// Peer `IP:PORT` (mode `tcp-client`).
    pub connect: Option<SocketAddr>,
    /// Local `IP:PORT` to listen on (mode `tcp-server`).
    pub listen: Option<SocketAddr>,
    /// CSP header version on this link (1 or 2).
    #[serde(deserialize_with = "de_header_version")]
    pub version: u8,
    /// Largest CSP frame (header and data, without the KISS CRC) accepted
    /// or sent; longer ones are dropped and counted.
    pub max_frame: usize,
    /// Frames queued for sending (while the line is busy or down) before
    /// new ones are dropped.
    pub queue_len: usize,
    /// What the stream carries: KISS, or slcan lines for a `[[can]]` link
    /// (set from that table, not written in `[[kiss]]`).
    #[serde(skip)]
    pub framing: StreamFraming,
}

/// How a stream link frames CSP packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFraming {
    /// KISS with libcsp's CRC32.
    #[default]
    Kiss,
    /// CAN frames (CFP) as slcan ASCII lines.
    Slcan {
        /// Our address on the bus (CFP2's sender field).
        addr: u16,
        /// slcan bit-rate code sent to the adapter (`S0`..`S8`) when the
        /// device opens; `None`: the adapter is left as it is.
        bitrate_code: Option<u8>,
    },
}

/// How a CAN link reaches the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanMode {
    /// A serial-line CAN adapter (or a pty): frames as ASCII lines.
    Slcan,
    /// A Linux SocketCAN interface by name (not built yet: refused).
    Socketcan,
}

/// One CAN link (`[[can]]` table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanConfig {
    /// Name routes use for the link; empty means `canN`.
    pub name: String,
    /// How the bus is reached.
    pub mode: CanMode,
    /// Serial device of the adapter (slcan); without it, with `pty_link`,
    /// the daemon creates a pty.
    pub device: Option<PathBuf>,
    /// The Linux CAN network interface (socketcan), e.g. `can0`.
    pub interface: Option<String>,
    /// Serial line speed to the adapter.
    pub baud: u32,
    /// Where to put a symlink to the created pty.
    pub pty_link: Option<PathBuf>,
    /// CAN bit rate in kbit/s (10, 20, 50, 100, 125, 250, 500, 800, 1000),
    /// set on the adapter when the device opens; absent: left as it is.
    pub bitrate: Option<u32>,
    /// CSP header version, and so the CFP version (1 or 2).
    #[serde(deserialize_with = "de_header_version")]
    pub version: u8,
    /// Largest CSP frame (header and data).
    pub max_frame: usize,
    /// Packets queued for sending before new ones are dropped.
    pub queue_len: usize,
}

impl Default for CanConfig {
    fn default() -> Self {
        CanConfig {
            name: String::new(),
            mode: CanMode::Slcan,
            device: None,
            interface: None,
            baud: 115_200,
            pty_link: None,
            bitrate: None,
            version: 2,
            max_frame: 256 + 6,
            queue_len: 64,
        }
    }
}

/// slcan's `Sn` code for a CAN bit rate in kbit/s.
pub fn slcan_bitrate_code(kbit: u32) -> Option<u8> {
    [10, 20, 50, 100, 125, 250, 500, 800, 1000]
        .iter()
        .position(|&k| k == kbit)
        .map(|i| i as u8)
}

impl Default for KissConfig {
    fn default() -> Self {
        KissConfig {
            name: String::new(),
            mode: KissMode::Pty,
            device: None,
            baud: 115_200,
            pty_link: None,
            connect: None,
            listen: None,
            version: 2,
            max_frame: 256 + 6,
            queue_len: 64,
            framing: StreamFraming::Kiss,
        }
    }
}

impl KissConfig {
    /// The CSP header version on this link.
    pub fn header_version(&self) -> csp_core::Version {
        if self.version == 1 {
            csp_core::Version::V1
        } else {
            csp_core::Version::V2
        }
    }
}

/// How frames sit in a ZeroMQ message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZmqFraming {
    /// libcsp 2.x: `header | data`, nothing else.
    Libcsp2,
    /// libcsp 1.x: the next hop's address in one byte, then the v1 header
    /// as a little-endian u32 (libcsp 1.x sent it in host order), then data.
    Libcsp1,
}

impl ZmqFraming {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ZmqFraming::Libcsp2 => "libcsp2",
            ZmqFraming::Libcsp1 => "libcsp1",
        }
    }
}

/// One ZeroMQ hub link (`[[zmq]]` table): PUB to the proxy's XSUB
/// endpoint, SUB from its XPUB endpoint, one CSP frame per message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZmqConfig {
    /// Name routes use for the link; empty means `zmqN`, N being the
    /// table's position (0-based).
    pub name: String,
    /// Where frames are published: the proxy's XSUB endpoint.
    pub pub_endpoint: String,
    /// Where frames are received from: the proxy's XPUB endpoint.
    pub sub_endpoint: String,
    /// CSP header version on the hub (1 or 2).
    #[serde(deserialize_with = "de_header_version")]
    pub version: u8,
    /// Message layout: libcsp 2.x's, or 1.x's (which needs `version = 1`).
    pub framing: ZmqFraming,
    /// Receive every frame on the hub, not only those for this node.
    pub promiscuous: bool,
    /// More destination addresses to receive frames for (a gateway's
    /// far side), besides the node address and broadcast.
    pub subscribe: Vec<u16>,
}

impl Default for ZmqConfig {
    fn default() -> Self {
        ZmqConfig {
            name: String::new(),
            pub_endpoint: "tcp://127.0.0.1:6000".into(),
            sub_endpoint: "tcp://127.0.0.1:7000".into(),
            version: 2,
            framing: ZmqFraming::Libcsp2,
            promiscuous: false,
            subscribe: Vec::new(),
        }
    }
}

impl ZmqConfig {
    /// The CSP header version on this link.
    pub fn header_version(&self) -> csp_core::Version {
        if self.version == 1 {
            csp_core::Version::V1
        } else {
            csp_core::Version::V2
        }
    }
}

/// Built-in services on the daemon's own address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// Answer ping, uptime, memfree, buffer free and ident.
    pub enabled: bool,
    /// Command run (through `sh -c`) on a reboot/shutdown request that the
    /// policy below lets through; without it such requests are refused.
    pub reboot_hook: Option<String>,
    /// Act on reboot requests (port 4, magic 0x80078007) at all.
    pub allow_reboot: bool,
    /// Act on shutdown requests (port 4, magic 0xD1E5529A) at all.
    pub allow_shutdown: bool,
    /// Command run (through `sh -c`) to set the clock on a CMP clock request
    /// with a non-zero time (`CSP_CLOCK_SEC`, `CSP_CLOCK_NSEC` in its
    /// environment); without it clock setting is refused and only reading
    /// is answered.
    pub clock_hook: Option<String>,
    /// Let reboot, shutdown and clock-set requests through without a valid
    /// HMAC. Off by default: an unauthenticated peer can not reboot us.
    pub allow_unauthenticated: bool,
    /// File holding the keys of the daemon's own services (`hmac_key`,
    /// `xtea_key`); it must be readable by the daemon's user only. Keys are
    /// never written in this file or on the command line.
    pub key_file: Option<PathBuf>,
    /// Service ports (0..=6) handed to applications. The others belong to
    /// the daemon while services are enabled: CSP_ANY never covers them and
    /// no application may bind them or send from them.
    pub app_ports: Vec<u8>,
}

/// The highest port of the node's own services (CSP_UPTIME).
pub const LAST_SERVICE_PORT: u8 = csp_core::Port::UPTIME.get();

impl Config {
    /// The `[[can]]` tables in socketcan mode, in config order (slcan ones
    /// run as stream links, see [`KissConfig::framing`]).
    pub fn socketcan_links(&self) -> impl Iterator<Item = &CanConfig> {
        self.can.iter().filter(|c| c.mode == CanMode::Socketcan)
    }

    /// Whether `port` of the node's address is one of the daemon's own
    /// service ports, out of every application's reach.
    pub fn daemon_owns_port(&self, port: u8) -> bool {
        self.services.enabled
            && port <= LAST_SERVICE_PORT
            && !self.services.app_ports.contains(&port)
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            address: 1,
            hostname: "csp-muxd".into(),
            model: "csp-rs ground".into(),
            revision: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl Default for IpcConfig {
    fn default() -> Self {
        IpcConfig {
            socket: None,
            queue_len: 256,
            overflow: Overflow::DropOldest,
            max_clients: 1024,
            hello_timeout_ms: 5_000,
            frame_timeout_ms: 10_000,
            max_ports_per_client: 8,
            max_ephemeral_per_client: 4,
            tcp_listen: None,
            tcp_token: None,
        }
    }
}

impl Default for PortsConfig {
    fn default() -> Self {
        PortsConfig {
            max_bind: 31,
            ephemeral_first: 32,
            ephemeral_last: 63,
        }
    }
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            enabled: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 9700)),
            peer: None,
            version: 2,
        }
    }
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            enabled: true,
            reboot_hook: None,
            allow_reboot: false,
            allow_shutdown: false,
            clock_hook: None,
            allow_unauthenticated: false,
            key_file: None,
            app_ports: Vec::new(),
        }
    }
}

fn de_node_addr<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = i64::deserialize(d)?;
    if (1..=16382).contains(&v) {
        Ok(v as u16)
    } else {
        Err(serde::de::Error::custom(format!(
            "address {v} out of range 1..=16382 (0 is localhost, 16383 broadcast)"
        )))
    }
}

fn de_queue_len<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = i64::deserialize(d)?;
    if (1..=65536).contains(&v) {
        Ok(v as usize)
    } else {
        Err(serde::de::Error::custom(format!(
            "queue_len {v} out of range 1..=65536"
        )))
    }
}

fn de_header_version<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = i64::deserialize(d)?;
    match v {
        1 | 2 => Ok(v as u8),
        _ => Err(serde::de::Error::custom(format!(
            "header version {v}: must be 1 or 2"
        ))),
    }
}

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the error is in (None for the embedded default).
    pub path: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key concerned, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("config")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Parse config text. `path` only labels errors.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError {
                path: path.map(Path::to_path_buf),
                line,
                key: key_at(text, e.span().map(|s| s.start)),
                message: e.message().to_string(),
            }
        })?;
        let mut config = config;
        for (i, k) in config.kiss.iter_mut().enumerate() {
            if k.name.is_empty() {
                k.name = format!("kiss{i}");
            }
        }
        for (i, z) in config.zmq.iter_mut().enumerate() {
            if z.name.is_empty() {
                z.name = format!("zmq{i}");
            }
        }
        config.validate(text, path)?;
        config.validate_kiss(text, path)?;
        config.validate_zmq(text, path)?;
        config.validate_can(text, path)?;
        // A CAN link over slcan is a stream link with another framing.
        let cans = std::mem::take(&mut config.can);
        for c in cans.iter().filter(|c| c.mode == CanMode::Slcan) {
            config.kiss.push(KissConfig {
                name: c.name.clone(),
                mode: if c.device.is_some() {
                    KissMode::Serial
                } else {
                    KissMode::Pty
                },
                device: c.device.clone(),
                baud: c.baud,
                pty_link: c.pty_link.clone(),
                version: c.version,
                max_frame: c.max_frame,
                queue_len: c.queue_len,
                framing: StreamFraming::Slcan {
                    addr: config.node.address,
                    bitrate_code: c.bitrate.and_then(slcan_bitrate_code),
                },
                ..KissConfig::default()
            });
        }
        config.can = cans;
        crate::links::RoutePlan::<{ crate::daemon::MAX_ROUTES }>::from_config(&config).map_err(
            |e| ConfigError {
                path: path.map(Path::to_path_buf),
                line: Some(line_of(text, e.at)),
                key: Some(e.key.to_string()),
                message: e.message,
            },
        )?;
        Ok(config)
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_path_buf()),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, Some(path))
    }

    /// The port table's configuration.
    pub fn bind_config(&self) -> Result<csp_core::bind::BindConfig, csp_core::bind::BindError> {
        let p = &self.ports;
        csp_core::bind::BindConfig::new(p.max_bind, p.ephemeral_first, p.ephemeral_last)
    }

    /// Checks that span several keys (serde checks single values).
    fn validate(&self, text: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            path: path.map(Path::to_path_buf),
            line: find_key_line(text, key),
            key: Some(key.to_string()),
            message,
        };
        let p = &self.ports;
        if self.bind_config().is_err() {
            return Err(err(
                "ports.ephemeral_last",
                format!(
                    "need max_bind < ephemeral_first <= ephemeral_last <= 63, got {} < {} <= {}",
                    p.max_bind, p.ephemeral_first, p.ephemeral_last
                ),
            ));
        }
        for (key, value, max) in [
            ("node.hostname", &self.node.hostname, 19),
            ("node.model", &self.node.model, 29),
            ("node.revision", &self.node.revision, 19),
        ] {
            if value.len() > max {
                return Err(err(key, format!("longer than {max} bytes")));
            }
        }
        if let Some(addr) = self.metrics.listen {
            if !addr.ip().is_loopback() {
                return Err(err(
                    "metrics.listen",
                    format!(
                        "{addr} is not a loopback address; the endpoint is unauthenticated, \
                         so a scraper elsewhere goes through a proxy or tunnel"
                    ),
                ));
            }
        }
        if let Some(addr) = self.ipc.tcp_listen {
            if !addr.ip().is_loopback() {
                return Err(err(
                    "ipc.tcp_listen",
                    format!(
                        "{addr} is not a loopback address; the IPC endpoint stays on this machine"
                    ),
                ));
            }
            let min = crate::auth::MIN_TOKEN_LEN;
            match self.ipc.tcp_token.as_deref() {
                None | Some("") => {
                    return Err(err(
                        "ipc.tcp_token",
                        "a token is required when ipc.tcp_listen is set".into(),
                    ))
                }
                Some(t) if t.len() < min => {
                    return Err(err(
                        "ipc.tcp_token",
                        format!(
                            "{} bytes is too short to resist guessing: use at least {min} \
                             (e.g. `head -c 18 /dev/urandom | base64`)",
                            t.len()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(p) = self
            .services
            .app_ports
            .iter()
            .find(|&&p| p > LAST_SERVICE_PORT)
        {
            return Err(err(
                "services.app_ports",
                format!("{p} is not a service port (0..={LAST_SERVICE_PORT})"),
            ));
        }
        if self.ipc.max_clients == 0 {
            return Err(err("ipc.max_clients", "must be at least 1".into()));
        }
        if self.ipc.hello_timeout_ms == 0 {
            return Err(err("ipc.hello_timeout_ms", "must be at least 1".into()));
        }
        if self.ipc.frame_timeout_ms == 0 {
            return Err(err("ipc.frame_timeout_ms", "must be at least 1".into()));
        }
        if !(1..=65536).contains(&self.capture.queue_len) {
            return Err(err(
                "capture.queue_len",
                format!("{} out of range 1..=65536", self.capture.queue_len),
            ));
        }
        if !(1..=64).contains(&self.capture.max_captures) {
            return Err(err(
                "capture.max_captures",
                format!("{} out of range 1..=64", self.capture.max_captures),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Checks of the `[[kiss]]` tables; errors point at the table's key
    /// (or its `[[kiss]]` line when the key is missing).
    fn validate_kiss(&self, text: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        for (i, k) in self.kiss.iter().enumerate() {
            let err = |key: &str, message: String| ConfigError {
                path: path.map(Path::to_path_buf),
                line: table_key_line(text, "kiss", i, key),
                key: Some(format!("kiss.{key}")),
                message: format!("[[kiss]] {:?}: {message}", k.name),
            };
            let name = k.name.as_str();
            if !is_link_name(name) {
                return Err(err("name", LINK_NAME_RULE.into()));
            }
            if self.kiss[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(name))
            {
                return Err(err("name", "another [[kiss]] link has this name".into()));
            }
            let needs = |key: &str, present: bool, mode: KissMode| -> Result<(), ConfigError> {
                match (present, k.mode == mode) {
                    (false, true) => Err(err(key, format!("mode {} needs `{key}`", mode.as_str()))),
                    (true, false) => Err(err(
                        key,
                        format!("`{key}` is for mode {} only", mode.as_str()),
                    )),
                    _ => Ok(()),
                }
            };
            needs("device", k.device.is_some(), KissMode::Serial)?;
            needs("connect", k.connect.is_some(), KissMode::TcpClient)?;
            needs("listen", k.listen.is_some(), KissMode::TcpServer)?;
            if k.pty_link.is_some() && k.mode != KissMode::Pty {
                return Err(err("pty_link", "`pty_link` is for mode pty only".into()));
            }
            if crate::kiss::baud_rate(k.baud).is_none() {
                return Err(err(
                    "baud",
                    format!("{} is not a standard baud rate", k.baud),
                ));
            }
            let min = k.header_version().header_len() + 1;
            if !(min..=crate::kiss::MAX_FRAME).contains(&k.max_frame) {
                return Err(err(
                    "max_frame",
                    format!(
                        "{} out of range {min}..={}",
                        k.max_frame,
                        crate::kiss::MAX_FRAME
                    ),
                ));
            }
            if !(1..=4096).contains(&k.queue_len) {
                return Err(err(
                    "queue_len",
                    format!("{} out of range 1..=4096", k.queue_len),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Checks of the `[[zmq]]` tables, as for `[[kiss]]`; a name may not
    /// repeat a KISS link's either.
    /// Checks of the `[[can]]` tables, as for `[[kiss]]`.
    fn validate_can(&mut self, text: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        for i in 0..self.can.len() {
            if self.can[i].name.is_empty() {
                self.can[i].name = format!("can{i}");
            }
            let c = &self.can[i];
            let err = |key: &str, message: String| ConfigError {
                path: path.map(Path::to_path_buf),
                line: table_key_line(text, "can", i, key),
                key: Some(format!("can.{key}")),
                message: format!("[[can]] {:?}: {message}", c.name),
            };
            let name = c.name.as_str();
            if !is_link_name(name) {
                return Err(err("name", LINK_NAME_RULE.into()));
            }
            if self.can[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(name))
                || self.kiss.iter().any(|o| o.name.eq_ignore_ascii_case(name))
                || self.zmq.iter().any(|o| o.name.eq_ignore_ascii_case(name))
            {
                return Err(err("name", "another link has this name".into()));
            }
            if c.mode == CanMode::Socketcan {
                match c.interface.as_deref() {
                    None | Some("") => {
                        return Err(err(
                            "interface",
                            "socketcan needs the CAN network interface, e.g. interface = \"can0\""
                                .into(),
                        ))
                    }
                    // Linux names are at most IFNAMSIZ - 1 bytes.
                    Some(i) if i.len() > 15 || i.contains(['/', ' ']) => {
                        return Err(err("interface", format!("{i:?} is not an interface name")))
                    }
                    Some(_) => {}
                }
                for (key, set) in [
                    ("device", c.device.is_some()),
                    ("pty_link", c.pty_link.is_some()),
                    ("bitrate", c.bitrate.is_some()),
                ] {
                    if set {
                        return Err(err(
                            key,
                            format!(
                                "{key} is for slcan; a socketcan interface is set up with \
                                 `ip link` (e.g. ip link set can0 type can bitrate 1000000)"
                            ),
                        ));
                    }
                }
            } else if c.interface.is_some() {
                return Err(err(
                    "interface",
                    "interface is for mode = \"socketcan\"".into(),
                ));
            }
            if c.device.is_some() && c.pty_link.is_some() {
                return Err(err(
                    "pty_link",
                    "give `device` (an adapter) or `pty_link` (a pty we create), not both".into(),
                ));
            }
            if c.mode == CanMode::Slcan && crate::kiss::baud_rate(c.baud).is_none() {
                return Err(err("baud", format!("{} is not a standard rate", c.baud)));
            }
            if let Some(kbit) = c.bitrate {
                if slcan_bitrate_code(kbit).is_none() {
                    return Err(err(
                        "bitrate",
                        format!("{kbit} kbit/s is not an slcan rate (10, 20, 50, 100, 125, 250, 500, 800, 1000)"),
                    ));
                }
            }
            if !(16..=crate::kiss::MAX_FRAME).contains(&c.max_frame) {
                return Err(err(
                    "max_frame",
                    format!("must be 16..={}", crate::kiss::MAX_FRAME),
                ));
            }
            if c.queue_len == 0 {
                return Err(err("queue_len", "must be at least 1".into()));
            }
        }
        Ok(())
    }

    fn validate_zmq(&self, text: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        for (i, z) in self.zmq.iter().enumerate() {
            let err = |key: &str, message: String| ConfigError {
                path: path.map(Path::to_path_buf),
                line: table_key_line(text, "zmq", i, key),
                key: Some(format!("zmq.{key}")),
                message: format!("[[zmq]] {:?}: {message}", z.name),
            };
            let name = z.name.as_str();
            if !is_link_name(name) {
                return Err(err("name", LINK_NAME_RULE.into()));
            }
            if self.zmq[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(name))
                || self.kiss.iter().any(|o| o.name.eq_ignore_ascii_case(name))
            {
                return Err(err("name", "another link has this name".into()));
            }
            for (key, endpoint) in [
                ("pub_endpoint", &z.pub_endpoint),
                ("sub_endpoint", &z.sub_endpoint),
            ] {
                // libzmq checks the rest when connecting; a missing
                // transport is the typo worth catching with a line number.
                let ok = endpoint
                    .split_once("://")
                    .is_some_and(|(t, rest)| !t.is_empty() && !rest.is_empty());
                if !ok {
                    return Err(err(
                        key,
                        format!("{endpoint:?} is not a ZeroMQ endpoint (tcp://HOST:PORT)"),
                    ));
                }
            }
            if z.framing == ZmqFraming::Libcsp1 && z.version != 1 {
                return Err(err(
                    "framing",
                    "libcsp 1.x framing carries v1 headers only: set version = 1".into(),
                ));
            }
            let top = if z.version == 1 { 31 } else { 16383 };
            if let Some(a) = z.subscribe.iter().find(|&&a| a > top) {
                return Err(err(
                    "subscribe",
                    format!(
                        "address {a} out of range 0..={top} for version {}",
                        z.version
                    ),
                ));
            }
            if z.subscribe.len() > crate::zmqhub::MAX_SUBSCRIBE {
                return Err(err(
                    "subscribe",
                    format!("at most {} addresses", crate::zmqhub::MAX_SUBSCRIBE),
                ));
            }
        }
        Ok(())
    }
}

/// What [`is_link_name`] accepts, for error messages.
const LINK_NAME_RULE: &str =
    "a link name is letters, digits, - and _, starts with a letter, and is not udp";

/// Whether `name` can name a KISS or ZMQ link: route lines split on
/// whitespace and commas, and `udp` is taken.
fn is_link_name(name: &str) -> bool {
    !name.eq_ignore_ascii_case("udp")
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Line of `key` inside the `index`th `[[table]]` table, else the line of
/// that table's header.
fn table_key_line(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("[[{table}]]");
    let is_header = |l: &str| l.trim_start().starts_with(header.as_str());
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_header(l))
        .nth(index)?
        .0;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |p| start + 1 + p);
    let at = lines[start + 1..end]
        .iter()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(start, |p| start + 1 + p);
    Some(at + 1)
}

/// Line of `dotted.key`'s last component as written in the file (best
/// effort: the first line that assigns it).
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let last = dotted.rsplit('.').next()?;
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(last)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The key assigned on the line containing byte `at`, if that line is an
/// assignment.
fn key_at(text: &str, at: Option<usize>) -> Option<String> {
    let at = at?.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_the_builtin_default() {
        let parsed = Config::parse(DEFAULT_CONFIG, None).unwrap();
        assert_eq!(parsed, Config::default());
        assert_eq!(Config::parse("", None).unwrap(), Config::default());
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = Config::parse("[node]\nhostname = \"x\"\naddress = 20000\n", None).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("address"), "{e}");
        assert!(e.message.contains("out of range"), "{e}");

        let e = Config::parse("[udp]\nbind = \"0.0.0.0:9700\"\nversoin = 2\n", None).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("unknown field `versoin`"), "{e}");

        let e = Config::parse("[ipc]\noverflow = \"drop-all\"\n", None).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("overflow"), "{e}");

        let e = Config::parse("[ports]\nephemeral_first = 40\nephemeral_last = 30\n", None)
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("ports.ephemeral_last"))
        );

        let e = Config::parse(
            "[ipc]\ntcp_listen = \"0.0.0.0:9701\"\ntcp_token = \"t\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("loopback"), "{e}");
        let e = Config::parse("[ipc]\ntcp_listen = \"127.0.0.1:9701\"\n", None).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("ipc.tcp_token"));
    }

    #[test]
    fn kiss_tables_are_read_with_defaults() {
        let c = Config::parse(
            "routes = [\"10 radio\", \"16/10 KISS1 3\"]\n[[kiss]]\nname = \"radio\"\nmode = \"serial\"\ndevice = \"/dev/ttyUSB0\"\nbaud = 9600\n[[kiss]]\nmode = \"tcp-client\"\nconnect = \"127.0.0.1:52001\"\nversion = 1\nmax_frame = 1024\n",
            None,
        )
        .unwrap();
        assert_eq!(c.kiss.len(), 2);
        assert_eq!(c.kiss[0].name, "radio");
        assert_eq!(c.kiss[0].mode, KissMode::Serial);
        assert_eq!(c.kiss[0].baud, 9600);
        assert_eq!(c.kiss[0].max_frame, 262);
        assert_eq!(c.kiss[1].name, "kiss1", "unnamed link named by position");
        assert_eq!(c.kiss[1].header_version(), csp_core::Version::V1);
        assert_eq!(c.kiss[1].max_frame, 1024);
        assert_eq!(c.kiss[1].queue_len, 64);
        let plan = crate::links::RoutePlan::<8>::from_config(&c).unwrap();
        let names: Vec<_> = plan.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["radio", "kiss1"]);
        let shown = plan.table.display_with(|i| names[i.0 as usize]).to_string();
        assert!(shown.contains("10 radio"), "{shown}");
        assert!(shown.contains("16/10 kiss1 3"), "{shown}");
    }

    #[test]
    fn examples_in_the_docs_parse() {
        let doc = include_str!("../../docs/config.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert!(blocks.len() >= 2, "examples found: {}", blocks.len());
        for b in blocks {
            let c = Config::parse(b, None).unwrap_or_else(|e| panic!("{e}\n{b}"));
            crate::links::RoutePlan::<16>::from_config(&c).unwrap();
        }
    }

    #[test]
    fn kiss_errors_name_key_and_line() {
        let bad = |text: &str| Config::parse(text, None).unwrap_err();
        // Unknown key: serde's error, with its line.
        let e = bad("[[kiss]]\nname = \"a\"\nbuad = 9600\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("unknown field `buad`"), "{e}");
        // A missing key points at its table; the second table here.
        let e = bad("[[kiss]]\nname = \"a\"\n[[kiss]]\nname = \"b\"\nmode = \"tcp-client\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("kiss.connect")),
            "{e}"
        );
        let e = bad("[[kiss]]\nmode = \"pty\"\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("kiss.listen")));
        assert!(e.message.contains("for mode tcp-server only"), "{e}");
        let e = bad("[[kiss]]\nmode = \"serial\"\ndevice = \"/dev/x\"\nbaud = 12345\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("kiss.baud")));
        let e = bad("[[kiss]]\nmax_frame = 5\n");
        assert!(e.message.contains("out of range 7..=4096"), "{e}");
        let e = bad("[[kiss]]\nmax_frame = 5000\n");
        assert_eq!(e.key.as_deref(), Some("kiss.max_frame"));
        let e = bad("[[kiss]]\nqueue_len = 0\n");
        assert_eq!(e.key.as_deref(), Some("kiss.queue_len"));
        let e = bad("[[kiss]]\nversion = 3\n");
        assert_eq!(e.line, Some(2), "{e}");
        for name in ["udp", "UDP", "0x", "a b", "a:b"] {
            let e = bad(&format!("[[kiss]]\nname = \"{name}\"\n"));
            assert_eq!(
                (e.line, e.key.as_deref()),
                (Some(2), Some("kiss.name")),
                "{name}"
            );
        }
        let e = bad("[[kiss]]\nname = \"r\"\n[[kiss]]\nname = \"R\"\n");
        assert!(
            e.message.contains("another [[kiss]] link has this name"),
            "{e}"
        );
        assert_eq!(e.line, Some(4));
        // A route naming a link that does not exist.
        let e = bad("routes = [\"10 radio\"]\n[[kiss]]\nname = \"radoi\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("routes")), "{e}");
    }

    #[test]
    fn zmq_tables_are_read_with_defaults() {
        let c = Config::parse(
            "routes = [\"0/0 zmqhub\", \"16/10 ZMQ1\"]\n[[zmq]]\nname = \"zmqhub\"\nsub_endpoint = \"tcp://192.0.2.1:7000\"\npromiscuous = true\n[[zmq]]\nversion = 1\nsubscribe = [3, 4]\n",
            None,
        )
        .unwrap();
        assert_eq!(c.zmq.len(), 2);
        assert_eq!(c.zmq[0].pub_endpoint, "tcp://127.0.0.1:6000");
        assert_eq!(c.zmq[0].sub_endpoint, "tcp://192.0.2.1:7000");
        assert!(c.zmq[0].promiscuous);
        assert_eq!(c.zmq[1].name, "zmq1", "unnamed link named by position");
        assert_eq!(c.zmq[1].header_version(), csp_core::Version::V1);
        assert_eq!(c.zmq[1].subscribe, [3, 4]);
        assert_eq!(c.zmq[1].framing, ZmqFraming::Libcsp2);
        let plan = crate::links::RoutePlan::<8>::from_config(&c).unwrap();
        let names: Vec<_> = plan.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["zmqhub", "zmq1"]);
        let shown = plan.table.display_with(|i| names[i.0 as usize]).to_string();
        assert!(shown.contains("0/0 zmqhub"), "{shown}");
        assert!(shown.contains("16/10 zmq1"), "{shown}");
        // libcsp's route-string syntax names them too.
        let c = Config::parse(
            "route_string = \"0/0 ZMQHUB\"\n[[zmq]]\nname = \"ZMQHUB\"\n",
            None,
        )
        .unwrap();
        crate::links::RoutePlan::<8>::from_config(&c).unwrap();
    }

    #[test]
    fn zmq_errors_name_key_and_line() {
        let bad = |text: &str| Config::parse(text, None).unwrap_err();
        let e = bad("[[zmq]]\nname = \"a\"\npub_endpiont = \"tcp://x:1\"\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("unknown field `pub_endpiont`"), "{e}");
        let e = bad("[[zmq]]\n[[zmq]]\nname = \"b\"\nsub_endpoint = \"127.0.0.1:7000\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("zmq.sub_endpoint")),
            "{e}"
        );
        let e = bad("[[zmq]]\nversion = 1\nsubscribe = [32]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("zmq.subscribe")));
        let e = bad("[[zmq]]\nsubscribe = [16384]\n");
        assert!(e.message.contains("out of range 0..=16383"), "{e}");
        let e = bad("[[zmq]]\nframing = \"libcsp1\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("zmq.framing")),
            "{e}"
        );
        let e = bad("[[zmq]]\nframing = \"libcsp3\"\n");
        assert_eq!(e.line, Some(2), "{e}");
        let e = bad("[[zmq]]\nversion = 3\n");
        assert_eq!(e.line, Some(2), "{e}");
        let e = bad("[[kiss]]\nname = \"hub\"\n[[zmq]]\nname = \"HUB\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("zmq.name")),
            "{e}"
        );
        assert!(e.message.contains("another link has this name"), "{e}");
        for name in ["udp", "1hub", "a b", "-x"] {
            let e = bad(&format!("[[zmq]]\nname = \"{name}\"\n"));
            assert_eq!(e.key.as_deref(), Some("zmq.name"), "{name}");
        }
        let e = bad("routes = [\"0/0 zmqhb\"]\n[[zmq]]\nname = \"zmqhub\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("routes")), "{e}");
    }

    #[test]
    fn values_are_read() {
        let c = Config::parse(
            "routes = [\"0/0 udp 127.0.0.1:9801\"]\n[node]\naddress = 7\n[udp]\nversion = 1\nbind = \"127.0.0.1:9800\"\n[ipc]\noverflow = \"drop-newest\"\nqueue_len = 4\n",
            None,
        )
        .unwrap();
        assert_eq!(c.node.address, 7);
        assert_eq!(c.udp.version, 1);
        assert_eq!(c.ipc.overflow, Overflow::DropNewest);
        assert_eq!(c.ipc.queue_len, 4);
        assert_eq!(c.routes[0].get_ref(), "0/0 udp 127.0.0.1:9801");
        assert_eq!(
            line_of(
                "routes = [\"0/0 udp 127.0.0.1:9801\"]\n",
                c.routes[0].span().start
            ),
            1
        );
    }

    #[test]
    fn capture_section_is_read_and_checked() {
        let c = Config::parse(
            "[capture]\nallowed_uids = [1001, 0]\nallow_tcp = true\nqueue_len = 8\nmax_captures = 2\n",
            None,
        )
        .unwrap();
        assert_eq!(c.capture.allowed_uids, [1001, 0]);
        assert!(c.capture.allow_tcp && c.capture.enabled);
        assert_eq!((c.capture.queue_len, c.capture.max_captures), (8, 2));
        for (key, value) in [("queue_len", "0"), ("max_captures", "65")] {
            let e = Config::parse(&format!("[capture]\n{key} = {value}\n"), None).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(&*format!("capture.{key}")), "{e}");
            assert_eq!(e.line, Some(2), "{e}");
        }
        let e = Config::parse("[capture]\nallowed_uid = [1]\n", None).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn ipc_limits_are_read_and_checked() {
        let c = Config::parse(
            "[ipc]\nhello_timeout_ms = 250\nframe_timeout_ms = 500\nmax_ports_per_client = 2\nmax_ephemeral_per_client = 1\n",
            None,
        )
        .unwrap();
        assert_eq!(
            (
                c.ipc.hello_timeout_ms,
                c.ipc.frame_timeout_ms,
                c.ipc.max_ports_per_client,
                c.ipc.max_ephemeral_per_client
            ),
            (250, 500, 2, 1)
        );
        for key in ["hello_timeout_ms", "frame_timeout_ms"] {
            let e = Config::parse(&format!("[ipc]\n{key} = 0\n"), None).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(format!("ipc.{key}").as_str()), "{e}");
        }
    }
}
