#!/usr/bin/env bash
# The engine library's unit tests (delta, tar, layer, store, ...) built for 32-bit ARM and run under qemu-user:
# catches 32-bit overflows (usize, time_t) before they reach a Raspberry Pi. Among them, layer times past 2038
# (and before 1970) unpacked and read back exactly: the unpacker's file-time calls go through rustix's 64-bit
# time syscalls (utimensat_time64, statx), not the libc crate's 32-bit time_t (layer/unpack.rs).
#   scripts/test-armv7.sh                      the library's unit tests
#   scripts/test-armv7.sh --test rdiff_compat  plus an integration test of the engine crate (host `rdiff` runs natively)
#   scripts/test-armv7.sh -- delta::           a test name filter
# Installs what is missing: the Rust target, Debian's cross linker and libc, and a qemu-arm that emulates
# openat2 (QEMU >= 9; bookworm's 7.2 lacks it, so on bookworm it comes from bookworm-backports). The linker
# and the runner are set in .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh

TARGET=armv7-unknown-linux-gnueabihf

if ! command -v cargo >/dev/null 2>&1; then
  echo "test-armv7: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "[setup] rustup target add $TARGET" >&2
  rustup target add "$TARGET" >/dev/null
fi
ensure_pkgs gcc-arm-linux-gnueabihf libc6-dev-armhf-cross

qemu_major() {
  command -v qemu-arm >/dev/null 2>&1 || { echo 0; return; }
  qemu-arm --version | sed -n '1s/.*version \([0-9]*\)\..*/\1/p'
}
if [ "$(qemu_major)" -lt 9 ]; then
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    src=/etc/apt/sources.list.d/bookworm-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "[setup] adding $src" >&2
      printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' 'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$src"
    fi
    echo "[setup] installing qemu-user from bookworm-backports" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-user >/dev/null
  else
    ensure_pkgs qemu-user
  fi
  if [ "$(qemu_major)" -lt 9 ]; then
    echo "test-armv7: qemu-arm $(qemu_major).x cannot run the tests (openat2 needs QEMU >= 9)" >&2
    exit 1
  fi
fi

echo "== engine unit tests on $TARGET under $(qemu-arm --version | head -1)" >&2
start=$(date +%s)
cargo test --locked -p balena-engine-core --target "$TARGET" --lib "$@"
echo "== $TARGET: $(($(date +%s) - start)) s (build and run)" >&2
