#!/usr/bin/env python3
"""Boot a disk image built by build-image.sh under QEMU (TCG), twice, and collect the guest's CHECK lines.

Usage: run.py IMAGE_DIR [--arch x86_64|aarch64|raspi3b] [--timeout SECONDS] [--boots N] [--logs DIR]

Like the Raspberry Pi firmware, the harness reads `config.txt` and `cmdline.txt` from the card's FAT partition
(balena-boot) and loads the kernel, the initramfs and the device tree they name from that partition: what boots
is what is on the card. QEMU's machines do not run the Pi's VideoCore firmware, so this is the one step the
harness does for the board.

The disk is a qcow2 overlay over disk.img (which stays pristine), kept across the boots: the guest's first boot
runs the checks, leaves state on the data partition and reboots (QEMU runs with -no-reboot, so it exits); the
second boot finds that state and checks what must survive a reboot. Per boot N: console-N.log (serial console),
checks-N.log (virtio-serial port `checks`; on raspi3b the console copy is used). Prints every check, the boot
timings and `N passed, M failed`; exit status 0 only if every boot finished its checks and none failed. On a
failure, the tail of that boot's console is printed."""

import argparse
import os
import re
import struct
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("image_dir")
ap.add_argument("--arch", default=None)
ap.add_argument("--timeout", type=float, default=float(os.environ.get("QEMU_TIMEOUT", 0)) or None,
                help="seconds per boot (default 900; 1500 on raspi3b)")
ap.add_argument("--boots", type=int, default=2)
ap.add_argument("--logs", default=None)
ap.add_argument("--memory", default="1024")
args = ap.parse_args()

img = os.path.abspath(args.image_dir)
env = dict(l.strip().split("=", 1) for l in open(os.path.join(img, "build.env")) if "=" in l)
arch = args.arch or env["ARCH"]
logs = os.path.abspath(args.logs or img)
os.makedirs(logs, exist_ok=True)
disk = os.path.join(img, "disk.img")
# About 5x the measured boot + checks (x86_64 66 s, aarch64 85 s, raspi3b 135 s on an idle 2-core host).
timeout = args.timeout or (1500 if arch == "raspi3b" else 900)


def boot_partition_offset(path: str) -> int:
    """Byte offset of the first MBR partition (balena-boot)."""
    with open(path, "rb") as f:
        mbr = f.read(512)
    if mbr[510:512] != b"\x55\xaa":
        sys.exit(f"[run] {path}: no MBR")
    start_lba = struct.unpack_from("<I", mbr, 446 + 8)[0]
    return start_lba * 512


def firmware_load(path: str, dest: str) -> dict:
    """Reads config.txt and cmdline.txt from the FAT partition and copies out what they name, as the Pi's
    firmware does: kernel= (kernel8.img by default with arm_64bit=1), `initramfs FILE followkernel`,
    device_tree= (absent: no DTB, e.g. x86_64)."""
    fat = f"{path}@@{boot_partition_offset(path)}"
    os.makedirs(dest, exist_ok=True)

    def fetch(name: str) -> str:
        out = os.path.join(dest, os.path.basename(name))
        subprocess.run(["mcopy", "-o", "-n", "-i", fat, f"::{name}", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return out

    if arch == "raspi3b":   # the boot ROM loads bootcode.bin, which loads start.elf (+ fixup.dat): no card boots without
        for name in ("bootcode.bin", "start.elf", "fixup.dat"):
            fetch(name)
    conf = {}
    for line in open(fetch("config.txt")).read().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("initramfs "):
            conf["initramfs"] = line.split()[1]
        elif "=" in line:
            k, v = line.split("=", 1)
            conf[k.strip()] = v.strip()
    boot = {"kernel": fetch(conf.get("kernel", "kernel8.img")),
            "cmdline": open(fetch("cmdline.txt")).read().strip()}
    if "initramfs" in conf:
        boot["initrd"] = fetch(conf["initramfs"])
    if "device_tree" in conf:
        boot["dtb"] = fetch(conf["device_tree"])
    return boot


fw = firmware_load(disk, os.path.join(logs, "firmware"))
overlay = os.path.join(logs, "run.qcow2")
if os.path.exists(overlay):
    os.unlink(overlay)
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", disk, overlay], check=True)


def qemu_command(checks_log: str) -> list:
    boot = ["-nographic", "-no-reboot", "-nic", "none", "-kernel", fw["kernel"], "-append", fw["cmdline"]]
    boot += ["-initrd", fw["initrd"]] if "initrd" in fw else []
    boot += ["-dtb", fw["dtb"]] if "dtb" in fw else []
    virtio = [
        "-accel", "tcg", "-m", args.memory, "-smp", "2",
        "-drive", f"file={overlay},format=qcow2,if=virtio",
        "-device", "virtio-serial", "-chardev", f"file,id=checks,path={checks_log}",
        "-device", "virtserialport,chardev=checks,name=checks",
    ]
    if arch == "x86_64":
        return ["qemu-system-x86_64"] + virtio + boot
    if arch == "aarch64":
        return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72"] + virtio + boot
    if arch == "raspi3b":
        # The board as it is: 1 GiB, 4 cores (single-threaded TCG), the SD card; no virtio, checks on the console.
        return ["qemu-system-aarch64", "-M", "raspi3b", "-accel", "tcg,thread=single", "-m", "1G",
                "-drive", f"file={overlay},format=qcow2,if=sd"] + boot
    sys.exit(f"[run] unknown arch {arch}")


def boot_once(n: int) -> tuple:
    """Boots once; returns (passed, failed, skipped)."""
    console_log, checks_log = os.path.join(logs, f"console-{n}.log"), os.path.join(logs, f"checks-{n}.log")
    for p in (console_log, checks_log):
        open(p, "w").close()
    cmd = qemu_command(checks_log)
    print(f"[run] boot {n}: {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    ready_host = end_host = None
    rebooted = True
    with open(console_log, "wb") as con:
        q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=con, stderr=subprocess.STDOUT)
        while True:
            time.sleep(0.5)
            text = open(checks_log, errors="replace").read() or open(console_log, errors="replace").read()
            if ready_host is None and "READY engine_active" in text:
                ready_host = time.monotonic() - t0
            if end_host is None and "CHECKS END" in text:
                end_host = time.monotonic() - t0
            if q.poll() is not None:
                break
            if end_host is not None and time.monotonic() - t0 > end_host + 180:
                print("[run] the guest did not reboot within 180 s of its checks: killing QEMU", flush=True)
                rebooted = False
                q.kill(); q.wait(); break
            if time.monotonic() - t0 > timeout:
                print(f"[run] TIMEOUT after {timeout:.0f} s: killing QEMU", flush=True)
                rebooted = False
                q.kill(); q.wait(); break
    total = time.monotonic() - t0

    text = open(checks_log, errors="replace").read()
    if "CHECK " not in text:   # no virtio-serial port in the guest: the console copy
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
    end = re.search(r"CHECKS END \S+ checks=(\d+) failed=(\d+)", text)
    if not end:
        failed += 1
        print(f"  FAIL harness.boot{n}  the guest never finished its checks (no CHECKS END)")
    elif (int(end.group(1)), int(end.group(2))) != (passed + failed + skipped, failed):
        failed += 1
        print(f"  FAIL harness.boot{n}  the guest reported {end.group(1)} checks, {end.group(2)} failed; "
              f"{passed + failed + skipped} lines read, {failed} failed (lines lost on the console?)")
    elif not rebooted:
        failed += 1
        print(f"  FAIL harness.boot{n}  the guest did not reboot cleanly after its checks")
    print(f"[run] boot {n}: QEMU start -> engine ready reported {ready_host and round(ready_host, 1)} s"
          f" -> checks done {end_host and round(end_host, 1)} s; QEMU exit after {total:.1f} s (exit {q.returncode})",
          flush=True)
    if failed:
        print(f"[run] boot {n}: tail of the guest console ({console_log}):")
        for l in open(console_log, errors="replace").read().splitlines()[-60:]:
            print("  | " + l)
    return passed, failed, skipped, "CHECKS END" in text


totals = [0, 0, 0]
for n in range(1, args.boots + 1):
    p, f, s, finished = boot_once(n)
    totals = [totals[0] + p, totals[1] + f, totals[2] + s]
    if not finished:
        if n < args.boots:
            print(f"  FAIL harness  boots {n + 1}..{args.boots} not run: boot {n} did not finish")
            totals[1] += 1
        break
passed, failed, skipped = totals
if not failed:   # kept after a failure: the guest's disk as it was left (qemu-img convert, guestfish, mount)
    os.unlink(overlay)
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
