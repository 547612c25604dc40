#!/usr/bin/env python3
"""Where firmware-demo's flash goes, against its budget.

    scripts/fw-size.py [--build] [--top N] [--check] [ELF]

Prints flash (vector table + .text + .rodata + .data) and RAM (.data + .bss)
against the 32 KiB / 16 KiB budget, the largest symbols, and every call into
a panic entry point with the source line it comes from (inlining unfolded),
so a new bounds check is found without reading the disassembly. With
`--check`, exits 1 if the image has a panic path, `core::fmt`, or 64-bit
division routines (see firmware-demo/README.md, "Size").

Needs LLVM's binutils (llvm-size, llvm-nm, llvm-objdump, llvm-addr2line).
"""

import argparse
import bisect
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FW = os.path.join(ROOT, "firmware-demo")
ELF = os.path.join(FW, "target/thumbv7em-none-eabihf/release/firmware-demo")
FLASH_BUDGET = 32 * 1024
RAM_BUDGET = 16 * 1024
# Symbols that must not be in the image (--check).
FORBIDDEN = re.compile(r"core::panicking|core::fmt|__aeabi_[ul]*ldivmod|__u?divmoddi4")
# Calls that are panic paths.
PANIC_CALL = re.compile(r"panicking|slice_index_fail|len_mismatch_fail|unwrap_failed|expect_failed")
CALL = re.compile(r"^\s*([0-9a-f]+):\s+bl?(?:\.w)?\s+0x[0-9a-f]+ <(\S+)>")


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def sections(elf):
    out = {}
    for line in run("llvm-size", "-A", elf).splitlines():
        p = line.split()
        if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit():
            out[p[0]] = int(p[1])
    return out


def symbols(elf):
    """(address, size, kind, demangled name) of every sized symbol."""
    syms = []
    for line in run("llvm-nm", "-S", "-C", "--radix=d", elf).splitlines():
        p = line.split(None, 3)
        if len(p) == 4 and p[1].isdigit() and int(p[1]) > 0:
            syms.append((int(p[0]) & ~1, int(p[1]), p[2], p[3]))
    return syms


def short(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = re.sub(r"_?\$LT\$impl\$u20\$csp_core\.\.node\.\.Node\$LT\$[_$C]*\$GT\$\$GT\$", "Node", name)
    return name.replace("$LT$", "<").replace("$GT$", ">").replace("$C$", ",")


def panic_sites(elf, syms):
    """(caller, source chain) of each call into a panic entry point."""
    code = sorted((a, s, n) for a, s, k, n in syms if k in "tT")
    starts = [c[0] for c in code]
    calls = []
    for line in run("llvm-objdump", "-d", "--no-show-raw-insn", elf).splitlines():
        m = CALL.match(line)
        if not m or not PANIC_CALL.search(m.group(2)):
            continue
        addr = int(m.group(1), 16)
        i = bisect.bisect_right(starts, addr) - 1
        caller = code[i][2] if i >= 0 and addr < code[i][0] + code[i][1] else "?"
        if PANIC_CALL.search(caller):
            continue  # inside the panic machinery itself
        calls.append((addr, caller))
    sites = []
    for addr, caller in calls:
        frames = run("llvm-addr2line", "-e", elf, "-i", "-f", "-C", "-s", hex(addr)).splitlines()
        # Pairs of (function, file:line), innermost first; keep ours.
        chain = [
            f"{short(f)} ({loc})"
            for f, loc in zip(frames[0::2], frames[1::2])
            if not re.match(r"_?<?core(::|\.\.)", f)
        ]
        sites.append((short(caller), chain))
    return sites


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elf", nargs="?", default=ELF)
    ap.add_argument("--build", action="store_true", help="cargo build --release --locked first")
    ap.add_argument("--top", type=int, default=15, help="largest symbols to list")
    ap.add_argument("--check", action="store_true", help="fail on panic paths, core::fmt, 64-bit division")
    a = ap.parse_args()
    if a.build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=FW, check=True)
    sec = sections(a.elf)
    flash = sum(sec.get(s, 0) for s in (".vector_table", ".text", ".rodata", ".data"))
    ram = sec.get(".data", 0) + sec.get(".bss", 0)
    print(
        f"flash {flash} B (vectors {sec.get('.vector_table', 0)}, .text {sec.get('.text', 0)}, "
        f".rodata {sec.get('.rodata', 0)}, .data {sec.get('.data', 0)}): "
        f"{FLASH_BUDGET - flash} B left of {FLASH_BUDGET}"
    )
    print(
        f"RAM statics {ram} B (.bss {sec.get('.bss', 0)}): {RAM_BUDGET - ram} B left of "
        f"{RAM_BUDGET} for the stack"
    )
    syms = symbols(a.elf)
    print("\nlargest symbols (flash and RAM):")
    for _, size, kind, name in sorted(syms, key=lambda s: s[1])[-a.top:][::-1]:
        print(f"  {size:6} {kind} {short(name)[:110]}")
    sites = panic_sites(a.elf, syms)
    print(f"\npanic call sites: {len(sites)}")
    for caller, chain in sites:
        print(f"  in {caller[:100]}")
        for frame in chain[:6]:
            print(f"      {frame[:120]}")
    bad = sorted({n for _, _, _, n in syms if FORBIDDEN.search(n)})
    if bad:
        print("\nsymbols that must not be in the image:")
        for n in bad:
            print(f"  {short(n)}")
    if a.check and (bad or sites):
        print("\nfirmware-demo: panic path, core::fmt or 64-bit division in the image", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
