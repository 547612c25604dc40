//! The `csp-muxd` binary. Not runnable yet: the event loop is being built.
fn main() {
    eprintln!("csp-muxd: the daemon's event loop is not built yet");
    std::process::exit(1);
}
