//! The `csp` tool run as a process against a real daemon; output checked.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use host_lib::{Bind, Client};
use test_support::*;

#[test]
fn ping_ident_uptime_memfree_buffree_of_node_1() {
    let d = Muxd::start(MuxdConfig::node(1));
    let (code, out, err) = run(d.csp().args(["ping", "-c", "3", "-i", "20", "1"]));
    assert_eq!(code, 0, "{out}{err}");
    for seq in 1..=3 {
        assert!(
            out.contains(&format!("10 bytes from 1: seq={seq} time=")),
            "{out}"
        );
    }
    assert!(out.contains("3 sent, 3 received, 0% loss"), "{out}");
    assert!(out.contains("rtt min/avg/max = "), "{out}");

    let (code, out, _) = run(d.csp().args(["ident", "1"]));
    assert_eq!(code, 0);
    assert!(out.contains("hostname: csp-muxd"), "{out}");
    assert!(out.contains("model:    csp-rs ground"), "{out}");

    let (code, out, _) = run(d.csp().args(["uptime", "1"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("node 1 up "), "{out}");

    let (code, out, _) = run(d.csp().args(["--crc", "buffree", "1"]));
    assert_eq!(code, 0);
    assert!(out.contains("buffers free"), "{out}");
    let (code, out, _) = run(d.csp().args(["memfree", "1"]));
    assert_eq!(code, 0);
    assert!(out.contains("bytes free"), "{out}");
}

#[test]
fn ping_without_answer_reports_loss_and_fails() {
    // The daemon holds no HMAC key, so it can not answer such a ping.
    let d = Muxd::start(MuxdConfig::node(1));
    let (code, out, _) = run(d.csp().args([
        "--hmac-key",
        "k",
        "--timeout",
        "100",
        "ping",
        "-c",
        "2",
        "-i",
        "1",
        "1",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no reply from 1: seq=2"), "{out}");
    assert!(out.contains("2 sent, 0 received, 100% loss"), "{out}");
    assert!(!out.contains("rtt"), "{out}");
}

#[test]
fn status_lists_node_routes_apps_counters() {
    let d = Muxd::start(MuxdConfig::node(1));
    let mut app = Client::connect(&d.socket).unwrap();
    let _s = app.bind(Bind::Port(17)).unwrap();
    let (code, out, err) = run(d.csp().arg("status"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("== status\nnode 1\n"), "{out}");
    assert!(out.contains("ports=1:17"), "{out}");
    assert!(out.contains("== routes\n"), "{out}");
    assert!(out.contains("== counters\n"), "{out}");
    assert!(out.contains("link udp"), "{out}");
}

/// `csp listen --echo 1` used to take every other application's pings.
#[test]
fn listening_on_a_service_port_is_refused_clearly() {
    let d = Muxd::start(MuxdConfig::node(1));
    let (code, _, err) = run(d.csp().args(["listen", "--echo", "-c", "1", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("port 1 is a service port of the node"),
        "{err}"
    );
    let (code, out, err) = run(d.csp().args(["ping", "-c", "1", "1"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 sent, 1 received"), "{out}");
}

/// `csp status` with more applications than one frame can list, one of
/// them with a 4000-byte name: the reply comes in pages, `--json` is one
/// object of records (issue 16; before, the client timed out).
#[test]
fn status_json_lists_every_application_in_pages() {
    let d = Muxd::start(MuxdConfig::node(1));
    let named = |name: String| {
        Client::with_config(host_lib::ClientConfig {
            socket: Some(d.socket.clone()),
            name,
            reconnect: false,
            ..host_lib::ClientConfig::default()
        })
        .unwrap()
    };
    let mut long = named("L".repeat(4000));
    let _s = long.bind(Bind::Port(17)).unwrap();
    let _apps: Vec<Client> = (0..150).map(|i| named(format!("app {i}"))).collect();

    let (code, out, err) = run(d.csp().args(["status", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let status = v["status"].as_array().unwrap();
    assert_eq!(status[0], serde_json::json!({"kind": "node", "args": [1]}));
    let apps: Vec<_> = status.iter().filter(|r| r["kind"] == "app").collect();
    // The 151 above and `csp status` itself.
    assert_eq!(apps.len(), 152, "{out}");
    let mine = apps.iter().find(|a| a["ports"] == "1:17").unwrap();
    assert_eq!(mine["name"], "L".repeat(csp_ipc::MAX_NAME_LEN));
    assert!(v["counters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["kind"] == "delivered"));
    assert!(v["routes"].is_array());

    // The text form for people lists them all too.
    let (code, out, err) = run(d.csp().arg("status"));
    assert_eq!(code, 0, "{err}");
    // Listed in the status section (the counters name them too).
    let status_part = out.split("== counters").next().unwrap();
    assert_eq!(status_part.matches("name=\"app ").count(), 150, "{out}");
}

/// Start `csp listen ARGS` and wait until it has bound its port.
fn listen(d: &Muxd, args: &[&str]) -> Child {
    listen_with_stderr(d, args).0
}

/// As [`listen`], with the rest of its stderr.
fn listen_with_stderr(d: &Muxd, args: &[&str]) -> (Child, BufReader<std::process::ChildStderr>) {
    // The read is bounded by the listener's own --idle timeout.
    let args: Vec<&str> = ["listen"].iter().chain(args).copied().collect();
    d.spawn_csp_ready(&args, "listening on ")
}

#[test]
fn send_and_listen_pair() {
    let d = Muxd::start(MuxdConfig::node(1));
    let listener = listen(&d, &["-c", "2", "--idle", "10000", "10"]);
    let (code, _, err) = run(d.csp().args(["send", "1", "10", "hello"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(d.csp().args(["send", "--hex", "1", "10", "de ad be ef"]));
    assert_eq!(code, 0, "{err}");
    let out = finish(listener);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("-> port 10 (5 bytes, flags 0x00): 68 65 6c 6c 6f"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("(4 bytes, flags 0x00): de ad be ef"),
        "{text}"
    );
}

#[test]
fn sfp_and_crc_through_stdin_and_raw_stdout() {
    let d = Muxd::start(MuxdConfig::node(1));
    let listener = listen(
        &d,
        &[
            "--crc", "--sfp", "--raw", "-c", "1", "--idle", "10000", "11",
        ],
    );
    let payload: Vec<u8> = (0..6000u32).map(|i| (i % 253) as u8).collect();
    let mut sender = d
        .csp()
        .args(["--crc", "send", "--sfp", "1", "11", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sender.stdin.take().unwrap().write_all(&payload).unwrap();
    let out = finish(sender);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = finish(listener);
    assert!(out.status.success());
    assert!(out.stdout == payload, "{} bytes", out.stdout.len());
}

#[test]
fn too_large_without_sfp_is_refused_with_a_hint() {
    let d = Muxd::start(MuxdConfig::node(1));
    let mut sender = d
        .csp()
        .args(["send", "1", "11", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sender
        .stdin
        .take()
        .unwrap()
        .write_all(&[0u8; 5000])
        .unwrap();
    let out = finish(sender);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("enable SFP (--sfp)"), "{err}");
}

#[test]
fn errors_are_actionable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let (code, _, err) = run(Command::new(bins::csp())
        .arg("--socket")
        .arg(&missing)
        .args(["ping", "1"]));
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "csp: csp-muxd is not running at {}",
            missing.display()
        )),
        "{err}"
    );

    let d = Muxd::start(MuxdConfig::node(1));
    let mut app = Client::connect(&d.socket).unwrap();
    let _s = app.bind(Bind::Port(10)).unwrap();
    let (code, _, err) = run(d.csp().args(["listen", "10"]));
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "csp: port 10 is in use by another application");

    // A connectionless socket on the port: the SYN finds no listener.
    let (code, _, err) = run(d.csp().args(["rdp", "--connect-timeout", "500", "1", "10"]));
    assert_eq!(code, 1);
    assert!(err.contains("no answer from 1:10"), "{err}");
    let (code, _, err) = run(d.csp().args(["listen", "--rdp", "10"]));
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "csp: port 10 is in use by another application");
    let (code, _, err) = run(d.csp().args(["--v1", "--xtea-key", "k", "rdp", "1", "10"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("XTEA is not available on RDP connections"),
        "{err}"
    );

    let (code, _, err) = run(d.csp().args(["--xtea-key", "k", "ping", "1"]));
    assert_eq!(code, 2, "--xtea-key needs --v1: {err}");
}

#[test]
fn help_has_examples_for_every_subcommand() {
    for sub in [
        "ping", "uptime", "ident", "memfree", "buffree", "send", "listen", "rdp", "status",
    ] {
        let (code, out, _) = run(Command::new(bins::csp()).args([sub, "--help"]));
        assert_eq!(code, 0);
        assert!(out.contains("Example"), "{sub}: {out}");
    }
    let (code, out, _) = run(Command::new(bins::csp()).arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("csp ping 1"), "{out}");
}

#[test]
fn send_reply_against_listen_echo() {
    let d = Muxd::start(MuxdConfig::node(1));
    let echo = listen(&d, &["--echo", "-c", "1", "--idle", "10000", "13"]);
    let (code, out, err) =
        run(d
            .csp()
            .args(["--timeout", "5000", "send", "--reply", "1", "13", "ping-me"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1:13 -> port "), "{out}");
    assert!(out.trim_end().ends_with("70 69 6e 67 2d 6d 65"), "{out}");
    assert!(finish(echo).status.success());
}

#[test]
fn listen_survives_a_daemon_restart() {
    let mut d = Muxd::start(MuxdConfig::node(1));
    let (listener, mut err) = listen_with_stderr(&d, &["-c", "2", "--idle", "15000", "16"]);
    let (code, _, e) = run(d.csp().args(["send", "1", "16", "before"]));
    assert_eq!(code, 0, "{e}");
    d.restart();
    // The listener reports both steps on stderr (reads bounded by --idle).
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("went away"), "{line:?}");
    line.clear();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("reconnected"), "{line:?}");
    let (code, _, e) = run(d.csp().args(["send", "1", "16", "after"]));
    assert_eq!(code, 0, "{e}");
    let out = finish(listener);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("62 65 66 6f 72 65") && text.contains("61 66 74 65 72"),
        "{text}"
    );
}

#[test]
fn ping_over_tcp_with_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Muxd::start(MuxdConfig::node(1).extra(&format!(
        "[ipc]\ntcp_listen = \"127.0.0.1:{port}\"\ntcp_token = \"tok-tok-tok-tok-tok\"\n"
    )));
    let addr = format!("127.0.0.1:{port}");
    let (code, out, err) = run(Command::new(bins::csp()).args([
        "--tcp",
        &addr,
        "--tcp-token",
        "tok-tok-tok-tok-tok",
        "ping",
        "-c",
        "1",
        "1",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 sent, 1 received"), "{out}");
    let (code, _, err) = run(Command::new(bins::csp()).args(["--tcp", &addr, "ping", "1"]));
    assert_eq!(code, 2, "--tcp needs --tcp-token: {err}");
    drop(d);
    let (code, _, err) = run(Command::new(bins::csp()).args([
        "--tcp",
        &addr,
        "--tcp-token",
        "tok-tok-tok-tok-tok",
        "ping",
        "1",
    ]));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("csp-muxd is not listening at tcp:{addr}")),
        "{err}"
    );
}

/// `csp listen 10 | head -1` (issue 14): once `head` has its line and
/// exits, the next write meets a closed pipe; `csp` ends quietly with
/// status 0 instead of panicking. A real shell pipeline, so the pipe is
/// exactly what a user gets.
#[test]
fn listen_into_a_closed_pipe_ends_quietly() {
    let d = Muxd::start(MuxdConfig::node(1));
    let script = format!(
        "'{}' --socket '{}' listen --idle 10000 10 2>\"$ERR\" | head -1; \
         echo \"status ${{PIPESTATUS[0]}}\" >&2",
        bins::csp().display(),
        d.socket.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("csp.err");
    let child = Command::new("bash")
        .args(["-c", &script])
        .env("ERR", &err_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Send until the pipeline is over: the first packet is head's line,
    // a later one meets the closed pipe. Bounded by the attempts.
    let mut sender = Client::connect(&d.socket).unwrap();
    let s = sender.bind(Bind::Ephemeral).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut child = Some(child);
    let mut out = None;
    while out.is_none() && Instant::now() < deadline {
        let _ = sender.sendto(&s, 1, 10, b"line");
        std::thread::sleep(Duration::from_millis(50));
        if child.as_mut().unwrap().try_wait().unwrap().is_some() {
            out = Some(finish(child.take().unwrap()));
        }
    }
    let out = out.unwrap_or_else(|| finish(child.take().unwrap()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shell_err = String::from_utf8_lossy(&out.stderr);
    let csp_err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(stdout.lines().count(), 1, "head printed one line: {stdout}");
    assert!(stdout.contains("-> port 10 (4 bytes"), "{stdout}");
    assert!(shell_err.contains("status 0"), "csp's status: {shell_err}");
    assert!(!csp_err.contains("panicked"), "{csp_err}");
    assert_eq!(
        csp_err.trim(),
        "listening on 1:10",
        "nothing but the start line on stderr"
    );
}

/// `--rdpopt` (and `CSP_RDPOPT`) in libcsp's csp_rdp_set_opt order set
/// what `csp rdp` asks for in its SYN; a command's own --window wins. Seen
/// on the wire: an application bound to the port receives the SYN as it
/// was sent.
#[test]
fn rdpopt_sets_the_options_of_the_syn() {
    let d = Muxd::start(MuxdConfig::node(1));
    let mut observer = d.client("observer");
    assert_eq!(observer.register(0, 12).0, csp_ipc::Status::Ok);
    let syn = |observer: &mut Ipc, args: &[&str], env: Option<&str>| {
        let mut cmd = d.csp();
        cmd.args(["rdp", "--connect-timeout", "300"])
            .args(args)
            .args(["1", "12"])
            .stdin(Stdio::null());
        if let Some(v) = env {
            cmd.env("CSP_RDPOPT", v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (_, data) = observer.recv_packet();
        let (options, header) = csp_rdp::header::RdpHeader::split(&data).unwrap();
        assert!(
            header.flags().contains(csp_rdp::header::Flags::SYN),
            "{data:?}"
        );
        // The connection is never answered: let csp give up.
        finish(child);
        // Its retransmitted SYNs, if any, are not what is looked at next.
        while observer
            .recv_packet_within(Duration::from_millis(50))
            .is_some()
        {}
        csp_rdp::header::SynOptions::parse(options).unwrap()
    };
    let o = syn(&mut observer, &["--rdpopt", "7,12345,1500,1,300,3"], None);
    assert_eq!(
        (
            o.window,
            o.conn_timeout_ms,
            o.packet_timeout_ms,
            o.delayed_acks,
            o.ack_timeout_ms,
            o.ack_delay_count
        ),
        (7, 12345, 1500, 1, 300, 3)
    );
    let o = syn(&mut observer, &[], Some("5,20000,2000,0,100,2"));
    assert_eq!((o.window, o.conn_timeout_ms, o.delayed_acks), (5, 20000, 0));
    // A command's own flag wins over the defaults.
    let o = syn(
        &mut observer,
        &["--rdpopt", "7,12345,1500,1,300,3", "--window", "9"],
        None,
    );
    assert_eq!((o.window, o.conn_timeout_ms), (9, 12345));
    // Bad defaults are a usage error naming the field.
    let (code, _, err) = run(d
        .csp()
        .args(["--rdpopt", "4,10000,1000,2,250,2", "rdp", "1", "12"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("delayed acks"), "{err}");
}
