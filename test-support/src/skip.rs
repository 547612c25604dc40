//! Tests that need a tool a machine may lack (QEMU, tshark, Python, a
//! vcan interface): without it they say what stays untested and pass,
//! except where CI must run them (`CI=true`), where it is a failure.

use std::io::Write;

/// True under `CI=true`, as `.ci/run` sets it.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Say that `what` is untested here because of `why`, on the process's
/// real stderr: the harness hides `eprintln!` of passing tests, and a skip
/// must be seen.
pub fn say_skipped(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
}

/// `what` can not run here because of `why`: a failure under `CI=true`,
/// elsewhere [`say_skipped`].
pub fn skip_unless_ci(what: &str, why: &str) {
    assert!(!ci(), "CI=true and {what} can not run: {why}");
    say_skipped(what, why);
}
