//! What a socket or a single send adds to its packets: CRC32, HMAC, XTEA,
//! SFP fragmentation and the priority. All of it runs in this process
//! through csp-core; the daemon only routes.

use csp_core::security::{HmacKey, SecurityOptions, XteaKey};
use csp_core::{Prio, Version};

/// Per-socket (or per-send) protocol options.
///
/// On send, the trailers are appended in wire order; on receive, a socket
/// requires the trailers its options name (a packet without them is dropped
/// and counted) and always checks those a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Append a CRC32 trailer, require one on receive.
    pub crc: bool,
    /// Append an HMAC trailer with this key, require a valid one on receive.
    pub hmac: Option<HmacKey>,
    /// Encrypt with XTEA (libcsp 1.x only: reaches a peer only through a
    /// link that speaks version 1 headers), require it on receive.
    pub xtea: Option<XteaKey>,
    /// Send through SFP, as libcsp's `csp_sfp_send` does: every payload
    /// goes as fragments with the FRAG flag (one fragment when it fits),
    /// so a libcsp `csp_sfp_recv` on the other end takes it. On receive,
    /// FRAG packets are reassembled (up to
    /// [`MAX_SFP_LEN`](crate::socket::MAX_SFP_LEN) bytes, in any order) and
    /// other packets delivered as they are. Without it a payload larger
    /// than one packet is refused with [`Error::TooLarge`](crate::Error::TooLarge),
    /// and received fragments are delivered raw (FRAG set, SFP trailer in
    /// the data).
    pub sfp: bool,
    /// Data bytes per SFP fragment; `None` uses the largest that fits one
    /// packet (the daemon's MTU less trailers). Set it smaller when a link
    /// on the way has a smaller MTU than the IPC socket.
    pub sfp_mtu: Option<usize>,
    /// Priority of packets sent.
    pub prio: Prio,
}

impl Default for Options {
    fn default() -> Self {
        Options::NONE
    }
}

impl Options {
    /// No trailers, no SFP, normal priority.
    pub const NONE: Options = Options {
        crc: false,
        hmac: None,
        xtea: None,
        sfp: false,
        sfp_mtu: None,
        prio: Prio::Normal,
    };

    /// These options with a CRC32 trailer.
    pub fn with_crc(mut self) -> Options {
        self.crc = true;
        self
    }

    /// These options with an HMAC trailer keyed from `key` as libcsp does
    /// (first 16 bytes of SHA1 of the key string).
    pub fn with_hmac_key(mut self, key: &[u8]) -> Options {
        self.hmac = Some(HmacKey::from_key_string(key));
        self
    }

    /// These options with XTEA keyed from `key` as libcsp 1.x does.
    pub fn with_xtea_key(mut self, key: &[u8]) -> Options {
        self.xtea = Some(XteaKey::from_key_string(key));
        self
    }

    /// These options with SFP on.
    pub fn with_sfp(mut self) -> Options {
        self.sfp = true;
        self
    }

    /// The csp-core view: what the security layer appends and requires.
    pub(crate) fn security(&self) -> SecurityOptions {
        SecurityOptions {
            crc: self.crc,
            hmac: self.hmac,
            xtea: self.xtea,
            cover_header: false,
            accept_missing: false,
        }
    }

    /// The header version the trailers are computed for. Trailers cover the
    /// data only, so the version matters just for XTEA, which exists only
    /// with version 1 headers (the daemon carries the flag either way).
    pub(crate) fn security_version(&self) -> Version {
        if self.xtea.is_some() {
            Version::V1
        } else {
            Version::V2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csp_core::Flags;

    #[test]
    fn builders_set_flags() {
        let o = Options::NONE.with_crc().with_hmac_key(b"secret");
        assert_eq!(o.security().flags(), Flags::CRC32.with(Flags::HMAC));
        assert_eq!(o.security_version(), Version::V2);
        let x = Options::NONE.with_xtea_key(b"k");
        assert_eq!(x.security_version(), Version::V1);
        assert!(Options::default().with_sfp().sfp);
    }
}
