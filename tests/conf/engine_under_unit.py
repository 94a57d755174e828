#!/usr/bin/env python3
"""Runs the engine exactly as conf/units/balena-engine.service says, playing systemd's part: the socket of
balena-engine.socket passed as fd 3 (LISTEN_FDS/LISTEN_PID), a notify socket (NOTIFY_SOCKET), the watchdog
environment from WatchdogSec (WATCHDOG_USEC/WATCHDOG_PID), the unit's limits (LimitCORE, LimitNOFILE,
OOMScoreAdjust), and the ExecStart command line with its paths moved under a scratch directory. Then drives it
with balena-engine-healthcheck and the docker CLI, and stops it as systemd would (SIGTERM, TimeoutStopSec).

Usage: engine_under_unit.py REPO BIN_DIR WORK_DIR
Prints one line per check and closes with 'N passed, N failed' (expected failures are counted apart)."""

import configparser
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO, BIN_DIR, WORK = (Path(a).resolve() for a in sys.argv[1:4])
sys.path.insert(0, str(Path(__file__).parent.parent / "lib"))
import busybox_image  # noqa: E402

results = []


def record(name, ok, detail="", expected_failure=False):
    kind = ("XFAIL" if not ok else "XPASS") if expected_failure else ("ok" if ok else "FAIL")
    results.append((name, kind))
    print(f"{kind:5} {name}" + (f"\n      {detail}" if detail and kind != "ok" else ""), flush=True)


def unit(path):
    p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    p.optionxform = str
    p.read_string(path.read_text())
    return p


SERVICE = unit(REPO / "conf/units/balena-engine.service")["Service"]
SOCKET = unit(REPO / "conf/units/balena-engine.socket")["Socket"]

# Scratch: /run and /mnt/data of the device. /run goes to a tmpfs, as on the device.
shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
RUN = Path(tempfile.mkdtemp(prefix="conf-run-", dir=shm))
DATA = WORK / "mnt-data"
shutil.rmtree(DATA, ignore_errors=True)
DATA.mkdir(parents=True)


def moved(path: str) -> str:
    for prefix, to in (("/run/", RUN), ("/mnt/data/", DATA)):
        if path.startswith(prefix):
            return str(to / path[len(prefix):])
    return path


def limit(v):
    return resource.RLIM_INFINITY if v == "infinity" else int(v)


def parse_limit(v):
    soft, _, hard = v.partition(":")
    return limit(soft), limit(hard or soft)


exec_start = SERVICE["ExecStart"].split()
assert exec_start[0] == "/usr/bin/balena-engined"
argv = [str(BIN_DIR / "balena-engined")] + [moved(a) for a in exec_start[1:]]
sock_path = moved(SOCKET["ListenStream"])
pidfile = moved(exec_start[exec_start.index("--pidfile") + 1])
watchdog_usec = int(SERVICE["WatchdogSec"]) * 1_000_000
stop_timeout = int(SERVICE["TimeoutStopSec"])

# What this machine lets the test apply (raising a hard limit or lowering oom_score_adj needs
# CAP_SYS_RESOURCE, which some sandboxes drop; systemd running as PID 1 on a device has it).
notes = []
core = parse_limit(SERVICE["LimitCORE"])
cur_core = resource.getrlimit(resource.RLIMIT_CORE)
if cur_core[1] != resource.RLIM_INFINITY and (core[1] == resource.RLIM_INFINITY or core[1] > cur_core[1]):
    notes.append(f"LimitCORE hard {core[1]} cannot be applied here (hard limit {cur_core[1]}): using it")
    core = (min(core[0], cur_core[1]), cur_core[1])
nofile = parse_limit(SERVICE["LimitNOFILE"])
oom = int(SERVICE["OOMScoreAdjust"])
cur_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
if nofile[1] > cur_nofile[1] and cur_nofile[1] != resource.RLIM_INFINITY:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (cur_nofile[0], nofile[1]))
        resource.setrlimit(resource.RLIMIT_NOFILE, cur_nofile)
    except (ValueError, OSError):
        notes.append(f"LimitNOFILE={nofile[1]} cannot be applied here (no CAP_SYS_RESOURCE): using {cur_nofile[1]}")
        nofile = (min(nofile[0], cur_nofile[1]), cur_nofile[1])
oom_applied = oom
try:
    with open("/proc/self/oom_score_adj") as f:
        mine = int(f.read())
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(oom))
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(mine))
except OSError:
    # Cannot lower it here: stand in with a raised value, which shows inheritance just as well.
    oom_applied = 300
    notes.append(f"OOMScoreAdjust={oom} cannot be applied here (no CAP_SYS_RESOURCE): using {oom_applied} instead")
for n in notes:
    print(f"note  {n}")

# systemd's side: the listening socket (balena-engine.socket) and the notify socket.
Path(sock_path).parent.mkdir(parents=True, exist_ok=True)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sock_path)
os.chmod(sock_path, int(SOCKET["SocketMode"], 8))
listener.listen(4096)
notify_path = str(RUN / "notify.sock")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)


def preexec():
    os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)
    resource.setrlimit(resource.RLIMIT_CORE, core)
    resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(oom_applied))


env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "WATCHDOG_", "NOTIFY_"))}
env.update({"LISTEN_FDS": "1", "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": str(watchdog_usec)})
log_path = WORK / "engine.log"
# LISTEN_PID and WATCHDOG_PID are the daemon's own PID: set by a shell that then execs it.
# close_fds=False: fd 3 is made in preexec; Python opens everything else close-on-exec (PEP 446).
proc = subprocess.Popen(
    ["/bin/sh", "-c", 'export LISTEN_PID=$$ WATCHDOG_PID=$$; exec "$0" "$@"'] + argv,
    env=env, preexec_fn=preexec, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=open(log_path, "w"),
)


def log():
    return log_path.read_text()


def messages(timeout):
    out = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        notify.settimeout(left)
        try:
            out.append(notify.recv(4096).decode())
        except socket.timeout:
            break
    return out


def wait_for(line, timeout):
    seen = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        notify.settimeout(left)
        try:
            m = notify.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(m)
        if line in m.splitlines():
            return seen
    raise AssertionError(f"no {line} within {timeout} s; got {seen}\n{log()}")


def docker(*args, check=True):
    r = subprocess.run(["docker", "-H", f"unix://{sock_path}", *args], capture_output=True, text=True,
                       env={**os.environ, "DOCKER_CONFIG": str(WORK / "docker-config")}, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stderr.strip()}\n{log()}")
    return r


try:
    seen = wait_for("READY=1", 60)
    record("READY=1 after start, and no WATCHDOG=1 before it", len(seen) == 1, str(seen))
    want = f"systemd watchdog: WatchdogSec={int(SERVICE['WatchdogSec'])}s"
    end = time.monotonic() + 10
    while want not in log() and time.monotonic() < end:
        time.sleep(0.05)
    record("the daemon took systemd's watchdog (WatchdogSec from the unit)", want in log(), log())
    record("the daemon serves the socket systemd passed (-H fd://)", "API listen on" in log() and str(sock_path) in log(), log())

    hc = subprocess.run([str(BIN_DIR / "balena-engine-healthcheck"), "-H", f"unix://{sock_path}", "-p", pidfile],
                        capture_output=True, text=True)
    record("balena-engine-healthcheck: healthy", hc.returncode == 0, hc.stderr)
    st = os.stat(sock_path)
    record("the socket keeps the unit's mode 0660", oct(st.st_mode & 0o777) == "0o660", oct(st.st_mode))

    containers = os.geteuid() == 0 and shutil.which("docker") and Path(busybox_image.BUSYBOX).exists()
    if not containers:
        print("skip  container checks (need root, the docker CLI and busybox-static)")
    else:
        tar = WORK / "busybox.tar"
        tar.write_bytes(busybox_image.archive("busybox:conf"))
        docker("load", "-i", str(tar))

        def run_in(*args):
            return docker("run", "--rm", *args).stdout.split()

        got = run_in("busybox:conf", "sh", "-c", "ulimit -c; ulimit -Hc")
        record("a container gets no core dumps by default (RLIMIT_CORE 0:0)", got == ["0", "0"], str(got))
        got = run_in("--ulimit", "core=-1", "busybox:conf", "sh", "-c", "ulimit -c; ulimit -Hc")
        record("--ulimit core=-1 opts a container in under LimitCORE=0:infinity (unlimited:unlimited)",
               got == ["unlimited", "unlimited"], str(got))
        got = run_in("busybox:conf", "sh", "-c", "ulimit -n")
        record(f"a container inherits LimitNOFILE ({nofile[0]})", got == [str(nofile[0])], str(got))
        got = run_in("busybox:conf", "cat", "/proc/self/oom_score_adj")
        record(f"a container's oom_score_adj is 0, not the engine's OOMScoreAdjust ({oom_applied})",
               got == ["0"], str(got))

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    seen = wait_for("STOPPING=1", 15)
    code = proc.wait(timeout=stop_timeout)
    took = time.monotonic() - started
    after = messages(0.3)
    record(f"SIGTERM: STOPPING=1, exit 0 within TimeoutStopSec ({took:.1f} s)", code == 0, f"exit {code}\n{log()}")
    record("no WATCHDOG=1 after STOPPING=1", not any("WATCHDOG=1" in m.splitlines() for m in after), str(after))
    record("the pidfile is removed; systemd's socket is left alone",
           not Path(pidfile).exists() and Path(sock_path).exists(), "")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(RUN, ignore_errors=True)

passed = sum(1 for _, k in results if k == "ok")
failed = sum(1 for _, k in results if k in ("FAIL", "XPASS"))
xfailed = sum(1 for _, k in results if k == "XFAIL")
if any(k == "XPASS" for _, k in results):
    print("an expected failure passed: the gap is fixed, drop expected_failure and the note in conf/README.md")
print(f"\n{xfailed} expected failure(s), not counted")
print(f"engine-unit: {passed} passed, {failed} failed")
if os.environ.get("CONF_COUNTS"):
    with open(os.environ["CONF_COUNTS"], "a") as f:
        f.write(f"{passed} {failed}\n")
sys.exit(1 if failed else 0)
