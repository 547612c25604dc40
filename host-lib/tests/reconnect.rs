//! The daemon dies (SIGKILL) and comes back on the same socket: clients
//! reconnect with backoff, register their ports again and carry on.

use std::time::{Duration, Instant};

use host_lib::{Bind, Client, Error, Event, Options};
use test_support::*;

/// Drive `c` until an event matching `want` shows up; every event seen is
/// returned. Panics after `WAIT * 2` (the backoff may be at 2 s by then).
fn drive_until(c: &mut Client, want: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + WAIT * 2;
    let mut seen = Vec::new();
    loop {
        while let Some(e) = c.poll_event() {
            let done = want(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; events {seen:?}"
        );
        c.wait(Some(Duration::from_millis(50))).unwrap();
    }
}

#[test]
fn kill_and_restart_mid_run() {
    let d = Muxd::start(MuxdConfig::node(4));
    let mut a = Client::connect(&d.socket).unwrap();
    let mut b = Client::connect(&d.socket).unwrap();
    let sa = a
        .bind_with(Bind::Ephemeral, Options::NONE.with_crc())
        .unwrap();
    let sb = b
        .bind_with(Bind::Port(10), Options::NONE.with_crc())
        .unwrap();
    for i in 0..5u8 {
        a.sendto(&sa, 4, 10, &[i]).unwrap();
        assert_eq!(b.recvfrom(&sb, Some(WAIT)).unwrap().data, [i]);
    }

    let mut d = d;
    d.kill();
    // `a` notices, fails sends with a clear error, and retries with backoff
    // while the daemon is away.
    let events = drive_until(&mut a, |e| matches!(e, Event::Disconnected { .. }));
    assert_eq!(events.len(), 1);
    let err = a.sendto(&sa, 4, 10, b"lost").unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    assert!(err.to_string().contains("reconnecting"), "{err}");
    assert!(
        a.poll_timeout().is_some(),
        "a reconnect attempt is scheduled"
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(900) {
        a.wait(Some(Duration::from_millis(50))).unwrap();
    }
    assert!(a.stats().failed_attempts >= 1, "{:?}", a.stats());
    assert!(
        a.stats().failed_attempts <= 3,
        "backoff, not a busy loop: {:?}",
        a.stats()
    );

    d.restart();
    let started = Instant::now();
    drive_until(&mut a, |e| matches!(e, Event::Reconnected));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the backoff"
    );
    // `b` was idle throughout: it notices now, and reconnects too.
    drive_until(&mut b, |e| matches!(e, Event::Reconnected));
    assert_eq!(a.stats().reconnects, 1);

    // Same ports, traffic resumes both ways.
    assert_eq!(b.local_port(&sb).unwrap(), 10);
    a.sendto(&sa, 4, 10, b"again").unwrap();
    let got = b.recvfrom(&sb, Some(WAIT)).unwrap();
    assert_eq!(got.data, b"again");
    assert_eq!(got.sport(), a.local_port(&sa).unwrap());
    b.sendto(&sb, got.src(), got.sport(), b"reply").unwrap();
    assert_eq!(a.recvfrom(&sa, Some(WAIT)).unwrap().data, b"reply");
    // The restarted daemon lists both clients again.
    let status = a.control(host_lib::Control::Status).unwrap();
    assert!(status.contains("4:10"), "{status}");
    drop(d);
}

#[test]
fn port_taken_while_away_is_reported() {
    let mut d = Muxd::start(MuxdConfig::node(4));
    let mut b = Client::connect(&d.socket).unwrap();
    let keep = b.bind(Bind::Port(11)).unwrap();
    let lost = b.bind(Bind::Port(12)).unwrap();
    // Restart before `b` notices; someone else takes port 12 first.
    d.restart();
    let mut c = Client::connect(&d.socket).unwrap();
    let _thief = c.bind(Bind::Port(12)).unwrap();

    let events = drive_until(&mut b, |e| matches!(e, Event::Reconnected));
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::RebindFailed { socket, error } => Some((*socket, error.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![(lost, "port 12 is in use by another application".to_string())]
    );
    assert!(matches!(
        b.sendto(&lost, 4, 1, b"x"),
        Err(Error::PortInUse { port: 12 })
    ));
    // The other port works.
    let e = c.bind(Bind::Ephemeral).unwrap();
    c.sendto(&e, 4, 11, b"still here").unwrap();
    assert_eq!(b.recvfrom(&keep, Some(WAIT)).unwrap().data, b"still here");
}

#[test]
fn not_running_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let err = Client::connect(&path).unwrap_err();
    assert!(matches!(err, Error::NotRunning { .. }));
    assert!(err
        .to_string()
        .starts_with(&format!("csp-muxd is not running at {}", path.display())));
}

#[test]
fn without_reconnect_a_lost_daemon_ends_the_wait() {
    let mut d = Muxd::start(MuxdConfig::node(4));
    let mut c = Client::with_config(host_lib::ClientConfig {
        socket: Some(d.socket.clone()),
        reconnect: false,
        ..host_lib::ClientConfig::default()
    })
    .unwrap();
    let s = c.bind(Bind::Port(10)).unwrap();
    d.kill();
    let started = Instant::now();
    let err = c.recvfrom(&s, None).unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    assert!(started.elapsed() < WAIT);
    assert_eq!(c.poll_timeout(), None, "no reconnect scheduled");
}
