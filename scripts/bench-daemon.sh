#!/usr/bin/env bash
# bench-daemon.sh [--reps N] [--corpus DIR]
#
# Benchmark (not a test): the daemon side by side with Debian's dockerd + containerd + runc (package
# docker.io), both started by hand on their own sockets, data roots and exec roots, driven by the same
# docker CLI:
#   idle RSS        daemon after start and one `docker images` (dockerd: dockerd + containerd)
#   run latency     `docker run --rm --network none IMG true`, median of N (default 20)
#   load            `docker load -i` of the corpus image (rootfs-new.tar as one layer, 208 MB): wall time,
#                   throughput, peak RSS of the daemon (VmHWM; dockerd: dockerd + containerd, and its
#                   largest helper process seen while loading)
# Ratio columns are peer/ours: > 1 means we are better. If dockerd cannot run here the script says so and
# prints our figures alone. Scratch lives under the corpus cache dir, never in the repository.
set -euo pipefail

REPS=20
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
. "$REPO/scripts/lib/apt.sh"
bash "$REPO/scripts/setup.sh" bench
ensure_pkgs docker.io busybox-static
(cd "$REPO" && cargo build --release --locked -q -p balena-engined)

mkdir -p "$CORPUS"
if [ ! -s "$CORPUS/rootfs-new.tar" ]; then
    bash "$REPO/../shared/corpus/make-corpus.sh" "$CORPUS" >&2
fi
WORK=$(realpath "$(mktemp -d "$CORPUS/../bench-daemon.XXXXXX")")
cleanup() {
    pkill -TERM -f "$WORK" 2>/dev/null || true
    sleep 2
    pkill -KILL -f "$WORK" 2>/dev/null || true
    grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 - "$REPO" "$CORPUS" "$WORK" "$REPS" <<'PY'
import hashlib, io, json, os, shutil, statistics, subprocess, sys, tarfile, time

repo, corpus, work, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
docker = shutil.which("docker", path="/usr/local/bin:/usr/bin") or "docker"

def docker_archive(path, tag, layer_path=None, files=None):
    """A docker-archive with one layer: an existing tar, or a tar built from {name: (bytes, mode)}."""
    if layer_path is None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for name, (data, mode) in files.items():
                ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode; ti.mtime = 1735689600
                t.addfile(ti, io.BytesIO(data))
        layer = buf.getvalue()
        digest = hashlib.sha256(layer).hexdigest()
    else:
        h = hashlib.sha256()
        with open(layer_path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        digest = h.hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2025-01-01T00:00:00Z",
                      "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest]}}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    with tarfile.open(path, "w") as t:
        if layer_path is None:
            ti = tarfile.TarInfo(digest + "/layer.tar"); ti.size = len(layer); t.addfile(ti, io.BytesIO(layer))
        else:
            t.add(layer_path, arcname=digest + "/layer.tar")
        for name, data in [(cid + ".json", cfg),
                           ("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": [tag],
                                                          "Layers": [digest + "/layer.tar"]}]).encode())]:
            ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))

busybox = open("/bin/busybox", "rb").read()
small = os.path.join(work, "busybox.tar")
docker_archive(small, "bench/busybox:1", files={"bin/busybox": (busybox, 0o755), "bin/sh": (busybox, 0o755),
                                                 "bin/true": (busybox, 0o755)})
big = os.path.join(work, "rootfs.tar")
docker_archive(big, "bench/rootfs:new", layer_path=os.path.join(corpus, "rootfs-new.tar"))
big_size = os.path.getsize(big)

def rss_kib(pid, field="VmRSS"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

def children(pid):
    """All descendants: children may hang off any thread of a multi-threaded parent."""
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

class Engine:
    def __init__(self, name, argv, sock, helper_names):
        self.name, self.sock, self.helper_names = name, sock, helper_names
        self.log = open(os.path.join(work, name + ".log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_socket(sock, self.proc, name)

    def docker(self, *args, check=True):
        r = subprocess.run([docker, "-H", "unix://" + self.sock, *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.strip()}")
        return r

    def daemon_pids(self):
        pids = [self.proc.pid]
        for c in children(self.proc.pid):
            try:
                if open(f"/proc/{c}/comm").read().strip() in self.helper_names:
                    pids.append(c)
            except OSError:
                pass
        return pids

    def rss_mib(self, field="VmRSS"):
        return sum(rss_kib(p, field) for p in self.daemon_pids()) / 1024

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

def measure(engine):
    engine.docker("load", "-i", small)
    engine.docker("images")
    time.sleep(2)
    idle = engine.rss_mib()
    engine.docker("run", "--rm", "--network", "none", "bench/busybox:1", "true")  # warm-up
    lat = []
    for _ in range(reps):
        t = time.perf_counter()
        engine.docker("run", "--rm", "--network", "none", "bench/busybox:1", "true")
        lat.append((time.perf_counter() - t) * 1000)
    peak_helper = 0.0
    t = time.perf_counter()
    p = subprocess.Popen([docker, "-H", "unix://" + engine.sock, "load", "-i", big], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    while p.poll() is None:
        for c in children(engine.proc.pid):
            if c not in engine.daemon_pids():
                peak_helper = max(peak_helper, rss_kib(c) / 1024)
        time.sleep(0.02)
    load_s = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{engine.name}: load failed: {p.stderr.read()}")
    return {"idle": idle, "run_ms": statistics.median(lat), "load_s": load_s,
            "load_mbs": big_size / 1e6 / load_s, "peak": engine.rss_mib("VmHWM"), "helper": peak_helper}

print(f"== balena-engined vs dockerd benchmark  ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})")
print(f"machine : {os.cpu_count()} CPUs, kernel {os.uname().release}; docker CLI {docker}")
results = {}
ours = os.path.join(repo, "target/release/balena-engined")
d = os.path.join(work, "ours"); os.makedirs(d)
e = Engine("ours", [ours, "-H", f"unix://{d}/sock", "--data-root", f"{d}/root", "--exec-root", f"{d}/exec",
                    "--pidfile", f"{d}/pid"], f"{d}/sock", set())
try:
    results["balena-engined"] = measure(e)
finally:
    e.stop()
d = os.path.join(work, "dockerd"); os.makedirs(d)
try:
    e = Engine("dockerd", ["dockerd", "--data-root", f"{d}/root", "-H", f"unix://{d}/sock", "--exec-root",
                           f"{d}/exec", "--pidfile", f"{d}/pid", "--iptables=false", "--bridge=none"],
               f"{d}/sock", {"containerd"})
except Exception as err:
    e = None
    print(f"dockerd : could not run here: {err} (see {work}/dockerd.log)")
if e is not None:
    try:
        results["dockerd+containerd"] = measure(e)
    finally:
        e.stop()

print()
print(f"{'engine':<20} {'idle RSS MiB':>12} {'run --rm true ms':>17} {'load s':>7} {'load MB/s':>9} "
      f"{'load peak RSS MiB':>18} {'helper peak MiB':>15}")
for name, r in results.items():
    print(f"{name:<20} {r['idle']:>12.1f} {r['run_ms']:>17.1f} {r['load_s']:>7.2f} {r['load_mbs']:>9.1f} "
          f"{r['peak']:>18.1f} {r['helper']:>15.1f}")
if len(results) == 2:
    o, p = results["balena-engined"], results["dockerd+containerd"]
    print(f"{'ratio peer/ours':<20} {p['idle']/o['idle']:>12.2f} {p['run_ms']/o['run_ms']:>17.2f} "
          f"{p['load_s']/o['load_s']:>7.2f} {o['load_mbs']/p['load_mbs']:>9.2f} {p['peak']/o['peak']:>18.2f}")
print()
print("idle RSS: the daemon (dockerd: dockerd + its containerd) after start, one load of a busybox image and one")
print("`docker images`; run: median of", reps, "`docker run --rm --network none` through the API (same docker CLI);")
print(f"load: `docker load -i` of a {big_size/1e6:.0f} MB archive; peak RSS = VmHWM of the daemon process(es);")
print("helper peak = largest other child process seen during the load (dockerd's untar helpers).")
print("Goals: idle RSS <= 10 MiB, run <= 100 ms.")
PY
