//! An RDP echo server on port 10 driven by the caller's own poll loop: the
//! non-blocking side of the connection API (`try_accept`, `try_recv`,
//! `try_send`), with the client's one descriptor and its next timer (RDP's
//! retransmissions and acknowledgements included) as the only things to
//! wait for.
//!
//! Run a daemon (`cargo run --bin csp-muxd`), then this, then
//! `echo hello | cargo run --bin csp -- rdp 1 10`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use host_lib::{Client, Conn, ConnOptions, Error, Event};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

fn main() -> Result<(), Error> {
    let mut client = Client::connect_default()?;
    let listener = client.listen(10, ConnOptions::default())?;
    eprintln!("RDP echo on {}:10", client.node());
    // Per connection: bytes received and not yet echoed (the window may be full).
    let mut conns: HashMap<Conn, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    loop {
        // 1. Wait for the descriptor or the next timer.
        let timeout = client.poll_timeout().map_or(Duration::from_secs(1), |t| {
            t.saturating_duration_since(Instant::now())
        });
        let ts = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut ready = PollFlags::empty();
        match client.as_fd() {
            Some(fd) => {
                let mut flags = PollFlags::IN;
                if client.wants_write() {
                    flags |= PollFlags::OUT;
                }
                let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
                let _ = poll(&mut fds, Some(&ts));
                ready = fds[0].revents();
            }
            None => std::thread::sleep(timeout),
        }
        // 2. Let the client do what became possible.
        if ready.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            client.handle_readable();
        }
        if ready.contains(PollFlags::OUT) {
            client.handle_writable();
        }
        client.handle_timeout(Instant::now());
        // 3. New connections, data, echoes.
        while let Some(conn) = client.try_accept(&listener)? {
            eprintln!("connection from {:?}", client.conn_peer(&conn)?);
            conns.insert(conn, Vec::new());
        }
        let mut ended = Vec::new();
        for (conn, backlog) in conns.iter_mut() {
            // Read only while what came before is echoed: the peer's window
            // then waits for us, nothing piles up here.
            while backlog.is_empty() {
                match client.try_recv(conn, &mut buf) {
                    Ok(0) => {
                        ended.push((*conn, None));
                        break;
                    }
                    Ok(n) => backlog.extend_from_slice(&buf[..n]),
                    Err(Error::WouldBlock) => break,
                    Err(e) => {
                        ended.push((*conn, Some(e)));
                        break;
                    }
                }
                match client.try_send(conn, backlog) {
                    Ok(n) => drop(backlog.drain(..n)),
                    Err(Error::WouldBlock) => {}
                    Err(e) => {
                        ended.push((*conn, Some(e)));
                        break;
                    }
                }
            }
            if !backlog.is_empty() {
                if let Ok(n) = client.try_send(conn, backlog) {
                    backlog.drain(..n);
                }
            }
        }
        for (conn, error) in ended {
            conns.remove(&conn);
            // A zero timeout: the close finishes in the background.
            let _ = client.close_conn(conn, Some(Duration::ZERO));
            match error {
                None => eprintln!("{conn:?} closed by the peer"),
                Some(e) => eprintln!("{conn:?}: {e}"),
            }
        }
        while let Some(event) = client.poll_event() {
            if !matches!(event, Event::ConnectionClosed { .. }) {
                eprintln!("event: {event:?}");
            }
        }
    }
}
