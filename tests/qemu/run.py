#!/usr/bin/env python3
"""Boot an image built by build-image.sh under QEMU (TCG) and collect the guest's CHECK lines.

Usage: run.py IMAGE_DIR [--arch x86_64|aarch64] [--timeout SECONDS] [--logs DIR]
The disk is used with snapshot=on, so the image stays pristine. The serial console goes to console.log, the
guest's check lines to checks.log (virtio-serial port `checks`). Prints every check, the boot timings and
`N passed, M failed`; exit status 0 only if the guest finished its checks and none failed. On failure, the
tail of the console is printed."""

import argparse
import os
import re
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("image_dir")
ap.add_argument("--arch", default=None)
ap.add_argument("--timeout", type=float, default=float(os.environ.get("QEMU_TIMEOUT", 420)))
ap.add_argument("--logs", default=None)
ap.add_argument("--memory", default="1024")
args = ap.parse_args()

img = os.path.abspath(args.image_dir)
env = dict(l.strip().split("=", 1) for l in open(os.path.join(img, "build.env")) if "=" in l)
arch = args.arch or env["ARCH"]
logs = os.path.abspath(args.logs or img)
os.makedirs(logs, exist_ok=True)
console_log, checks_log = os.path.join(logs, "console.log"), os.path.join(logs, "checks.log")
for p in (console_log, checks_log):
    open(p, "w").close()
cmdline = open(os.path.join(img, "cmdline")).read().strip()

boot = ["-nographic", "-no-reboot", "-nic", "none",
        "-kernel", os.path.join(img, "vmlinuz"), "-initrd", os.path.join(img, "initrd.img"), "-append", cmdline]
disk = os.path.join(img, "disk.img")
virtio = [
    "-accel", "tcg", "-m", args.memory, "-smp", "2",
    "-drive", f"file={disk},format=raw,if=virtio,snapshot=on",
    "-device", "virtio-serial", "-chardev", f"file,id=checks,path={checks_log}",
    "-device", "virtserialport,chardev=checks,name=checks",
]
if arch == "x86_64":
    cmd = ["qemu-system-x86_64"] + virtio + boot
elif arch == "aarch64":
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72"] + virtio + boot
elif arch == "raspi3b":
    # The board as it is: 1 GiB, 4 cores (single-threaded TCG), the SD card; no virtio, checks on the console.
    cmd = ["qemu-system-aarch64", "-M", "raspi3b", "-accel", "tcg,thread=single", "-m", "1G",
           "-dtb", os.path.join(img, "board.dtb"), "-drive", f"file={disk},format=raw,if=sd,snapshot=on"] + boot
    if args.timeout == 420:
        args.timeout = 900
else:
    sys.exit(f"unknown arch {arch}")

print(f"[run] {' '.join(cmd)}", flush=True)
t0 = time.monotonic()
with open(console_log, "wb") as con:
    q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=con, stderr=subprocess.STDOUT)
    ready_host = end_host = None
    while True:
        time.sleep(0.5)
        text = open(checks_log, errors="replace").read()
        if ready_host is None and "\nREADY " in "\n" + text:
            ready_host = time.monotonic() - t0
        if "CHECKS END" in text and end_host is None:
            end_host = time.monotonic() - t0
        if q.poll() is not None:
            break
        if end_host is not None and time.monotonic() - t0 > end_host + 45:
            print("[run] guest did not power off within 45 s of its checks: killing QEMU", flush=True)
            q.kill(); q.wait(); break
        if time.monotonic() - t0 > args.timeout:
            print(f"[run] TIMEOUT after {args.timeout:.0f} s: killing QEMU", flush=True)
            q.kill(); q.wait(); break
total = time.monotonic() - t0

text = open(checks_log, errors="replace").read()
if "CHECK " not in text:   # no virtio-serial port in the guest: fall back to the console copy
    text = "\n".join(re.sub(r"^.*?((?:CHECK|CHECKS|READY) )", r"\1", l)
                     for l in open(console_log, errors="replace").read().splitlines()
                     if re.search(r"(CHECK|CHECKS|READY) ", l))
passed = failed = skipped = 0
for line in text.splitlines():
    m = re.match(r"CHECK (\S+) (PASS|FAIL|SKIP) ?(.*)", line.strip())
    if m:
        print(f"  {m.group(2):4} {m.group(1)}  {m.group(3)}")
        passed += m.group(2) == "PASS"; failed += m.group(2) == "FAIL"; skipped += m.group(2) == "SKIP"
    elif line.startswith("READY "):
        print(f"  guest: {line[6:]}")
finished = "CHECKS END" in text
if not finished:
    failed += 1
    print("  FAIL harness  the guest never finished its checks (no CHECKS END)")
print(f"[run] host: QEMU start -> engine ready reported {ready_host and round(ready_host, 1)} s; "
      f"-> checks done {end_host and round(end_host, 1)} s; QEMU exit after {total:.1f} s (exit {q.returncode})")
if failed:
    print("[run] tail of the guest console:")
    for l in open(console_log, errors="replace").read().splitlines()[-60:]:
        print("  | " + l)
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
