#!/usr/bin/env bash
# bench-pull.sh [--reps N] [--corpus DIR]
#
# Benchmark (not a test): registry pull of the public corpus image (rootfs-new.tar as one layer, ~208 MB
# uncompressed, gzip in the registry), side by side, in one run:
#   ours-daemon    `docker pull` through balena-engined (release build)
#   ours-direct    `balena-engine --data-root D pull` (no daemon)
#   dockerd        `docker pull` through Debian's dockerd + containerd (package docker.io), started by hand
#                  as bench-daemon.sh does, with --insecure-registry
#   skopeo         `skopeo copy docker://… dir:D` (stores the compressed blob; unpacks nothing)
#   podman         `podman pull --tls-verify=false` with a temporary --root/--runroot
# from Debian's docker-registry (package docker-registry, unpacked as the tests' fixture does, never
# installed: its postinst would start the packaged service) on 127.0.0.1 with its own configuration, filled
# with skopeo. Every pull starts from an empty store; the registry's blob is in the page cache for all.
# For each: wall time of the pull (and until `sync` returns), peak RSS, bytes written, store size:
#   peak RSS  daemons: VmHWM of the daemon process(es) after the pull (reset with clear_refs just before),
#             minus the idle VmRSS, plus the largest helper process seen (dockerd's untar re-exec);
#             CLI tools: GNU time's max RSS (the largest single process of the tree).
#   written   write_bytes of /proc/PID/io: bytes the process tree dirtied for writing to storage (counted when
#             written into the page cache, so writeback timing does not matter). Daemons: the delta over the
#             daemon's live processes (dockerd: dockerd + containerd); helpers they reaped are folded into the
#             parent's counters by the kernel. CLI tools: the delta of this harness's own counters, into
#             which the kernel folds every reaped descendant. "net" subtracts cancelled_write_bytes
#             (dirty data truncated before writeback, e.g. a temp file deleted in time).
# Then a delta pull: our engine creates a delta between rootfs-old and rootfs-new
# (`image delta`), pushes it (`balena-engine --data-root S push`), and pulls it into a store that holds
# only the old image, through the test kit's fault-proxy in pass-through mode (it counts the response body
# bytes it forwards); printed beside the delta image's blob sizes and a full pull through the same proxy.
# Ratio columns are peer/ours (ours = ours-daemon): > 1 means we are better. Medians of N runs (default 3).
# A peer that cannot run here is reported as such and skipped. Scratch lives beside the corpus cache, never
# in the repository.
set -euo pipefail

REPS=3
CORPUS=${BENCH_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/balena-engine/corpus}
while [ $# -gt 0 ]; do
    case $1 in
        --reps) REPS=${2:?--reps N}; shift ;;
        --corpus) CORPUS=${2:?--corpus DIR}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[bench] %s\n' "$*" >&2; }
. "$REPO/scripts/lib/apt.sh"
bash "$REPO/scripts/setup.sh" bench
ensure_pkgs docker.io skopeo podman time

log "cargo build --release (balena-engined, balena-engine, fault-proxy)"
(cd "$REPO" && cargo build --release -q -p balena-engined -p balena-engine \
    && cargo build --release -q -p balena-engine-testkit --bin fault-proxy)

mkdir -p "$CORPUS"
CORPUS=$(cd "$CORPUS" && pwd)
case $CORPUS/ in "$REPO"/*) echo "corpus dir must be outside the repository: $CORPUS" >&2; exit 2 ;; esac
if [ ! -s "$CORPUS/rootfs-old.tar" ] || [ ! -s "$CORPUS/rootfs-new.tar" ]; then
    log "corpus missing in $CORPUS, generating (about 2 minutes)"
    bash "$REPO/../shared/corpus/make-corpus.sh" "$CORPUS" >&2
fi

# The registry: Debian's package unpacked into the same cache the tests use (testkit::registry), under its lock.
if [ "$(id -u)" = 0 ]; then REGCACHE=/var/cache/balena-engine-test/registry; else REGCACHE=$HOME/.cache/balena-engine/registry; fi
REGBIN=$REGCACHE/root/usr/bin/docker-registry
if [ ! -x "$REGBIN" ]; then
    mkdir -p "$REGCACHE"
    (
        flock 9
        if [ ! -x "$REGBIN" ]; then
            log "unpacking Debian's docker-registry into $REGCACHE"
            rm -f "$REGCACHE"/*.deb
            (cd "$REGCACHE" && { apt-get download -q docker-registry >/dev/null 2>&1 \
                || { apt-get update -qq >/dev/null && apt-get download -q docker-registry >/dev/null; }; })
            rm -rf "$REGCACHE/root.tmp"
            dpkg-deb -x "$REGCACHE"/docker-registry_*.deb "$REGCACHE/root.tmp"
            rm -rf "$REGCACHE/root"; mv "$REGCACHE/root.tmp" "$REGCACHE/root"; rm -f "$REGCACHE"/*.deb
        fi
    ) 9>"$REGCACHE/install.lock"
fi

WORKPARENT=${BENCH_WORKDIR:-$(dirname "$CORPUS")}
WORK=$(realpath "$(mktemp -d "$WORKPARENT/bench-pull.XXXXXX")")
# podman refuses a --runroot longer than 50 characters: keep it short, in /var/tmp.
RUNBASE=$(mktemp -d /var/tmp/bench-rr.XXXXXX)
unmount_under() {
    local m
    { findmnt -rn -o TARGET | grep -F "$1/" | sort -r || true; } | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
cleanup() { unmount_under "$WORK"; unmount_under "$RUNBASE"; rm -rf "$WORK" "$RUNBASE"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 - "$REPO" "$CORPUS" "$WORK" "$REPS" "$REGBIN" "$RUNBASE" <<'PY'
import hashlib, io, json, os, shutil, signal, socket, statistics, subprocess, sys, tarfile, time, urllib.request

repo, corpus, work, reps, regbin, runbase = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
docker = shutil.which("docker", path="/usr/local/bin:/usr/bin") or "docker"
ours_cli = os.path.join(repo, "target/release/balena-engine")
ours_daemon = os.path.join(repo, "target/release/balena-engined")
proxy_bin = os.path.join(repo, "target/release/fault-proxy")
MiB = 1024 * 1024
started = []   # every long-lived process this script starts: stopped by PID at the end

def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()

def docker_archive(path, tag, layer_path):
    """A docker-archive with one uncompressed layer (the corpus tar); returns the image ID."""
    digest = sha_file(layer_path)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2025-01-01T00:00:00Z",
                      "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest]}}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    with tarfile.open(path, "w") as t:
        for name, data in [("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": [tag],
                                                          "Layers": [digest + "/layer.tar"]}]).encode()),
                           (cid + ".json", cfg)]:
            ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
        t.add(layer_path, arcname=digest + "/layer.tar")
    return "sha256:" + cid

def proc_status(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0

def proc_io(pid="self"):
    d = {}
    try:
        for line in open(f"/proc/{pid}/io"):
            k, v = line.split(":")
            d[k.strip()] = int(v)
    except OSError:
        pass
    return d.get("write_bytes", 0), d.get("cancelled_write_bytes", 0)

def children(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            kids = open(f"/proc/{pid}/task/{t}/children").read().split()
        except OSError:
            continue
        for c in kids:
            out.append(int(c)); out += children(int(c))
    return out

def du(path):
    r = subprocess.run(["du", "-sb", path], capture_output=True, text=True)
    return int(r.stdout.split()[0]) if r.returncode == 0 and r.stdout else 0

def sync():
    subprocess.run(["sync"])

def start(argv, logname, **kw):
    f = open(os.path.join(work, logname), "w")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, **kw)
    started.append(p)
    return p

def stop(p, timeout=30):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()

def wait_http(url, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url}")

# ---------------------------------------------------------------------------------------------- inputs
new_layer, old_layer = os.path.join(corpus, "rootfs-new.tar"), os.path.join(corpus, "rootfs-old.tar")
raw = os.path.getsize(new_layer)
# A floor for "bytes written" as the kernel counts them (whole pages dirtied): every regular file's content
# rounded up to 4 KiB.
with tarfile.open(new_layer) as t:
    members = t.getmembers()
paged = sum((m.size + 4095) // 4096 * 4096 for m in members if m.isreg())
file_bytes = sum(m.size for m in members if m.isreg())
log("writing docker-archives of rootfs-new and rootfs-old (one layer each)")
new_tar, old_tar = os.path.join(work, "new.tar"), os.path.join(work, "old.tar")
new_id = docker_archive(new_tar, "bench/app:new", new_layer)
old_id = docker_archive(old_tar, "bench/app:old", old_layer)

# The reference for `written`: GNU tar extracting the same layer (no pull, no store metadata).
tar_dir = os.path.join(work, "tar-x")
os.makedirs(tar_dir)
io0 = proc_io()
subprocess.run(["tar", "-xf", new_layer, "-C", tar_dir], check=True)
tar_written = proc_io()[0] - io0[0]
# Nothing is deleted before the end: on ext4, creating ~10k inodes right after deleting ~10k is several times
# slower, which would bill whichever tool runs next for the harness's own cleanup (see bench-images.sh).

# ---------------------------------------------------------------------------------------------- registry
port = free_port()
reg_addr = f"127.0.0.1:{port}"
os.makedirs(os.path.join(work, "registry/storage"))
with open(os.path.join(work, "registry/config.yml"), "w") as f:
    f.write(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {work}/registry/storage
  delete:
    enabled: true
http:
  addr: {reg_addr}
  secret: balena-engine-bench
""")
env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
reg = start([regbin, "serve", os.path.join(work, "registry/config.yml")], "registry.log", env=env, cwd=work)
wait_http(f"http://{reg_addr}/v2/", reg, "docker-registry")
log(f"registry on {reg_addr}; pushing the image with skopeo (gzip)")
t = time.perf_counter()
subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2",
                f"docker-archive:{new_tar}", f"docker://{reg_addr}/app:1"], check=True)
push_s = time.perf_counter() - t

def manifest(repo_, ref):
    req = urllib.request.Request(f"http://{reg_addr}/v2/{repo_}/manifests/{ref}", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    body = urllib.request.urlopen(req).read()
    return json.loads(body), len(body)

man, man_size = manifest("app", "1")
blob_digest = man["layers"][0]["digest"]
compressed = man["layers"][0]["size"]
blob_file = os.path.join(work, "registry/storage/docker/registry/v2/blobs/sha256", blob_digest[7:9],
                         blob_digest[7:], "data")
def warm():
    with open(blob_file, "rb") as f:
        while f.read(1 << 20):
            pass
ref = f"{reg_addr}/app:1"

# ---------------------------------------------------------------------------------------------- measuring
def wait_socket(sock, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if os.path.exists(sock) and subprocess.run([docker, "-H", "unix://" + sock, "version"],
                                                   capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up")

class Daemon:
    def __init__(self, name, argv, sock, helper_names, root):
        self.name, self.sock, self.helper_names, self.root = name, sock, helper_names, root
        self.proc = start(argv, name + ".log")
        wait_socket(sock, self.proc, name)

    def docker(self, *args):
        r = subprocess.run([docker, "-H", "unix://" + self.sock, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def pids(self):
        pids = [self.proc.pid]
        for c in children(self.proc.pid):
            try:
                if open(f"/proc/{c}/comm").read().strip() in self.helper_names:
                    pids.append(c)
            except OSError:
                pass
        return pids

def measure_daemon(d):
    d.docker("images")
    time.sleep(1)
    pids = d.pids()
    idle = sum(proc_status(p, "VmRSS") for p in pids)
    for p in pids:
        with open(f"/proc/{p}/clear_refs", "w") as f:
            f.write("5")   # resets VmHWM to the current RSS
    io0 = [proc_io(p) for p in pids]
    warm(); sync()
    helper = 0
    t = time.perf_counter()
    c = subprocess.Popen([docker, "-H", "unix://" + d.sock, "pull", ref], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    while c.poll() is None:
        for k in children(d.proc.pid):
            if k not in pids:
                helper = max(helper, proc_status(k, "VmRSS"))
        time.sleep(0.02)
    wall = time.perf_counter() - t
    out = c.stdout.read()
    io1 = [proc_io(p) for p in pids]
    peak = sum(proc_status(p, "VmHWM") for p in pids)
    sync()
    wall_sync = time.perf_counter() - t
    if c.returncode != 0 or "Downloaded newer image" not in out:
        raise RuntimeError(f"{d.name}: docker pull failed:\n{out}")
    got = d.docker("image", "inspect", "--format", "{{.Id}}", ref).strip()
    if got != new_id:
        raise RuntimeError(f"{d.name}: pulled image ID {got}, expected {new_id}")
    written = sum(b[0] - a[0] for a, b in zip(io0, io1))
    cancelled = sum(b[1] - a[1] for a, b in zip(io0, io1))
    return {"t": wall, "ts": wall_sync, "idle": idle, "peak": peak + helper, "above": peak + helper - idle,
            "helper": helper, "w": written, "net": written - cancelled, "store": du(d.root)}

def measure_cli(argv, root, check, env=None):
    """argv under GNU time; bytes written = the delta of this process's own io counters (reaped tree)."""
    tf = os.path.join(work, "time.out")
    warm(); sync()
    io0 = proc_io()
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tf, *argv], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    io1 = proc_io()
    sync()
    wall_sync = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    check(r.stdout + r.stderr)
    maxrss = int(open(tf).read().split()[-1]) * 1024
    return {"t": wall, "ts": wall_sync, "idle": 0, "peak": maxrss, "above": maxrss, "helper": 0,
            "w": io1[0] - io0[0], "net": (io1[0] - io0[0]) - (io1[1] - io0[1]), "store": du(root)}

runs = 0
def fresh(name):
    """A scratch dir for one run, and a short one for its sockets and exec root (unix socket paths are
    limited to 108 bytes, containerd's own included)."""
    global runs
    runs += 1
    d = os.path.join(work, "runs", f"{name}-{runs}")
    short = os.path.join(runbase, str(runs))
    os.makedirs(d); os.makedirs(short)
    return d, short

def unmount_under(d):
    mounts = [l.split()[1] for l in open("/proc/self/mounts")]
    for m in sorted((m for m in mounts if m.startswith(d + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)

def run_ours_daemon():
    d, x = fresh("ours-daemon")
    e = Daemon("ours-daemon", [ours_daemon, "-H", f"unix://{x}/sock", "--data-root", f"{d}/root",
                               "--exec-root", f"{x}/exec", "--pidfile", f"{x}/pid"], f"{x}/sock", set(), f"{d}/root")
    try:
        return measure_daemon(e)
    finally:
        stop(e.proc)

def dockerd_argv(d, x):
    return ["dockerd", "--data-root", f"{d}/root", "-H", f"unix://{x}/sock", "--exec-root", f"{x}/exec",
            "--pidfile", f"{x}/pid", "--iptables=false", "--bridge=none", "--insecure-registry", reg_addr]

def run_dockerd():
    d, x = fresh("dockerd")
    e = Daemon("dockerd", dockerd_argv(d, x), f"{x}/sock", {"containerd"}, f"{d}/root")
    try:
        return measure_daemon(e)
    finally:
        stop(e.proc)
        unmount_under(d); unmount_under(x)

def run_ours_direct():
    d, _ = fresh("ours-direct")
    def check(out):
        if "Downloaded newer image" not in out:
            raise RuntimeError(f"ours-direct: {out}")
    r = measure_cli([ours_cli, "--data-root", f"{d}/root", "pull", ref], f"{d}/root", check)
    got = subprocess.run([ours_cli, "--data-root", f"{d}/root", "image", "inspect", "--format", "{{.Id}}", ref],
                         capture_output=True, text=True).stdout.strip()
    if got != new_id:
        raise RuntimeError(f"ours-direct: pulled image ID {got!r}, expected {new_id}")
    return r

def run_skopeo():
    d, _ = fresh("skopeo")
    os.makedirs(f"{d}/tmp")
    r = measure_cli(["skopeo", "--insecure-policy", "--tmpdir", f"{d}/tmp", "copy", "-q", "--src-tls-verify=false",
                     f"docker://{ref}", f"dir:{d}/dir"], f"{d}/dir", lambda out: None)
    if not os.path.exists(f"{d}/dir/manifest.json"):
        raise RuntimeError("skopeo: no manifest.json")
    return r

podman_driver = None
def podman_argv(d, x, driver):
    return ["podman", "--root", f"{d}/root", "--runroot", f"{x}/rr", "--tmpdir", f"{d}/tmp", "--storage-driver", driver,
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--network-config-dir", f"{d}/net"]

def run_podman():
    d, x = fresh("podman")
    os.makedirs(f"{d}/tmp")
    base = podman_argv(d, x, podman_driver)
    env = dict(os.environ, TMPDIR=f"{d}/tmp")
    r = measure_cli([*base, "pull", "-q", "--tls-verify=false", ref], f"{d}/root", lambda out: None, env=env)
    got = subprocess.run([*base, "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True,
                         env=env).stdout.strip()
    unmount_under(d); unmount_under(x)   # the store stays until the end (see above)
    if "sha256:" + got != new_id and got != new_id:
        raise RuntimeError(f"podman: image ID {got!r}, expected {new_id}")
    return r

def probe_podman():
    global podman_driver
    if not shutil.which("podman"):
        return "podman not installed"
    for driver in ["overlay", "vfs"]:
        d, x = fresh("podman-probe")
        r = subprocess.run([*podman_argv(d, x, driver), "info", "--format", "{{.Store.GraphDriverName}}"],
                           capture_output=True, text=True)
        subprocess.run([*podman_argv(d, x, driver), "system", "reset", "-f"], capture_output=True)
        unmount_under(d); unmount_under(x)
        if r.returncode == 0 and r.stdout.strip() == driver:
            podman_driver = driver
            return None
    return f"podman storage does not work here: {r.stderr.strip()[-200:]}"

def probe_dockerd():
    if not shutil.which("dockerd"):
        return "dockerd not installed"
    d, x = fresh("dockerd-probe")
    try:
        e = Daemon("dockerd-probe", dockerd_argv(d, x), f"{x}/sock", {"containerd"}, f"{d}/root")
    except Exception as err:
        unmount_under(d); unmount_under(x)
        tail = open(os.path.join(work, "dockerd-probe.log")).read().strip().splitlines()[-3:]
        return f"dockerd could not start here: {err}: {' | '.join(tail)}"
    stop(e.proc)
    unmount_under(d); unmount_under(x)
    return None

tools = [("ours-daemon", run_ours_daemon), ("ours-direct", run_ours_direct), ("dockerd", run_dockerd),
         ("skopeo", run_skopeo), ("podman", run_podman)]
skipped = {}
for name, probe in [("dockerd", probe_dockerd), ("podman", probe_podman)]:
    why = probe()
    if why:
        skipped[name] = why
        log(f"{name}: {why}")

results = {}
start_s = time.time()
try:
    for rep in range(1, reps + 1):
        # The order rotates from one repetition to the next: no tool always runs first or after the same one.
        for name, fn in tools[rep - 1:] + tools[:rep - 1]:
            if name in skipped:
                continue
            log(f"pull  rep {rep}/{reps}  {name}")
            try:
                results.setdefault(name, []).append(fn())
            except Exception as err:
                skipped[name] = f"failed: {err}"
                log(f"{name}: {err}")
                results.pop(name, None)
            unmount_under(os.path.join(work, "runs")); unmount_under(runbase)

    # ------------------------------------------------------------------------------------------ delta pull
    log("delta: loading old and new into a source store, creating and pushing the delta")
    S = os.path.join(work, "delta-src")
    def be(root, *args, **kw):
        r = subprocess.run([ours_cli, "--data-root", root, *args], capture_output=True, text=True, **kw)
        if r.returncode != 0:
            raise RuntimeError(f"balena-engine {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout + r.stderr
    be(S, "image", "load", "-q", "-i", old_tar)
    be(S, "image", "load", "-q", "-i", new_tar)
    t = time.perf_counter()
    delta_out = be(S, "image", "delta", "bench/app:old", "bench/app:new", "-t", "app:delta")
    delta_create_s = time.perf_counter() - t
    be(S, "image", "tag", "app:delta", f"{reg_addr}/app:delta")
    t = time.perf_counter()
    be(S, "push", f"{reg_addr}/app:delta")
    delta_push_s = time.perf_counter() - t
    dman, dman_size = manifest("app", "delta")
    delta_layers = sum(l["size"] for l in dman["layers"])
    delta_config = dman["config"]["size"]

    pport = free_port()
    stats = os.path.join(work, "proxy.stats")
    proxy = start([proxy_bin, "--listen", f"127.0.0.1:{pport}", "--upstream", reg_addr, "--stats-file", stats],
                  "fault-proxy.log")
    wait_http(f"http://127.0.0.1:{pport}/v2/", proxy, "fault-proxy")
    def forwarded():
        time.sleep(0.3)   # the stats file is rewritten every 100 ms
        try:
            return int(open(stats).read())
        except (OSError, ValueError):
            return 0

    def pull_via_proxy(root, name):
        b0 = forwarded()
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", os.path.join(work, "time.out"), ours_cli,
                            "--data-root", root, "pull", f"127.0.0.1:{pport}/{name}"], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"pull {name} through the proxy: {r.stdout}{r.stderr}")
        rss = int(open(os.path.join(work, "time.out")).read().split()[-1]) * 1024
        got = subprocess.run([ours_cli, "--data-root", root, "image", "inspect", "--format", "{{.Id}}",
                              f"127.0.0.1:{pport}/{name}"], capture_output=True, text=True).stdout.strip()
        return forwarded() - b0, wall, rss, got

    T = os.path.join(work, "delta-dst")
    be(T, "image", "load", "-q", "-i", old_tar)
    delta_bytes, delta_wall, delta_rss, delta_got = pull_via_proxy(T, "app:delta")
    full_bytes, full_wall, full_rss, full_got = pull_via_proxy(os.path.join(work, "full-dst"), "app:1")
    stop(proxy)
    delta_ok = delta_got == new_id
finally:
    for p in started:
        stop(p)

# ---------------------------------------------------------------------------------------------- report
def med(name, k):
    return statistics.median(r[k] for r in results[name])

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
git = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "-C", repo, "diff", "--quiet", "HEAD"]).returncode != 0
def version(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"

print(f"== registry pull benchmark  ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})")
print(f"machine : {os.cpu_count()} CPUs, {cpu}, kernel {os.uname().release}; loadavg {open('/proc/loadavg').read().split()[0:3]}")
print(f"ours    : {version([ours_cli, '--version'])} (git {git}{'+dirty' if dirty else ''})")
print(f"peers   : {version(['dockerd', '--version'])}; {version(['skopeo', '--version'])}; "
      f"{version(['podman', '--version'])} ({podman_driver or '-'} storage); "
      f"docker-registry {version([regbin, '--version']).split()[-1]} (Debian)")
print(f"image   : rootfs-new.tar as one layer: {raw/1e6:.1f} MB uncompressed, {compressed/1e6:.1f} MB gzip blob "
      f"(skopeo push {push_s:.1f} s); repetitions: {reps} (median shown)")
print(f"          {len(members):,} entries, {file_bytes/1e6:.1f} MB of file content, {paged/1e6:.1f} MB rounded up to "
      f"4 KiB pages ({paged/raw:.3f}x the layer: the floor of `written` for a store that unpacks files);")
print(f"          GNU `tar -x` of the layer alone writes {tar_written/1e6:.1f} MB ({tar_written/raw:.3f}x)")
print()
hdr = (f"{'tool':<12} {'pull s':>7} {'+sync s':>8} {'MB/s':>6} {'idle MiB':>9} {'peak MiB':>9} {'above idle':>11} "
       f"{'written MB':>11} {'net MB':>7} {'written/raw':>12} {'store MB':>9} {'time p/o':>9} {'+sync p/o':>10} "
       f"{'RSS p/o':>8} {'write p/o':>10}  pull s of each run")
print(hdr)
o = "ours-daemon"
for name, _ in tools:
    if name not in results:
        print(f"{name:<12} skipped: {skipped.get(name, '?')}")
        continue
    t, ts, idle, peak, above = med(name, "t"), med(name, "ts"), med(name, "idle"), med(name, "peak"), med(name, "above")
    w, net, store = med(name, "w"), med(name, "net"), med(name, "store")
    if name == o or o not in results:
        rt = rs = rr = rw = "(ours)" if name == o else "-"
    else:
        rt = f"{t / med(o, 't'):.2f}"
        rs = f"{ts / med(o, 'ts'):.2f}"
        rr = f"{above / med(o, 'above'):.2f}"
        rw = f"{w / med(o, 'w'):.2f}" if med(o, "w") > 0 else "-"
    each = " ".join(f"{r['t']:.2f}" for r in results[name])
    print(f"{name:<12} {t:>7.2f} {ts:>8.2f} {raw/1e6/t:>6.0f} {idle/MiB:>9.1f} {peak/MiB:>9.1f} {above/MiB:>11.1f} "
          f"{w/1e6:>11.1f} {net/1e6:>7.1f} {w/raw:>12.3f} {store/1e6:>9.1f} {rt:>9} {rs:>10} {rr:>8} {rw:>10}  {each}")
for name, why in skipped.items():
    if name in results:
        continue
print()
print("pull s: wall time of the pull command (docker CLI / the tool); +sync s: until `sync` after it returned.")
print("MB/s: uncompressed layer bytes / pull s.  peak MiB: daemons = VmHWM of the daemon process(es) during the pull")
print("(+ the largest helper process seen: dockerd's untar), CLI tools = GNU time's max RSS; above idle = peak minus")
print("the daemon's RSS before the pull (CLI tools: the whole peak).  written MB = write_bytes of /proc/PID/io of the")
print("process tree (bytes dirtied for storage); net = minus cancelled_write_bytes.  store MB = du -sb of the data root.")
print("p/o = peer / ours-daemon (> 1: we are faster, smaller, write less); +sync p/o compares the time until")
print("the data is on disk (ours syncs before it reports success, the peers leave writeback behind).")
print("skopeo copies the compressed blob to a dir and unpacks nothing: its figures are a floor for transport, not a")
print("pull into a runnable store.")
print()
targets = []
if o in results:
    above = med(o, "above") / MiB
    targets.append(f"ours-daemon peak RSS above idle {above:.1f} MiB (target <= 32 MiB: {'ok' if above <= 32 else 'MISSED'})")
    if "ours-direct" in results:
        p = med("ours-direct", "peak") / MiB
        targets.append(f"ours-direct peak RSS {p:.1f} MiB (target <= 32 MiB: {'ok' if p <= 32 else 'MISSED'})")
    if "dockerd" in results:
        sp = med("dockerd", "t") / med(o, "t")
        sps = med("dockerd", "ts") / med(o, "ts")
        targets.append(f"speed vs dockerd {sp:.2f}x, {sps:.2f}x until synced (target >= 1.5x: "
                       f"{'ok' if sp >= 1.5 else 'MISSED'})")
    else:
        targets.append(f"speed vs dockerd: not measured ({skipped.get('dockerd')})")
    for name in [o, "ours-direct"]:
        if name in results:
            q = med(name, "w") / raw
            targets.append(f"{name} bytes written / uncompressed layer {q:.3f} (target <= 1.1: "
                           f"{'ok' if q <= 1.1 else 'MISSED'}; GNU tar -x alone: {tar_written/raw:.3f})")
print("targets : " + "\n          ".join(targets))
print()
print(f"## delta pull (ours-direct through fault-proxy, pass-through; a store holding only rootfs-old)")
print(f"delta   : `image delta` {delta_create_s:.1f} s, push {delta_push_s:.1f} s; delta image blobs: layers "
      f"{delta_layers/1e3:.1f} kB + config {delta_config/1e3:.1f} kB + manifest {dman_size/1e3:.1f} kB")
print(f"{'pull':<22} {'bytes over the wire':>20} {'time s':>7} {'peak MiB':>9} {'image ID ok':>12}")
print(f"{'delta (old present)':<22} {delta_bytes:>20,} {delta_wall:>7.2f} {delta_rss/MiB:>9.1f} {str(delta_ok):>12}")
print(f"{'full (empty store)':<22} {full_bytes:>20,} {full_wall:>7.2f} {full_rss/MiB:>9.1f} {str(full_got == new_id):>12}")
limit = delta_layers + 64 * 1024
print(f"delta pull transferred {delta_bytes:,} bytes = delta layers + {delta_bytes - delta_layers:,} "
      f"(manifest, config); {full_bytes / max(delta_bytes, 1):.1f}x less than the full pull "
      f"(target <= delta size + 64 KiB = {limit:,}: {'ok' if delta_bytes <= limit else 'MISSED'})")
print("delta create said: " + "; ".join(l.strip() for l in delta_out.strip().splitlines()[-3:]))
print(f"Measuring took {time.time() - start_s:.0f} s; loadavg now {open('/proc/loadavg').read().split()[0:3]}.")
PY
