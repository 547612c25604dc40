//! tshark with the CSP dissector (`contrib/wireshark/csp.lua`), for the
//! tests that check captures by dissecting them: `dissector.rs` (files the
//! test writes) and `capture.rs` (files `csp capture` writes).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::run_within;

/// tshark's path, or None (skip) when it is not installed; under CI=true a
/// missing tshark fails the test.
pub fn tshark() -> Option<PathBuf> {
    let found = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("tshark"));
    }
    test_support::skip_unless_ci(
        "the tshark dissections",
        "tshark is not installed (Debian package `tshark`)",
    );
    None
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/wireshark/csp.lua")
}

/// Bound of one tshark run (it loads its dissectors first; a busy machine).
pub const TSHARK_WAIT: Duration = Duration::from_secs(120);

/// Runs tshark on `file` and returns, per packet, each field's value.
pub fn dissect(
    tshark: &Path,
    file: &Path,
    extra: &[&str],
    fields: &[&str],
) -> Vec<BTreeMap<String, String>> {
    let mut cmd = Command::new(tshark);
    cmd.arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{}", script().display()))
        .arg("-r")
        .arg(file)
        .args(extra)
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-E", "aggregator=/s"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let (code, stdout, stderr) = run_within(&mut cmd, TSHARK_WAIT);
    assert_eq!(code, 0, "tshark failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("lua"),
        "tshark reported a Lua problem: {stderr}"
    );
    stdout
        .lines()
        .map(|line| {
            fields
                .iter()
                .zip(line.split('\t'))
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}
