#!/usr/bin/env bash
# Checks meta-balena-engine with the real BitBake 2.18, openembedded-core and meta-raspberrypi
# (wrynose), composed exactly as `kas build kas/<machine>.yml` composes them (kas.yml plus the
# machine's file, without kas/local-source.yml). Slow (minutes per machine) and not part of
# scripts/test.sh. For each machine:
#   - `kas checkout`, then `bitbake -e` of balena-engine-image, balena-engine, virtual/kernel
#     (and rpi-cmdline on the Raspberry Pis), printing IMAGE_FSTYPES, the engine's SRC_URI and
#     SRCREV, oe-core's RUSTVERSION, the kernel's module package names and the Pis' CMDLINE;
#     it fails on the placeholder "ORG" in SRC_URI or an engine source that cannot be fetched
#     (a local git URL must name an existing repository holding SRCREV on its branch);
#   - `bitbake -n balena-engine-image`: a dry run of the image's whole task graph;
#   - with --fetch, `bitbake -c fetch balena-engine` (the engine's source and its crates).
#
#   scripts/check-layer-bitbake.sh                          all five machines
#   scripts/check-layer-bitbake.sh raspberrypi4-64 qemux86-64
#   scripts/check-layer-bitbake.sh --fetch qemuarm64
# The last line is "N passed, M failed" (exit status 1 if any failed).
#
# The layers come from kas.yml's URLs (network needed). Offline, BALENA_LAYER_MIRRORS=DIR points
# kas at local git mirrors instead (through KAS_PREMIRRORS): a repository https://HOST/OWNER/NAME.git
# is looked up as DIR/OWNER+NAME/repo, DIR/OWNER+NAME, DIR/OWNER/NAME.git, DIR/OWNER/NAME,
# DIR/NAME.git or DIR/NAME, and cloned shallow (KAS_CLONE_DEPTH, default 1 then); the builds
# then get BB_NO_NETWORK = "1".
#
# Work area: ${BALENA_CACHE_DIR:-.cache}/bitbake (layer clones, build-<MACHINE>/, downloads/,
# logs/<MACHINE>/ with every bitbake output) and kas (pinned) in a venv beside it.
# BitBake refuses to run as root: run as root, the script installs the host tools with apt,
# generates the en_US.UTF-8 locale, creates the user balena-bitbake (BALENA_BITBAKE_USER
# overrides) and runs kas and bitbake as that user, which must be able to read this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

KAS_VERSION=5.5
ALL_MACHINES=(raspberrypi3 raspberrypi4-64 raspberrypi5 qemuarm64 qemux86-64)
IMAGE=balena-engine-image
ENGINE=balena-engine

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

fetch=0
machines=()
for arg in "$@"; do
  case $arg in
    --fetch) fetch=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "check-layer-bitbake.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) machines+=("$arg") ;;
  esac
done
[ ${#machines[@]} -gt 0 ] || machines=("${ALL_MACHINES[@]}")
for m in "${machines[@]}"; do
  [ -f "kas/$m.yml" ] || { echo "check-layer-bitbake.sh: no kas/$m.yml" >&2; exit 2; }
done

cache="${BALENA_CACHE_DIR:-$PWD/.cache}"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)
venv="$cache/kas-venv"
work="$cache/bitbake"
stamp="$venv/.pinned-kas-$KAS_VERSION"

# --- host set-up ----------------------------------------------------------------------------------
# The host tools oe-core's sanity check wants (HOSTTOOLS) and what the Yocto manual lists for Debian.
HOST_PKGS=(build-essential bzip2 chrpath cpio debianutils diffstat file gawk git locales lz4
  patch perl python3 python3-venv rpcsvc-proto texinfo unzip wget xz-utils zstd)

has_locale() { locale -a 2>/dev/null | grep -qix 'en_US.utf-\{0,1\}8'; }

if [ "$(id -u)" -eq 0 ]; then
  # shellcheck source=scripts/lib/apt.sh
  . scripts/lib/apt.sh
  ensure_pkgs "${HOST_PKGS[@]}"
  if ! has_locale; then
    echo "[setup] generating the en_US.UTF-8 locale" >&2
    sed -i -e 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
    locale-gen >/dev/null
  fi
  build_user=${BALENA_BITBAKE_USER:-balena-bitbake}
  if ! id "$build_user" >/dev/null 2>&1; then
    echo "[setup] creating the user $build_user (BitBake refuses to run as root)" >&2
    useradd --system --user-group --create-home --home-dir "/var/lib/$build_user" \
      --shell /bin/bash "$build_user"
  fi
  # Root's PATH may name directories the build user cannot enter (e.g. a pyenv under /root).
  user_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  as_user() { runuser -u "$build_user" -- env PATH="$user_path" "$@"; }
  python=/usr/bin/python3
else
  build_user=$(id -un)
  as_user() { "$@"; }
  python=python3
  missing=()
  for t in chrpath diffstat gawk git gcc g++ make patch perl python3 cpio file lz4 zstd pzstd xz wget rpcgen; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] ||
    echo "[setup] missing host tools (run as root to install them): ${missing[*]}" >&2
  has_locale || echo "[setup] the en_US.UTF-8 locale is missing (run as root to generate it)" >&2
fi
[ -x "$python" ] || python=$(command -v python3)

if ! as_user test -r "$repo/kas.yml" -a -x "$repo/meta-balena-engine"; then
  echo "check-layer-bitbake.sh: the user $build_user cannot read $repo (BitBake needs the layer)" >&2
  exit 1
fi

# kas, pinned, in a venv of a Python the build user can run.
if [ ! -e "$stamp" ]; then
  echo "[setup] installing kas $KAS_VERSION in $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "kas==$KAS_VERSION"
  touch "$stamp"
fi
kas="$venv/bin/kas"

mkdir -p "$work"
[ "$(id -u)" -ne 0 ] || chown "$build_user:" "$work"
if ! as_user test -w "$work" -a -x "$kas"; then
  echo "check-layer-bitbake.sh: the user $build_user cannot use $work or $kas (BALENA_CACHE_DIR)" >&2
  exit 1
fi

# Git refuses repositories owned by another user: kas and bitbake's fetcher read this checkout and
# the mirrors as the build user. kas copies GITCONFIG_FILE into the HOME it gives git and bitbake.
# "*": bitbake's fetcher names the checkout through the layer's path (build-M/../../..), which git
# does not match with the checkout's own path; this config is only this check's.
gitconfig="$work/gitconfig"

# --- layer mirrors (offline) -----------------------------------------------------------------------
premirrors=""
postconf="$work/check-layer-bitbake.conf"
{
  echo "# Written by scripts/check-layer-bitbake.sh, read with bitbake -R (after local.conf)."
} >"$postconf.new"
if [ -n "${BALENA_LAYER_MIRRORS:-}" ]; then
  mirrors=$(cd "$BALENA_LAYER_MIRRORS" && pwd -P)
  # The URLs of every repository of the kas files.
  urls=$("$venv/bin/python" - kas.yml kas/*.yml <<'PY'
import sys, yaml
urls = set()
for path in sys.argv[1:]:
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    for r in (cfg.get("repos") or {}).values():
        if r and r.get("url"):
            urls.add(r["url"])
print("\n".join(sorted(urls)))
PY
  )
  for url in $urls; do
    path=${url#*://*/}
    path=${path%.git}
    owner=${path%%/*} name=${path##*/}
    found=""
    for cand in "$mirrors/$owner+$name/repo" "$mirrors/$owner+$name" "$mirrors/$owner/$name.git" \
      "$mirrors/$owner/$name" "$mirrors/$name.git" "$mirrors/$name"; do
      if [ -d "$cand/objects" ] || [ -d "$cand/.git" ]; then found=$cand; break; fi
    done
    if [ -z "$found" ]; then
      echo "[mirrors] no mirror of $url in $mirrors: kas will clone it from the network" >&2
      continue
    fi
    echo "[mirrors] $url -> $found" >&2
    # kas matches each line's regular expression against the URL and substitutes the rest.
    premirrors+="^$(printf '%s' "$url" | sed 's/[][\.*^$+?(){}|]/\\&/g')\$ file://$found"$'\n'
  done
  echo 'BB_NO_NETWORK = "1"' >>"$postconf.new"
  offline=1
  # Shallow clones of the pinned branches: they need only the pinned commits' objects (mirrors
  # made as partial clones lack others, which a full clone over file:// would pack).
  export KAS_CLONE_DEPTH="${KAS_CLONE_DEPTH:-1}"
else
  offline=0
fi
mv "$postconf.new" "$postconf"
{
  echo "# Written by scripts/check-layer-bitbake.sh"
  printf '[safe]\n\tdirectory = *\n'
} >"$gitconfig"

# Downloads shared by the machines' builds (kas passes DL_DIR, and SSTATE_DIR if set, to bitbake).
export DL_DIR="${DL_DIR:-$work/downloads}"
as_user mkdir -p "$DL_DIR"

# kas as the build user, for one machine: the machines share the layer clones, each has its build dir.
kas_m() {
  local m=$1
  shift
  as_user env KAS_WORK_DIR="$work" KAS_BUILD_DIR="$work/build-$m" KAS_PREMIRRORS="$premirrors" \
    KAS_CLONE_DEPTH="${KAS_CLONE_DEPTH:-0}" GITCONFIG_FILE="$gitconfig" DL_DIR="$DL_DIR" "$kas" "$@"
}

# bb MACHINE LOG OUT ARGS...: bitbake ARGS in the machine's kas shell; stdout to OUT ("-": to
# LOG too), stderr (warnings, errors, kas's lines) to LOG.
bb() {
  local m=$1 log=$2 out=$3 cmd
  shift 3
  cmd=$(printf '%q ' bitbake -R "$postconf" "$@")
  if [ "$out" = - ]; then
    kas_m "$m" shell "$repo/kas/$m.yml" -c "$cmd" >"$log" 2>&1
  else
    kas_m "$m" shell "$repo/kas/$m.yml" -c "$cmd" >"$out" 2>"$log"
  fi
}

# envvar FILE VAR [raw]: the final value of VAR in `bitbake -e` output FILE (on one line); with
# "raw", its value before expansion (from the variable's history).
envvar() {
  "$venv/bin/python" - "$@" <<'PY'
import re, sys
path, var = sys.argv[1], sys.argv[2]
text = open(path, errors="replace").read()
m = re.search(r'^(?:export )?%s="((?:[^"\\]|\\.)*)"$' % re.escape(var), text, re.M | re.S)
if m and len(sys.argv) > 3:
    # The history block above the value: "# pre-expansion value:" or the single operation.
    block = text[:m.start()].rsplit("\n# $%s" % var, 1)[-1].splitlines()
    vals = [l[1:].strip() for l in block if l.startswith("#   ") and l[1:].strip().startswith('"')]
    print(vals[-1][1:-1] if vals else "")
elif m:
    v = m.group(1).replace("\\\n", "\n")
    v = re.sub(r'\\(["$\\])', r"\1", v)
    print(" ".join(v.split()))
PY
}

# --- the engine's source ---------------------------------------------------------------------------
# check_source SRC_URI SRCREV: is every non-crate entry of the engine's SRC_URI fetchable? Prints
# what it checked; returns 1 on a failure.
check_source() {
  local src_uri=$1 srcrev=$2 e scheme rest loc params host path proto branch nobranch rc=0 tmp
  for e in $src_uri; do
    case $e in crate://*) continue ;; esac
    if [[ $e == *ORG* ]]; then
      echo "    FAIL: SRC_URI has the placeholder ORG: $e"
      rc=1
      continue
    fi
    scheme=${e%%://*} rest=${e#*://}
    loc=${rest%%;*} params=""
    [[ $rest != *\;* ]] || params=";${rest#*;};"
    proto=$(sed -n 's/.*;protocol=\([^;]*\);.*/\1/p' <<<"$params")
    branch=$(sed -n 's/.*;branch=\([^;]*\);.*/\1/p' <<<"$params")
    nobranch=0
    [[ $params != *";nobranch=1;"* && $params != *";usehead=1;"* ]] || nobranch=1
    host=${loc%%/*} path=/${loc#*/}
    case $scheme in
      git | gitsm)
        if [ -z "$proto" ]; then
          # bitbake's default: file for a URL without a host, git otherwise.
          if [ -n "$host" ]; then proto="git"; else proto="file"; fi
        fi
        if [ "$proto" = file ]; then
          [ -z "$host" ] || path=$loc
          if ! as_user test -d "$path"; then
            echo "    FAIL: $e: no directory $path (as $build_user)"
            rc=1
          elif [ "$srcrev" = AUTOINC ]; then
            if as_user git -c safe.directory="$path" -C "$path" rev-parse -q --verify "refs/heads/$branch" >/dev/null; then
              echo "    ok: $path has the branch $branch (SRCREV is AUTOREV)"
            else
              echo "    FAIL: $path has no branch '$branch' (SRCREV is AUTOREV)"
              rc=1
            fi
          elif ! as_user git -c safe.directory="$path" -C "$path" cat-file -e "$srcrev^{commit}" 2>/dev/null; then
            echo "    FAIL: $path has no commit $srcrev (SRCREV)"
            rc=1
          elif [ "$nobranch" = 0 ] && [ -z "$(as_user git -c safe.directory="$path" -C "$path" \
            for-each-ref --contains "$srcrev" "refs/heads/$branch")" ]; then
            echo "    FAIL: $path: SRCREV $srcrev is not on the branch '$branch' (bitbake's fetcher checks it)"
            rc=1
          else
            echo "    ok: $path contains SRCREV $srcrev${branch:+ on branch $branch}"
          fi
        elif [ "$offline" = 1 ]; then
          echo "    not checked (offline): $e"
        else
          [ "$proto" != git ] || [ "$host" != github.com ] || proto=https
          tmp=$(mktemp -d)
          if git init -q --bare "$tmp" &&
            timeout 300 git -C "$tmp" fetch -q --depth=1 "$proto://$loc" \
              "$([ "$srcrev" = AUTOINC ] && echo "refs/heads/$branch" || echo "$srcrev")" 2>/dev/null; then
            echo "    ok: $proto://$loc serves $srcrev"
          else
            echo "    FAIL: could not fetch $srcrev from $proto://$loc"
            rc=1
          fi
          rm -rf "$tmp"
        fi
        ;;
      file)
        if [[ $loc == /* ]]; then
          if as_user test -e "$loc"; then
            echo "    ok: $loc exists"
          else
            echo "    FAIL: no such file $loc"
            rc=1
          fi
        fi
        ;;
      *) echo "    not checked: $e" ;;
    esac
  done
  return $rc
}

# dotted-version comparison: version_le A B is true when A <= B.
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }

# --- one machine -----------------------------------------------------------------------------------
check_machine() {
  local m=$1 logs="$work/logs/$1" fails=() v pi=0 t0=$SECONDS
  local img_env eng_env krn_env fstypes src_uri srcrev crates rustv wsrust summary
  as_user rm -rf "$logs"
  as_user mkdir -p "$logs"
  echo "== $m (logs: $logs)"

  if ! kas_m "$m" checkout "$repo/kas/$m.yml" >"$logs/kas-checkout.log" 2>&1; then
    echo "  FAIL: kas checkout"
    tail -n 15 "$logs/kas-checkout.log" | sed 's/^/    /'
    summary="kas checkout failed"
    results+=("FAIL $m: $summary")
    return 1
  fi

  # -- bitbake -e
  img_env="$logs/$IMAGE.env" eng_env="$logs/$ENGINE.env" krn_env="$logs/virtual-kernel.env"
  local target out
  for target in "$IMAGE" "$ENGINE" virtual/kernel; do
    out="$logs/${target//\//-}.env"
    if ! bb "$m" "$out.log" "$out" -e "$target"; then
      echo "  FAIL: bitbake -e $target"
      grep -E '^(ERROR|WARNING):' "$out.log" | head -n 20 | sed 's/^/    /' || tail -n 20 "$out.log" | sed 's/^/    /'
      fails+=("bitbake -e $target")
      [ "$target" != "$IMAGE" ] || break
    fi
  done
  if [ ! -s "$img_env" ] || [[ " ${fails[*]} " == *" bitbake -e $IMAGE "* ]]; then
    summary="bitbake -e $IMAGE failed"
    results+=("FAIL $m: $summary")
    return 1
  fi

  fstypes=$(envvar "$img_env" IMAGE_FSTYPES)
  echo "  IMAGE_FSTYPES: $fstypes"
  [[ " $fstypes " == *" wic"* ]] || { echo "  FAIL: IMAGE_FSTYPES has no wic image"; fails+=("IMAGE_FSTYPES"); }
  echo "  WKS_FILE: $(envvar "$img_env" WKS_FILE); TARGET_ARCH $(envvar "$img_env" TARGET_ARCH) (DEFAULTTUNE $(envvar "$img_env" DEFAULTTUNE)); KERNEL_IMAGETYPE $(envvar "$img_env" KERNEL_IMAGETYPE)"
  [[ ":$(envvar "$img_env" MACHINEOVERRIDES):" != *:rpi:* ]] || pi=1

  if [ -s "$eng_env" ]; then
    src_uri=$(envvar "$eng_env" SRC_URI)
    srcrev=$(envvar "$eng_env" SRCREV)
    crates=$(grep -o 'crate://' <<<"$src_uri" | wc -l)
    echo "  $ENGINE: PV $(envvar "$eng_env" PV), SRCREV $srcrev"
    echo "  $ENGINE SRC_URI: $(tr ' ' '\n' <<<"$src_uri" | grep -v '^crate://' | tr '\n' ' ')+ $crates crate:// entries"
    if ! check_source "$src_uri" "$srcrev"; then
      fails+=("engine source")
    fi
    rustv=$(envvar "$eng_env" RUSTVERSION)
    wsrust=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
    echo "  RUSTVERSION (oe-core): $rustv; PREFERRED_VERSION_rust: $(envvar "$eng_env" PREFERRED_VERSION_rust); workspace rust-version: ${wsrust:-unset}"
    if [ -n "$wsrust" ] && ! version_le "$wsrust" "${rustv%\%}"; then
      echo "  FAIL: the workspace needs Rust $wsrust, oe-core ships $rustv"
      fails+=("rust-version")
    fi
  fi

  if [ -s "$krn_env" ]; then
    local kpkg kprefix ksuffix
    kpkg=$(envvar "$krn_env" KERNEL_PACKAGE_NAME)
    kprefix=$(envvar "$krn_env" KERNEL_MODULE_PACKAGE_PREFIX)
    ksuffix=$(envvar "$krn_env" KERNEL_MODULE_PACKAGE_SUFFIX raw)
    echo "  kernel: $(envvar "$krn_env" PN) $(envvar "$krn_env" PV) (PREFERRED_PROVIDER_virtual/kernel: $(envvar "$krn_env" PREFERRED_PROVIDER_virtual/kernel))"
    # kernel-module-split.bbclass: PREFIX + KERNEL_PACKAGE_NAME + "-module-" + module name
    # (legitimize_package_name: "_" becomes "-") + SUFFIX, which RPROVIDES the name without SUFFIX
    # when KERNEL_MODULE_PROVIDE_VIRTUAL is 1.
    echo "  kernel module packages: ${kprefix}${kpkg}-module-<module, \"_\" as \"-\">${ksuffix}, RPROVIDES ${kprefix}${kpkg}-module-<module> (KERNEL_MODULE_PROVIDE_VIRTUAL=$(envvar "$krn_env" KERNEL_MODULE_PROVIDE_VIRTUAL))"
    if [[ " $(envvar "$krn_env" SRC_URI) " == *" file://balena-engine.cfg"* ]]; then
      echo "  kernel SRC_URI has meta-balena-engine's file://balena-engine.cfg"
    else
      echo "  FAIL: the kernel's SRC_URI lacks file://balena-engine.cfg (the layer's bbappend did not apply)"
      fails+=("kernel fragment")
    fi
  fi

  if [ "$pi" = 1 ]; then
    if bb "$m" "$logs/rpi-cmdline.env.log" "$logs/rpi-cmdline.env" -e rpi-cmdline; then
      v=$(envvar "$logs/rpi-cmdline.env" CMDLINE)
      echo "  CMDLINE: $v"
      # do_compile writes it through the shell, where references to unset variables are empty.
      if [[ $v == *"\${"* ]]; then
        v=$(sed 's/\${[A-Za-z0-9_]*}//g; s/  */ /g' <<<"$v")
        echo "  cmdline.txt: $v"
      fi
      [[ " $v " == *" ro "* ]] || { echo "  FAIL: CMDLINE lacks ro (the root slot is mounted read-only)"; fails+=("CMDLINE"); }
    else
      echo "  FAIL: bitbake -e rpi-cmdline"
      grep -E '^ERROR:' "$logs/rpi-cmdline.env.log" | head -n 10 | sed 's/^/    /' || true
      fails+=("bitbake -e rpi-cmdline")
    fi
  fi

  # -- dry run of the image's task graph
  local dry="dry run failed"
  if bb "$m" "$logs/dry-run.log" - -n "$IMAGE" && ! grep -q '^ERROR:' "$logs/dry-run.log"; then
    dry=$(grep -m1 'Tasks Summary' "$logs/dry-run.log" | sed 's/^NOTE: //' || true)
    echo "  bitbake -n $IMAGE: ${dry:-ok}"
    dry="dry run ok"
  else
    echo "  FAIL: bitbake -n $IMAGE ($(grep -m1 'Tasks Summary' "$logs/dry-run.log" | sed 's/^NOTE: //' || echo "no task summary"))"
    grep -E '^ERROR:' "$logs/dry-run.log" | awk '!seen[$0]++' | head -n 20 | sed 's/^/    /' ||
      tail -n 20 "$logs/dry-run.log" | sed 's/^/    /'
    ! grep -q 'basehash value changed' "$logs/dry-run.log" ||
      echo "    (a basehash that changed is also what files of the layers edited during the run give: rerun)"
    fails+=("bitbake -n")
  fi

  # -- the engine's source and crates
  if [ "$fetch" = 1 ]; then
    [ "$offline" = 0 ] || echo "  (offline: the crates must already be in $DL_DIR)"
    if bb "$m" "$logs/fetch.log" - -c fetch "$ENGINE" && ! grep -q '^ERROR:' "$logs/fetch.log"; then
      echo "  bitbake -c fetch $ENGINE: ok"
    else
      echo "  FAIL: bitbake -c fetch $ENGINE"
      grep -E '^ERROR:' "$logs/fetch.log" | head -n 20 | sed 's/^/    /' || tail -n 20 "$logs/fetch.log" | sed 's/^/    /'
      fails+=("fetch")
    fi
  fi

  # Everything bitbake warned about, once.
  local warnings
  warnings=$(cat "$logs"/*.log | grep -E '^(WARNING|ERROR):' | sort -u || true)
  if [ -n "$warnings" ]; then
    echo "  bitbake's warnings and errors:"
    printf '    %s\n' "${warnings//$'\n'/$'\n'    }"
  fi

  summary="IMAGE_FSTYPES=\"$fstypes\"; SRCREV ${srcrev:-?}; RUSTVERSION ${rustv:-?}; $dry; $((SECONDS - t0)) s"
  if [ ${#fails[@]} -eq 0 ]; then
    results+=("PASS $m: $summary")
  else
    results+=("FAIL $m: $summary; failed: $(IFS=,; echo "${fails[*]}")")
    return 1
  fi
}

echo "== meta-balena-engine with BitBake (kas $KAS_VERSION; user $build_user; work area $work$([ "$offline" = 1 ] && echo "; offline, layer mirrors in $mirrors"))"
results=()
passed=0 failed=0
for m in "${machines[@]}"; do
  if check_machine "$m"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done

echo
echo "== summary"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
