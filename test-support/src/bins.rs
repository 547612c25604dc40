//! The workspace's executables, for tests in any package. Cargo sets
//! `CARGO_BIN_EXE_<name>` only for the binary's own package, so the first
//! test of a process that needs one runs `cargo build` for it, into the
//! test's own target directory and profile, and later calls get the same
//! path. Cargo's lock on the target directory serialises test processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::wait_bounded;

/// Bound of one build (a cold debug build of the daemon on a busy machine
/// takes minutes).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Where the running test's executable was built.
#[derive(Debug, Clone)]
pub struct TargetDirs {
    /// `target/` (or `CARGO_TARGET_DIR`).
    pub target: PathBuf,
    /// `target/<profile>/`, where binaries land.
    pub profile_dir: PathBuf,
    /// The cargo profile name (`dev` for `target/debug`).
    pub profile: String,
}

/// target/<profile>/deps/<test binary> -> its target and profile dirs.
pub fn target_dirs() -> TargetDirs {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary in target/<profile>/deps")
        .to_path_buf();
    let target = profile_dir
        .parent()
        .expect("target/<profile>")
        .to_path_buf();
    let dir_name = profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let profile = if dir_name == "debug" {
        "dev".to_string()
    } else {
        dir_name
    };
    TargetDirs {
        target,
        profile_dir,
        profile,
    }
}

/// The workspace root (this crate's parent).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo build -p package --bin bin` with the test's profile and target
/// dir; the binary's path.
fn build(package: &str, bin: &str) -> PathBuf {
    let dirs = target_dirs();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut child = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--profile")
        .arg(&dirs.profile)
        .arg("--target-dir")
        .arg(&dirs.target)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run cargo to build {bin}: {e}"));
    let status = wait_bounded(&mut child, BUILD_TIMEOUT, &format!("building {bin}"));
    assert!(status.success(), "building {bin} failed ({status})");
    let path = dirs.profile_dir.join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!("{bin} built in {:.1} s", started.elapsed().as_secs_f64());
    }
    path
}

/// `csp-muxd`, built on first use.
pub fn muxd() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("host-muxd", "csp-muxd"))
}

/// The `csp` tool, built on first use.
pub fn csp() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("host-lib", "csp"))
}
