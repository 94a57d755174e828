#!/usr/bin/env bash
# Installs what this project needs on a fresh Debian machine, idempotently and quietly.
#   scripts/setup.sh            build and unit-test tools: rdiff, busybox-static (container tests), a docker client,
#                               skopeo, openssl and htpasswd (registry tests; Debian's docker-registry itself is
#                               unpacked by the tests, never installed as a service)
#   scripts/setup.sh interop    plus the peers of the interop tests (podman, skopeo, umoci, busybox-static)
#   scripts/setup.sh bench      plus the peers of the benchmarks (GNU time, podman, skopeo, mmdebstrap)
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
pkgs=(python3 zstd rdiff busybox-static skopeo openssl apache2-utils)
for part in "$@"; do
  case "$part" in
    interop) pkgs+=(podman skopeo umoci busybox-static) ;;
    bench) pkgs+=(time podman skopeo mmdebstrap) ;;
    *) echo "setup: unknown part '$part'" >&2; exit 2 ;;
  esac
done
ensure_pkgs "${pkgs[@]}"

# The daemon's tests drive the real docker CLI. Only its client is needed: take it out of Debian's docker.io
# package rather than installing (and starting) dockerd, containerd and runc.
if ! command -v docker >/dev/null 2>&1; then
  echo "[setup] installing the docker client from Debian's docker.io package" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq docker.io >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download -qq docker.io >/dev/null; })
  dpkg-deb -x "$tmp"/docker.io_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/docker" /usr/local/bin/docker
  rm -rf "$tmp"
fi
