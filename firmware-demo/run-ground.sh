#!/usr/bin/env bash
# The firmware and a ground station on one machine: QEMU boots the image
# with UART0 on a TCP port, and csp-muxd (node 1) connects to it as a KISS
# link with a route to node 10. Then, from another shell:
#
#   csp ping 10        csp ident 10        csp uptime 10
#   csp rdp 10 10 < file > echo    (RDP echo: segments 200, window 4)
#
#   firmware-demo/run-ground.sh [PORT]      (default 5410)
#
# csp-muxd uses its default socket (what `csp` uses without --socket) and
# no UDP link. Ctrl-C stops both. Builds what is missing first (release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
port="${1:-5410}"

(cd "$here" && cargo build --release --locked --quiet)
(cd "$root" && cargo build --release --quiet -p host-muxd --bin csp-muxd -p host-lib --bin csp)
elf="$here/target/thumbv7em-none-eabihf/release/firmware-demo"
bin="$root/target/release"

dir="$(mktemp -d)"
qemu_pid=""
muxd_pid=""
cleanup() {
  for pid in $muxd_pid $qemu_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/run-qemu.sh" "tcp:127.0.0.1:$port" "$elf" &
qemu_pid=$!

cat > "$dir/csp-muxd.toml" <<TOML
routes = ["10 fw"]          # node 10 (the firmware) through the KISS link

[node]
address = 1

[udp]
enabled = false

[[kiss]]
name = "fw"
mode = "tcp-client"         # QEMU is the server; the daemon reconnects if it restarts
connect = "127.0.0.1:$port"
TOML
echo "run-ground: csp-muxd (node 1) -> KISS tcp-client 127.0.0.1:$port -> firmware (node 10)" >&2
echo "run-ground: try \`$bin/csp ping 10\`, \`$bin/csp ident 10\`; Ctrl-C stops" >&2
# In the background and waited for: a signal to this script then runs the
# trap at once (bash defers traps while a foreground child runs), which stops
# both. The script ends when either of them does.
"$bin/csp-muxd" --config "$dir/csp-muxd.toml" &
muxd_pid=$!
wait -n "$muxd_pid" "$qemu_pid"
