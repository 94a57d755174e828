#!/usr/bin/env bash
# Assemble a balenaOS-style disk image from Debian parts, this project's release binaries and the files of conf/,
# without loop mounts. Usage: tests/qemu/build-image.sh ARCH OUTDIR      (ARCH: x86_64 | aarch64 | raspi3b)
#
# OUTDIR gets disk.img (MBR: balena-boot FAT, balena-rootA, balena-rootB, extended{balena-state, balena-data})
# and build.env (what was built). The card is self-contained: the FAT partition holds the kernel, the initramfs,
# the device tree (arm64), config.txt (Raspberry Pi firmware syntax: kernel=, initramfs, device_tree=) and
# cmdline.txt; run.py boots from those, as the Pi firmware does.
# Downloads (rootfs tarball, kernel .deb) are cached under ${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/qemu/.
# Needs root (owners, xattrs) and: mmdebstrap, mtools, dosfstools, e2fsprogs (mke2fs -d), fdisk (sfdisk),
# busybox-static, cpio, device-tree-compiler (fdtput), python3, cargo.
set -euo pipefail

ARCH=${1:?usage: build-image.sh ARCH OUTDIR}
OUT=${2:?usage: build-image.sh ARCH OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/qemu
SUITE=bookworm
# What the Debian rootfs carries beyond minbase: systemd as PID 1, udev (by-label links, module autoload),
# e2fsprogs (fsck of the mounts), systemd-coredump (conf/sysctl.d pipes crashes to it), D-Bus (hostnamectl talks
# to hostnamed over it; the Yocto image has it through systemd's RDEPENDS).
INCLUDE=systemd-sysv,udev,kmod,e2fsprogs,systemd-coredump,dbus

# raspi3b: the arm64 rootfs with Debian's generic arm64 kernel (the cloud kernel has no BCM283x drivers) and its
# bcm2837-rpi-3-b.dtb, for QEMU's -M raspi3b booting from the SD card.
case $ARCH in
    x86_64) DEB_ARCH=amd64 KFLAVOUR=cloud-amd64 ;;
    aarch64) DEB_ARCH=arm64 KFLAVOUR=cloud-arm64 ;;
    raspi3b) DEB_ARCH=arm64 KFLAVOUR=arm64 ;;
    *) echo "unknown ARCH $ARCH (x86_64 | aarch64 | raspi3b)" >&2; exit 2 ;;
esac
log() { printf '[build-image %s] %s\n' "$(date +%T)" "$*" >&2; }
T0=$(date +%s.%N)

mkdir -p "$CACHE" "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$OUT/stage
rm -rf "$STAGE" && mkdir -p "$STAGE"/{rootfs,boot,state,data,initrd}
R=$STAGE/rootfs

# --- 1. Debian rootfs (cached tarball; the key is suite + arch + package list) ---------------------------------
key=$(printf '%s %s %s' "$SUITE" "$DEB_ARCH" "$INCLUDE" | sha256sum | cut -c1-12)
ROOTFS_TAR=$CACHE/rootfs-$SUITE-$DEB_ARCH-$key.tar
if [ ! -s "$ROOTFS_TAR" ]; then
    log "mmdebstrap $SUITE $DEB_ARCH (--include=$INCLUDE) -> $ROOTFS_TAR"
    if [ "$DEB_ARCH" != amd64 ]; then
        # Foreign architecture: the maintainer scripts run under qemu-user through binfmt_misc.
        [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
            grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | while read -r l; do
                [ -n "$l" ] && echo "$l" > /proc/sys/fs/binfmt_misc/register
            done
        fi
    fi
    mmdebstrap --quiet --format=tar --variant=minbase --architectures="$DEB_ARCH" --include="$INCLUDE" \
        "$SUITE" "$ROOTFS_TAR.tmp" >&2
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
fi
tar -C "$R" --xattrs --xattrs-include='*' --numeric-owner -xf "$ROOTFS_TAR"

# --- 2. Debian cloud kernel (cached .deb), unpacked into the rootfs (modules) ----------------------------------
KPKG=$(apt-cache depends "linux-image-$KFLAVOUR:$DEB_ARCH" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
KPKG=${KPKG%%:*}
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-$KFLAVOUR (for arm64: dpkg --add-architecture arm64 && apt-get update)" >&2; exit 1; }
KDEB=$(ls "$CACHE"/"${KPKG}"_*_"$DEB_ARCH".deb 2>/dev/null | tail -1 || true)
if [ -z "$KDEB" ]; then
    log "apt-get download $KPKG:$DEB_ARCH"
    (cd "$CACHE" && apt-get download -q "$KPKG:$DEB_ARCH" >&2)
    KDEB=$(ls "$CACHE"/"${KPKG}"_*_"$DEB_ARCH".deb | tail -1)
fi
# Merged /usr: plain `dpkg-deb -x` would replace the /lib symlink.
dpkg-deb --fsys-tarfile "$KDEB" | tar -C "$R" --keep-directory-symlink -x
KVER=$(ls "$R/usr/lib/modules" | head -1)
# The rootfs's own depmod (kmod), under qemu-user for a foreign architecture.
chroot "$R" /usr/sbin/depmod "$KVER"
# The boot partition's files (step 9): the kernel under the name the Pi firmware loads by default on arm64.
KERNEL_NAME=vmlinuz; [ "$DEB_ARCH" = arm64 ] && KERNEL_NAME=kernel8.img
cp "$R/boot/vmlinuz-$KVER" "$STAGE/boot/$KERNEL_NAME"
DTB_NAME=
if [ "$ARCH" = raspi3b ]; then
    # QEMU's raspi3b has no Bluetooth behind uart0: disable the DT node so that ttyAMA0 stays the console.
    DTB_NAME=bcm2837-rpi-3-b.dtb
    cp "$R/usr/lib/linux-image-$KVER/broadcom/$DTB_NAME" "$STAGE/boot/$DTB_NAME"
    fdtput -t s "$STAGE/boot/$DTB_NAME" /soc/serial@7e201000/bluetooth status disabled
    # The Pi 3's VideoCore firmware, where the card has it (QEMU does not run it; run.py requires it there):
    # Debian's raspi-firmware, in non-free-firmware, fetched with an apt state of its own (cached .deb).
    FWDEB=$(ls "$CACHE"/raspi-firmware_*_all.deb 2>/dev/null | tail -1 || true)
    if [ -z "$FWDEB" ]; then
        A=$CACHE/apt-non-free-firmware; mkdir -p "$A/lists/partial" "$A/archives/partial"
        MIRROR=$(grep -rhoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | grep -v security | head -1 || true)
        echo "deb ${MIRROR:-http://deb.debian.org/debian} $SUITE non-free-firmware" > "$A/sources.list"
        APT_NFF=(-o APT::Sandbox::User=root -o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A")
        log "apt-get download raspi-firmware ($SUITE non-free-firmware)"
        apt-get -qq "${APT_NFF[@]}" update >&2 && (cd "$CACHE" && apt-get -qq "${APT_NFF[@]}" download raspi-firmware >&2 2>/dev/null)
        FWDEB=$(ls "$CACHE"/raspi-firmware_*_all.deb | tail -1)
    fi
    mkdir -p "$STAGE/fw"
    dpkg-deb --fsys-tarfile "$FWDEB" | tar -C "$STAGE/fw" -x ./usr/lib/raspi-firmware/bootcode.bin \
        ./usr/lib/raspi-firmware/start.elf ./usr/lib/raspi-firmware/fixup.dat
    cp "$STAGE"/fw/usr/lib/raspi-firmware/* "$STAGE/boot/"
fi
log "kernel $KVER"

# Debian's busybox-static for the guest's architecture (initrd and app image): the host's for amd64.
if [ "$DEB_ARCH" = amd64 ]; then BUSYBOX=/bin/busybox
else
    BBDEB=$(ls "$CACHE"/busybox-static_*_"$DEB_ARCH".deb 2>/dev/null | tail -1 || true)
    [ -n "$BBDEB" ] || { (cd "$CACHE" && apt-get download -q "busybox-static:$DEB_ARCH" >&2); BBDEB=$(ls "$CACHE"/busybox-static_*_"$DEB_ARCH".deb | tail -1); }
    mkdir -p "$STAGE/bb" && dpkg-deb --fsys-tarfile "$BBDEB" | tar -C "$STAGE/bb" -x
    BUSYBOX=$(find "$STAGE/bb" -path "*/bin/busybox" -type f | head -1)
fi
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || log "WARNING: $BUSYBOX may not be static"

# --- 3. This project's binaries --------------------------------------------------------------------------------
case $ARCH in
    x86_64) TARGET_DIR=$ROOT/target/release; CARGO_TARGET=() ;;
    aarch64|raspi3b) TARGET_DIR=$ROOT/target/aarch64-unknown-linux-gnu/release; CARGO_TARGET=(--target aarch64-unknown-linux-gnu) ;;
esac
PKGS=(-p balena-engined -p balena-engine)
HAVE_HEALTHCHECK=0
if [ -f "$ROOT/rust/healthcheck/Cargo.toml" ]; then PKGS+=(-p balena-engine-healthcheck); HAVE_HEALTHCHECK=1
else log "NOTE: rust/healthcheck not there yet: the image has no balena-engine-healthcheck"; fi
log "cargo build --release ${PKGS[*]} ${CARGO_TARGET[*]}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
(cd "$ROOT" && cargo build --quiet --release "${PKGS[@]}" "${CARGO_TARGET[@]}" >&2)
# The host's CLI preloads the app image (direct mode; the store's format does not depend on the architecture).
[ ${#CARGO_TARGET[@]} = 0 ] || (cd "$ROOT" && cargo build --quiet --release -p balena-engine >&2)
install -m 0755 "$TARGET_DIR/balena-engined" "$TARGET_DIR/balena-engine" "$R/usr/bin/"
[ $HAVE_HEALTHCHECK = 1 ] && install -m 0755 "$TARGET_DIR/balena-engine-healthcheck" "$R/usr/bin/"

# --- 4. conf/: every file at the path conf/README.md's table gives it ------------------------------------------
CONF_ENABLE=$(python3 "$HERE/conf_install.py" "$ROOT/conf" "$R" production)
log "conf/ installed; units to enable: $CONF_ENABLE"

# --- 5. What the image provides around conf/ (conf/README.md "What the image must provide") ---------------------
# The group for the socket, at build time (the root is read-only at run time): from the sysusers.d file itself.
systemd-sysusers --root="$R" "$R/usr/lib/sysusers.d/balena-engine.conf" >&2
grep -q '^balena-engine:' "$R/etc/group" || { echo "group balena-engine not created" >&2; exit 1; }
# /var/log and /var/tmp live in /var/volatile (tmpfs); no /var/volatile line in fstab.
rm -rf "$R/var/log" "$R/var/tmp"
ln -s volatile/log "$R/var/log"; ln -s volatile/tmp "$R/var/tmp"; mkdir -p "$R/var/volatile"
mkdir -p "$R/mnt/data" "$R/mnt/state"
cat > "$R/etc/fstab" <<'EOF'
# Root read-only (the kernel command line says ro too); the other partitions are mounted by conf/'s units.
LABEL=balena-rootA  /  ext4  ro,noatime  0 1
EOF
echo balena-qemu > "$R/etc/hostname"
# The machine ID as the Yocto image has it (oe-core's read-only-rootfs): an empty /etc/machine-id, so that PID 1
# generates a transient one at every boot and balena-root-overlay.service persists the first (conf/README.md,
# "Persistent state"). No D-Bus ID of its own either (PID 1 would take a regular /var/lib/dbus/machine-id as
# the ID, and D-Bus would prefer it to /etc/machine-id; oe-core's dbus has none).
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
# systemd-logind runs once D-Bus is there, and needs its StateDirectory: on Yocto /var/lib is volatile-binds'
# writable copy in RAM; here the read-only root must hold it.
mkdir -p "$R/var/lib/systemd/linger"
# The persistent paths' mount points and links (/etc/hostname into /etc/writable, ...), as the Yocto image's
# ROOTFS_POSTPROCESS_COMMAND makes them: by the script that binds them at boot, from the installed list.
sh "$R/usr/lib/balena-state/root-overlay.sh" --image "$R"
# Enable conf/'s units (their [Install] sections) and mask what the test harness cannot live with.
# shellcheck disable=SC2086
systemctl --root="$R" enable $CONF_ENABLE >/dev/null 2>&1
systemctl --root="$R" mask serial-getty@ttyS0.service serial-getty@ttyAMA0.service e2scrub_reap.service \
    getty@tty1.service >/dev/null 2>&1

# --- 6. The test hook: a oneshot unit that runs guest-checks.sh once the system is up, then powers off ----------
install -m 0755 "$HERE/guest-checks.sh" "$R/usr/libexec/balena-qemu-checks"
install -m 0644 "$HERE/balena-qemu-checks.service" "$R/etc/systemd/system/"
systemctl --root="$R" enable balena-qemu-checks.service >/dev/null 2>&1
printf 'HAVE_HEALTHCHECK=%s\nKVER=%s\n' "$HAVE_HEALTHCHECK" "$KVER" > "$R/etc/balena-qemu-test.env"

# --- 7. Data partition: the engine's data root with the app image preloaded (direct mode, no daemon) ----------
python3 "$ROOT/tests/lib/busybox_image.py" "$STAGE/app.tar" app:1 "$DEB_ARCH" "$BUSYBOX"
"$ROOT/target/release/balena-engine" --data-root "$STAGE/data/balena-engine" load -i "$STAGE/app.tar" >&2
# A second image (same layer, another config) that the guest loads through the daemon and finds after a reboot.
mkdir -p "$R/usr/share/balena-qemu-test"
python3 "$ROOT/tests/lib/busybox_image.py" "$R/usr/share/balena-qemu-test/app2.tar" app:2 "$DEB_ARCH" "$BUSYBOX" app2

# --- 8. initrd: busybox-static, the modules to reach the root disk, switch_root ---------------------------------
bash "$HERE/mkinitrd.sh" "$R" "$KVER" "$BUSYBOX" "$STAGE/boot/initrd.img" >&2

# --- 9. File systems and the disk (no mounts): mke2fs -d, mkfs.vfat -C + mcopy, sfdisk, dd ------------------
MiB=$((1024 * 1024))
size_mib() { echo $(( ($(du -sxm --apparent-size "$1" | cut -f1) * 13 / 10 + 64 + 3) / 4 * 4 )); }
ROOT_MIB=$(size_mib "$R"); [ "$ROOT_MIB" -lt 512 ] && ROOT_MIB=512
DATA_MIB=$(size_mib "$STAGE/data"); [ "$DATA_MIB" -lt 256 ] && DATA_MIB=256
BOOT_MIB=64 STATE_MIB=32
case $ARCH in
    x86_64) CONSOLE=ttyS0 ;;
    aarch64|raspi3b) CONSOLE=ttyAMA0 ;;
esac
echo "console=$CONSOLE root=LABEL=balena-rootA ro rootwait panic=-1 loglevel=4 systemd.show_status=1" > "$STAGE/boot/cmdline.txt"
{
    echo "# Raspberry Pi firmware syntax; tests/qemu/run.py reads it in the firmware's place on every machine."
    [ "$DEB_ARCH" = arm64 ] && echo "arm_64bit=1"
    echo "kernel=$KERNEL_NAME"
    echo "initramfs initrd.img followkernel"
    [ -n "$DTB_NAME" ] && echo "device_tree=$DTB_NAME"
    echo "enable_uart=1"
} > "$STAGE/boot/config.txt"
mkfs_ext4() { # LABEL SIZE_MIB DIR IMG
    mke2fs -q -F -t ext4 -L "$1" ${3:+-d "$3"} "$4" "${2}M" >&2
}
rm -f "$STAGE"/*.fs
mkfs.vfat -C -n balena-boot "$STAGE/boot.fs" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -i "$STAGE/boot.fs" "$STAGE/boot/"* ::/
mkfs_ext4 balena-rootA "$ROOT_MIB" "$R" "$STAGE/rootA.fs"
mkfs_ext4 balena-rootB "$ROOT_MIB" "" "$STAGE/rootB.fs"
mkfs_ext4 balena-state "$STATE_MIB" "$STAGE/state" "$STAGE/state.fs"
mkfs_ext4 balena-data "$DATA_MIB" "$STAGE/data" "$STAGE/data.fs"

# msdos, 4 MiB aligned, balenaOS order: boot, rootA, rootB, extended{state, data}.
A=4
P1=$A; P2=$((P1 + BOOT_MIB)); P3=$((P2 + ROOT_MIB)); P4=$((P3 + ROOT_MIB))
P5=$((P4 + A)); P6=$((P5 + STATE_MIB + A)); END=$((P6 + DATA_MIB))
DISK=$OUT/disk.img
TOTAL=$((END + A))
if [ "$ARCH" = raspi3b ]; then   # QEMU's SD card wants a power-of-two size
    p2=1; while [ $p2 -lt $TOTAL ]; do p2=$((p2 * 2)); done; TOTAL=$p2
fi
rm -f "$DISK" "$OUT"/vmlinuz "$OUT"/initrd.img "$OUT"/cmdline "$OUT"/board.dtb; truncate -s $((TOTAL * MiB)) "$DISK"
sfdisk --quiet "$DISK" <<EOF
label: dos
unit: sectors
start=$((P1 * 2048)), size=$((BOOT_MIB * 2048)), type=c, bootable
start=$((P2 * 2048)), size=$((ROOT_MIB * 2048)), type=83
start=$((P3 * 2048)), size=$((ROOT_MIB * 2048)), type=83
start=$((P4 * 2048)), size=$(((END - P4) * 2048)), type=5
start=$((P5 * 2048)), size=$((STATE_MIB * 2048)), type=83
start=$((P6 * 2048)), size=$((DATA_MIB * 2048)), type=83
EOF
for p in boot:$P1 rootA:$P2 rootB:$P3 state:$P5 data:$P6; do
    dd if="$STAGE/${p%%:*}.fs" of="$DISK" bs=1M seek="${p##*:}" conv=notrunc,sparse status=none
done
rm -f "$STAGE"/*.fs

# --- 10. What was built ---------------------------------------------------------------------------------------
cat > "$OUT/build.env" <<EOF
ARCH=$ARCH
KVER=$KVER
HAVE_HEALTHCHECK=$HAVE_HEALTHCHECK
ROOT_MIB=$ROOT_MIB
DATA_MIB=$DATA_MIB
BUILD_SECONDS=$(echo "$(date +%s.%N) - $T0" | bc 2>/dev/null || python3 -c "import time;print(round(time.time()-$T0,1))")
EOF
rm -rf "$STAGE"
log "done: $DISK ($(du -h --apparent-size "$DISK" | cut -f1) apparent, $(du -h "$DISK" | cut -f1) on disk)"
sfdisk -l "$DISK" >&2
