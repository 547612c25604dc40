//! An echo service on port 10 driven by the caller's own poll loop: the
//! shape to copy into a mio or epoll program. The library starts no thread
//! and never blocks here; the loop owns the waiting.
//!
//! Run a daemon (`cargo run --bin csp-muxd`), then this, then
//! `cargo run --bin csp -- send --reply 1 10 hello`.

use std::time::{Duration, Instant};

use host_lib::{Bind, Client, Event, Options};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

fn main() -> Result<(), host_lib::Error> {
    let mut client = Client::connect_default()?;
    let socket = client.bind(Bind::Port(10))?;
    eprintln!("echo on {}:10", client.node());
    loop {
        // 1. Wait for the descriptor or the next timer, whichever is first.
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
            // Disconnected: only the reconnect timer matters.
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
        // 3. Drain what it produced.
        while let Some(event) = client.poll_event() {
            eprintln!("event: {event:?}");
            if matches!(event, Event::Reconnected) {
                // A mio/epoll loop registers client.as_raw_fd() again here.
            }
        }
        while let Some(d) = client.try_recvfrom(&socket)? {
            match client.try_sendto(&socket, d.src(), d.sport(), &d.data, &Options::NONE) {
                Ok(()) | Err(host_lib::Error::WouldBlock) => {}
                Err(e) => eprintln!("echo to {}:{}: {e}", d.src(), d.sport()),
            }
        }
    }
}
