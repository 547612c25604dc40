//! Security trailers: CRC-32C, HMAC-SHA1 (truncated), XTEA (libcsp 1.x).
//!
//! (Being written: only the CRC primitive is here so far.)

use crc::{Crc, CRC_32_ISCSI};

/// CRC-32C (Castagnoli), as libcsp computes it.
const CASTAGNOLI: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// CRC-32C of `data` (libcsp's `csp_crc32_memory`).
pub fn crc32c(data: &[u8]) -> u32 {
    CASTAGNOLI.checksum(data)
}
