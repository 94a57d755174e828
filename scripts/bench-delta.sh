#!/usr/bin/env bash
# bench-delta.sh [--quick] [--reps N] [--peer-create-reps N] [--corpus DIR] [--only rootfs|elf]
#                [--no-bsdiff-rootfs] [--no-cgroup]
#
# Benchmark (not a test): delta CREATE and APPLY of balena-engine side by side with
# whole-file binary delta tools, on the two pairs of the public corpus (../shared/corpus):
#   rootfs  rootfs-old.tar -> rootfs-new.tar   (Debian rootfs tars, ~204/208 MB)
#   elf     ruff-0.6.0.bin -> ruff-0.6.1.bin   (one ELF binary, 28.5 MB)
#
# Inputs, built once and cached beside the corpus (CORPUS/delta-inputs/): single-layer
# docker-archives whose layer IS rootfs-{old,new}.tar (tags corpus:old, corpus:new), and
# whose layer holds only usr/bin/ruff (0755, fixed mtime; tags ruff:0.6.0, ruff:0.6.1).
# Our images are built from exactly the bytes the peers diff: the layer tar / the binary.
#
# Rows (create | apply):
#   ours     image delta BASE TARGET -t TAG on a store holding both (delta size = the
#            archive written by `image save` of the delta) | image load -i delta.tar on a
#            fresh data root that already has BASE (loaded untimed just before)
#   rdiff    balenaEngine's parameters: rdiff signature -R rollsum -H blake2 -b 512 -S 32 OLD,
#            rdiff delta, zstd -19 of the delta (all three timed; size = the .zst)
#            | zstd -dc | rdiff patch OLD
#   xdelta3  xdelta3 -e -9 -S lzma -B 268435456 -s OLD NEW | xdelta3 -d -s OLD
#   zstd     zstd -19 --long=31 --patch-from=OLD NEW | zstd -d --long=31 --patch-from=OLD
#   bsdiff   bsdiff OLD NEW PATCH | bspatch OLD NEW PATCH   (bsdiff on rootfs: ~2.5 min,
#            ~1.8 GB RAM, always one run; --no-bsdiff-rootfs skips that row)
# Every apply is verified: our rebuilt image ID must equal the target's, a peer's output
# must have the sha256 of NEW; a mismatch aborts the run.
#
# Measured with GNU time (wall s, peak RSS = the largest single process of the command),
# and the bytes the apply sent to the file system: write_bytes of /proc/PID/io of the
# measured process (it includes its reaped children), read while it is a zombie (waitid
# WNOWAIT), i.e. page-cache pages dirtied, whether or not written back yet; hard links
# and reads cost nothing.  The tools' output is captured through a pipe, not a file.
# Repetitions (default 3; --quick = 1, median shown): our create and every apply run N
# times; a peer's create runs --peer-create-reps times (default 1: its output is
# deterministic and those creates take 15 s to 2.5 min each, which would blow the
# 10-minute budget).  Every apply is then run once more inside a fresh 64 MiB memory
# cgroup (v1 child of our own cgroup, v2 child if a memory controller is delegated, or a
# systemd scope) and reported as ok / OOM-killed / failed; --no-cgroup skips that.
# The page cache is not dropped (inputs are read once before measuring, so runs see them
# warm); `sync` runs (untimed) after every step.  Data roots are kept until exit
# (deleting ~10k inodes right before a run slows ext4 inode allocation): ~3 GB free needed.
#
# Environment: BENCH_CORPUS (corpus dir; default
# ${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/corpus), BENCH_WORKDIR (scratch parent;
# default the corpus dir's parent), BALENA_ENGINE (binary to use instead of building
# target/release/balena-engine).  Generated files never go into the repository.
set -euo pipefail

REPS=3
PEER_REPS=1
CORPUS=${BENCH_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/corpus}
BSDIFF_ROOTFS=1
TRY_CGROUP=1
ONLY=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) REPS=1 ;;
        --reps) REPS=${2:?--reps N}; shift ;;
        --peer-create-reps) PEER_REPS=${2:?--peer-create-reps N}; shift ;;
        --corpus) CORPUS=${2:?--corpus DIR}; shift ;;
        --no-bsdiff-rootfs) BSDIFF_ROOTFS=0 ;;
        --no-cgroup) TRY_CGROUP=0 ;;
        --only) ONLY=${2:?--only rootfs|elf}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[bench] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ prerequisites
bash "$REPO/scripts/setup.sh"
. "$REPO/scripts/lib/apt.sh"
ensure_pkgs time rdiff xdelta3 bsdiff zstd python3

# ------------------------------------------------------------------ corpus
mkdir -p "$CORPUS"
CORPUS=$(cd "$CORPUS" && pwd)
case $CORPUS/ in "$REPO"/*) echo "corpus dir must be outside the repository: $CORPUS" >&2; exit 2 ;; esac
for f in rootfs-old.tar rootfs-new.tar ruff-0.6.0.bin ruff-0.6.1.bin; do
    if [ ! -s "$CORPUS/$f" ]; then
        log "corpus incomplete in $CORPUS ($f missing), generating (about 2 minutes)"
        "$REPO/../shared/corpus/make-corpus.sh" "$CORPUS" >&2
        break
    fi
done

# ------------------------------------------------------------------ our binary
if [ -n "${BALENA_ENGINE:-}" ]; then
    OURS=$BALENA_ENGINE
else
    log "cargo build --release -p balena-engine"
    (cd "$REPO" && cargo build --release -q -p balena-engine)
    OURS=$REPO/target/release/balena-engine
fi

# ------------------------------------------------------------------ inputs
INPUTS=$CORPUS/delta-inputs
STAMP_WANT="v1 $(cd "$CORPUS" && stat -c '%n %s %Y' rootfs-old.tar rootfs-new.tar ruff-0.6.0.bin ruff-0.6.1.bin | tr '\n' ' ')"
if [ "$(cat "$INPUTS/STAMP" 2>/dev/null)" != "$STAMP_WANT" ]; then
    log "building delta benchmark images in $INPUTS (one-time, ~10 s)"
    rm -rf "$INPUTS"; mkdir -p "$INPUTS"
    python3 - "$CORPUS" "$INPUTS" <<'PY'
# Streams everything in 1 MiB chunks; never holds a layer in memory.
# Writes NAME.image.tar (docker-archive, one layer) and IDS ("NAME sha256:<config digest>").
import hashlib, io, json, os, sys, tarfile

corpus, out = sys.argv[1], sys.argv[2]
CHUNK = 1 << 20
CREATED = "2025-01-01T00:00:00Z"
MTIME = 1735689600          # the corpus' SOURCE_DATE_EPOCH

def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(CHUNK):
            h.update(b)
    return h.hexdigest()

def info(name, size, mode=0o644, mtime=0, typ=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name); ti.size = size; ti.mtime = mtime; ti.mode = mode; ti.type = typ
    ti.uname = ti.gname = "root"
    return ti

def add_bytes(t, name, data): t.addfile(info(name, len(data)), io.BytesIO(data))

def add_file(t, name, path, **kw):
    with open(path, "rb") as f:
        t.addfile(info(name, os.path.getsize(path), **kw), f)

def write_tar(path, fill):
    tmp = path + ".part"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as t:
        fill(t)
    os.rename(tmp, path)

def elf_layer(binary, path):  # usr/, usr/bin/, usr/bin/ruff (0755), fixed mtimes
    def fill(t):
        for d in ("usr/", "usr/bin/"):
            t.addfile(info(d, 0, mode=0o755, mtime=MTIME, typ=tarfile.DIRTYPE))
        add_file(t, "usr/bin/ruff", binary, mode=0o755, mtime=MTIME)
    write_tar(path, fill)

def docker_archive(path, tag, layer):   # manifest + config first, then the layer
    diff_id = sha_file(layer)
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux", "created": CREATED,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
        "history": [{"created": CREATED, "created_by": "ADD " + os.path.basename(layer)}],
    }, separators=(",", ":")).encode()
    cfg_hex = hashlib.sha256(cfg).hexdigest()
    manifest = json.dumps([{"Config": cfg_hex + ".json", "RepoTags": [tag],
                            "Layers": [diff_id + "/layer.tar"]}]).encode()
    def fill(t):
        add_bytes(t, "manifest.json", manifest)
        add_bytes(t, cfg_hex + ".json", cfg)
        add_file(t, diff_id + "/layer.tar", layer)
    write_tar(path, fill)
    return "sha256:" + cfg_hex

ids = {}
for name, tag in (("rootfs-old", "corpus:old"), ("rootfs-new", "corpus:new")):
    ids[name] = docker_archive(os.path.join(out, name + ".image.tar"), tag, os.path.join(corpus, name + ".tar"))
for v in ("0.6.0", "0.6.1"):
    layer = os.path.join(out, f"ruff-{v}.layer.tar")
    elf_layer(os.path.join(corpus, f"ruff-{v}.bin"), layer)
    ids[f"ruff-{v}"] = docker_archive(os.path.join(out, f"ruff-{v}.image.tar"), f"ruff:{v}", layer)
    os.unlink(layer)
with open(os.path.join(out, "IDS"), "w") as f:
    f.writelines(f"{k} {v}\n" for k, v in ids.items())
PY
    echo "$STAMP_WANT" >"$INPUTS/STAMP"
fi
image_id() { awk -v n="$1" '$1 == n {print $2}' "$INPUTS/IDS"; }
# pair | old file | new file | old image name | new image name | base tag | target tag
PAIRS=(
    "rootfs|$CORPUS/rootfs-old.tar|$CORPUS/rootfs-new.tar|rootfs-old|rootfs-new|corpus:old|corpus:new"
    "elf|$CORPUS/ruff-0.6.0.bin|$CORPUS/ruff-0.6.1.bin|ruff-0.6.0|ruff-0.6.1|ruff:0.6.0|ruff:0.6.1"
)
if [ -n "$ONLY" ]; then
    sel=(); for spec in "${PAIRS[@]}"; do [ "${spec%%|*}" = "$ONLY" ] && sel+=("$spec"); done
    [ ${#sel[@]} -gt 0 ] || { echo "--only: no pair named $ONLY (rootfs, elf)" >&2; exit 2; }
    PAIRS=("${sel[@]}")
fi
TOOLS=(ours rdiff xdelta3 zstd bsdiff)

# ------------------------------------------------------------------ scratch space
WORKPARENT=${BENCH_WORKDIR:-$(dirname "$CORPUS")}
mkdir -p "$WORKPARENT"
WORK=$(mktemp -d "$WORKPARENT/bench-delta.XXXXXX")
CGROUPS=()
cleanup() {
    local c
    for c in "${CGROUPS[@]}"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ measuring
# measure.py [--cgroup DIR] LOG -- CMD...   runs CMD under GNU time (its report goes through a
# pipe, the command's output through another, so neither counts as a write), and prints
# "wall_s peak_rss_kib write_bytes cancelled_write_bytes status" where status is the exit
# code, or "sig<N>" when a signal killed the command.  write_bytes is read from
# /proc/PID/io of `time` while it is a zombie: it includes the command and all its
# reaped descendants.
cat >"$WORK/measure.py" <<'PY'
import os, subprocess, sys
args = sys.argv[1:]
cgroup = None
if args[0] == "--cgroup":
    cgroup, args = args[1], args[2:]
logf, sep, cmd = args[0], args[1], args[2:]
assert sep == "--" and cmd
tr, tw = os.pipe()

def enter_cgroup():
    if cgroup:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

p = subprocess.Popen(["/usr/bin/time", "-f", "%e %M", "-o", f"/dev/fd/{tw}", *cmd],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     pass_fds=(tw,), preexec_fn=enter_cgroup if cgroup else None)
os.close(tw)
out = p.stdout.read()
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)     # zombie: /proc/PID/io still there
with open(f"/proc/{p.pid}/io") as f:
    io = dict(line.split(": ") for line in f.read().splitlines())
rc = p.wait()
rep = b""
while chunk := os.read(tr, 65536):
    rep += chunk
rep = rep.decode(errors="replace").strip().splitlines()
status = str(rc)
for line in rep:
    if line.startswith("Command terminated by signal"):
        status = "sig" + line.split()[-1]
wall, rss = (rep[-1].split() + ["nan", "nan"])[:2] if rep else ("nan", "nan")
with open(logf, "wb") as f:
    f.write(out)
    f.write(("\n[time] " + " | ".join(rep) + "\n").encode())
print(wall, rss, int(io["write_bytes"]), int(io["cancelled_write_bytes"]), status)
PY

# run LOG [--cgroup DIR] CMD... -> sets M_SEC M_KIB M_WB M_CWB M_ST
run() {
    local logf=$1; shift
    local cg=()
    if [ "${1:-}" = --cgroup ]; then cg=(--cgroup "$2"); shift 2; fi
    read -r M_SEC M_KIB M_WB M_CWB M_ST < <(python3 "$WORK/measure.py" "${cg[@]}" "$logf" -- "$@")
    sync
}
# timed LOG CMD... -> like run, but shows the tool's output and aborts on failure
timed() {
    run "$@"
    if [ "$M_ST" != 0 ]; then echo "FAILED ($M_ST): ${*:2}" >&2; tail -n 20 "$1" >&2; exit 1; fi
}
declare -A R    # R[pair|tool|metric] = space-separated values, one per repetition
rec() { R[$1]="${R[$1]:-}$2 "; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{if(NR==0){print "nan"} else if(NR%2){print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }
med() { printf '%s' "${R[$1]:-}" | median; }
nrep() { printf '%s' "${R[$1]:-}" | wc -w; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
ours_id() {  # ours_id DATA_ROOT REF -> image ID, or empty
    "$OURS" --data-root "$1" image inspect "$2" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Id"])' 2>/dev/null || true
}

# ------------------------------------------------------------------ memory cgroup (64 MiB)
CG_MODE=none CG_NOTE=
CG_LIMIT=$((64 << 20))
own_v1=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
own_v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
v2root=/sys/fs/cgroup; [ -f $v2root/cgroup.controllers ] || v2root=/sys/fs/cgroup/unified
if [ "$TRY_CGROUP" = 0 ]; then
    CG_NOTE="skipped (--no-cgroup)"
elif [ -n "$own_v1" ] && [ -f "/sys/fs/cgroup/memory$own_v1/memory.limit_in_bytes" ] \
    && mkdir "/sys/fs/cgroup/memory${own_v1%/}/bench-delta-probe.$$" 2>/dev/null; then
    rmdir "/sys/fs/cgroup/memory${own_v1%/}/bench-delta-probe.$$"
    CG_MODE=v1 CG_NOTE="cgroup v1 memory: children of /sys/fs/cgroup/memory${own_v1%/}, memory(+memsw).limit_in_bytes = 64 MiB"
elif [ -n "$own_v2" ] && grep -qw memory "$v2root${own_v2%/}/cgroup.subtree_control" 2>/dev/null \
    && mkdir "$v2root${own_v2%/}/bench-delta-probe.$$" 2>/dev/null; then
    rmdir "$v2root${own_v2%/}/bench-delta-probe.$$"
    CG_MODE=v2 CG_NOTE="cgroup v2: children of $v2root${own_v2%/}, memory.max = 64 MiB, memory.swap.max = 0"
elif [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemd-run >/dev/null \
    && systemd-run --quiet --scope -p MemoryMax=64M true >/dev/null 2>&1; then
    CG_MODE=systemd CG_NOTE="systemd-run --scope -p MemoryMax=64M -p MemorySwapMax=0"
else
    CG_NOTE="skipped: no writable memory cgroup here (v1 child of our cgroup, delegated v2 memory controller, or systemd scope)"
fi
CGN=0 CG_DIR= CG_PREFIX=()
# cg_new -> sets CG_DIR (empty for systemd) and CG_PREFIX (command prefix)
cg_new() {
    CGN=$((CGN + 1)); CG_DIR= CG_PREFIX=()
    case $CG_MODE in
        v1) CG_DIR=/sys/fs/cgroup/memory${own_v1%/}/bench-delta.$$.$CGN; mkdir "$CG_DIR"; CGROUPS+=("$CG_DIR")
            echo "$CG_LIMIT" >"$CG_DIR/memory.limit_in_bytes"
            echo "$CG_LIMIT" >"$CG_DIR/memory.memsw.limit_in_bytes" 2>/dev/null || true ;;
        v2) CG_DIR=$v2root${own_v2%/}/bench-delta.$$.$CGN; mkdir "$CG_DIR"; CGROUPS+=("$CG_DIR")
            echo "$CG_LIMIT" >"$CG_DIR/memory.max"; echo 0 >"$CG_DIR/memory.swap.max" 2>/dev/null || true ;;
        systemd) CG_PREFIX=(systemd-run --quiet --scope -p MemoryMax=64M -p MemorySwapMax=0) ;;
    esac
}
cg_peak() {  # peak charge of the cgroup (page cache included), MiB, or "-"
    local f
    for f in memory.max_usage_in_bytes memory.peak; do
        [ -n "$CG_DIR" ] && [ -r "$CG_DIR/$f" ] && { awk '{printf "%.0f", $1/1048576}' "$CG_DIR/$f"; return; }
    done
    echo -
}

# ------------------------------------------------------------------ the tools
# create TOOL OLD NEW DIR -> writes DIR/delta.TOOL (the shipped artifact)
create_cmd() {
    local tool=$1 old=$2 new=$3 d=$4
    case $tool in
        rdiff) CMD=(bash -c 'set -e; rdiff -f -R rollsum -H blake2 -b 512 -S 32 signature "$1" "$3/rdiff.sig"
                      rdiff -f delta "$3/rdiff.sig" "$2" "$3/rdiff.raw"
                      zstd -q -f -19 "$3/rdiff.raw" -o "$3/delta.rdiff"' sh "$old" "$new" "$d") ;;
        xdelta3) CMD=(xdelta3 -e -9 -S lzma -B 268435456 -f -s "$old" "$new" "$d/delta.xdelta3") ;;
        zstd) CMD=(zstd -q -f -19 --long=31 --patch-from="$old" "$new" -o "$d/delta.zstd") ;;
        bsdiff) CMD=(bsdiff "$old" "$new" "$d/delta.bsdiff") ;;
    esac
}
# apply TOOL OLD DELTA OUT
apply_cmd() {
    local tool=$1 old=$2 delta=$3 out=$4
    case $tool in
        rdiff) CMD=(bash -c 'set -o pipefail; zstd -q -dc "$1" | rdiff -f patch "$2" - "$3"' sh "$delta" "$old" "$out") ;;
        xdelta3) CMD=(xdelta3 -d -f -s "$old" "$delta" "$out") ;;
        zstd) CMD=(zstd -q -d -f --long=31 --patch-from="$old" "$delta" -o "$out") ;;
        bsdiff) CMD=(bspatch "$old" "$out" "$delta") ;;
    esac
}
skip_tool() { [ "$2" = bsdiff ] && [ "$1" = rootfs ] && [ "$BSDIFF_ROOTFS" = 0 ]; }

# apply_one PAIR TOOL OLD NEWSHA BASEIMG TARGETTAG TARGETID PAIRDIR [cgroup]
# -> records metrics (normal) or the cgroup verdict; aborts on a wrong result outside the cgroup
apply_one() {
    local pair=$1 tool=$2 old=$3 newsha=$4 baseimg=$5 ttag=$6 tid=$7 pd=$8 incg=${9:-} d ok got
    local cg=()
    CG_DIR= CG_PREFIX=()
    d=$(mktemp -d "$pd/apply-$tool.XXXXXX")
    if [ -n "$incg" ]; then cg_new; [ -n "$CG_DIR" ] && cg=(--cgroup "$CG_DIR"); fi
    if [ "$tool" = ours ]; then
        "$OURS" --data-root "$d/root" image load -q -i "$baseimg" >/dev/null; sync
        run "$d/apply.log" "${cg[@]}" "${CG_PREFIX[@]}" "$OURS" --data-root "$d/root" image load -i "$pd/delta.ours"
        got=$(ours_id "$d/root" "$ttag")
    else
        apply_cmd "$tool" "$old" "$pd/delta.$tool" "$d/out"
        run "$d/apply.log" "${cg[@]}" "${CG_PREFIX[@]}" "${CMD[@]}"
        got=$([ -f "$d/out" ] && sha "$d/out" || true)
        rm -f "$d/out"; sync
    fi
    if [ "$tool" = ours ]; then ok=$([ "$got" = "$tid" ] && echo 1 || echo 0)
    else ok=$([ "$got" = "$newsha" ] && echo 1 || echo 0); fi
    if [ -n "$incg" ]; then
        local verdict
        if [ "$M_ST" = 0 ] && [ "$ok" = 1 ]; then verdict=ok
        elif [ "$M_ST" = sig9 ]; then verdict=OOM-killed
        elif [ "$M_ST" = 0 ]; then verdict=WRONG-output
        else verdict="failed($M_ST)"; fi
        R[$pair|$tool|cg]=$verdict
        R[$pair|$tool|cgpeak]=$(cg_peak)
        R[$pair|$tool|cgrss]=$M_KIB
        return
    fi
    if [ "$M_ST" != 0 ] || [ "$ok" != 1 ]; then
        echo "FAILED apply $pair/$tool (status $M_ST; got ${got:-nothing}, want $([ "$tool" = ours ] && echo "$tid" || echo "$newsha"))" >&2
        tail -n 20 "$d/apply.log" >&2; exit 1
    fi
    rec "$pair|$tool|at" "$M_SEC"; rec "$pair|$tool|am" "$M_KIB"
    rec "$pair|$tool|aw" "$M_WB"; rec "$pair|$tool|ac" "$M_CWB"
}

# ------------------------------------------------------------------ header
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "== balena-engine delta create/apply benchmark  ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo "machine : $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "scratch : $WORKPARENT ($(df -PT "$WORKPARENT" | awk 'NR==2{print $2}'))"
echo "ours    : $("$OURS" --version 2>&1 | head -n 1)  ($OURS, git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty'))"
echo "peers   : rdiff $(dpkg-query -W -f='${Version}' rdiff) (librsync2 $(dpkg-query -W -f='${Version}' librsync2 2>/dev/null)), $(xdelta3 -V 2>&1 | head -n 1 | sed 's/,.*//'), zstd $(zstd --version | sed -n 's/.* v\([0-9.]*\).*/\1/p'), bsdiff $(dpkg-query -W -f='${Version}' bsdiff)"
echo "measure : /usr/bin/time (GNU time $(dpkg-query -W -f='${Version}' time)) -f '%e %M', write_bytes of /proc/PID/io"
echo "reps    : ours create and all applies $REPS (median shown); peer creates $PEER_REPS; bsdiff on rootfs $([ "$BSDIFF_ROOTFS" = 1 ] && echo 1 || echo skipped)"
echo "cgroup  : $CG_NOTE"
echo "corpus  : $CORPUS"
echo "loadavg : $(cut -d' ' -f1-3 /proc/loadavg) at start (other work on the machine skews wall times)"

# ------------------------------------------------------------------ run
need=$((3 << 30)); avail=$(( $(df -Pk "$WORK" | awk 'NR==2{print $4}') * 1024 ))
[ "$avail" -ge "$need" ] || { echo "need about 3 GiB free in $WORKPARENT, have $((avail >> 30)) GiB (set BENCH_WORKDIR)" >&2; exit 1; }
START=$SECONDS
declare -A NEWSHA
for spec in "${PAIRS[@]}"; do
    IFS='|' read -r pair old new oldimg newimg btag ttag <<<"$spec"
    pd=$WORK/$pair; mkdir -p "$pd"
    baseimg=$INPUTS/$oldimg.image.tar; targetimg=$INPUTS/$newimg.image.tar; tid=$(image_id "$newimg")
    cat "$old" "$new" "$baseimg" "$targetimg" >/dev/null   # warm the page cache for everyone
    NEWSHA[$pair]=$(sha "$new")

    # --- create
    for ((rep = 1; rep <= REPS; rep++)); do
        log "$pair  create  ours  rep $rep/$REPS"
        s=$pd/srv.$rep
        "$OURS" --data-root "$s" image load -q -i "$baseimg" >/dev/null
        "$OURS" --data-root "$s" image load -q -i "$targetimg" >/dev/null; sync
        timed "$pd/create-ours.$rep.log" "$OURS" --data-root "$s" image delta "$btag" "$ttag" -t "$pair:delta"
        rec "$pair|ours|cs" "$M_SEC"; rec "$pair|ours|cm" "$M_KIB"
        R[$pair|ours|line]=$(grep -m1 '^Normal size' "$pd/create-ours.$rep.log" || true)
        R[$pair|ours|layer]=$(grep -m1 '^layer 0' "$pd/create-ours.$rep.log" || true)
        timed "$pd/save-ours.$rep.log" "$OURS" --data-root "$s" image save -o "$pd/delta.ours.$rep" "$pair:delta"
        rec "$pair|ours|sv" "$M_SEC"; rec "$pair|ours|sz" "$(stat -c %s "$pd/delta.ours.$rep")"
        [ "$rep" = 1 ] && mv "$pd/delta.ours.1" "$pd/delta.ours" || rm -f "$pd/delta.ours.$rep"
    done
    for tool in "${TOOLS[@]:1}"; do
        skip_tool "$pair" "$tool" && continue
        n=$PEER_REPS; [ "$tool/$pair" = bsdiff/rootfs ] && n=1
        for ((rep = 1; rep <= n; rep++)); do
            log "$pair  create  $tool  rep $rep/$n"
            create_cmd "$tool" "$old" "$new" "$pd"
            timed "$pd/create-$tool.$rep.log" "${CMD[@]}"
            rec "$pair|$tool|cs" "$M_SEC"; rec "$pair|$tool|cm" "$M_KIB"
            rec "$pair|$tool|sz" "$(stat -c %s "$pd/delta.$tool")"
        done
        cat "$pd/delta.$tool" >/dev/null
    done
    [ -f "$pd/rdiff.raw" ] && R[$pair|rdiff|raw]="signature $(stat -c %s "$pd/rdiff.sig") B, raw delta $(stat -c %s "$pd/rdiff.raw") B"

    # --- apply
    for ((rep = 1; rep <= REPS; rep++)); do
        for tool in "${TOOLS[@]}"; do
            skip_tool "$pair" "$tool" && continue
            log "$pair  apply  $tool  rep $rep/$REPS"
            apply_one "$pair" "$tool" "$old" "${NEWSHA[$pair]}" "$baseimg" "$ttag" "$tid" "$pd"
        done
    done
    if [ "$CG_MODE" != none ]; then
        for tool in "${TOOLS[@]}"; do
            skip_tool "$pair" "$tool" && continue
            log "$pair  apply  $tool  in a 64 MiB memory cgroup"
            apply_one "$pair" "$tool" "$old" "${NEWSHA[$pair]}" "$baseimg" "$ttag" "$tid" "$pd" cgroup
        done
    fi
    rm -f "$pd"/rdiff.sig "$pd"/rdiff.raw
done

# ------------------------------------------------------------------ report
num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { if num "$1" && num "$2"; then awk -v p="$1" -v o="$2" 'BEGIN{ if (o > 0) printf "%.2f", p / o; else printf "-" }'; else echo -; fi; }
mb() { if num "$1"; then awk -v b="$1" 'BEGIN{ printf "%.2f", b / 1e6 }'; else echo -; fi; }
mib() { if num "$1"; then awk -v k="$1" 'BEGIN{ printf "%.1f", k / 1024 }'; else echo -; fi; }
sec() { if num "$1"; then printf '%.2f' "$1"; else echo -; fi; }
for spec in "${PAIRS[@]}"; do
    IFS='|' read -r pair old new oldimg newimg btag ttag <<<"$spec"
    echo
    printf '## %s  (%s %.1f MB -> %s %.1f MB; images %s -> %s)\n' "$pair" \
        "$(basename "$old")" "$(awk -v b="$(stat -c %s "$old")" 'BEGIN{print b/1e6}')" \
        "$(basename "$new")" "$(awk -v b="$(stat -c %s "$new")" 'BEGIN{print b/1e6}')" "$btag" "$ttag"
    printf '%-8s %9s %9s %10s %8s %9s %10s %-12s | %6s %7s %7s %7s %7s\n' tool "delta MB" "create s" "create MiB" \
        "apply s" "apply MiB" "written MB" "64MiB cgroup" size create apply RSS written
    o_sz=$(med "$pair|ours|sz"); o_cs=$(med "$pair|ours|cs"); o_at=$(med "$pair|ours|at")
    o_am=$(med "$pair|ours|am"); o_aw=$(med "$pair|ours|aw")
    for tool in "${TOOLS[@]}"; do
        if skip_tool "$pair" "$tool"; then printf '%-8s %s\n' "$tool" "(skipped: --no-bsdiff-rootfs)"; continue; fi
        sz=$(med "$pair|$tool|sz"); cs=$(med "$pair|$tool|cs"); cm=$(med "$pair|$tool|cm")
        at=$(med "$pair|$tool|at"); am=$(med "$pair|$tool|am"); aw=$(med "$pair|$tool|aw")
        mark=" "; [ "$(nrep "$pair|$tool|cs")" -lt "$REPS" ] && mark="*"
        if [ "$tool" = ours ]; then rs=(ours - - - -)
        else rs=("$(ratio "$sz" "$o_sz")" "$(ratio "$cs" "$o_cs")" "$(ratio "$at" "$o_at")" "$(ratio "$am" "$o_am")" "$(ratio "$aw" "$o_aw")"); fi
        printf '%-8s %9s %8s%1s %10s %8s %9s %10s %-12s | %6s %7s %7s %7s %7s\n' "$tool" "$(mb "$sz")" "$(sec "$cs")" "$mark" \
            "$(mib "$cm")" "$(sec "$at")" "$(mib "$am")" "$(mb "$aw")" "${R[$pair|$tool|cg]:--}" "${rs[@]}"
    done
    echo "ours   : ${R[$pair|ours|line]:-}; ${R[$pair|ours|layer]:-}; save of the delta image $(sec "$(med "$pair|ours|sv")") s"
    echo "ours   : bytes written during apply = $(awk -v w="$o_aw" -v n="$(stat -c %s "$new")" 'BEGIN{printf "%.1f%%", 100*w/n}') of the new layer/file size (unchanged files are hard links)"
    [ -n "${R[$pair|rdiff|raw]:-}" ] && echo "rdiff  : ${R[$pair|rdiff|raw]} (the table shows its zstd -19 size)"
    for tool in "${TOOLS[@]}"; do
        c=$(med "$pair|$tool|ac"); [ "$c" != nan ] && [ "$c" != 0 ] && echo "$tool: $(mb "$c") MB of the written bytes were cancelled (truncated/deleted before writeback)"
    done
    if [ "$CG_MODE" != none ]; then
        line="cgroup : peak charge incl. page cache MiB / process peak RSS MiB:"
        for tool in "${TOOLS[@]}"; do
            skip_tool "$pair" "$tool" && continue
            line+=" $tool ${R[$pair|$tool|cgpeak]:--}/$(mib "${R[$pair|$tool|cgrss]:-}")"
        done
        echo "$line"
    fi
done
echo
echo "delta MB = the shipped artifact (ours: the saved delta image archive; rdiff: signature+delta, then zstd -19)."
echo "create/apply s and MiB = wall time and peak RSS (largest single process) of the command, medians of $REPS;"
echo "* = fewer runs: peer creates ran $PEER_REPS time(s) (--peer-create-reps), bsdiff on rootfs once."
echo "written MB = write_bytes of the apply (page-cache pages dirtied, i.e. bytes headed to the file system)."
echo "64MiB cgroup = the same apply once more in a fresh 64 MiB memory cgroup ($CG_NOTE)."
echo "Right of | : ratios peer/ours (> 1: we are smaller / faster / leaner / write less)."
echo "Measuring took $((SECONDS - START)) s; loadavg now $(cut -d' ' -f1-3 /proc/loadavg)."
