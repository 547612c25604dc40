//! `csp capture`: the daemon's frames into a pcapng file (or stdout), for
//! Wireshark and tshark with `contrib/wireshark/csp.lua`. See
//! `docs/capture.md` and `docs/cli.md` ("csp capture").
//!
//! The daemon streams the frames over this program's IPC connection; this
//! program writes the file, so the file is made with the user's rights
//! where the user says (the daemon never opens files for clients). Every
//! block is written whole and flushed once per wakeup, so the file is
//! valid at any moment: Ctrl-C, SIGTERM, `--count`, `--duration`, the end
//! of the reader of stdout and a daemon that stops all leave a file every
//! tool opens.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use host_lib::capture::{Capture, CaptureEnd, CaptureEvent, CaptureRequest, Frame};
use host_lib::pcapng::{Interface, Packet, Writer};
use host_lib::{Endpoint, Error};

use super::Global;

/// After a stop (signal, `--duration`), how long the frames the daemon
/// has queued, and its CAPTURE_END, may take to arrive.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// `csp capture` options.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
csp capture -w csp.pcapng                    # every link, until Ctrl-C\n  \
csp capture -w radio.pcapng --link radio -c 100\n  \
csp capture -w - --duration 10 | tshark -X lua_script:contrib/wireshark/csp.lua -r -\n  \
csp capture -w local.pcapng --link local     # the applications' own DATA\n\n\
Allowed to the daemon's own user and its capture.allowed_uids (docs/config.md).\n\
At the end: \"N frames captured, M dropped by the daemon\" on stderr.")]
pub struct CaptureArgs {
    /// pcapng file to write (created or truncated); `-` for stdout.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    file: PathBuf,
    /// Only this link (`udp`, a [[kiss]]/[[zmq]]/[[can]] name, or `local`
    /// for the applications' DATA) [default: every link].
    #[arg(long, value_name = "NAME")]
    link: Option<String>,
    /// Stop after this many frames.
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
}

/// What the capture came to.
struct Tally {
    written: u64,
    cut: u64,
    daemon_dropped: Option<u64>,
}

pub fn run(g: &Global, a: CaptureArgs) -> Result<ExitCode, Error> {
    let to_stdout = a.file.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        eprintln!(
            "csp: not writing pcapng to a terminal: pipe it (`-w - | tshark -r -`) or name a file"
        );
        return Ok(ExitCode::from(2));
    }
    let duration = match a.duration {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            eprintln!("csp: --duration must be a positive number of seconds, not {s}");
            return Ok(ExitCode::from(2));
        }
        Some(s) => Some(Duration::from_secs_f64(s.min(1e9))),
        None => None,
    };
    // Signals first: a Ctrl-C from now on ends the capture cleanly.
    let (sig_rx, sig_tx) = UnixStream::pair().map_err(io_err("creating a signal pipe"))?;
    sig_rx
        .set_nonblocking(true)
        .map_err(io_err("creating a signal pipe"))?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let tx = sig_tx
            .try_clone()
            .map_err(io_err("creating a signal pipe"))?;
        signal_hook::low_level::pipe::register(sig, tx)
            .map_err(io_err("installing signal handlers"))?;
    }

    let endpoint = match (g.tcp, &g.socket) {
        (Some(addr), _) => Endpoint::Tcp {
            addr,
            token: g.tcp_token.clone().unwrap_or_default(),
        },
        (None, Some(path)) => Endpoint::Unix(path.clone()),
        (None, None) => Endpoint::Unix(host_lib::default_socket_path()),
    };
    let mut cap = Capture::start(
        &endpoint,
        &CaptureRequest {
            link: a.link.clone(),
            count: a.count.unwrap_or(0),
            name: format!("csp capture[{}]", std::process::id()),
            timeout: Duration::from_millis(g.timeout.max(1000)),
        },
    )?;

    // The file only once the daemon said yes: a refusal leaves nothing.
    let out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        let f = std::fs::File::create(&a.file).map_err(|source| Error::Io {
            context: "creating the capture file",
            source,
        })?;
        Box::new(f)
    };
    let out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let app = format!("csp capture {}", env!("CARGO_PKG_VERSION"));
    let mut w = Writer::new(out, &app).map_err(io_err("writing the capture file"))?;
    // Interface ids in the file by the daemon's link ids.
    let mut iface = [None::<u32>; 256];
    for l in cap.links() {
        let description = format!("CSP v{} frames (csp-muxd link {})", l.version, l.name);
        let id = w
            .interface(&Interface {
                name: &l.name,
                description: &description,
                version: l.version,
            })
            .map_err(io_err("writing the capture file"))?;
        iface[usize::from(l.id)] = Some(id);
    }
    w.flush().map_err(io_err("writing the capture file"))?;
    let names: Vec<&str> = cap.links().iter().map(|l| l.name.as_str()).collect();
    eprintln!(
        "capturing on {} (csp-muxd queues up to {} frames)",
        names.join(", "),
        cap.queue_len()
    );

    let started = Instant::now();
    let mut stop_deadline: Option<Instant> = None;
    let mut tally = Tally {
        written: 0,
        cut: 0,
        daemon_dropped: None,
    };
    let mut events = Vec::new();
    let mut outcome: Result<(), String> = Ok(());
    let mut ended_by = "";
    'capture: loop {
        let now = Instant::now();
        if stop_deadline.is_none() && duration.is_some_and(|d| now >= started + d) {
            cap.stop()?;
            stop_deadline = Some(now + STOP_GRACE);
        }
        if let Some(d) = stop_deadline {
            if now >= d {
                outcome = Err("csp-muxd did not confirm the end of the capture in time".into());
                break;
            }
        }
        let next_timer = [
            stop_deadline,
            duration
                .filter(|_| stop_deadline.is_none())
                .map(|d| started + d),
        ]
        .into_iter()
        .flatten()
        .min();
        wait(
            &cap,
            &sig_rx,
            next_timer.map(|t| t.saturating_duration_since(now)),
        )?;
        if drain_signals(&sig_rx) {
            if stop_deadline.is_some() {
                // A second Ctrl-C: stop waiting for the daemon.
                ended_by = "interrupted";
                break;
            }
            cap.stop()?;
            stop_deadline = Some(Instant::now() + STOP_GRACE);
        }
        cap.poll_events(&mut events)?;
        for e in events.drain(..) {
            match e {
                CaptureEvent::Frame(f) => {
                    if let Err(e) = write_frame(&mut w, &iface, &f, &mut tally) {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            // The reader of stdout is gone: nothing more is
                            // wanted.
                            ended_by = "the reader went away";
                            break 'capture;
                        }
                        return Err(Error::Io {
                            context: "writing the capture file",
                            source: e,
                        });
                    }
                }
                CaptureEvent::End {
                    reason, dropped, ..
                } => {
                    tally.daemon_dropped = Some(dropped);
                    if reason == CaptureEnd::Shutdown {
                        ended_by = "csp-muxd stopped";
                    }
                    break 'capture;
                }
                CaptureEvent::Lost(why) => {
                    outcome = Err(why);
                    break 'capture;
                }
            }
        }
        match w.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                ended_by = "the reader went away";
                break;
            }
            Err(e) => {
                return Err(Error::Io {
                    context: "writing the capture file",
                    source: e,
                })
            }
        }
    }
    let flushed = w.into_inner();
    let dropped = match tally.daemon_dropped {
        Some(n) => format!("{n} dropped by the daemon"),
        None => "dropped by the daemon unknown".into(),
    };
    let cut = if tally.cut > 0 {
        format!(", {} cut to what an IPC message holds", tally.cut)
    } else {
        String::new()
    };
    let why = if ended_by.is_empty() {
        String::new()
    } else {
        format!(" ({ended_by})")
    };
    eprintln!("{} frames captured, {dropped}{cut}{why}", tally.written);
    match flushed {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            return Err(Error::Io {
                context: "writing the capture file",
                source: e,
            })
        }
    }
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(why) => {
            eprintln!("csp: capture ended early: {why} (the file holds what came before)");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn write_frame<W: Write>(
    w: &mut Writer<W>,
    iface: &[Option<u32>; 256],
    f: &Frame,
    tally: &mut Tally,
) -> std::io::Result<()> {
    let Some(interface) = iface[usize::from(f.link)] else {
        return Ok(()); // a link the daemon did not announce: not ours
    };
    let packet = Packet {
        interface,
        time_ns: f.time_ns,
        data: &f.data,
        orig_len: f.orig_len,
        direction: f.direction,
    };
    if (f.data.len() as u64) < u64::from(f.orig_len) {
        tally.cut += 1;
        let note = format!(
            "cut by csp-muxd: {} of {} bytes captured",
            f.data.len(),
            f.orig_len
        );
        w.packet_with_comment(&packet, Some(&note))?;
    } else {
        w.packet(&packet)?;
    }
    tally.written += 1;
    Ok(())
}

fn io_err(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Wait until the capture or the signal pipe is readable, or `timeout`.
fn wait(cap: &Capture, sig: &UnixStream, timeout: Option<Duration>) -> Result<(), Error> {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [
        PollFd::from_borrowed_fd(cap.fd(), PollFlags::IN),
        PollFd::from_borrowed_fd(sig.as_fd(), PollFlags::IN),
    ];
    let ts = timeout.map(|t| rustix::event::Timespec {
        tv_sec: t.as_secs() as _,
        tv_nsec: t.subsec_nanos() as _,
    });
    match rustix::event::poll(&mut fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(Error::Io {
            context: "waiting for csp-muxd",
            source: e.into(),
        }),
    }
}

/// True if a signal arrived since the last call.
fn drain_signals(mut sig: &UnixStream) -> bool {
    let mut buf = [0u8; 16];
    let mut got = false;
    while let Ok(n) = sig.read(&mut buf) {
        if n == 0 {
            break;
        }
        got = true;
    }
    got
}
