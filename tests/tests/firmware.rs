//! firmware-demo under QEMU: builds the Cortex-M image, boots it on
//! `mps2-an386` with UART0 on a TCP socket, and talks to it two ways:
//!
//! - **directly**: KISS over the socket with csp-core, byte for byte (bad
//!   frames, exact counters, and an RDP echo through a host-side
//!   `csp_core::Node`);
//! - **from the ground**: csp-muxd with a `tcp-client` KISS link to QEMU's
//!   socket, and host-lib's `Client` and the `csp` tool through the daemon
//!   (services, the 64 KiB RDP echo, `csp rdp 10 10`, and a frame with a
//!   bad KISS CRC slipped onto the link while the daemon uses it).
//!
//! QEMU missing: a failure under `CI=true`, otherwise a clearly printed skip.
//! Every wait is bounded; QEMU and the daemon are killed when a test ends,
//! panics included.
//!
//! The firmware's application (`firmware-demo/src/app.rs`) is also compiled
//! here for the host and driven without QEMU (module `app_on_host`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use csp_core::kiss::{self, KissDecoder};
use csp_core::security::{HmacKey, SecurityOptions};
use csp_core::service::client::{self, Request};
use csp_core::service::IfStats;
use csp_core::{Addr, Flags, Header, Packet, Port, Prio, Version};
use test_support::{free_tcp_port, run_within, wait_bounded, Muxd, MuxdConfig, Udp};

/// The firmware's default build: address 10, header version 2, MTU 256.
const VERSION: Version = Version::V2;
const FW_ADDR: u16 = 10;
const GROUND_ADDR: u16 = 20;
const MTU: usize = 256;
const ECHO_PORT: u8 = 10;
const SINK_PORT: u8 = 11;
const DEMO_KEY: &[u8] = b"csp-demo-key";

/// How long a reply may take (QEMU on a loaded 2-core CI machine).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long we listen to be sure no reply comes.
const SILENCE: Duration = Duration::from_millis(500);
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const BOOT_TIMEOUT: Duration = Duration::from_secs(10);

type Buf = Packet<{ MTU + 6 }>;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
}

/// The QEMU binary: `qemu-system-arm`, or `$QEMU_SYSTEM_ARM`.
fn qemu_bin() -> std::ffi::OsString {
    std::env::var_os("QEMU_SYSTEM_ARM").unwrap_or_else(|| "qemu-system-arm".into())
}

/// The default firmware image (header v2), built once per test run.
/// `None`: QEMU is missing and we are not in CI (the skip was printed).
fn firmware() -> Option<&'static Path> {
    static ELF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    firmware_variant(&ELF, false)
}

/// The image built with `--features header-v1`.
fn firmware_v1() -> Option<&'static Path> {
    static ELF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    firmware_variant(&ELF, true)
}

fn firmware_variant(
    elf: &'static OnceLock<Result<PathBuf, String>>,
    v1: bool,
) -> Option<&'static Path> {
    let elf = elf.get_or_init(|| {
        if let Err(e) = Command::new(qemu_bin())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            let bin = qemu_bin();
            return Err(format!("{} not runnable ({e})", bin.to_string_lossy()));
        }
        Ok(build_firmware(v1))
    });
    match elf {
        Ok(path) => Some(path),
        Err(why) => {
            // Said once for all the firmware tests.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                test_support::skip_unless_ci(
                    "firmware tests",
                    &format!("{why}; install qemu-system-arm to run them"),
                )
            });
            None
        }
    }
}

/// `cargo build --release --locked` in firmware-demo/ (the cwd selects its
/// .cargo/config.toml), with the outer cargo's build settings removed. Both
/// variants land on the same output path, so builds are serialised and each
/// image is copied to a name of its own before the next build.
fn build_firmware(v1: bool) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo_root().join("firmware-demo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--locked"])
        .args(if v1 {
            &["--features", "header-v1"][..]
        } else {
            &[][..]
        })
        .current_dir(&dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("FW_CSP_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run cargo to build firmware-demo");
    let status = wait_bounded(&mut child, BUILD_TIMEOUT, "firmware build");
    assert!(status.success(), "firmware build failed: {status}");
    let variant = if v1 { "header-v1" } else { "header-v2" };
    eprintln!(
        "firmware ({variant}) built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = dir.join("target/thumbv7em-none-eabihf/release");
    let elf = out.join(format!("firmware-demo-{variant}"));
    std::fs::copy(out.join("firmware-demo"), &elf).expect("copy the image");
    elf
}

fn addr(a: u16) -> Addr {
    Addr::new(a).expect("valid address")
}

fn port(p: u8) -> Port {
    Port::new(p).expect("valid port")
}

/// A running firmware image and a KISS client on its UART.
struct Fw {
    qemu: Child,
    uart: TcpStream,
    kiss: KissDecoder<{ MTU + 6 }>,
    next_sport: u8,
}

impl Drop for Fw {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if std::thread::panicking() {
            let mut out = String::new();
            if let Some(s) = self.qemu.stdout.as_mut() {
                let _ = s.read_to_string(&mut out);
            }
            if let Some(s) = self.qemu.stderr.as_mut() {
                let _ = s.read_to_string(&mut out);
            }
            eprintln!("qemu output:\n{out}");
        }
    }
}

impl Fw {
    /// Boots the firmware; `None` if the test is skipped.
    fn boot() -> Option<Fw> {
        let elf = firmware()?;
        // A port that was free a moment ago may be taken by the time QEMU
        // binds it: try a few.
        for _ in 0..3 {
            let (mut qemu, port) = start_qemu(elf);
            let started = Instant::now();
            let uart = loop {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    break Some(s);
                }
                if matches!(qemu.try_wait(), Ok(Some(_))) || started.elapsed() > BOOT_TIMEOUT {
                    break None;
                }
                sleep(Duration::from_millis(10));
            };
            match uart {
                Some(uart) => {
                    uart.set_nodelay(true).expect("TCP_NODELAY");
                    return Some(Fw {
                        qemu,
                        uart,
                        kiss: KissDecoder::new(VERSION),
                        next_sport: 16,
                    });
                }
                None => {
                    let _ = qemu.kill();
                    let _ = qemu.wait();
                }
            }
        }
        panic!("qemu did not open its UART socket (3 tries)");
    }

    /// A fresh source port per request, so replies cannot be mixed up.
    fn sport(&mut self) -> Port {
        self.next_sport = if self.next_sport >= Port::MAX {
            16
        } else {
            self.next_sport + 1
        };
        port(self.next_sport)
    }

    fn header(&mut self, dport: u8, flags: Flags) -> Header {
        Header {
            prio: Prio::Normal,
            src: addr(GROUND_ADDR),
            dst: addr(FW_ADDR),
            dport: port(dport),
            sport: self.sport(),
            flags,
        }
    }

    /// The KISS bytes of a packet with `payload` and the trailers of `sec`
    /// (which also set the header's CRC32 and HMAC flags).
    fn encode(header: Header, payload: &[u8], sec: &SecurityOptions) -> Vec<u8> {
        let mut p = Buf::with_data(header, payload).expect("payload fits");
        sec.append(&mut p, VERSION, 0).expect("trailers fit");
        Self::encode_as_is(p)
    }

    /// The KISS bytes of a packet exactly as given (flags and data untouched).
    fn encode_as_is(mut p: Buf) -> Vec<u8> {
        let frame = p.frame(VERSION).expect("header fits v2");
        let mut out = vec![0u8; kiss::max_encoded_len(frame.len())];
        let n = kiss::encode(frame, VERSION, &mut out).expect("encodes");
        out.truncate(n);
        out
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.uart
            .write_all(bytes)
            .expect("write to the UART socket");
    }

    fn send(&mut self, header: Header, payload: &[u8], sec: &SecurityOptions) {
        let bytes = Self::encode(header, payload, sec);
        self.send_raw(&bytes);
    }

    /// The next frame from the firmware within `limit`.
    fn recv(&mut self, limit: Duration) -> Option<Buf> {
        let deadline = Instant::now() + limit;
        let mut byte = [0u8; 1];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.uart.set_read_timeout(Some(left)).expect("timeout");
            match self.uart.read(&mut byte) {
                Ok(0) => panic!("QEMU closed the UART socket (firmware exited?)"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("UART socket: {e}"),
            }
            if let Some(Ok(frame)) = self.kiss.push(byte[0]) {
                return Some(Buf::from_frame(frame, VERSION).expect("reply parses"));
            }
        }
    }

    /// Sends a request and returns the verified reply data, `None` if no
    /// reply came. The reply must answer this request (ports swapped) and
    /// carry the trailers the request carried.
    fn request(&mut self, dport: u8, payload: &[u8], sec: &SecurityOptions) -> Option<Vec<u8>> {
        let header = self.header(dport, sec.flags());
        self.send(header, payload, sec);
        let mut reply = self.recv(REPLY_TIMEOUT)?;
        let h = reply.header;
        assert_eq!(
            (h.src, h.dst, h.sport, h.dport),
            (header.dst, header.src, header.dport, header.sport),
            "reply does not answer the request"
        );
        assert_eq!(
            h.flags, header.flags,
            "reply flags differ from the request's"
        );
        sec.verify(&mut reply, VERSION)
            .expect("reply trailers verify");
        Some(reply.data().to_vec())
    }

    fn service(&mut self, req: Request<'_>) -> Vec<u8> {
        let mut payload = [0u8; MTU];
        let n = req.emit(&mut payload).expect("request fits");
        let sec = SecurityOptions {
            crc: req.flags().contains(Flags::CRC32),
            ..SecurityOptions::NONE
        };
        self.request(req.port().get(), &payload[..n], &sec)
            .unwrap_or_else(|| panic!("no reply to {req:?}"))
    }

    fn uptime(&mut self) -> u32 {
        client::parse_u32(&self.service(Request::Uptime)).expect("uptime reply")
    }

    fn kiss_stats(&mut self) -> IfStats {
        let reply = self.service(Request::IfStats("KISS"));
        let (name, stats) = client::parse_if_stats(&reply).expect("ifstat reply");
        assert_eq!(name, "KISS");
        stats
    }

    fn sink_counts(&mut self) -> (u32, u32) {
        let r = self
            .request(SINK_PORT, &[], &SecurityOptions::NONE)
            .expect("sink answers an empty packet");
        assert_eq!(r.len(), 8, "sink report is two u32");
        let word = |i: usize| u32::from_be_bytes(r[i..i + 4].try_into().unwrap());
        (word(0), word(4))
    }

    fn ping_ok(&mut self, size: usize) {
        let mut payload = vec![0u8; size];
        Request::Ping { size }.emit(&mut payload).unwrap();
        let reply = self
            .request(1, &payload, &SecurityOptions::NONE)
            .expect("ping reply");
        client::check_ping(&payload, &reply).expect("ping echoes");
    }

    fn assert_silence(&mut self, what: &str) {
        if let Some(p) = self.recv(SILENCE) {
            panic!("{what}: expected no reply, got {p:?}");
        }
    }
}

fn hmac_opts(key: &[u8]) -> SecurityOptions {
    SecurityOptions {
        hmac: Some(HmacKey::from_key_string(key)),
        ..SecurityOptions::NONE
    }
}

/// Bytes that exercise KISS escaping (FEND, FESC) and every value.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 7 {
            0 => kiss::FEND,
            3 => kiss::FESC,
            _ => (i as u8).wrapping_mul(31).wrapping_add(seed),
        })
        .collect()
}

#[test]
fn services_ping_ident_uptime_memfree_buffree() {
    let Some(mut fw) = Fw::boot() else { return };
    for size in [0, 1, 100, MTU] {
        fw.ping_ok(size);
    }
    // Ping with a CSP CRC32 too (libcsp's `ping -c`).
    let crc = SecurityOptions {
        crc: true,
        ..SecurityOptions::NONE
    };
    let reply = fw.request(1, b"crc'd ping", &crc).expect("crc ping reply");
    assert_eq!(reply, b"crc'd ping");

    let reply = fw.service(Request::Ident);
    let ident = client::parse_ident(&reply).expect("ident reply");
    assert_eq!(ident.hostname, "firmware-demo");
    assert_eq!(ident.model, "mps2-an386");
    let manifest = std::fs::read_to_string(repo_root().join("firmware-demo/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("version = \"{}\"", ident.revision)),
        "revision {:?} is not the crate version",
        ident.revision
    );
    // C __DATE__ / __TIME__ shapes: "Nov 26 2026", "07:20:00".
    assert_eq!(ident.date.len(), 11, "date {:?}", ident.date);
    assert!(ident.date[7..].parse::<u16>().is_ok_and(|y| y >= 2024));
    let t: Vec<_> = ident.time.split(':').collect();
    assert!(
        t.len() == 3 && t.iter().all(|f| f.len() == 2 && f.parse::<u8>().is_ok()),
        "time {:?}",
        ident.time
    );

    let t0 = fw.uptime();
    sleep(Duration::from_millis(1200));
    let t1 = fw.uptime();
    assert!(t1 > t0, "uptime did not increase: {t0} then {t1}");
    assert!(t1 < 120, "uptime {t1} s for a fresh boot");

    let free = client::parse_u32(&fw.service(Request::Memfree)).unwrap();
    eprintln!("memfree (stack low-water mark) after the requests above: {free} B");
    assert!(
        free > 1024 && free < 16 * 1024,
        "memfree {free} outside the 16 KiB budget"
    );
    let buffers = client::parse_u32(&fw.service(Request::BufFree)).unwrap();
    assert_eq!(
        buffers as usize,
        fw_app::RXQ + fw_app::TXQ,
        "every receive and transmit slot is free while a service answers"
    );

    // A port nothing listens on, and a packet for another node: no reply.
    let h = fw.header(30, Flags::NONE);
    fw.send(h, b"anyone?", &SecurityOptions::NONE);
    let mut h = fw.header(ECHO_PORT, Flags::NONE);
    h.dst = addr(11);
    fw.send(h, b"not for you", &SecurityOptions::NONE);
    fw.assert_silence("unknown port / other address");
    fw.ping_ok(4);
}

#[test]
fn echo_plain_crc_and_hmac() {
    let Some(mut fw) = Fw::boot() else { return };
    for len in [0, 1, 100, MTU] {
        let data = pattern(len, len as u8);
        let reply = fw
            .request(ECHO_PORT, &data, &SecurityOptions::NONE)
            .expect("echo reply");
        assert_eq!(reply, data, "echo of {len} bytes");
    }
    let both = SecurityOptions {
        crc: true,
        ..hmac_opts(DEMO_KEY)
    };
    for (sec, room) in [(hmac_opts(DEMO_KEY), 4), (both, 8)] {
        let data = pattern(MTU - room, 7);
        let reply = fw.request(ECHO_PORT, &data, &sec).expect("HMAC echo reply");
        assert_eq!(reply, data);
    }
    let before = fw.kiss_stats();
    // Wrong key: dropped, counted as an authentication error.
    let h = fw.header(ECHO_PORT, Flags::HMAC);
    fw.send(h, b"let me in", &hmac_opts(b"not-the-key"));
    fw.assert_silence("HMAC with the wrong key");
    // HMAC flag without a trailer long enough: dropped too.
    let h = fw.header(ECHO_PORT, Flags::HMAC);
    let bytes = Fw::encode_as_is(Buf::with_data(h, b"ab").unwrap());
    fw.send_raw(&bytes);
    fw.assert_silence("HMAC flag, no trailer");
    let after = fw.kiss_stats();
    assert_eq!(after.autherr.wrapping_sub(before.autherr), 1);
    let reply = fw.request(ECHO_PORT, b"still here", &hmac_opts(DEMO_KEY));
    assert_eq!(reply.as_deref(), Some(&b"still here"[..]));
    // The deepest stack so far (HMAC of a full packet included) stayed
    // within the 16 KiB RAM budget with room to spare. (The deepest point
    // is at boot: the node is built in a stack temporary, see main.rs.)
    let free = client::parse_u32(&fw.service(Request::Memfree)).unwrap();
    eprintln!("memfree (stack low-water mark) after HMAC echoes: {free} B");
    assert!(free > 2 * 1024, "stack reached deep: {free} B left");
}

#[test]
fn sink_counts_packets_and_bytes() {
    let Some(mut fw) = Fw::boot() else { return };
    assert_eq!(fw.sink_counts(), (0, 0));
    let sizes = [1usize, 17, 200, MTU, 3];
    for (i, &len) in sizes.iter().enumerate() {
        let h = fw.header(SINK_PORT, Flags::NONE);
        fw.send(h, &pattern(len, i as u8), &SecurityOptions::NONE);
    }
    // With a CRC32 the trailer is not counted as data.
    let crc = SecurityOptions {
        crc: true,
        ..SecurityOptions::NONE
    };
    let h = fw.header(SINK_PORT, Flags::CRC32);
    fw.send(h, &[9; 10], &crc);
    fw.assert_silence("sink does not answer data");
    let bytes: usize = sizes.iter().sum::<usize>() + 10;
    assert_eq!(fw.sink_counts(), (sizes.len() as u32 + 1, bytes as u32));
}

#[test]
fn bad_frames_rejected_firmware_keeps_answering() {
    let Some(mut fw) = Fw::boot() else { return };
    fw.ping_ok(8);
    let before = fw.kiss_stats();

    // A frame whose KISS CRC is wrong (one data byte flipped after encoding).
    let h = fw.header(ECHO_PORT, Flags::NONE);
    let mut bad = Fw::encode(h, b"corrupted", &SecurityOptions::NONE);
    let at = 2 + 6 + 3; // FEND, command, header, into the data
    bad[at] ^= 0x20;
    fw.send_raw(&bad);
    fw.assert_silence("frame with a bad KISS CRC");

    // Garbage between frames: loose bytes, a non-data KISS command, an
    // invalid escape, a frame too short for a header, an oversize frame.
    fw.send_raw(b"line noise \x01\x02\xff");
    fw.send_raw(&[kiss::FEND, 0x10, 1, 2, 3, kiss::FEND]);
    fw.send_raw(&[kiss::FEND, 0x00, 1, kiss::FESC, 0x42, 2, kiss::FEND]);
    fw.send_raw(&[kiss::FEND, 0x00, 1, 2, kiss::FEND]);
    let mut oversize = vec![kiss::FEND, 0x00];
    oversize.extend(std::iter::repeat_n(0x11, MTU + 64));
    oversize.push(kiss::FEND);
    fw.send_raw(&oversize);
    fw.send_raw(b"more noise");
    fw.assert_silence("garbage");

    // Still answering, and a frame right after garbage is not lost.
    let h = fw.header(ECHO_PORT, Flags::NONE);
    let mut glued = b"\x55\xaa trailing junk".to_vec();
    glued.extend(Fw::encode(h, b"after junk", &SecurityOptions::NONE));
    fw.send_raw(&glued);
    let reply = fw
        .recv(REPLY_TIMEOUT)
        .expect("frame after garbage answered");
    assert_eq!(reply.data(), b"after junk");
    fw.ping_ok(MTU);

    let after = fw.kiss_stats();
    assert_eq!(after.rx_error - before.rx_error, 1, "one bad CRC counted");
    assert!(
        after.frame - before.frame >= 3,
        "bad escape, short and oversize frames counted: {before:?} -> {after:?}"
    );
}

#[test]
fn echo_64k_connectionless_byte_exact() {
    // Connectionless packets in lock-step (one packet in flight: KISS has
    // no flow control of its own); the RDP echo is
    // `ground_rdp_echo_through_csp_muxd`.
    let Some(mut fw) = Fw::boot() else { return };
    let total = 64 * 1024;
    let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 256) as u8).collect();
    let started = Instant::now();
    let mut echoed = Vec::with_capacity(total);
    for chunk in data.chunks(MTU - 4) {
        let crc = SecurityOptions {
            crc: true,
            ..SecurityOptions::NONE
        };
        let reply = fw.request(ECHO_PORT, chunk, &crc).expect("echo reply");
        echoed.extend_from_slice(&reply);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "64 KiB echo too slow"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(echoed == data, "64 KiB echo differs");
    eprintln!(
        "64 KiB echoed in {secs:.2} s ({:.1} KiB/s each way)",
        64.0 / secs
    );
}

/// Starts QEMU with UART0 on a free TCP port (QEMU listens there and holds
/// the guest until a client connects).
fn start_qemu(elf: &Path) -> (Child, u16) {
    let port = free_tcp_port();
    let qemu = Command::new(qemu_bin())
        .args(["-machine", "mps2-an386", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-serial")
        .arg(format!("tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"))
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-arm");
    (qemu, port)
}

// ---------------------------------------------------------------------------
// RDP without the daemon: a host-side csp_core::Node speaking KISS straight
// to QEMU's socket (what a client of one's own on `run-qemu.sh`'s socket
// does). The 64 KiB transfer the issue asks for runs from the ground,
// through csp-muxd (`ground_rdp_echo_through_csp_muxd`); this one keeps
// the byte-level path with nothing in between, and checks the stack depth
// an RDP connection costs the firmware.
// ---------------------------------------------------------------------------

/// The ground node: libcsp's default window (4, the firmware's too: it
/// adopts the client's window and keeps up by echoing each segment as it
/// arrives) and the firmware's segment size (a larger segment would be
/// dropped there: RDP negotiates no segment size).
type GroundNode = csp_core::Node<{ fw_app::PKT }, 4, 4, 4, 2, 4, { fw_app::SEG }, 1, 2>;

/// A ground node speaking KISS to the firmware over QEMU's socket.
struct UartGround {
    node: Box<GroundNode>,
    iface: csp_core::route::IfaceId,
    epoch: Instant,
}

impl UartGround {
    fn new() -> UartGround {
        use csp_core::node::{IfaceConfig, NodeConfig};
        let mut node = Box::new(GroundNode::new(NodeConfig {
            seed: 0x6772_6f75_6e64,
            ..NodeConfig::new(addr(GROUND_ADDR))
        }));
        let iface = node
            .add_iface(IfaceConfig::new(
                "KISS",
                VERSION,
                VERSION.header_len() + MTU,
            ))
            .unwrap();
        node.routes_mut().set_default(iface, None).unwrap();
        UartGround {
            node,
            iface,
            epoch: Instant::now(),
        }
    }

    /// Connects to the echo port, sends `data` as fast as the window
    /// allows, reads the echo, closes and waits for the close. Returns the
    /// echo, the time until it was complete, and the connection counters.
    fn echo(
        &mut self,
        fw: &mut Fw,
        opts: &csp_core::node::ConnectOptions,
        data: &[u8],
    ) -> (Vec<u8>, Duration, csp_rdp::Counters) {
        use csp_core::node::Event;
        let node = &mut self.node;
        let now = {
            let epoch = self.epoch;
            move || csp_core::time::Instant::from_millis(epoch.elapsed().as_millis() as u64)
        };
        let conn = node
            .connect(now(), addr(FW_ADDR), port(ECHO_PORT), opts)
            .expect("connect");
        let (mut sent, mut echoed) = (0usize, Vec::with_capacity(data.len()));
        let (mut connected, mut closed) = (false, false);
        let mut done: Option<(Duration, csp_rdp::Counters)> = None;
        let mut frame = [0u8; GroundNode::MAX_FRAME_LEN];
        let mut seg = [0u8; fw_app::SEG];
        let mut wire = vec![0u8; kiss::max_encoded_len(GroundNode::MAX_FRAME_LEN)];
        let mut rx = [0u8; 4096];
        let started = Instant::now();
        while !closed {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "RDP echo stalled: sent {sent}, echoed {}, {:?}",
                echoed.len(),
                node.conn_counters(conn)
            );
            while let Some(ev) = node.poll_event() {
                match ev {
                    Event::Connected { .. } => connected = true,
                    Event::Readable { conn } => {
                        let n = node.recv_conn(conn, &mut seg).expect("segment");
                        echoed.extend_from_slice(&seg[..n]);
                    }
                    Event::Closed { .. } => closed = true,
                    Event::Failed { reason, .. } => panic!(
                        "RDP connection failed: {reason:?} after {} of {} bytes echoed",
                        echoed.len(),
                        data.len()
                    ),
                    _ => {}
                }
            }
            while connected && sent < data.len() && node.send_capacity(conn).unwrap_or(0) > 0 {
                let end = (sent + fw_app::SEG).min(data.len());
                node.send(now(), conn, &data[sent..end]).expect("send");
                sent = end;
            }
            if echoed.len() >= data.len() && done.is_none() {
                let counters = node.conn_counters(conn).expect("connection");
                done = Some((started.elapsed(), counters));
                node.close(now(), conn).expect("close");
            }
            while let Some(t) = node.poll_transmit(now(), &mut frame) {
                let n = kiss::encode(&frame[..t.len], VERSION, &mut wire).expect("encode");
                fw.send_raw(&wire[..n]);
            }
            // Wait for the firmware's bytes, at most until the next timer.
            let wait = node
                .poll_timeout()
                .map(|t| t.as_millis().saturating_sub(now().as_millis()))
                .unwrap_or(50)
                .clamp(1, 50);
            fw.uart
                .set_read_timeout(Some(Duration::from_millis(wait)))
                .unwrap();
            match fw.uart.read(&mut rx) {
                Ok(0) => panic!("QEMU closed the UART socket (firmware exited?)"),
                Ok(n) => {
                    for &b in &rx[..n] {
                        if let Some(Ok(f)) = fw.kiss.push(b) {
                            let _ = node.handle_frame(now(), self.iface, f);
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("UART socket: {e}"),
            }
            if node.poll_timeout().is_some_and(|t| t <= now()) {
                node.handle_timeout(now());
            }
        }
        let (took, counters) = done.expect("all echoed before the close");
        (echoed, took, counters)
    }
}

#[test]
fn rdp_echo_direct_without_daemon() {
    use csp_core::node::ConnectOptions;
    let Some(mut fw) = Fw::boot() else { return };
    let mut ground = UartGround::new();
    let total = 16 * 1024;
    let data = rdp_pattern(total);
    let (echoed, took, c) = ground.echo(&mut fw, &ConnectOptions::default(), &data);
    assert_eq!(echoed.len(), total, "echoed length");
    assert!(echoed == data, "16 KiB RDP echo differs");
    let secs = took.as_secs_f64();
    eprintln!(
        "RDP direct (no daemon): 16 KiB echoed byte-exact in {secs:.2} s ({:.1} KiB/s each \
         way); ground side: {} segments sent, {} retransmitted, {} received",
        16.0 / secs,
        c.tx_segments,
        c.tx_retransmissions,
        c.rx_segments
    );

    // The firmware still answers, and the connection (its SYN is the
    // deepest stack) left the stack within the budget.
    fw.ping_ok(16);
    let free = client::parse_u32(&fw.service(Request::Memfree)).unwrap();
    eprintln!("memfree (stack low-water mark) after the RDP echo: {free} B");
    assert!(free > 2 * 1024, "stack reached deep: {free} B left");
}

/// RDP test data: every byte value, and KISS's FEND and FESC often.
fn rdp_pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 97 {
            0 => kiss::FEND,
            1 => kiss::FESC,
            _ => (i * 7 + i / 251) as u8,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The ground path: csp-muxd with a KISS tcp-client link to QEMU's socket.
// ---------------------------------------------------------------------------

/// The daemon's address in these tests.
const MUXD_ADDR: u16 = 1;

/// QEMU running the firmware and csp-muxd linked to its UART.
struct Ground {
    qemu: Child,
    /// Killed, and its stderr shown if the test failed, when dropped.
    muxd: Muxd,
    /// The relay between the daemon and QEMU, if the test wants to put
    /// bytes of its own on the link.
    tap: Option<Tap>,
}

impl Drop for Ground {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if std::thread::panicking() {
            let mut out = String::new();
            if let Some(s) = self.qemu.stdout.as_mut() {
                let _ = s.read_to_string(&mut out);
            }
            eprintln!("qemu output:\n{out}");
        }
    }
}

impl Ground {
    /// The configuration README.md shows, with QEMU's port and no UDP.
    fn config(qemu_port: u16, version: u8) -> MuxdConfig {
        MuxdConfig::node(MUXD_ADDR)
            .udp(Udp::Off)
            .route(format!("{FW_ADDR} fw"))
            .extra(&format!(
                "[[kiss]]\nname = \"fw\"\nmode = \"tcp-client\"\n\
                 connect = \"127.0.0.1:{qemu_port}\"\nversion = {version}"
            ))
            .log("warn")
    }

    /// Boots the firmware and starts the daemon; `None` if skipped. Returns
    /// once a ping through the daemon is answered.
    fn start() -> Option<Ground> {
        Some(Self::start_with(firmware()?, 2, false))
    }

    /// As [`start`](Self::start), with a [`Tap`] between the daemon and
    /// QEMU (the daemon connects to the tap, the tap to QEMU).
    fn start_tapped() -> Option<Ground> {
        Some(Self::start_with(firmware()?, 2, true))
    }

    /// As [`start`](Self::start), for an image whose header version is
    /// `version` (the link's version in the daemon's configuration).
    fn start_with(elf: &Path, version: u8, tapped: bool) -> Ground {
        let (qemu, qemu_port) = start_qemu(elf);
        let tap = tapped.then(|| Tap::start(qemu_port));
        let port = tap.as_ref().map_or(qemu_port, |t| t.port);
        // The daemon's socket, then the link: the daemon connects to QEMU
        // (retrying while QEMU is not listening yet), so the first pings
        // may go unanswered.
        let started = Instant::now();
        let g = Ground {
            qemu,
            muxd: Muxd::start(Self::config(port, version)),
            tap,
        };
        let mut client = g.client();
        loop {
            if client.ping(FW_ADDR, 1, Duration::from_millis(300)).is_ok() {
                break;
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "no ping reply through csp-muxd within {BOOT_TIMEOUT:?}"
            );
        }
        eprintln!(
            "qemu + csp-muxd: first ping answered {:.0} ms after start",
            started.elapsed().as_secs_f64() * 1000.0
        );
        g
    }

    fn client(&self) -> host_lib::Client {
        host_lib::Client::connect(&self.muxd.socket).expect("connect to csp-muxd")
    }

    /// Runs `csp --socket S ARGS...` (bounded), returns (success, stdout).
    fn csp(&self, args: &[&str]) -> (bool, String) {
        let (code, out, err) = run_within(self.muxd.csp().args(args), Duration::from_secs(30));
        eprintln!("$ csp {}\n{out}{err}", args.join(" "));
        (code == 0, out)
    }
}

impl Ground {
    /// Runs `csp --socket S ARGS...` with `input` on stdin (bounded);
    /// returns the exit status, stdout's bytes and stderr.
    fn csp_with_stdin(&self, args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
        let mut child = self
            .muxd
            .csp()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run csp");
        // Both directions at once: the echo comes back while stdin is
        // still going in, and either pipe can fill up.
        let mut stdin = child.stdin.take().unwrap();
        let in_len = input.len();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let status = wait_bounded(&mut child, Duration::from_secs(60), "csp");
        writer.join().unwrap().expect("write csp's stdin");
        let out = reader.join().unwrap().expect("read csp's stdout");
        let err = err_reader.join().unwrap();
        eprintln!(
            "$ csp {} < ({} bytes): {status}, {} bytes out\n{err}",
            args.join(" "),
            in_len,
            out.len()
        );
        (status.success(), out, err)
    }

    /// Puts `bytes` on the link to the firmware, beside the daemon's.
    fn inject(&self, bytes: &[u8]) {
        self.tap.as_ref().expect("started with a tap").inject(bytes);
    }
}

/// A TCP relay between the daemon's KISS link and QEMU's UART socket, so a
/// test can put bytes of its own on the link while the daemon uses it
/// (QEMU's socket takes one client). It takes the daemon's one connection,
/// then connects to QEMU (retrying while QEMU starts) and copies both ways.
struct Tap {
    port: u16,
    /// The connection to QEMU once there, shared by the copier and
    /// [`inject`](Self::inject) so that their writes do not interleave.
    uplink: std::sync::Arc<std::sync::Mutex<Option<TcpStream>>>,
}

impl Tap {
    fn start(qemu_port: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("tap listener");
        let port = listener.local_addr().unwrap().port();
        let uplink = std::sync::Arc::new(std::sync::Mutex::new(None::<TcpStream>));
        let shared = uplink.clone();
        // The threads end with the sockets: when QEMU and the daemon are
        // killed, reads fail and each copier returns.
        std::thread::spawn(move || {
            let Ok((daemon, _)) = listener.accept() else {
                return;
            };
            let started = Instant::now();
            let qemu = loop {
                match TcpStream::connect(("127.0.0.1", qemu_port)) {
                    Ok(s) => break s,
                    Err(_) if started.elapsed() < BOOT_TIMEOUT => sleep(Duration::from_millis(10)),
                    Err(_) => return,
                }
            };
            let _ = qemu.set_nodelay(true);
            let _ = daemon.set_nodelay(true);
            let (Ok(mut qemu_rx), Ok(mut daemon_tx), Ok(mut daemon_rx)) =
                (qemu.try_clone(), daemon.try_clone(), daemon.try_clone())
            else {
                return;
            };
            *shared.lock().unwrap() = Some(qemu);
            let up = shared.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = daemon_rx.read(&mut buf) {
                    let mut q = up.lock().unwrap();
                    let Some(q) = q.as_mut() else { return };
                    if q.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = qemu_rx.read(&mut buf) {
                if daemon_tx.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = daemon_tx.shutdown(std::net::Shutdown::Both);
        });
        Tap { port, uplink }
    }

    /// Writes `bytes` to QEMU. Only between the daemon's frames: the test
    /// calls it when nothing of its own is in flight.
    fn inject(&self, bytes: &[u8]) {
        let mut q = self.uplink.lock().unwrap();
        q.as_mut()
            .expect("the tap is connected to QEMU")
            .write_all(bytes)
            .expect("write to QEMU through the tap");
    }
}

/// What one RDP echo through the daemon measured.
struct RdpEcho {
    echoed: Vec<u8>,
    /// From the first SYN to the connection being open (includes waiting
    /// for the firmware's one slot to leave its time-wait).
    connect: Duration,
    /// From open to the last echoed byte read.
    transfer: Duration,
    counters: Option<host_lib::rdp::ConnCounters>,
}

/// Connects to the firmware's echo port through the daemon, sends `data`
/// while reading the echo (the firmware echoes only what fits its window,
/// so a sender that did not read would stall it), then closes.
fn ground_rdp_echo(c: &mut host_lib::Client, opts: host_lib::ConnOptions, data: &[u8]) -> RdpEcho {
    use host_lib::Error;
    let started = Instant::now();
    let conn = c
        .connect_to(FW_ADDR, ECHO_PORT, opts, Some(Duration::from_secs(10)))
        .expect("RDP connect to the firmware's echo port");
    let connect = started.elapsed();
    let started = Instant::now();
    let (mut sent, mut echoed) = (0, Vec::with_capacity(data.len()));
    let mut buf = [0u8; 4096];
    while echoed.len() < data.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "RDP echo through csp-muxd stalled: sent {sent}, echoed {} of {}, {:?}",
            echoed.len(),
            data.len(),
            c.conn_counters(&conn)
        );
        let mut progress = false;
        if sent < data.len() {
            match c.try_send(&conn, &data[sent..]) {
                Ok(n) => {
                    sent += n;
                    progress = n > 0;
                }
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("RDP send after {sent} bytes: {e}"),
            }
        }
        match c.try_recv(&conn, &mut buf) {
            Ok(0) => panic!("the firmware closed after {} bytes echoed", echoed.len()),
            Ok(n) => {
                echoed.extend_from_slice(&buf[..n]);
                progress = true;
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("RDP recv after {} bytes echoed: {e}", echoed.len()),
        }
        if !progress {
            c.wait(Some(Duration::from_millis(50))).expect("wait");
        }
    }
    let transfer = started.elapsed();
    let counters = c.conn_counters(&conn).expect("connection");
    c.wait_acked(&conn, Some(REPLY_TIMEOUT))
        .expect("everything acknowledged");
    c.close_conn(conn, Some(Duration::from_secs(10)))
        .expect("the firmware finishes the close");
    RdpEcho {
        echoed,
        connect,
        transfer,
        counters,
    }
}

#[test]
fn ground_services_through_csp_muxd() {
    let Some(g) = Ground::start() else { return };
    let mut c = g.client();
    let t = REPLY_TIMEOUT;

    for size in [0, 10, 100, 200] {
        let rtt = c.ping(FW_ADDR, size, t).expect("ping through csp-muxd");
        assert!(rtt < t);
    }
    let id = c.ident(FW_ADDR, t).expect("ident");
    assert_eq!(id.hostname, "firmware-demo");
    assert_eq!(id.model, "mps2-an386");
    assert!(!id.revision.is_empty() && id.date.len() == 11 && id.time.len() == 8);

    let u0 = c.uptime(FW_ADDR, t).expect("uptime");
    sleep(Duration::from_millis(1100));
    let u1 = c.uptime(FW_ADDR, t).expect("uptime");
    assert!(u1 > u0, "uptime did not increase: {u0} then {u1}");

    let free = c.memfree(FW_ADDR, t).expect("memfree");
    assert!(free > 1024 && free < 16 * 1024, "memfree {free}");
    let buffers = c.buffree(FW_ADDR, t).expect("buffree");
    assert_eq!(buffers as usize, fw_app::RXQ + fw_app::TXQ);

    // HMAC when the client asks for it: services and echo.
    c.set_service_options(host_lib::Options::NONE.with_hmac_key(DEMO_KEY));
    c.ping(FW_ADDR, 20, t).expect("HMAC ping");
    let opts = host_lib::Options::NONE.with_hmac_key(DEMO_KEY).with_crc();
    let sock = c.bind_with(host_lib::Bind::Ephemeral, opts).expect("bind");
    let payload = pattern(200, 3);
    c.sendto(&sock, FW_ADDR, ECHO_PORT, &payload)
        .expect("sendto");
    let reply = c.recvfrom(&sock, Some(t)).expect("echo reply");
    assert_eq!((reply.src(), reply.sport()), (FW_ADDR, ECHO_PORT));
    assert_eq!(reply.data, payload, "HMAC+CRC echo through csp-muxd");

    // The `csp` tool.
    let (ok, out) = g.csp(&["ping", "-c", "2", "-i", "100", &FW_ADDR.to_string()]);
    assert!(ok, "csp ping failed");
    assert!(out.contains("2 sent, 2 received, 0% loss"), "{out}");
    let (ok, out) = g.csp(&["ident", &FW_ADDR.to_string()]);
    assert!(ok, "csp ident failed");
    assert!(out.contains("hostname: firmware-demo"), "{out}");
    assert!(out.contains("mps2-an386"), "{out}");
    let (ok, out) = g.csp(&["uptime", &FW_ADDR.to_string()]);
    assert!(ok && out.contains(&format!("node {FW_ADDR} up")), "{out}");
}

/// The RDP check from the ground: host-lib's `Client` through
/// csp-muxd and the KISS link, 64 KiB echoed byte-exact by the firmware's
/// port 10 with the firmware's limits (segments of 200, window 4); a
/// second connection with CRC32 + HMAC (demo key); then `csp rdp 10 10` as
/// a process, stdin back on stdout.
#[test]
fn ground_rdp_echo_through_csp_muxd() {
    let Some(g) = Ground::start() else { return };
    let mut c = g.client();
    // The firmware's limits, spelled out (they are host-lib's defaults).
    let opts = host_lib::ConnOptions::default()
        .with_segment(fw_app::SEG)
        .with_window(4);
    let total = 64 * 1024;
    let data = rdp_pattern(total);
    let r = ground_rdp_echo(&mut c, opts, &data);
    assert_eq!(r.echoed.len(), total, "echoed length");
    assert!(r.echoed == data, "64 KiB RDP echo through csp-muxd differs");
    let secs = r.transfer.as_secs_f64();
    let cs = r.counters.expect("counters of the open connection");
    eprintln!(
        "RDP through csp-muxd: connected in {:.0} ms, 64 KiB echoed byte-exact in {secs:.2} s \
         ({:.1} KiB/s each way); client side: {} segments sent, {} retransmitted, {} received",
        r.connect.as_secs_f64() * 1000.0,
        64.0 / secs,
        cs.tx_segments,
        cs.tx_retransmissions,
        cs.rx_segments
    );

    // CRC32 + HMAC on every segment (the firmware mirrors the SYN's
    // trailers). Right after the close the firmware's one slot is in its
    // 2 s time-wait: the SYN is retried until it is free.
    let secured = opts.with_crc().with_hmac_key(DEMO_KEY);
    let part = &data[..8 * 1024];
    let r = ground_rdp_echo(&mut c, secured, part);
    assert!(
        r.echoed == part,
        "HMAC+CRC RDP echo through csp-muxd differs"
    );
    eprintln!(
        "RDP through csp-muxd, HMAC+CRC32: connected in {:.2} s (the slot's time-wait), 8 KiB \
         echoed in {:.2} s",
        r.connect.as_secs_f64(),
        r.transfer.as_secs_f64()
    );
    // The wrong key: the SYN does not verify, nothing answers.
    let wrong = opts.with_hmac_key(b"not-the-key");
    let refused = c.connect_to(FW_ADDR, ECHO_PORT, wrong, Some(Duration::from_millis(2500)));
    assert!(refused.is_err(), "a SYN with the wrong key was accepted");

    // The `csp` tool, as the issue spells it (its defaults are the
    // firmware's limits): stdin over a connection, the echo on stdout. The
    // slot left its time-wait during the refused attempt; were it still
    // in it, the default connect timeout (5 s) covers the wait.
    let input = rdp_pattern(16 * 1024);
    let fw = FW_ADDR.to_string();
    let started = Instant::now();
    let (ok, out, err) = g.csp_with_stdin(&["rdp", &fw, &ECHO_PORT.to_string()], &input);
    assert!(ok, "csp rdp {fw} 10 failed: {err}");
    assert!(
        out == input,
        "csp rdp: stdout ({} bytes) is not stdin",
        out.len()
    );
    eprintln!(
        "csp rdp {fw} 10: 16 KiB in and out in {:.2} s (connect, transfer, 1 s linger)",
        started.elapsed().as_secs_f64()
    );
    // Right after: the slot is in its time-wait again (about 3 s to wait).
    let (ok, out, err) = g.csp_with_stdin(
        &[
            "--crc",
            "--hmac-key",
            "csp-demo-key",
            "rdp",
            "--connect-timeout",
            "10000",
            &fw,
            "10",
        ],
        b"secured line\n",
    );
    assert!(ok, "csp --crc --hmac-key rdp failed: {err}");
    assert_eq!(out, b"secured line\n");

    // Still answering, and the connections left the stack within budget.
    c.ping(FW_ADDR, 100, REPLY_TIMEOUT).expect("ping after RDP");
    let free = c.memfree(FW_ADDR, REPLY_TIMEOUT).expect("memfree");
    eprintln!("memfree (stack low-water mark) after the RDP echoes: {free} B");
    assert!(free > 2 * 1024, "stack reached deep: {free} B left");
}

/// Two RDP connections to the firmware open at once (its two slots), one
/// plain and one with CRC32 + HMAC, their data interleaved segment by
/// segment: each echo comes back byte-exact on its own connection, and a
/// third connection attempt while both are open finds no slot.
#[test]
fn ground_two_rdp_connections_at_once() {
    use host_lib::Error;
    let Some(g) = Ground::start() else { return };
    let mut c = g.client();
    let opts = host_lib::ConnOptions::default()
        .with_segment(fw_app::SEG)
        .with_window(4);
    let t = Some(Duration::from_secs(10));
    let plain = c
        .connect_to(FW_ADDR, ECHO_PORT, opts, t)
        .expect("first connection");
    let secured = c
        .connect_to(
            FW_ADDR,
            ECHO_PORT,
            opts.with_crc().with_hmac_key(DEMO_KEY),
            t,
        )
        .expect("second connection while the first is open");
    let third = c.connect_to(FW_ADDR, ECHO_PORT, opts, Some(Duration::from_millis(2500)));
    assert!(third.is_err(), "a third connection got a slot");

    let total = 24 * 1024;
    let data = [rdp_pattern(total), rdp_pattern(total + 7)[7..].to_vec()];
    assert_ne!(data[0], data[1]);
    let conns = [&plain, &secured];
    let mut sent = [0usize; 2];
    let mut echoed = [Vec::new(), Vec::new()];
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while echoed[0].len() < total || echoed[1].len() < total {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "two RDP echoes stalled: sent {sent:?}, echoed {} and {}",
            echoed[0].len(),
            echoed[1].len()
        );
        let mut progress = false;
        for i in 0..2 {
            // One segment at a time on each, so the firmware holds both
            // connections' data at once.
            let end = (sent[i] + fw_app::SEG).min(total);
            if sent[i] < total {
                match c.try_send(conns[i], &data[i][sent[i]..end]) {
                    Ok(n) => {
                        sent[i] += n;
                        progress |= n > 0;
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("connection {i}: send after {} bytes: {e}", sent[i]),
                }
            }
            match c.try_recv(conns[i], &mut buf) {
                Ok(0) => panic!("connection {i} closed by the firmware"),
                Ok(n) => {
                    echoed[i].extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("connection {i}: recv: {e}"),
            }
        }
        if !progress {
            c.wait(Some(Duration::from_millis(50))).expect("wait");
        }
    }
    assert!(echoed[0] == data[0], "plain connection's echo differs");
    assert!(echoed[1] == data[1], "CRC+HMAC connection's echo differs");
    eprintln!(
        "two RDP connections at once: 2 x 24 KiB echoed byte-exact in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for conn in [plain, secured] {
        c.wait_acked(&conn, Some(REPLY_TIMEOUT))
            .expect("acknowledged");
        c.close_conn(conn, t)
            .expect("the firmware finishes the close");
    }
    c.ping(FW_ADDR, 100, REPLY_TIMEOUT).expect("ping after");
    let free = c.memfree(FW_ADDR, REPLY_TIMEOUT).expect("memfree");
    eprintln!("memfree (stack low-water mark) after two connections: {free} B");
    assert!(free > 2 * 1024, "stack reached deep: {free} B left");
}

/// A frame with a bad KISS CRC put on the link while the daemon uses it:
/// the firmware drops it and counts it (interface `rx_error`, read through
/// the daemon), and keeps answering the ground.
#[test]
fn ground_bad_kiss_crc_rejected_through_csp_muxd() {
    let Some(g) = Ground::start_tapped() else {
        return;
    };
    let mut c = g.client();
    let t = REPLY_TIMEOUT;
    let kiss_stats = |c: &mut host_lib::Client| {
        let (_, reply) = c
            .service_request(FW_ADDR, Request::IfStats("KISS"), t)
            .expect("ifstat through csp-muxd");
        let (name, stats) = client::parse_if_stats(&reply).expect("ifstat reply");
        assert_eq!(name, "KISS");
        stats
    };
    let before = kiss_stats(&mut c);

    // A ping from the daemon's address, one data byte flipped after the
    // KISS CRC was computed; if the firmware took it, the reply would
    // reach the daemon (and be dropped there, no socket on that port).
    let h = Header {
        prio: Prio::Normal,
        src: addr(MUXD_ADDR),
        dst: addr(FW_ADDR),
        dport: port(1),
        sport: port(40),
        flags: Flags::NONE,
    };
    let mut bad = Fw::encode(h, b"corrupted", &SecurityOptions::NONE);
    bad[2 + 6 + 3] ^= 0x20; // FEND, command, 6-byte v2 header, into the data
    g.inject(&bad);
    // And the same frame intact, so the count below shows that what the
    // tap puts on the link does reach the firmware.
    g.inject(&Fw::encode(h, b"intact", &SecurityOptions::NONE));
    sleep(SILENCE);

    for size in [0, 100, 200] {
        c.ping(FW_ADDR, size, t).expect("ping after the bad frame");
    }
    let id = c.ident(FW_ADDR, t).expect("ident after the bad frame");
    assert_eq!(id.hostname, "firmware-demo");
    let after = kiss_stats(&mut c);
    assert_eq!(
        after.rx_error.wrapping_sub(before.rx_error),
        1,
        "one bad KISS CRC counted: {before:?} -> {after:?}"
    );
    // The intact frame, 3 pings, ident and this ifstat request.
    assert_eq!(
        after.rx.wrapping_sub(before.rx),
        6,
        "frames taken: {before:?} -> {after:?}"
    );
}

/// The libcsp 1.x build (`--features header-v1`) behind a `version = 1`
/// KISS link: the daemon re-emits headers in v1 for it.
#[test]
fn ground_header_v1_through_csp_muxd() {
    let Some(elf) = firmware_v1() else { return };
    let g = Ground::start_with(elf, 1, false);
    let mut c = g.client();
    let t = REPLY_TIMEOUT;
    c.ping(FW_ADDR, 100, t).expect("v1 ping");
    let id = c.ident(FW_ADDR, t).expect("v1 ident");
    assert_eq!(id.hostname, "firmware-demo");
    let u = c.uptime(FW_ADDR, t).expect("v1 uptime");
    assert!(u < 120, "uptime {u}");
    let opts = host_lib::Options::NONE.with_hmac_key(DEMO_KEY);
    let sock = c.bind_with(host_lib::Bind::Ephemeral, opts).expect("bind");
    c.sendto(&sock, FW_ADDR, ECHO_PORT, b"v1 echo")
        .expect("sendto");
    let reply = c.recvfrom(&sock, Some(t)).expect("v1 HMAC echo");
    assert_eq!(reply.data, b"v1 echo");
}

// ---------------------------------------------------------------------------
// The firmware's application on the host: the same source file, no QEMU.
// Fast, deterministic, and able to throw arbitrary bytes at it.
// ---------------------------------------------------------------------------

macro_rules! fw_log {
    ($($t:tt)*) => {{}};
}

#[allow(dead_code)]
#[path = "../../firmware-demo/src/app.rs"]
mod fw_app;

mod app_on_host {
    use super::fw_app::{Board, Demo, DemoConfig, SinkCounters, RXQ, TXQ};
    use super::*;
    use csp_core::node::{ConnectOptions, Event, IfaceConfig, NodeConfig};
    use csp_core::service::Ident;
    use csp_core::time::Instant as CspInstant;
    use proptest::prelude::*;

    struct FakeBoard;

    impl Board for FakeBoard {
        fn memfree(&self) -> u32 {
            1234
        }
        fn irqs(&self) -> u32 {
            7
        }
        fn entropy(&self) -> u64 {
            42
        }
    }

    const IDENT: Ident<'static> = Ident {
        hostname: "host-test",
        model: "none",
        revision: "0",
        date: "Jan  1 2026",
        time: "00:00:00",
    };

    /// The UART: what the application writes.
    #[derive(Default)]
    struct Wire(Vec<u8>);

    impl embedded_io::ErrorType for Wire {
        type Error = std::convert::Infallible;
    }

    impl embedded_io::Write for Wire {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn demo(version: Version) -> Box<Demo> {
        let mut d = Box::new(Demo::new(DemoConfig {
            addr: Addr::for_version(FW_ADDR, version).unwrap(),
            version,
            hmac_key: HmacKey::from_key_string(DEMO_KEY),
            ident: IDENT,
            seed: 1,
        }));
        d.start().expect("start");
        d
    }

    fn at(ms: u64) -> CspInstant {
        CspInstant::from_millis(ms)
    }

    fn kiss_bytes(version: Version, mut p: Buf) -> Vec<u8> {
        let frame = p.frame(version).unwrap();
        let mut out = vec![0u8; kiss::max_encoded_len(frame.len())];
        let n = kiss::encode(frame, version, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn request(version: Version, dport: u8, sec: &SecurityOptions, data: &[u8]) -> Vec<u8> {
        let h = Header {
            prio: Prio::Normal,
            src: addr(GROUND_ADDR),
            dst: addr(FW_ADDR),
            dport: port(dport),
            sport: port(33),
            flags: sec.flags(),
        };
        let mut p = Buf::with_data(h, data).unwrap();
        sec.append(&mut p, version, 0).unwrap();
        kiss_bytes(version, p)
    }

    /// Feeds `bytes` at time `now`, returns the frames sent back.
    fn feed(d: &mut Demo, version: Version, now: u64, bytes: &[u8]) -> Vec<Buf> {
        let mut wire = Wire::default();
        for &b in bytes {
            d.receive(at(now), b, &FakeBoard, &mut wire);
        }
        let mut dec = KissDecoder::<{ fw_app::FRAME_MAX }>::new(version);
        wire.0
            .iter()
            .filter_map(|&b| match dec.push(b) {
                Some(Ok(f)) => Some(Buf::from_frame(f, version).unwrap()),
                Some(Err(e)) => panic!("firmware sent a bad frame: {e}"),
                None => None,
            })
            .collect()
    }

    #[test]
    fn services_answer_in_both_header_versions() {
        let none = SecurityOptions::NONE;
        for version in [Version::V1, Version::V2] {
            let mut d = demo(version);
            let r = feed(&mut d, version, 7_500, &request(version, 6, &none, &[]));
            assert_eq!(r.len(), 1, "{version:?}");
            assert_eq!(
                client::parse_u32(r[0].data()),
                Ok(7),
                "uptime from the clock"
            );
            let r = feed(&mut d, version, 8_000, &request(version, 3, &none, &[]));
            assert_eq!(client::parse_u32(r[0].data()), Ok(1234));
            let r = feed(&mut d, version, 8_000, &request(version, 5, &none, &[]));
            assert_eq!(client::parse_u32(r[0].data()), Ok((RXQ + TXQ) as u32));
            let r = feed(&mut d, version, 8_000, &request(version, 1, &none, b"hi"));
            assert_eq!(r[0].data(), b"hi");
            assert_eq!(r[0].header.dst.get(), GROUND_ADDR);
            let mut ident = [0u8; MTU];
            let n = Request::Ident.emit(&mut ident).unwrap();
            let r = feed(
                &mut d,
                version,
                8_000,
                &request(version, 0, &none, &ident[..n]),
            );
            let id = client::parse_ident(r[0].data()).expect("ident");
            assert_eq!(id.hostname, "host-test");
        }
    }

    #[test]
    fn echo_mirrors_trailers_and_sink_counts() {
        let v = Version::V2;
        let mut d = demo(v);
        let both = SecurityOptions {
            crc: true,
            ..hmac_opts(DEMO_KEY)
        };
        let mut r = feed(&mut d, v, 10, &request(v, ECHO_PORT, &both, b"secret"));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].header.flags, both.flags());
        both.verify(&mut r[0], v).expect("reply trailers");
        assert_eq!(r[0].data(), b"secret");
        // Wrong key: no reply.
        let wrong = hmac_opts(b"nope");
        assert!(feed(&mut d, v, 10, &request(v, ECHO_PORT, &wrong, b"x")).is_empty());

        let none = SecurityOptions::NONE;
        for len in [1, 50, 200] {
            assert!(feed(&mut d, v, 10, &request(v, SINK_PORT, &none, &vec![1; len])).is_empty());
        }
        let r = feed(&mut d, v, 10, &request(v, SINK_PORT, &none, &[]));
        assert_eq!(r[0].data(), [0, 0, 0, 3, 0, 0, 0, 251]);
        assert_eq!(
            d.sink_counters(),
            SinkCounters {
                packets: 3,
                bytes: 251
            }
        );
        assert_eq!(d.counters().echoed, 1);
    }

    #[test]
    fn bad_kiss_crc_is_counted_as_rx_error() {
        let v = Version::V2;
        let mut d = demo(v);
        let mut bad = request(v, 1, &SecurityOptions::NONE, b"ping me");
        bad[10] ^= 1;
        assert!(feed(&mut d, v, 10, &bad).is_empty());
        let ok = request(v, 1, &SecurityOptions::NONE, b"ping me");
        assert_eq!(feed(&mut d, v, 10, &ok).len(), 1);
        let st = d.node().iface_stats(csp_core::route::IfaceId(0)).unwrap();
        assert_eq!((st.rx_error, st.rx, st.irq), (1, 1, 7));
    }

    /// A ground node and the application joined in memory, with a
    /// simulated clock that only moves when neither side has anything to
    /// say (so a stall shows up as simulated seconds).
    struct Pair {
        d: Box<Demo>,
        g: Box<GroundNode>,
        iface: csp_core::route::IfaceId,
        version: Version,
        t: u64,
    }

    impl Pair {
        fn new(version: Version) -> Pair {
            let mut g = Box::new(GroundNode::new(NodeConfig {
                seed: 9,
                ..NodeConfig::new(Addr::for_version(GROUND_ADDR, version).unwrap())
            }));
            let iface = g
                .add_iface(IfaceConfig::new(
                    "KISS",
                    version,
                    version.header_len() + MTU,
                ))
                .unwrap();
            g.routes_mut().set_default(iface, None).unwrap();
            Pair {
                d: demo(version),
                g,
                iface,
                version,
                t: 0,
            }
        }

        /// One round: ground frames to the firmware and back, timers; the
        /// clock moves 10 ms if nothing was sent either way.
        fn step(&mut self) {
            let (t, version) = (at(self.t), self.version);
            let mut frame = [0u8; GroundNode::MAX_FRAME_LEN];
            let mut up = Vec::new();
            while let Some(tx) = self.g.poll_transmit(t, &mut frame) {
                let mut out = vec![0u8; kiss::max_encoded_len(tx.len)];
                let n = kiss::encode(&frame[..tx.len], version, &mut out).unwrap();
                up.extend_from_slice(&out[..n]);
            }
            let mut wire = Wire::default();
            for &b in &up {
                self.d.receive(t, b, &FakeBoard, &mut wire);
            }
            if self.d.poll_timeout().is_some_and(|x| x <= t) {
                self.d.handle_timeout(t, &mut wire);
            }
            let mut dec = KissDecoder::<{ fw_app::FRAME_MAX }>::new(version);
            for &b in &wire.0 {
                match dec.push(b) {
                    Some(Ok(f)) => {
                        let _ = self.g.handle_frame(t, self.iface, f);
                    }
                    Some(Err(e)) => panic!("firmware sent a bad frame: {e}"),
                    None => {}
                }
            }
            if self.g.poll_timeout().is_some_and(|x| x <= t) {
                self.g.handle_timeout(t);
            }
            if up.is_empty() && wire.0.is_empty() {
                self.t += 10;
            }
        }

        /// Connects to the echo port, sends `data`, reads the echo, closes;
        /// returns the echo and the simulated milliseconds it took.
        fn echo(&mut self, opts: &ConnectOptions, data: &[u8]) -> (Vec<u8>, u64) {
            let start = self.t;
            let conn = self
                .g
                .connect(at(self.t), addr(FW_ADDR), port(ECHO_PORT), opts)
                .unwrap();
            let (mut sent, mut echoed) = (0, Vec::new());
            let (mut connected, mut closing, mut closed) = (false, false, false);
            let mut seg = [0u8; fw_app::SEG];
            while !closed {
                assert!(
                    self.t - start < 120_000,
                    "stalled at {} of {}",
                    echoed.len(),
                    data.len()
                );
                while let Some(ev) = self.g.poll_event() {
                    match ev {
                        Event::Connected { .. } => connected = true,
                        Event::Readable { conn } => {
                            let n = self.g.recv_conn(conn, &mut seg).unwrap();
                            echoed.extend_from_slice(&seg[..n]);
                        }
                        Event::Closed { .. } => closed = true,
                        Event::Failed { reason, .. } => panic!("failed: {reason:?}"),
                        _ => {}
                    }
                }
                while connected && sent < data.len() && self.g.send_capacity(conn).unwrap() > 0 {
                    let end = (sent + fw_app::SEG).min(data.len());
                    self.g.send(at(self.t), conn, &data[sent..end]).unwrap();
                    sent = end;
                }
                if echoed.len() == data.len() && !closing {
                    self.g.close(at(self.t), conn).unwrap();
                    closing = true;
                }
                self.step();
            }
            (echoed, self.t - start)
        }

        /// Lets simulated time pass with nothing sent by the ground.
        fn idle(&mut self, ms: u64) {
            let end = self.t + ms;
            while self.t < end {
                self.step();
            }
        }
    }

    /// 16 KiB echoed byte-exact over RDP in both header versions, plain and
    /// with HMAC + CRC32 (the firmware mirrors the SYN's trailers); the
    /// peer's close ends the firmware's side too, and the one connection
    /// slot takes the next client once the time-wait is over.
    #[test]
    fn rdp_echo_in_memory() {
        let data: Vec<u8> = (0..16 * 1024).map(|i| (i * 13 + i / 7) as u8).collect();
        let secured = ConnectOptions {
            security: SecurityOptions {
                crc: true,
                ..hmac_opts(DEMO_KEY)
            },
            ..ConnectOptions::default()
        };
        for version in [Version::V2, Version::V1] {
            let mut p = Pair::new(version);
            let (echoed, ms) = p.echo(&ConnectOptions::default(), &data);
            assert!(echoed == data, "{version:?}: echo differs");
            // No retransmission stall: without loss nothing waits for a timer
            // but the closing handshake's acknowledgements.
            assert!(ms < 1000, "{version:?}: took {ms} simulated ms");
            assert_eq!(p.d.counters().accepted, 1);
            let segments = data.len().div_ceil(fw_app::SEG) as u32;
            assert_eq!(p.d.counters().rdp_echoed, segments);

            // Right away: the slot is in time-wait; the SYN is retried
            // until it is free, so this only takes longer.
            let (echoed, ms) = p.echo(&secured, &data[..1000]);
            assert_eq!(echoed, &data[..1000], "{version:?}: HMAC+CRC echo");
            eprintln!("{version:?}: second connection (HMAC+CRC) done after {ms} simulated ms");
            assert_eq!(p.d.counters().accepted, 2);

            p.idle(fw_app::CLOSE_WAIT_MS + 1000);
            assert_eq!(p.d.node().connections(), 0, "{version:?}: slot not freed");
            assert_eq!(p.d.counters().ended, 2);
            assert_eq!(p.d.node().counters().rx_security, 0);
        }
    }

    /// A segment for a connection with the wrong HMAC key is refused (the
    /// SYN does not verify), and the firmware keeps serving.
    #[test]
    fn rdp_wrong_key_is_refused() {
        let mut p = Pair::new(Version::V2);
        let wrong = ConnectOptions {
            security: hmac_opts(b"not-the-key"),
            ..ConnectOptions::default()
        };
        let conn =
            p.g.connect(at(0), addr(FW_ADDR), port(ECHO_PORT), &wrong)
                .unwrap();
        for _ in 0..300 {
            p.step();
        }
        assert_ne!(
            p.g.conn_state(conn).ok(),
            Some(csp_core::node::ConnState::Open)
        );
        assert_eq!(p.d.counters().accepted, 0);
        assert!(p.d.node().counters().rx_security > 0);
        let (echoed, _) = p.echo(&ConnectOptions::default(), b"after all");
        assert_eq!(echoed, b"after all");
    }

    proptest! {
        /// Whatever came before, a ping that arrives intact is answered (and
        /// nothing panics on the way).
        #[test]
        fn ping_after_any_bytes_is_answered(
            noise in proptest::collection::vec(any::<u8>(), 0..700),
            v1 in any::<bool>(),
            ping in proptest::collection::vec(any::<u8>(), 0..MTU),
        ) {
            let v = if v1 { Version::V1 } else { Version::V2 };
            let mut d = demo(v);
            let mut bytes = noise;
            bytes.extend(request(v, 1, &SecurityOptions::NONE, &ping));
            let replies = feed(&mut d, v, 100, &bytes);
            let answered = replies
                .iter()
                .any(|r| r.header.dport.get() == 33 && r.data() == &ping[..]);
            prop_assert!(answered, "ping not answered after noise");
        }

        /// Arbitrary frames with a correct KISS CRC (any header, flags,
        /// trailers, RDP segments included) never panic the application,
        /// and whatever it sends is a valid frame from our address.
        #[test]
        fn any_well_framed_packet_is_handled(
            frames in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..MTU + 6), 1..4),
            v1 in any::<bool>(),
        ) {
            let v = if v1 { Version::V1 } else { Version::V2 };
            let mut d = demo(v);
            for frame in frames {
                let mut bytes = vec![0u8; kiss::max_encoded_len(frame.len())];
                if let Ok(len) = kiss::encode(&frame, v, &mut bytes) {
                    bytes.truncate(len);
                    for r in feed(&mut d, v, 100, &bytes) {
                        prop_assert_eq!(r.header.src.get(), FW_ADDR);
                    }
                }
            }
        }
    }
}
