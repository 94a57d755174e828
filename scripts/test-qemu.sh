#!/usr/bin/env bash
# QEMU boot tests: assemble a balenaOS-style disk image (Debian bookworm parts + this project's release binaries +
# the files of conf/), boot it under QEMU with TCG, twice (across a reboot), and assert the OS policies from
# inside the guest.
#   scripts/test-qemu.sh                 all machines: x86_64, aarch64, raspi3b (what `scripts/test.sh qemu` runs)
#   scripts/test-qemu.sh x86_64          the default PC machine, -accel tcg
#   scripts/test-qemu.sh aarch64         arm64 Debian on -M virt -cpu cortex-a72
#   scripts/test-qemu.sh raspi3b         the arm64 image with Debian's generic kernel on -M raspi3b, from the SD card
# Images go to target/qemu/ARCH (QEMU_TEST_DIR overrides); Debian downloads are cached under
# ${XDG_CACHE_HOME:-~/.cache}/balena-engine/qemu. Needs root. QEMU_TIMEOUT (s; default 600, raspi3b 1500) bounds
# each boot.
# Skips (exit 0, loudly) only when QEMU cannot be installed or run on this machine; QEMU_REQUIRED=1 makes
# that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh

arches=("$@"); [ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64 raspi3b)
[ "$(id -u)" = 0 ] || { echo "test-qemu.sh: needs root (image files keep their owners)" >&2; exit 1; }

skip() {
    printf '\n%s\n!! QEMU BOOT TESTS SKIPPED: %s\n%s\n\n' "$(printf '!%.0s' {1..78})" "$*" "$(printf '!%.0s' {1..78})" >&2
    [ "${QEMU_REQUIRED:-0}" = 1 ] && exit 1
    exit 0
}

# --- tools ---------------------------------------------------------------------------------------------------
# QEMU from bookworm-backports: the machine's qemu-utils 10.0 (backports) blocks bookworm's QEMU 7.2 packages.
if ! ls /etc/apt/sources.list.d/*backports* >/dev/null 2>&1 && ! grep -rqs bookworm-backports /etc/apt/sources.list; then
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq >/dev/null || true
fi
qemu_pkgs=()
command -v qemu-img >/dev/null || qemu_pkgs+=(qemu-utils)   # run.py's qcow2 overlay
for a in "${arches[@]}"; do
    case $a in
        x86_64) command -v qemu-system-x86_64 >/dev/null || qemu_pkgs+=(qemu-system-x86) ;;
        aarch64|raspi3b) command -v qemu-system-aarch64 >/dev/null || qemu_pkgs+=(qemu-system-arm)
                 [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ] || qemu_pkgs+=(qemu-user-static) ;;
        *) echo "test-qemu.sh: unknown arch '$a' (x86_64, aarch64, raspi3b)" >&2; exit 2 ;;
    esac
done
if [ ${#qemu_pkgs[@]} -gt 0 ]; then
    echo "[setup] installing ${qemu_pkgs[*]} from bookworm-backports" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends -t bookworm-backports "${qemu_pkgs[@]}" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends -t bookworm-backports "${qemu_pkgs[@]}" >/dev/null 2>&1 \
            || skip "cannot install ${qemu_pkgs[*]} (from bookworm-backports)"
    }
fi
ensure_pkgs mmdebstrap mtools dosfstools e2fsprogs fdisk busybox-static cpio file bc device-tree-compiler
for a in "${arches[@]}"; do
    if [ "$a" != x86_64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64 && apt-get update -qq >/dev/null
    fi
done
# The arm64 images carry our binaries cross-built for aarch64: the Rust target and Debian's cross linker + libc.
for a in "${arches[@]}"; do
    [ "$a" = x86_64 ] && continue
    if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
        echo "[setup] rustup target add aarch64-unknown-linux-gnu" >&2
        rustup target add aarch64-unknown-linux-gnu >/dev/null
    fi
    # mmdebstrap needs arch-test for a foreign-architecture root file system (a Recommends, not a Depends).
    ensure_pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross arch-test
    break
done

# Can this machine run QEMU at all (TCG: /dev/kvm here is no real KVM, see the facts)?
for a in "${arches[@]}"; do
    q=qemu-system-$a; [ "$a" = raspi3b ] && q=qemu-system-aarch64
    timeout 60 "$q" -accel tcg -M none -display none -nodefaults -S -monitor none -daemonize -pidfile /tmp/.qemu-probe.$$ \
        >/dev/null 2>&1 || skip "$q cannot start here"
    kill "$(cat /tmp/.qemu-probe.$$)" 2>/dev/null || true; rm -f /tmp/.qemu-probe.$$
done

# --- build, boot, assert ---------------------------------------------------------------------------------------
passed=0 failed=0 status=0 summary=()
for a in "${arches[@]}"; do
    dir=${QEMU_TEST_DIR:-target/qemu}/$a
    echo "== QEMU boot test $a: building the image in $dir" >&2
    t0=$(date +%s)
    if ! bash tests/qemu/build-image.sh "$a" "$dir"; then
        echo "== $a: image build FAILED" >&2; failed=$((failed + 1)); status=1; continue
    fi
    t1=$(date +%s)
    echo "== QEMU boot test $a: image built in $((t1 - t0)) s; booting (-accel tcg)" >&2
    set +e
    python3 tests/qemu/run.py "$dir" --arch "$a" | tee "$dir/result.txt"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] || status=1
    line=$(tail -1 "$dir/result.txt")
    p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' <<<"$line"); f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' <<<"$line")
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
    ready=$(sed -n 's/^\[run\] boot \([0-9]\): QEMU start -> engine ready reported \([0-9.None]*\) s.*/boot \1 \2 s/p' "$dir/result.txt" | paste -sd, | sed 's/,/, /g')
    summary+=("$(printf '%-8s %-28s image %4d s, boots+checks %4d s, QEMU start -> engine ready: %s' \
        "$a" "$line" $((t1 - t0)) $(($(date +%s) - t1)) "${ready:-never}")")
done
echo "== QEMU boot tests" >&2
printf '   %s\n' "${summary[@]}" >&2
echo "$passed passed, $failed failed"
exit $status
