//! The client against a scripted fake daemon (a thread on a Unix socket
//! speaking csp-ipc): behaviour a real daemon does not show on demand.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use csp_core::{Flags, Header, Version};
use csp_ipc::{ByeReason, Control, ErrorCode, Message, Status};

use super::*;

impl Client {
    fn request_timeout_for_test(&mut self, t: Duration) {
        self.cfg.request_timeout = t;
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// What a client sent, owned.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Hello(u16),
    Register(u8),
    Unregister(u8),
    Data(Vec<u8>),
    Control,
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    fn recv(&mut self) -> Sent {
        loop {
            if let Some((m, n)) = csp_ipc::decode(&self.buf).unwrap() {
                let s = match m {
                    Message::Hello { version, .. } => Sent::Hello(version),
                    Message::Register { port, .. } => Sent::Register(port),
                    Message::Unregister { port, .. } => Sent::Unregister(port),
                    Message::Data { frame } => Sent::Data(frame.to_vec()),
                    Message::Control(_) => Sent::Control,
                    other => panic!("client sent {other:?}"),
                };
                self.buf.drain(..n);
                return s;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("client went quiet");
            assert!(n > 0, "client closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, m: &Message<'_>) {
        self.stream
            .write_all(&csp_ipc::encode_to_vec(m).unwrap())
            .unwrap();
    }

    /// Answer HELLO as a daemon of node 5 would.
    fn handshake(&mut self) {
        assert_eq!(self.recv(), Sent::Hello(csp_ipc::VERSION));
        self.send(&Message::HelloAck {
            version: csp_ipc::VERSION,
            node_addr: 5,
            mtu: 200,
        });
    }

    fn ack(&mut self, status: Status, port: u8) {
        self.send(&Message::RegisterAck {
            status,
            addr: 5,
            port,
        });
    }
}

struct Fake {
    _dir: tempfile::TempDir,
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    /// A fake daemon that accepts one client and runs `script` on it.
    fn start(script: impl FnOnce(&mut Conn) + Send + 'static) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut conn = Conn {
                stream,
                buf: Vec::new(),
            };
            script(&mut conn);
        });
        Fake {
            _dir: dir,
            path,
            thread: Some(thread),
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            socket: Some(self.path.clone()),
            name: "test".into(),
            ..ClientConfig::default()
        }
    }

    /// Wait for the script to end; its panics fail the test.
    fn join(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("fake daemon script failed");
        }
    }
}

/// A v2 frame from 5:9 to 5:`dport` carrying `data`.
fn frame(dport: u8, data: &[u8]) -> Vec<u8> {
    let h = Header {
        prio: csp_core::Prio::Normal,
        src: Addr::new(5).unwrap(),
        dst: Addr::new(5).unwrap(),
        dport: Port::new(dport).unwrap(),
        sport: Port::new(9).unwrap(),
        flags: Flags::NONE,
    };
    let mut f = vec![0u8; 6];
    h.emit(&mut f, Version::V2).unwrap();
    f.extend_from_slice(data);
    f
}

/// Drive `c` until `done` holds (bounded).
fn drive(c: &mut Client, done: impl Fn(&Client) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(c) {
        assert!(Instant::now() < deadline, "condition not reached");
        c.wait(Some(Duration::from_millis(20))).unwrap();
    }
}

#[test]
fn other_protocol_version_is_refused_with_both_versions() {
    let fake = Fake::start(|c| {
        assert_eq!(c.recv(), Sent::Hello(csp_ipc::VERSION));
        c.send(&Message::HelloAck {
            version: csp_ipc::VERSION + 1,
            node_addr: 5,
            mtu: 200,
        });
    });
    let err = Client::with_config(fake.config()).unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { daemon } if daemon == csp_ipc::VERSION + 1));
    assert!(err.to_string().contains("use matching versions"), "{err}");
    fake.join();
}

#[test]
fn hello_refused_by_the_daemon() {
    let fake = Fake::start(|c| {
        c.recv();
        c.send(&Message::Error {
            code: ErrorCode::BadVersion,
            message: "protocol version 1 not supported",
        });
    });
    let err = Client::with_config(fake.config()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused {
                code: ErrorCode::BadVersion,
                ..
            }
        ),
        "{err}"
    );
    fake.join();
}

#[test]
fn full_queue_drops_the_oldest_and_counts() {
    let fake = Fake::start(|c| {
        c.handshake();
        assert_eq!(c.recv(), Sent::Register(10));
        c.ack(Status::Ok, 10);
        for i in 0..5u8 {
            c.send(&Message::Data {
                frame: &frame(10, &[i]),
            });
        }
        c.send(&Message::Data {
            frame: &frame(11, b"nobody"),
        });
        c.send(&Message::Data { frame: &[1, 2, 3] });
        // Hold the connection until the client is done.
        let _ = c.stream.read(&mut [0u8; 1]);
    });
    let mut client = Client::with_config(ClientConfig {
        queue_len: 3,
        ..fake.config()
    })
    .unwrap();
    assert_eq!((client.node(), client.mtu()), (5, 200));
    let s = client.bind(Bind::Port(10)).unwrap();
    drive(&mut client, |c| c.stats().bad_packets == 1);
    let stats = client.socket_stats(&s).unwrap();
    assert_eq!((stats.rx_packets, stats.dropped_overflow), (5, 2));
    let mut got = Vec::new();
    while let Some(d) = client.try_recvfrom(&s).unwrap() {
        got.push(d.data[0]);
    }
    assert_eq!(got, [2, 3, 4], "the newest stay");
    assert_eq!(client.stats().no_socket, 1);
    drop(client);
    fake.join();
}

#[test]
fn a_late_answer_is_not_taken_for_the_next_request() {
    let fake = Fake::start(|c| {
        c.handshake();
        assert_eq!(c.recv(), Sent::Register(10));
        std::thread::sleep(Duration::from_millis(300));
        // Too late: the client gave up, and must give the port back.
        c.ack(Status::Ok, 10);
        assert_eq!(c.recv(), Sent::Register(11));
        c.ack(Status::Ok, 11);
        assert_eq!(c.recv(), Sent::Unregister(10));
        c.send(&Message::UnregisterAck {
            status: Status::Ok,
            addr: 5,
            port: 10,
        });
        assert_eq!(c.recv(), Sent::Control);
        c.send(&Message::ControlReply {
            request: Control::Status,
            more: false,
            text: "node 5\n",
        });
        let _ = c.stream.read(&mut [0u8; 1]);
    });
    let mut client = Client::with_config(ClientConfig {
        request_timeout: Duration::from_millis(100),
        ..fake.config()
    })
    .unwrap();
    assert!(matches!(client.bind(Bind::Port(10)), Err(Error::Timeout)));
    std::thread::sleep(Duration::from_millis(300));
    let s = client
        .bind(Bind::Port(11))
        .expect("its own answer, not the late one");
    assert_eq!(client.local_port(&s).unwrap(), 11);
    client.request_timeout_for_test(WAIT);
    assert_eq!(client.control(Control::Status).unwrap(), "node 5\n");
    drop(client);
    fake.join();
}

#[test]
fn reconnect_backoff_doubles_up_to_16_s() {
    let fake = Fake::start(|c| c.handshake());
    let mut client = Client::with_config(fake.config()).unwrap();
    let path = fake.path.clone();
    fake.join(); // the connection closes; nobody listens any more
    assert!(!path.exists());
    drive(&mut client, |c| !c.is_connected());
    assert!(matches!(
        client.poll_event(),
        Some(Event::Disconnected { .. })
    ));
    assert_eq!(client.retry_delay, RECONNECT_MIN);
    let mut delays = Vec::new();
    for _ in 0..8 {
        client.try_reconnect();
        delays.push(client.retry_delay.as_millis());
        let due = client.poll_timeout().expect("next attempt scheduled");
        let ahead = due.saturating_duration_since(Instant::now());
        assert!(ahead <= client.retry_delay && ahead + Duration::from_secs(1) > client.retry_delay);
    }
    assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 16000, 16000]);
    assert_eq!(client.stats().failed_attempts, 8);
    assert!(
        client.poll_event().is_none(),
        "failed attempts are not events"
    );
}

#[test]
fn bad_frame_or_bye_from_the_daemon_disconnects() {
    for bye in [false, true] {
        let fake = Fake::start(move |c| {
            c.handshake();
            if bye {
                c.send(&Message::Bye(ByeReason::Shutdown));
            } else {
                c.stream.write_all(&[0, 0]).unwrap();
            }
            let _ = c.stream.read(&mut [0u8; 1]);
        });
        let mut client = Client::with_config(fake.config()).unwrap();
        drive(&mut client, |c| !c.is_connected());
        match client.poll_event() {
            Some(Event::Disconnected { reason }) => {
                let want = if bye { "goodbye" } else { "bad frame" };
                assert!(reason.contains(want), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        drop(client);
        fake.join();
    }
}

#[test]
fn send_checks_addresses_ports_and_size() {
    let fake = Fake::start(|c| {
        c.handshake();
        assert_eq!(c.recv(), Sent::Register(csp_ipc::PORT_EPHEMERAL));
        c.ack(Status::Ok, 40);
        let Sent::Data(f) = c.recv() else {
            panic!("expected DATA")
        };
        let h = Header::parse(&f, Version::V2).unwrap();
        assert_eq!(
            (h.src.get(), h.sport.get(), h.dst.get(), h.dport.get()),
            (5, 40, 7, 10)
        );
        assert!(h.flags.contains(Flags::CRC32));
        assert_eq!(&f[6..f.len() - 4], b"ok");
        let _ = c.stream.read(&mut [0u8; 1]);
    });
    let mut client = Client::with_config(fake.config()).unwrap();
    let s = client.bind(Bind::Ephemeral).unwrap();
    assert!(matches!(
        client.sendto(&s, 20000, 10, b"x"),
        Err(Error::InvalidAddr(20000))
    ));
    assert!(matches!(
        client.sendto(&s, 7, 64, b"x"),
        Err(Error::InvalidPort(64))
    ));
    let big = vec![0u8; 197];
    assert!(matches!(
        client.sendto_with(&s, 7, 10, &big, &Options::NONE.with_crc()),
        Err(Error::TooLarge { len: 201, mtu: 200 })
    ));
    client
        .sendto_with(&s, 7, 10, b"ok", &Options::NONE.with_crc())
        .unwrap();
    drop(client);
    fake.join();
}

#[test]
fn unread_events_are_bounded() {
    let fake = Fake::start(|c| {
        c.handshake();
        for _ in 0..MAX_EVENTS + 6 {
            c.send(&Message::Error {
                code: ErrorCode::Spoofed,
                message: "source 5:3 is not registered by this client",
            });
        }
        let _ = c.stream.read(&mut [0u8; 1]);
    });
    let mut client = Client::with_config(fake.config()).unwrap();
    drive(&mut client, |c| {
        c.stats().daemon_errors == MAX_EVENTS as u64 + 6
    });
    assert_eq!(client.stats().events_dropped, 6);
    let mut n = 0;
    while let Some(e) = client.poll_event() {
        assert!(matches!(
            e,
            Event::DaemonError {
                code: ErrorCode::Spoofed,
                ..
            }
        ));
        n += 1;
    }
    assert_eq!(n, MAX_EVENTS);
    drop(client);
    fake.join();
}

#[test]
fn a_client_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<Client>();
    send::<Event>();
}

#[test]
fn an_rdp_connection_goes_to_the_daemon_from_its_registered_port_and_fails_with_it() {
    let fake = Fake::start(|c| {
        c.handshake();
        // The node's one ephemeral port (63) as the daemon's choice too.
        assert_eq!(c.recv(), Sent::Register(csp_ipc::PORT_EPHEMERAL));
        c.ack(Status::Ok, 63);
        let Sent::Data(syn) = c.recv() else {
            panic!("expected the SYN")
        };
        let h = Header::parse(&syn, Version::V2).unwrap();
        // Address 0 is the daemon's node; the source is the daemon's
        // address (never the node's 0) and the registered port.
        assert_eq!((h.src.get(), h.sport.get()), (5, 63));
        assert_eq!((h.dst.get(), h.dport.get()), (5, 10));
        assert!(h.flags.contains(Flags::RDP) && h.flags.contains(Flags::CRC32));
        // data = SYN options (24) | RDP header (5) | CRC (4)
        assert_eq!(syn.len(), 6 + 24 + 5 + 4);
        assert_eq!(syn[6 + 24] & 0x0f, 0x08, "SYN");
        // The daemon dies.
    });
    let mut client = Client::with_config(fake.config()).unwrap();
    let opts = crate::rdp::ConnOptions::default()
        .with_segment(100)
        .with_crc();
    let conn = client.start_connect(0, 10, opts).unwrap();
    drive(&mut client, |c| {
        matches!(c.conn_state(&conn), Ok(crate::rdp::ConnState::Failed(_)))
    });
    let crate::rdp::ConnState::Failed(why) = client.conn_state(&conn).unwrap() else {
        unreachable!()
    };
    assert!(why.starts_with("csp-muxd went away"), "{why}");
    let mut events = Vec::new();
    while let Some(e) = client.poll_event() {
        events.push(e);
    }
    assert!(
        matches!(events[0], Event::Disconnected { .. }),
        "{events:?}"
    );
    assert!(
        matches!(&events[1], Event::ConnectionFailed { conn: c, .. } if *c == conn),
        "{events:?}"
    );
    let err = client.try_send(&conn, b"x").unwrap_err();
    assert!(err.to_string().contains("csp-muxd went away"), "{err}");
    // Too large a segment for this daemon's MTU is refused up front.
    let err = client
        .start_connect(5, 10, crate::rdp::ConnOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    fake.join();
}
