#!/usr/bin/env bash
# Installs what this project needs on a fresh Debian machine, idempotently and quietly.
#   scripts/setup.sh            build and unit-test tools (cargo must already be on PATH)
#   scripts/setup.sh interop    plus the peers of the interop tests (podman, skopeo, umoci, busybox-static)
#   scripts/setup.sh bench      plus the peers of the benchmarks (GNU time, podman, skopeo, mmdebstrap)
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
pkgs=(python3 zstd rdiff)
for part in "$@"; do
  case "$part" in
    interop) pkgs+=(podman skopeo umoci busybox-static) ;;
    bench) pkgs+=(time podman skopeo mmdebstrap) ;;
    *) echo "setup: unknown part '$part'" >&2; exit 2 ;;
  esac
done
ensure_pkgs "${pkgs[@]}"
