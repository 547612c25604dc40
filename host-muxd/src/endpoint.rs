//! The Unix socket applications connect to: where it lives, how it is
//! created (mode 0660, a stale file from a dead daemon replaced, a live
//! daemon never displaced) and removed again on shutdown.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use csp_ipc::default_socket_path;

/// Why the endpoint could not be opened.
#[derive(Debug)]
pub enum EndpointError {
    /// Another daemon answers on that socket.
    InUse(PathBuf),
    /// The path exists and is not a socket: refuse to delete someone's file.
    NotASocket(PathBuf),
    /// Any other I/O failure.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointError::InUse(p) => write!(
                f,
                "{} is in use: another csp-muxd is running there (stop it or use --socket)",
                p.display()
            ),
            EndpointError::NotASocket(p) => {
                write!(
                    f,
                    "{} exists and is not a socket; not removing it",
                    p.display()
                )
            }
            EndpointError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Bind the listening socket at `path`.
///
/// A leftover socket file nobody listens on (a daemon that was killed) is
/// replaced; one with a live listener is an error, so two daemons never
/// fight over the same path.
pub fn bind(path: &Path) -> Result<mio::net::UnixListener, EndpointError> {
    let io_err = |e| EndpointError::Io(path.to_path_buf(), e);
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(EndpointError::NotASocket(path.to_path_buf()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(EndpointError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    log::info!("replacing stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(io_err)?;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let listener = mio::net::UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    Ok(listener)
}

/// A socket file just created, removed again when this guard is dropped
/// before [`keep`](Created::keep): a start-up that fails after binding the
/// socket leaves nothing behind.
#[must_use = "dropping the guard removes the socket file"]
pub struct Created(Option<PathBuf>);

impl Created {
    /// Guard the socket file at `path`.
    pub fn new(path: &Path) -> Created {
        Created(Some(path.to_path_buf()))
    }

    /// Start-up succeeded: the file stays (shutdown removes it).
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            remove(&path);
        }
    }
}

/// Remove the socket file if it is still ours (a socket at that path).
pub fn remove(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("could not remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/muxd.sock");

        // A socket file whose listener is gone: what a killed daemon leaves.
        {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        }
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());

        let live = bind(&path).expect("stale socket replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);

        match bind(&path) {
            Err(EndpointError::InUse(p)) => assert_eq!(p, path),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(live);
        remove(&path);
        assert!(!path.exists());
    }

    #[test]
    fn regular_file_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(bind(&path), Err(EndpointError::NotASocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
