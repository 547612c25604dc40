//! `csp-muxd --print-default-config | head -1`: a closed stdout ends the
//! program quietly with status 0, never a panic (issue 14). The reading end
//! of the pipe is closed before the daemon starts, so its write surely
//! meets EPIPE.

use std::process::{Command, Stdio};

#[test]
fn printing_the_default_config_into_a_closed_pipe_ends_quietly() {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = Command::new(env!("CARGO_BIN_EXE_csp-muxd"))
        .arg("--print-default-config")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}
