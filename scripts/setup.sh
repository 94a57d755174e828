#!/usr/bin/env bash
# Installs what this project needs on a fresh Debian machine, idempotently and quietly.
#   scripts/setup.sh            build tools only (cargo must already be on PATH)
#   scripts/setup.sh interop    plus the peer tools of the interop tests (podman, skopeo, umoci, busybox-static)
#   scripts/setup.sh bench      plus the peers of the benchmarks (GNU time, podman, skopeo)
set -euo pipefail

need_apt=()
want() { # want COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}

want cargo "" # cargo comes with the machine's Rust toolchain (rustup); it cannot be fetched here
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
need_apt=()
want python3 python3
want zstd zstd
for part in "$@"; do
  case "$part" in
    interop)
      want podman podman
      want skopeo skopeo
      want umoci umoci
      [ -x /bin/busybox ] || need_apt+=(busybox-static)
      ;;
    bench)
      [ -x /usr/bin/time ] || need_apt+=(time)
      want podman podman
      want skopeo skopeo
      want mmdebstrap mmdebstrap
      ;;
    *) echo "setup: unknown part '$part'" >&2; exit 2 ;;
  esac
done

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
