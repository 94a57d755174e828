#!/usr/bin/env bash
# The OS configuration (conf/): static checks with systemd's own tools against an image root staged from
# conf/README.md's table (tests/conf/check_conf.py), then the engine run exactly as its unit says, driven by
# the healthcheck and the docker CLI (tests/conf/engine_under_unit.py). Needs root for the container checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh

# systemd-analyze, systemd-tmpfiles, systemd-sysusers, systemd-escape; python3; busybox-static (the container
# image); the docker client comes with scripts/setup.sh.
ensure_pkgs systemd python3 busybox-static
bash scripts/setup.sh
for tool in systemd-analyze systemd-tmpfiles systemd-sysusers systemd-escape python3; do
  command -v "$tool" >/dev/null || { echo "test-conf: $tool missing after install" >&2; exit 1; }
done

echo "== release binaries" >&2
cargo build --release --locked -p balena-engined -p balena-engine-healthcheck
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CONF_COUNTS="$work/counts"
status=0
echo "== conf: static checks" >&2
python3 tests/conf/check_conf.py . "$bin" "$work/static" || status=1
echo "== conf: the engine under its unit" >&2
python3 tests/conf/engine_under_unit.py . "$bin" "$work/unit" || status=1

read -r passed failed < <(awk '{p += $1; f += $2} END {print p+0, f+0}' "$CONF_COUNTS")
echo "test-conf: $passed passed, $failed failed"
exit "$status"
