//! Client library for csp-muxd and the `csp` tool. Empty until its issue is worked: nothing here pretends to run.
