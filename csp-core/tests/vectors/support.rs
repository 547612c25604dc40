//! Reading the vector files: a tiny accessor layer over serde_json values.

use serde_json::Value;
use std::path::{Path, PathBuf};

pub enum Outcome {
    Checked,
    /// The vector describes something this implementation deliberately does
    /// differently or that belongs to another crate; the reason is printed.
    NotUnderstood(&'static str),
}

pub struct Vector {
    pub raw: Value,
}

/// The vector directories: [`vectors_dir`] and, beside it (or at
/// `CSP_VECTORS_NEXT_DIR`), `vectors-next/` where files wait whose checker is
/// new. A missing `vectors-next/` is fine once its files have moved on.
pub fn vectors_dirs() -> Vec<PathBuf> {
    let main = vectors_dir();
    let next = match std::env::var_os("CSP_VECTORS_NEXT_DIR") {
        Some(d) => PathBuf::from(d),
        None => main.join("../vectors-next"),
    };
    let mut dirs = vec![main];
    if next.is_dir() {
        dirs.push(next);
    }
    dirs
}

/// `CSP_VECTORS_DIR`, else `../shared/vectors` beside the repository.
pub fn vectors_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CSP_VECTORS_DIR") {
        return PathBuf::from(d);
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    assert!(
        d.is_dir(),
        "golden vectors not found at {} (expected ../shared/vectors beside the repository, \
         or set CSP_VECTORS_DIR)",
        d.display()
    );
    d
}

pub fn load(path: &Path) -> (String, Vec<Vector>) {
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let topic = json["topic"].as_str().expect("topic").to_string();
    let vectors = json["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| Vector { raw: v.clone() })
        .collect();
    (topic, vectors)
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s}")))
        .collect()
}

impl Vector {
    pub fn name(&self) -> &str {
        self.raw["name"].as_str().unwrap_or("?")
    }

    pub fn id(&self) -> String {
        match self.version_num() {
            Some(v) => format!("{}@v{v}", self.name()),
            None => self.name().to_string(),
        }
    }

    fn version_num(&self) -> Option<u64> {
        self.raw["version"].as_u64()
    }

    /// The header version in force for this vector.
    pub fn version(&self) -> csp_core::Version {
        match self.version_num() {
            Some(1) => csp_core::Version::V1,
            Some(2) => csp_core::Version::V2,
            other => panic!("{}: vector has no usable version: {other:?}", self.id()),
        }
    }

    fn field(&self, section: &str, key: &str) -> Option<&Value> {
        self.raw[section].get(key)
    }

    pub fn has_input(&self, key: &str) -> bool {
        self.field("inputs", key).is_some()
    }

    pub fn has_output(&self, key: &str) -> bool {
        self.field("outputs", key).is_some()
    }

    fn get(&self, section: &str, key: &str) -> &Value {
        self.field(section, key)
            .unwrap_or_else(|| panic!("{}: missing {section}.{key}", self.id()))
    }

    pub fn input(&self, key: &str) -> &Value {
        self.get("inputs", key)
    }

    pub fn output(&self, key: &str) -> &Value {
        self.get("outputs", key)
    }

    pub fn in_u64(&self, key: &str) -> u64 {
        self.input(key)
            .as_u64()
            .unwrap_or_else(|| panic!("{}: inputs.{key} not an integer", self.id()))
    }

    pub fn out_u64(&self, key: &str) -> u64 {
        self.output(key)
            .as_u64()
            .unwrap_or_else(|| panic!("{}: outputs.{key} not an integer", self.id()))
    }

    pub fn out_i64(&self, key: &str) -> i64 {
        self.output(key)
            .as_i64()
            .unwrap_or_else(|| panic!("{}: outputs.{key} not an integer", self.id()))
    }

    pub fn in_str(&self, key: &str) -> &str {
        self.input(key)
            .as_str()
            .unwrap_or_else(|| panic!("{}: inputs.{key} not a string", self.id()))
    }

    pub fn out_str(&self, key: &str) -> &str {
        self.output(key)
            .as_str()
            .unwrap_or_else(|| panic!("{}: outputs.{key} not a string", self.id()))
    }

    pub fn in_hex(&self, key: &str) -> Vec<u8> {
        hex(self.in_str(key))
    }

    pub fn out_hex(&self, key: &str) -> Vec<u8> {
        hex(self.out_str(key))
    }

    /// A header from `{prefix}prio`, `{prefix}src`, ... in `section`. The
    /// fields are range-checked by the constructors: a vector with values
    /// out of range panics here (check `header_fits` first).
    pub fn header_from(&self, section: &str, prefix: &str) -> csp_core::Header {
        let n = |k: &str| {
            self.get(section, &format!("{prefix}{k}"))
                .as_u64()
                .unwrap_or_else(|| panic!("{}: {section}.{prefix}{k}", self.id()))
        };
        csp_core::Header {
            prio: csp_core::Prio::new(n("prio") as u8).unwrap(),
            src: csp_core::Addr::new(n("src") as u16).unwrap(),
            dst: csp_core::Addr::new(n("dst") as u16).unwrap(),
            dport: csp_core::Port::new(n("dport") as u8).unwrap(),
            sport: csp_core::Port::new(n("sport") as u8).unwrap(),
            flags: csp_core::Flags::from_bits(
                self.field(section, &format!("{prefix}flags"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u8,
            ),
        }
    }

    /// Asserts a parsed header equals the `{prefix}*` fields of `outputs`.
    pub fn assert_header_eq(&self, got: &csp_core::Header, prefix: &str) {
        let want = self.header_from("outputs", prefix);
        assert_eq!(got, &want, "{}: decoded header", self.id());
    }
}

/// The security trailers of a libcsp send: `inputs.opts` (`CSP_O_CRC32`,
/// `CSP_O_HMAC`, `CSP_O_NONE`, joined by `|`), with `inputs.key_string` as the
/// HMAC key. `None` if an option is not one of those.
pub fn security_options(v: &Vector) -> Option<csp_core::security::SecurityOptions> {
    let mut o = csp_core::security::SecurityOptions::NONE;
    for opt in v.in_str("opts").split('|').map(str::trim) {
        match opt {
            "CSP_O_NONE" | "" => {}
            "CSP_O_CRC32" => o.crc = true,
            "CSP_O_HMAC" => {
                let key = v.in_str("key_string").as_bytes();
                o.hmac = Some(csp_core::security::HmacKey::from_key_string(key));
            }
            _ => return None,
        }
    }
    Some(o)
}
