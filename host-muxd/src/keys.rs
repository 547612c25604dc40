//! The keys of the daemon's own services, read from a file that only the
//! daemon's user may read (`services.key_file`). Keys never live in the
//! main config (which is often world-readable and kept in version control)
//! nor on the command line (visible to every user in `ps`).
//!
//! The file is TOML with at most two keys, given as libcsp takes them (a
//! string whose bytes are the key; libcsp derives the HMAC key from it):
//!
//! ```toml
//! hmac_key = "the mission's HMAC key"
//! xtea_key = "the v1 XTEA key"
//! ```

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use csp_core::security::{HmacKey, XteaKey};
use serde::Deserialize;

/// The keys the services verify requests with and sign replies with.
#[derive(Clone, Default)]
pub struct ServiceKeys {
    /// HMAC-SHA1 key (libcsp's key derivation).
    pub hmac: Option<HmacKey>,
    /// XTEA key, for requests from v1 links (libcsp 1.x).
    pub xtea: Option<XteaKey>,
}

// Never print key material, not even in a debug log.
impl fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceKeys")
            .field("hmac", &self.hmac.is_some())
            .field("xtea", &self.xtea.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    hmac_key: Option<String>,
    xtea_key: Option<String>,
}

/// Why the key file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "services.key_file = \"{}\": {}",
            self.path.display(),
            self.message
        )
    }
}

impl std::error::Error for KeyFileError {}

/// Read the key file at `path`, refusing it unless only our user can read
/// it (owned by us, no group or other permission bits at all).
pub fn load(path: &Path) -> Result<ServiceKeys, KeyFileError> {
    let err = |message: String| KeyFileError {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {mode:04o} lets other users read the keys; \
             make it readable by its owner only (chmod 600 {})",
            path.display()
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(err(format!(
            "owned by uid {}, not by the daemon's user (uid {me})",
            meta.uid()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    // The parser's message may quote the offending line: keep the keys out
    // of the log by reporting only where it is.
    let file: KeyFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| crate::config::line_of(&text, s.start).to_string())
            .unwrap_or_else(|| "?".into());
        err(format!(
            "line {line}: not a key file (expected `hmac_key = \"...\"` and/or `xtea_key = \"...\"`)"
        ))
    })?;
    let key = |name: &str, k: Option<String>| match k {
        Some(k) if k.is_empty() => Err(err(format!("`{name}` is empty"))),
        k => Ok(k),
    };
    let hmac = key("hmac_key", file.hmac_key)?;
    let xtea = key("xtea_key", file.xtea_key)?;
    if hmac.is_none() && xtea.is_none() {
        return Err(err("holds neither `hmac_key` nor `xtea_key`".into()));
    }
    Ok(ServiceKeys {
        hmac: hmac.map(|k| HmacKey::from_key_string(k.as_bytes())),
        xtea: xtea.map(|k| XteaKey::from_key_string(k.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let p = dir.join("keys.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn private_file_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "hmac_key = \"secret\"\n", 0o600);
        let k = load(&p).unwrap();
        assert!(k.hmac.is_some() && k.xtea.is_none());
        assert_eq!(format!("{k:?}"), "ServiceKeys { hmac: true, xtea: false }");
    }

    #[test]
    fn loose_modes_are_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660, 0o610] {
            let p = write(d.path(), "hmac_key = \"secret\"\n", mode);
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn bad_contents_do_not_echo_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "hmac_key = \"topsecret\nxtea = 1\n", 0o600);
        let e = load(&p).unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
        let p = write(d.path(), "", 0o600);
        assert!(load(&p).unwrap_err().to_string().contains("neither"));
        let p = write(d.path(), "hmac_key = \"\"\n", 0o600);
        assert!(load(&p).unwrap_err().to_string().contains("empty"));
    }
}
