#!/usr/bin/env bash
# A small initrd: busybox-static, the kernel modules needed to reach the root disk (with their dependencies, in
# load order), and an /init that loads them, waits for root=LABEL=..., mounts it read-only and switch_roots.
# Usage: mkinitrd.sh ROOTFS KVER BUSYBOX OUT.img
set -euo pipefail
R=$1 KVER=$2 BUSYBOX=$3 OUT=$4
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$BUSYBOX" "$W/bin/busybox"
for a in sh mount umount insmod sleep cat echo mkdir findfs switch_root ls; do ln -s busybox "$W/bin/$a"; done
# Virtio (x86_64 and aarch64 -M virt), SD/MMC (raspi3b), ext4 (and crc32c, a soft dependency not in
# modules.dep: built in on amd64, a module on the generic arm64 kernel), and softdog (the hardware watchdog PID 1 feeds:
# conf/system.conf.d; soft_noboot=1 so that a TCG stall logs instead of resetting the guest).
WANT="virtio_pci virtio_mmio virtio_blk virtio_console crc32c_generic ext4 softdog mmc_block sdhci_iproc bcm2835 sdhci_pltfm"
python3 - "$R/usr/lib/modules/$KVER" "$W/lib/modules" $WANT > "$W/modules.order" <<'PY'
import os, shutil, subprocess, sys
base, dest, want = sys.argv[1], sys.argv[2], sys.argv[3:]
deps, by_name = {}, {}
for line in open(os.path.join(base, "modules.dep")):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
    n = os.path.basename(mod).split(".ko")[0].replace("-", "_")
    by_name[n] = mod
order = []
def visit(m):
    if m in order:
        return
    for d in reversed(deps[m]):   # modules.dep lists the deepest dependency last
        visit(d)
    order.append(m)
for w in want:
    if w in by_name:
        visit(by_name[w])
for m in order:
    name = os.path.basename(m)
    src = os.path.join(base, m)
    if name.endswith(".xz"):
        out = name[:-3]; data = subprocess.run(["xz", "-dc", src], check=True, capture_output=True).stdout
    elif name.endswith(".zst"):
        out = name[:-4]; data = subprocess.run(["zstd", "-dc", src], check=True, capture_output=True).stdout
    else:
        out = name; data = open(src, "rb").read()
    open(os.path.join(dest, out), "wb").write(data)
    print(out)
PY
cat > "$W/init" <<'EOF2'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
echo "initrd: loading modules" > /dev/kmsg
for m in $(cat /modules.order); do
    case $m in softdog.ko) insmod /lib/modules/$m soft_noboot=1 2>/dev/null ;; *) insmod /lib/modules/$m 2>/dev/null ;; esac
done
root= ; init=/sbin/init; rootfstype=ext4
for a in $(cat /proc/cmdline); do
    case $a in root=*) root=${a#root=} ;; init=*) init=${a#init=} ;; rootfstype=*) rootfstype=${a#rootfstype=} ;; esac
done
dev=
i=0
while [ $i -lt 1200 ]; do   # 120 s: a loaded TCG host can be slow to probe the disk
    case $root in LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;; *) [ -b "$root" ] && dev=$root ;; esac
    [ -n "$dev" ] && break
    sleep 0.1; i=$((i + 1))
done
if [ -z "$dev" ] || ! mount -t "$rootfstype" -o ro "$dev" /newroot; then
    echo "initrd: cannot mount root '$root' (device '$dev'); block devices:"; ls /sys/class/block
    echo o > /proc/sysrq-trigger; sleep 5; echo b > /proc/sysrq-trigger   # raspi3b cannot power off
fi
echo "initrd: root $root is $dev, switching" > /dev/kmsg
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot "$init"
EOF2
chmod 0755 "$W/init"
(cd "$W" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 | gzip -1) > "$OUT"
echo "initrd: $(wc -l < "$W/modules.order") modules, $(du -h "$OUT" | cut -f1)" >&2
