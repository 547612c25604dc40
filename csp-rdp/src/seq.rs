//! Wrap-aware arithmetic on the 16-bit RDP sequence numbers.
//!
//! Sequence numbers start at a random value and wrap at 65536, so a plain
//! `<` is wrong after a wrap. Every comparison in the crate goes through here.

/// `x` lies in the closed range `[lo, hi]` walking forward from `lo`
/// (so `[0xfffe, 0x0001]` holds 0xffff and 0x0000).
pub const fn between(x: u16, lo: u16, hi: u16) -> bool {
    x.wrapping_sub(lo) <= hi.wrapping_sub(lo)
}

/// Forward distance from `from` to `to` (how many increments of `from` reach `to`).
pub const fn distance(from: u16, to: u16) -> u16 {
    to.wrapping_sub(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_wraps() {
        assert!(between(5, 5, 5));
        assert!(between(0xffff, 0xfffe, 0x0001));
        assert!(between(0x0000, 0xfffe, 0x0001));
        assert!(between(0x0001, 0xfffe, 0x0001));
        assert!(!between(0x0002, 0xfffe, 0x0001));
        assert!(!between(0xfffd, 0xfffe, 0x0001));
        assert!(between(10, 1, 20));
        assert!(!between(0, 1, 20));
        assert!(!between(21, 1, 20));
    }

    #[test]
    fn distance_wraps() {
        assert_eq!(distance(0xffff, 0x0001), 2);
        assert_eq!(distance(7, 7), 0);
        assert_eq!(distance(8, 7), 0xffff);
    }

    proptest::proptest! {
        #[test]
        fn between_matches_distance(x: u16, lo: u16, len in 0u16..0x8000) {
            let hi = lo.wrapping_add(len);
            proptest::prop_assert_eq!(between(x, lo, hi), distance(lo, x) <= len);
        }
    }
}
