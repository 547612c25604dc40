#!/usr/bin/env bash
# Boot the firmware under QEMU (mps2-an386) with UART0 on a socket server.
#
#   firmware-demo/run-qemu.sh [tcp:HOST:PORT | unix:PATH] [ELF]
#
# Default: tcp:127.0.0.1:5410. QEMU listens there and holds the guest until a
# client connects (wait=on), so no early byte is lost; connect a KISS TCP
# client (csp-muxd's KISS link in tcp-client mode: run-ground.sh does that)
# or a Unix-socket client to it.
# Semihosting carries the firmware's fatal reports (stdout) and exit status:
# the script exits with QEMU's status, non-zero if the firmware failed.
# Without an ELF argument the release image is built first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sock="${1:-tcp:127.0.0.1:5410}"
elf="${2:-}"
if [[ -z "$elf" ]]; then
  (cd "$here" && cargo build --release --locked --quiet)  # cwd selects .cargo/config.toml
  elf="$here/target/thumbv7em-none-eabihf/release/firmware-demo"
fi
case "$sock" in
  tcp:*|unix:*) ;;
  *) echo "usage: $0 [tcp:HOST:PORT | unix:PATH] [ELF]" >&2; exit 2 ;;
esac
# TCP: no Nagle, or every reply stalls on the client's delayed ACK (~40 ms).
nodelay=""
if [[ "$sock" == tcp:* ]]; then nodelay=",nodelay=on"; fi
echo "firmware-demo: UART0 KISS on $sock (waiting for a client)" >&2
exec qemu-system-arm -machine mps2-an386 -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -serial "$sock,server=on,wait=on$nodelay" \
  -kernel "$elf"
