#!/usr/bin/env bash
# bench-images.sh [--quick] [--reps N] [--corpus DIR] [--no-overlay]
#
# Benchmark (not a test): image LOAD and SAVE of balena-engine side by side
# with podman and skopeo, on the public corpus (../shared/corpus), in one run.
#
# Inputs, built once and cached beside the corpus (CORPUS/bench-inputs/), the
# very same files for every tool:
#   docker-1layer.tar    docker-archive, rootfs-new.tar as one uncompressed layer
#   oci-gzip-1layer.tar  OCI image layout tarred, rootfs-new.tar as one gzip layer
#   docker-2layer.tar    docker-archive, rootfs-old.tar + rootfs-new.tar as 2 layers
#
# For each input and tool, each repetition starts from a fresh empty store:
#   load  balena-engine image load -i X -q | podman load -i X (vfs, and overlay if
#         it works here) | skopeo copy docker-archive:X / oci-archive:X -> oci:DIR
#   save  balena-engine image save -o Y REF | podman save -o Y REF (docker-archive)
#         | skopeo copy oci:DIR -> docker-archive:Y
# measured with GNU time (wall s, peak RSS of that one process), `du -sb` of the
# store after load, and the size of the saved archive.  Median of N runs
# (default 3; --quick = 1).  Ratio columns are peer/ours: > 1 means we are better.
# The page cache is not dropped; the input is read once before measuring so every
# run sees it warm, and `sync` runs (untimed) after every step.  Stores are kept
# until exit (deleting ~10k inodes right before a run slows ext4 inode allocation),
# so free space of about N x tools x uncompressed layer bytes is needed (~9 GB).
#
# Environment: BENCH_CORPUS (corpus dir; default
# ${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/corpus), BENCH_WORKDIR (scratch
# parent; default the corpus dir's parent), BALENA_ENGINE (binary to use instead
# of building target/release/balena-engine).
# Side effects outside the cache: skopeo (as root) updates its blob-info cache in
# /var/lib/containers/cache.  Generated files never go into the repository.
set -euo pipefail

REPS=3
CORPUS=${BENCH_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/corpus}
TRY_OVERLAY=1
while [ $# -gt 0 ]; do
    case $1 in
        --quick) REPS=1 ;;
        --reps) REPS=${2:?--reps N}; shift ;;
        --corpus) CORPUS=${2:?--corpus DIR}; shift ;;
        --no-overlay) TRY_OVERLAY=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[bench] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ prerequisites
bash "$REPO/scripts/setup.sh" bench

# ------------------------------------------------------------------ corpus
mkdir -p "$CORPUS"
CORPUS=$(cd "$CORPUS" && pwd)
case $CORPUS/ in "$REPO"/*) echo "corpus dir must be outside the repository: $CORPUS" >&2; exit 2 ;; esac
if [ ! -s "$CORPUS/rootfs-old.tar" ] || [ ! -s "$CORPUS/rootfs-new.tar" ]; then
    log "corpus missing in $CORPUS, generating (about 2 minutes)"
    "$REPO/../shared/corpus/make-corpus.sh" "$CORPUS" >&2
fi

# ------------------------------------------------------------------ our binary
if [ -n "${BALENA_ENGINE:-}" ]; then
    OURS=$BALENA_ENGINE
else
    log "cargo build --release -p balena-engine"
    (cd "$REPO" && cargo build --release -q -p balena-engine)
    OURS=$REPO/target/release/balena-engine
fi

# ------------------------------------------------------------------ inputs
INPUTS=$CORPUS/bench-inputs
STAMP_WANT="v1 $(stat -c '%n %s %Y' "$CORPUS/rootfs-old.tar" "$CORPUS/rootfs-new.tar" | tr '\n' ' ')"
if [ "$(cat "$INPUTS/STAMP" 2>/dev/null)" != "$STAMP_WANT" ]; then
    log "building benchmark archives in $INPUTS (one-time, ~30 s)"
    rm -rf "$INPUTS"; mkdir -p "$INPUTS"
    python3 - "$CORPUS" "$INPUTS" <<'PY'
# Streams everything in 1 MiB chunks; never holds a layer in memory.
import gzip, hashlib, io, json, os, shutil, sys, tarfile

corpus, out = sys.argv[1], sys.argv[2]
CHUNK = 1 << 20
CREATED = "2025-01-01T00:00:00Z"

def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(CHUNK):
            h.update(b)
    return h.hexdigest()

class HashWriter:
    def __init__(self, f): self.f, self.h, self.n = f, hashlib.sha256(), 0
    def write(self, b):
        self.h.update(b); self.n += len(b); return self.f.write(b)
    def flush(self): self.f.flush()

def gzip_file(src, dst):
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        hw = HashWriter(fo)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hw, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(fi, gz, CHUNK)
    return hw.h.hexdigest(), hw.n

def info(name, size):
    ti = tarfile.TarInfo(name); ti.size = size; ti.mtime = 0; ti.mode = 0o644
    ti.uname = ti.gname = "root"
    return ti

def add_bytes(t, name, data): t.addfile(info(name, len(data)), io.BytesIO(data))

def add_file(t, name, path):
    with open(path, "rb") as f:
        t.addfile(info(name, os.path.getsize(path)), f)

def config(diff_ids, names):
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": CREATED,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": [{"created": CREATED, "created_by": "ADD " + n} for n in names],
    }, separators=(",", ":")).encode()

def write_tar(path, fill):
    tmp = path + ".part"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as t:
        fill(t)
    os.rename(tmp, path)

def docker_archive(path, tag, layers):   # manifest + config first, then the layers
    ids = [sha_file(p) for p in layers]
    cfg = config(ids, [os.path.basename(p) for p in layers])
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [tag],
                            "Layers": [i + "/layer.tar" for i in ids]}]).encode()
    def fill(t):
        add_bytes(t, "manifest.json", manifest)
        add_bytes(t, cfg_name, cfg)
        for i, p in zip(ids, layers):
            add_file(t, i + "/layer.tar", p)
    write_tar(path, fill)
    return ids

def oci_archive(path, name, tag, layer, diff_id):
    gz = path + ".layer.gz"
    gz_hex, gz_size = gzip_file(layer, gz)
    cfg = config([diff_id], [os.path.basename(layer)])
    desc = lambda mt, data: {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                             "size": len(data)}
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": desc("application/vnd.oci.image.config.v1+json", cfg),
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": "sha256:" + gz_hex, "size": gz_size}]}).encode()
    md = desc("application/vnd.oci.image.manifest.v1+json", man)
    md["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [md]}).encode()
    blob = lambda data: "blobs/sha256/" + hashlib.sha256(data).hexdigest()
    def fill(t):
        add_bytes(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(t, "index.json", index)
        add_bytes(t, blob(man), man)
        add_bytes(t, blob(cfg), cfg)
        add_file(t, "blobs/sha256/" + gz_hex, gz)
    write_tar(path, fill)
    os.unlink(gz)

old, new = os.path.join(corpus, "rootfs-old.tar"), os.path.join(corpus, "rootfs-new.tar")
(new_id,) = docker_archive(os.path.join(out, "docker-1layer.tar"), "bench/rootfs:new", [new])
oci_archive(os.path.join(out, "oci-gzip-1layer.tar"), "docker.io/bench/rootfs:new-gz", "new-gz", new, new_id)
docker_archive(os.path.join(out, "docker-2layer.tar"), "bench/rootfs:two", [old, new])
PY
    echo "$STAMP_WANT" >"$INPUTS/STAMP"
fi
# name | file | skopeo transport | uncompressed layer bytes
INPUT_LIST=(
    "docker-1layer|$INPUTS/docker-1layer.tar|docker-archive|$(stat -c %s "$CORPUS/rootfs-new.tar")"
    "oci-gzip-1layer|$INPUTS/oci-gzip-1layer.tar|oci-archive|$(stat -c %s "$CORPUS/rootfs-new.tar")"
    "docker-2layer|$INPUTS/docker-2layer.tar|docker-archive|$(( $(stat -c %s "$CORPUS/rootfs-old.tar") + $(stat -c %s "$CORPUS/rootfs-new.tar") ))"
)

# ------------------------------------------------------------------ scratch space
WORKPARENT=${BENCH_WORKDIR:-$(dirname "$CORPUS")}
mkdir -p "$WORKPARENT"
WORK=$(mktemp -d "$WORKPARENT/bench-work.XXXXXX")
# podman's overlay driver may leave mounts below its root: unmount before rm.
unmount_under() {
    local m
    { findmnt -rn -o TARGET | grep -F "$1/" | sort -r || true; } | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
# podman refuses a --runroot longer than 50 characters: keep those short, in /var/tmp.
RUNBASE=$(mktemp -d /var/tmp/bench-rr.XXXXXX)
cleanup() { unmount_under "$WORK"; unmount_under "$RUNBASE"; rm -rf "$WORK" "$RUNBASE"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ measuring
# timed LOG CMD...  -> sets T_SEC, T_KIB; on failure shows the tool's output and aborts
timed() {
    local logf=$1; shift
    if ! /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >"$logf" 2>&1; then
        echo "FAILED: $*" >&2; tail -n 20 "$logf" >&2; exit 1
    fi
    read -r T_SEC T_KIB < <(tail -n 1 "$WORK/time.out")
    sync
}
declare -A R    # R[input|op|tool|metric] = space-separated values, one per repetition
rec() { R[$1]="${R[$1]:-}$2 "; }

podman_args() {  # podman_args DIR DRIVER
    PODMAN=(podman --root "$1/root" --runroot "$RUNBASE/${1##*/}" --tmpdir "$1/tmp" --storage-driver "$2"
            --cgroup-manager cgroupfs --events-backend file --network-config-dir "$1/net")
}

# bench_one INPUT_NAME FILE SKOPEO_TRANSPORT TOOL
bench_one() {
    local in=$1 file=$2 tr=$3 tool=$4 d ref
    d=$(mktemp -d "$WORK/run.XXXXXX")
    mkdir -p "$d/tmp"
    case $tool in
        ours)
            timed "$d/load.log" "$OURS" --data-root "$d/store" image load -i "$file" -q
            rec "$in|load|$tool|t" "$T_SEC"; rec "$in|load|$tool|m" "$T_KIB"
            rec "$in|load|$tool|s" "$(du -sb "$d/store" | cut -f1)"
            ref=$(sed -n 's/^Loaded image: //p; s/^Loaded image ID: //p' "$d/load.log" | head -n 1)
            timed "$d/save.log" "$OURS" --data-root "$d/store" image save -o "$d/out.tar" "$ref"
            ;;
        podman-*)
            podman_args "$d" "${tool#podman-}"
            TMPDIR=$d/tmp timed "$d/load.log" "${PODMAN[@]}" load -q -i "$file"
            rec "$in|load|$tool|t" "$T_SEC"; rec "$in|load|$tool|m" "$T_KIB"
            rec "$in|load|$tool|s" "$(du -sb "$d/root" | cut -f1)"
            ref=$(sed -n 's/^Loaded image[^:]*: //p' "$d/load.log" | head -n 1 | cut -d, -f1)
            [ -n "$ref" ] || ref=$("${PODMAN[@]}" images -q | head -n 1)
            TMPDIR=$d/tmp timed "$d/save.log" "${PODMAN[@]}" save -q --format docker-archive -o "$d/out.tar" "$ref"
            ;;
        skopeo)
            timed "$d/load.log" skopeo --insecure-policy --tmpdir "$d/tmp" copy -q "$tr:$file" "oci:$d/oci:bench"
            rec "$in|load|$tool|t" "$T_SEC"; rec "$in|load|$tool|m" "$T_KIB"
            rec "$in|load|$tool|s" "$(du -sb "$d/oci" | cut -f1)"
            timed "$d/save.log" skopeo --insecure-policy --tmpdir "$d/tmp" copy -q "oci:$d/oci:bench" \
                "docker-archive:$d/out.tar:bench/rootfs:saved"
            ;;
    esac
    rec "$in|save|$tool|t" "$T_SEC"; rec "$in|save|$tool|m" "$T_KIB"
    rec "$in|save|$tool|s" "$(stat -c %s "$d/out.tar")"
    rm -f "$d/out.tar"; sync
    # The store stays until the very end: on ext4, creating ~10k inodes within a minute of deleting ~10k
    # (rm -rf of the previous store) is several times slower (find_inode_bit -> recently_deleted scans),
    # which would bill whichever tool runs next for the harness's own cleanup.
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{if(NR==0){print "nan"} else if(NR%2){print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }
med() { printf '%s' "${R[$1]:-}" | median; }

# ------------------------------------------------------------------ tools
TOOLS=(ours podman-vfs)
if [ "$TRY_OVERLAY" = 1 ]; then
    d=$(mktemp -d "$WORK/probe.XXXXXX"); podman_args "$d" overlay
    if "${PODMAN[@]}" info >"$d.log" 2>&1 \
        && [ "$("${PODMAN[@]}" info --format '{{.Store.GraphDriverName}}' 2>/dev/null)" = overlay ]; then
        TOOLS+=(podman-overlay)
    else
        log "podman overlay storage does not work here ($(tail -n 1 "$d.log")); vfs only"
    fi
    "${PODMAN[@]}" system reset -f >/dev/null 2>&1 || true
    unmount_under "$d"
    rm -rf "$d"
fi
TOOLS+=(skopeo)

# ------------------------------------------------------------------ header
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "== balena-engine image load/save benchmark  ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo "machine : $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "scratch : $WORKPARENT ($(df -PT "$WORKPARENT" | awk 'NR==2{print $2}'))"
echo "ours    : $("$OURS" --version 2>&1 | head -n 1)  ($OURS, git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty'))"
echo "peers   : $(podman --version), $(skopeo --version)"
echo "tools   : ${TOOLS[*]}   repetitions: $REPS (median shown)"
echo "corpus  : $CORPUS"
echo "loadavg : $(cut -d' ' -f1-3 /proc/loadavg) at start (other work on the machine skews wall times)"

# ------------------------------------------------------------------ run
# Stores are only removed at exit (see bench_one): make sure they fit.
need=0
for spec in "${INPUT_LIST[@]}"; do IFS='|' read -r _ _ _ raw <<<"$spec"; need=$((need + raw * ${#TOOLS[@]} * REPS)); done
need=$((need * 11 / 10 + (1 << 30)))
avail=$(( $(df -Pk "$WORK" | awk 'NR==2{print $4}') * 1024 ))
[ "$avail" -ge "$need" ] || { echo "need about $((need >> 30)) GiB free in $WORKPARENT, have $((avail >> 30)) GiB (set BENCH_WORKDIR)" >&2; exit 1; }
START=$SECONDS
for spec in "${INPUT_LIST[@]}"; do
    IFS='|' read -r in file tr _ <<<"$spec"
    cat "$file" >/dev/null   # warm the page cache for everyone
    for ((rep = 1; rep <= REPS; rep++)); do
        for tool in "${TOOLS[@]}"; do
            log "$in  rep $rep/$REPS  $tool"
            bench_one "$in" "$file" "$tr" "$tool"
        done
    done
done

# ------------------------------------------------------------------ report
ratio() { awk -v p="$1" -v o="$2" 'BEGIN{ if (o > 0) printf "%.2f", p / o; else printf "-" }'; }
for spec in "${INPUT_LIST[@]}"; do
    IFS='|' read -r in file _ raw <<<"$spec"
    echo
    printf '## %s  (%s, %.1f MB; uncompressed layers %.1f MB)\n' "$in" "$(basename "$file")" \
        "$(awk -v b="$(stat -c %s "$file")" 'BEGIN{print b/1e6}')" "$(awk -v b="$raw" 'BEGIN{print b/1e6}')"
    printf '%-5s %-15s %8s %10s %10s %12s %12s\n' op tool "time s" "RSS MiB" "size MB" "time p/ours" "RSS p/ours"
    for op in load save; do
        ot=$(med "$in|$op|ours|t"); om=$(med "$in|$op|ours|m")
        for tool in "${TOOLS[@]}"; do
            t=$(med "$in|$op|$tool|t"); m=$(med "$in|$op|$tool|m"); s=$(med "$in|$op|$tool|s")
            if [ "$tool" = ours ]; then rt="(ours)"; rm_="(ours)"; else rt=$(ratio "$t" "$ot"); rm_=$(ratio "$m" "$om"); fi
            printf '%-5s %-15s %8.2f %10.1f %10.1f %12s %12s\n' "$op" "$tool" "$t" \
                "$(awk -v k="$m" 'BEGIN{print k/1024}')" "$(awk -v b="$s" 'BEGIN{print b/1e6}')" "$rt" "$rm_"
        done
    done
    s=$(med "$in|load|ours|s"); m=$(med "$in|load|ours|m")
    awk -v s="$s" -v r="$raw" -v m="$m" 'BEGIN{
        q = s / r; k = m / 1024
        printf "ours: data root / uncompressed layer bytes = %.3f (target <= 1.1: %s);  load peak RSS = %.1f MiB (target <= 32: %s)\n",
            q, (q <= 1.1 ? "ok" : "MISSED"), k, (k <= 32 ? "ok" : "MISSED") }'
done
echo
echo "size MB: load = du -sb of the store after load (ours: data root; podman: --root; skopeo: oci dir);"
echo "         save = size of the written docker-archive.  RSS is the measured process only."
echo "p/ours = peer / ours (> 1: we are faster / smaller).  Measuring took $((SECONDS - START)) s; loadavg now $(cut -d' ' -f1-3 /proc/loadavg)."
