//! Logging shim: the core says `csp_trace!`/`csp_debug!` and never names a
//! logger, so firmware can pick `defmt`, the host `log`, or nothing at all
//! (the arguments are then type-checked but never formatted).
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! csp_trace {
    ($($arg:tt)*) => { defmt::trace!($($arg)*) };
}

#[cfg(feature = "log")]
macro_rules! csp_trace {
    ($($arg:tt)*) => { log::trace!(target: "csp", $($arg)*) };
}

#[cfg(not(any(feature = "defmt", feature = "log")))]
macro_rules! csp_trace {
    ($($arg:tt)*) => {{
        if false {
            let _ = ::core::format_args!($($arg)*);
        }
    }};
}

#[cfg(feature = "defmt")]
macro_rules! csp_debug {
    ($($arg:tt)*) => { defmt::debug!($($arg)*) };
}

#[cfg(feature = "log")]
macro_rules! csp_debug {
    ($($arg:tt)*) => { log::debug!(target: "csp", $($arg)*) };
}

#[cfg(not(any(feature = "defmt", feature = "log")))]
macro_rules! csp_debug {
    ($($arg:tt)*) => {{
        if false {
            let _ = ::core::format_args!($($arg)*);
        }
    }};
}
