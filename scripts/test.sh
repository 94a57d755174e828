#!/usr/bin/env bash
# The whole test suite, or one part of it:
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh unit       unit and integration tests of the Rust workspace (crafted archives, crash safety)
#   scripts/test.sh lint       cargo clippy on every target, warnings denied (incompatible_msrv keeps the code
#                              within the workspace's rust-version)
#   scripts/test.sh interop    peer interop: archives from podman, skopeo and umoci load here; ours load there
#   scripts/test.sh armv7      the engine library's unit tests built for 32-bit ARM, run under qemu-arm
#   scripts/test.sh layer      the Yocto layer: oelint-adv, kas schema, BitBake's parser, crates.inc in sync
#   scripts/test.sh conf       the OS configuration (conf/): systemd-analyze verify, drop-ins, and the engine run
#                              exactly as its unit says (socket activation, watchdog, limits, healthcheck)
#   scripts/test.sh qemu       boot the balenaOS-style test image on x86_64, aarch64 (virt) and raspi3b (the SD
#                              card) under QEMU/TCG and assert every OS policy from inside the guest, across a reboot
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(unit lint interop armv7 layer conf qemu)

for part in "${parts[@]}"; do
  case "$part" in
    unit)
      bash scripts/setup.sh
      echo "== unit and integration tests" >&2
      cargo test --workspace --locked
      ;;
    lint)
      if ! cargo clippy --version >/dev/null 2>&1; then
        echo "[setup] rustup component add clippy" >&2
        rustup component add clippy >/dev/null
      fi
      echo "== cargo clippy (warnings denied)" >&2
      cargo clippy --workspace --all-targets --locked -- -D warnings
      ;;
    interop)
      bash scripts/setup.sh interop
      echo "== peer interop tests (podman, skopeo, umoci)" >&2
      cargo test --locked -p balena-engine --test interop -- --ignored
      ;;
    armv7)
      echo "== engine library tests on armv7 (qemu-arm)" >&2
      bash scripts/test-armv7.sh
      ;;
    layer)
      echo "== Yocto layer (meta-balena-engine, kas)" >&2
      bash scripts/test-layer.sh
      ;;
    conf)
      echo "== OS configuration (conf/)" >&2
      bash scripts/test-conf.sh
      ;;
    qemu)
      echo "== QEMU boot tests (x86_64, aarch64, raspi3b)" >&2
      bash scripts/test-qemu.sh x86_64 aarch64 raspi3b
      ;;
    *) echo "test.sh: unknown part '$part' (unit, lint, interop, armv7, layer, conf, qemu)" >&2; exit 2 ;;
  esac
done
