//! The `csp-muxd` ground daemon. Empty until its issue is worked: nothing here pretends to run.
