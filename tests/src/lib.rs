//! Cross-crate integration tests live in `tests/tests/`; they arrive with the daemon.
