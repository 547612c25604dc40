//! Builds the Python package into a venv under target/ and runs its pytest
//! suite (tests/python) against real csp-muxd and `csp` processes.
//!
//! What it needs: python3 with the venv module, and PyPI for maturin and
//! pytest on the first run (then they stay in target/py-venv). Without
//! python3 or venv the test says so and passes, except under `CI=true`
//! where it fails: CI must run the Python suite.

use std::path::Path;
use std::process::Command;

/// Skip with a reason, or fail under CI.
fn skip(why: &str) {
    test_support::skip_unless_ci("host-py pytest", why);
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

#[test]
fn python_package_passes_its_pytest_suite() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python)
        .args(["-m", "venv", "--help"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(_) => {
            return skip(&format!(
                "{python} has no venv module (apt install python3-venv)"
            ))
        }
        Err(e) => return skip(&format!("{python} not found ({e})")),
    }
    let target_dir = test_support::bins::target_dirs().target;
    let venv = target_dir.join("py-venv");
    let bin = venv.join("bin");
    if !bin.join("python").exists() {
        run(
            Command::new(&python).arg("-m").arg("venv").arg(&venv),
            "creating the venv",
        );
    }
    if !bin.join("maturin").exists() || !bin.join("pytest").exists() {
        run(
            Command::new(bin.join("python")).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "maturin>=1.5,<2",
                "pytest",
            ]),
            "pip install maturin pytest (from PyPI)",
        );
    }
    let (muxd, csp) = (test_support::bins::muxd(), test_support::bins::csp());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(
        Command::new(bin.join("maturin"))
            .args(["develop", "--quiet"])
            .env("VIRTUAL_ENV", &venv)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(manifest),
        "maturin develop (building the extension)",
    );
    run(
        Command::new(bin.join("python"))
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/python",
            ])
            .env("CSPMUX_MUXD", muxd)
            .env("CSPMUX_CSP", csp)
            .current_dir(manifest),
        "pytest host-py/tests/python",
    );
}
