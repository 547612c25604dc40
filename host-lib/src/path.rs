//! Where csp-muxd listens by default.

use std::path::{Path, PathBuf};

/// `$XDG_RUNTIME_DIR/csp-muxd.sock`, else `/tmp/csp-muxd-$UID.sock`.
///
/// Must stay identical to `host_muxd::endpoint::default_socket_path`, so
/// that daemon and clients meet without configuration. It is a copy because
/// host-lib does not depend on the daemon crate; the function belongs in
/// csp-ipc, where both would share it.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("csp-muxd.sock"),
        _ => PathBuf::from(format!("/tmp/csp-muxd-{}.sock", current_uid())),
    }
}

/// Our uid: the owner of our own /proc entry (no unsafe libc call needed).
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_path_has_the_daemons_shape() {
        let p = super::default_socket_path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name == "csp-muxd.sock" || (name.starts_with("csp-muxd-") && name.ends_with(".sock")),
            "{name}"
        );
    }
}
