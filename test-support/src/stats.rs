//! Values out of the daemon's STATS and STATUS texts.

use std::time::{Duration, Instant};

use crate::ipc::Ipc;
use crate::WAIT;

/// Value of `key N` in a STATS/STATUS text.
pub fn stat(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// Value of `key=N` on the STATS line `link NAME ...`.
pub fn link_stat(text: &str, link: &str, key: &str) -> u64 {
    link_field(text, &format!("link {link} "), key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} of {link} not a number in {text}"))
}

/// Value of `key=...` on the first line starting with `prefix`.
pub fn link_field(text: &str, prefix: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_string()
}

/// Poll STATUS until KISS link `name` is up (bounded by WAIT).
pub fn wait_link_up(ipc: &mut Ipc, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = ipc.control(csp_ipc::Control::Status);
        if link_field(&status, &format!("link {name} kiss "), "state") == "up" {
            return;
        }
        assert!(Instant::now() < deadline, "link {name} not up: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_key_and_line() {
        let text = "delivered 3\nlink udp rx_frames=5 rx_errors=1\nlink tnc rx_frames=7\n";
        assert_eq!(stat(text, "delivered"), 3);
        assert_eq!(link_stat(text, "udp", "rx_frames"), 5);
        assert_eq!(link_stat(text, "tnc", "rx_frames"), 7);
        assert_eq!(link_field(text, "link udp ", "rx_errors"), "1");
    }
}
