#!/usr/bin/env bash
# Offline checks of the Yocto layer, the kas files and the Yocto CI workflow:
#   oelint-adv on every recipe, append and include (no findings; .oelint.cfg lists what is
#   turned off and why), kas's JSON schema on kas.yml and kas/*.yml, BitBake's own parser on
#   layer.conf and every recipe, crates.inc against Cargo.lock, the wic layout, bash -n and
#   the shellcheck linter on these scripts.
#
#   scripts/test-layer.sh              all checks; the last line is "N passed, M failed"
#   scripts/test-layer.sh crates kas   only the checks whose name contains one of the words
#
# Installs what it needs: pinned kas, oelint-adv and bitbake-setup (BitBake's bb library) in a
# venv under the cache dir (BALENA_CACHE_DIR, default .cache/), shellcheck with apt.
set -euo pipefail
cd "$(dirname "$0")/.."

KAS_VERSION=5.5
OELINT_ADV_VERSION=9.11.2
BITBAKE_SETUP_VERSION=2.19.0

cache="${BALENA_CACHE_DIR:-$PWD/.cache}"
venv="$cache/yocto-venv"
stamp="$venv/.pinned-kas-$KAS_VERSION-oelint-$OELINT_ADV_VERSION-bitbake-setup-$BITBAKE_SETUP_VERSION"

if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    # shellcheck source=scripts/lib/apt.sh
    . scripts/lib/apt.sh
    ensure_pkgs shellcheck
  else
    echo "[setup] shellcheck is missing and this is not root: the shell check will fail" >&2
  fi
fi

if [ ! -e "$stamp" ]; then
  echo "[setup] installing kas $KAS_VERSION, oelint-adv $OELINT_ADV_VERSION, bitbake-setup $BITBAKE_SETUP_VERSION in $venv" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$venv"
    # shellcheck source=scripts/lib/apt.sh
    . scripts/lib/apt.sh
    ensure_pkgs python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "kas==$KAS_VERSION" "oelint-adv==$OELINT_ADV_VERSION" "bitbake-setup==$BITBAKE_SETUP_VERSION"
  touch "$stamp"
fi

echo "== Yocto layer checks (meta-balena-engine, kas, workflow)" >&2
PATH="$venv/bin:$PATH" exec "$venv/bin/python" tests/layer/test_layer.py "$@"
