#!/usr/bin/env python3
"""Static checks of conf/: stages an image root from conf/README.md's table and checks it with systemd's own
tools, checks every drop-in key against the systemd binaries that read it, and cross-checks the files against
each other and against the code. Usage: check_conf.py REPO BIN_DIR WORK_DIR

BIN_DIR holds the release binaries (balena-engined, balena-engine-healthcheck). WORK_DIR is scratch space.
Prints one line per check and closes with 'N passed, N failed'; exits 1 on any failure."""

import configparser
import os
import re
import shutil
import stat
import subprocess
import sys
import traceback
from pathlib import Path

REPO, BIN_DIR, WORK = (Path(a).resolve() for a in sys.argv[1:4])
CONF = REPO / "conf"
HOST_UNITS = Path("/lib/systemd/system")

results = []


def check(name):
    def wrap(f):
        try:
            f()
            results.append((name, None))
            print(f"ok    {name}", flush=True)
        except Exception as e:  # noqa: BLE001 (a check failed: report it and go on)
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            results.append((name, detail))
            print(f"FAIL  {name}\n      " + detail.replace("\n", "\n      "), flush=True)
        return f
    return wrap


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------------------
# The map: conf/README.md's table, file -> (install path, images).

def read_map():
    rows = {}
    for line in (CONF / "README.md").read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \| `([^`]+)` \| (all|development) \|", line)
        if m:
            src, dst, images = m.groups()
            assert src not in rows, f"{src} mapped twice in conf/README.md"
            rows[src] = (dst, images)
    return rows


MAP = read_map()
FILES = sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*") if p.is_file() and p.name != "README.md")


@check("README.md maps every file of conf/ exactly once, and only existing files")
def _():
    missing = [f for f in FILES if f not in MAP]
    extra = [f for f in MAP if f not in FILES]
    assert not missing, f"not in conf/README.md's table: {missing}"
    assert not extra, f"in the table but not in conf/: {extra}"
    dsts = [d for d, _ in MAP.values()]
    assert len(dsts) == len(set(dsts)), "two files installed to the same path"


def stage(root: Path, images: set):
    """An image root: the host's systemd units (targets, templates), then conf/ as the table says, and the
    release binaries."""
    if root.exists():
        shutil.rmtree(root)
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", dirs_exist_ok=True, symlinks=True)
    for src, (dst, img) in MAP.items():
        if img in images:
            target = root / dst.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CONF / src, target)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    for b in ("balena-engined", "balena-engine-healthcheck"):
        shutil.copy(BIN_DIR / b, root / "usr/bin" / b)
    (root / "etc").mkdir(exist_ok=True)
    for f in ("passwd", "group"):
        (root / "etc" / f).write_text({"passwd": "root:x:0:0:root:/root:/bin/sh\n", "group": "root:x:0:\n"}[f])
    return root


ROOT = stage(WORK / "root", {"all"})
DEV_ROOT = stage(WORK / "root-dev", {"all", "development"})


def verify(root: Path, unit: str):
    """systemd-analyze verify, strict: any output is a failure (unknown keys and bad values are only warnings
    with exit status 0)."""
    r = run("systemd-analyze", "verify", f"--root={root}", "--man=no", "--generators=no", unit)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, f"systemd-analyze verify {unit} (exit {r.returncode}):\n{out}"


UNITS = [(src, dst, img) for src, (dst, img) in MAP.items() if src.endswith((".service", ".socket", ".mount"))]

for _src, _dst, _img in UNITS:
    @check(f"systemd-analyze verify {Path(_dst).name} ({_img} images)")
    def _(dst=_dst, img=_img):
        verify(DEV_ROOT if img == "development" else ROOT, Path(dst).name)


@check("the strict verify catches mistakes (an unknown key, a bad value, a missing binary)")
def _():
    bad_root = WORK / "root-bad"
    if bad_root.exists():
        shutil.rmtree(bad_root)
    shutil.copytree(ROOT, bad_root, symlinks=True)
    unit = bad_root / "usr/lib/systemd/system/balena-engine.service"
    good = unit.read_text()
    for broken in (good.replace("Type=notify", "Type=notify\nWatchdogSecs=1"),
                   good.replace("LimitCORE=0:infinity", "LimitCORE=zero"),
                   good.replace("/usr/bin/balena-engined", "/usr/bin/balena-engine-daemon")):
        unit.write_text(broken)
        try:
            verify(bad_root, "balena-engine.service")
        except AssertionError:
            continue
        raise AssertionError(f"not caught:\n{broken}")


# ---------------------------------------------------------------------------------------------------------
# Drop-ins: strict INI, one known section, keys the systemd binary knows, values that parse.

def ini(path: Path):
    p = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"),
                                  empty_lines_in_values=False)
    p.optionxform = str
    p.read_string(path.read_text(), source=str(path))
    return p


def binary_keys(binary: Path):
    """Every string in the binary that looks like a key (systemd's config tables keep them as plain strings)."""
    data = binary.read_bytes()
    return set(re.findall(rb"[A-Z][A-Za-z]{2,40}", data))


def coredump_binary():
    """systemd-coredump, from Debian's package, unpacked here (installing it would change this machine's
    kernel.core_pattern)."""
    installed = Path("/lib/systemd/systemd-coredump")
    if installed.exists():
        return installed
    d = WORK / "systemd-coredump-deb"
    b = d / "x/lib/systemd/systemd-coredump"
    if not b.exists():
        d.mkdir(parents=True, exist_ok=True)
        r = run("apt-get", "download", "-qq", "systemd-coredump", cwd=d)
        if r.returncode != 0:
            run("apt-get", "update", "-qq")
            r = run("apt-get", "download", "-qq", "systemd-coredump", cwd=d)
        assert r.returncode == 0, f"apt-get download systemd-coredump: {r.stderr}"
        deb = next(d.glob("systemd-coredump_*.deb"))
        r = run("dpkg-deb", "-x", str(deb), str(d / "x"))
        assert r.returncode == 0, r.stderr
    return b


def timespan(v):
    r = run("systemd-analyze", "timespan", v)
    assert r.returncode == 0, f"{v!r} is not a time span: {r.stderr.strip()}"


def size(v):
    assert re.fullmatch(r"(\d+(\.\d+)?[KMGTPE]?|infinity|\d+%)", v), f"{v!r} is not a size"


DROPINS = {
    # directory in conf/ -> (config systemd reads, section, binary that parses it, value checks)
    "system.conf.d": ("systemd/system.conf", "Manager", HOST_UNITS.parent / "systemd",
                      {"RuntimeWatchdogSec": timespan, "RebootWatchdogSec": timespan}),
    "journald.conf.d": ("systemd/journald.conf", "Journal", HOST_UNITS.parent / "systemd-journald",
                        {"Storage": lambda v: v in ("volatile", "persistent", "auto", "none") or _fail(v),
                         "RuntimeMaxUse": size}),
    "coredump.conf.d": ("systemd/coredump.conf", "Coredump", None,
                        {"Storage": lambda v: v in ("none", "external", "journal") or _fail(v),
                         "ProcessSizeMax": size, "ExternalSizeMax": size, "MaxUse": size}),
}


def _fail(v):
    raise AssertionError(f"bad value {v!r}")


def dropin_files():
    out = []
    for src, (dst, img) in MAP.items():
        for kind in DROPINS:
            if f"/{kind}/" in dst:
                out.append((src, dst, img, kind))
    return out


for _src, _dst, _img, _kind in dropin_files():
    @check(f"{_src}: one [{DROPINS[_kind][1]}] section, keys systemd knows, values that parse")
    def _(src=_src, kind=_kind):
        _, section, binary, checks = DROPINS[kind]
        p = ini(CONF / src)
        assert p.sections() == [section], f"sections {p.sections()}, expected [{section}]"
        known = binary_keys(binary or coredump_binary())
        for key, value in p[section].items():
            assert key.encode() in known, f"{key} is not a key {binary or 'systemd-coredump'} knows"
            assert key in checks, f"{key}: no value check for it in this test; add one"
            checks[key](value)


for _kind, (_cfg, _section, _, _) in DROPINS.items():
    @check(f"systemd-analyze cat-config {_cfg} reads the installed drop-ins")
    def _(kind=_kind, cfg=_cfg):
        for root, images in ((ROOT, {"all"}), (DEV_ROOT, {"all", "development"})):
            r = run("systemd-analyze", "cat-config", f"--root={root}", cfg)
            assert r.returncode == 0, r.stderr
            shown = [l for l in r.stdout.splitlines() if l and not l.startswith("#")]
            for src, dst, img, k in dropin_files():
                if k != kind or img not in images:
                    continue
                for line in (CONF / src).read_text().splitlines():
                    if line and not line.startswith("#"):
                        assert line in shown, f"{line!r} of {src} not shown for {root.name}:\n{r.stdout}"


def effective(root: Path, cfg: str):
    """The values systemd ends up with: cat-config prints the files in the order they are applied."""
    r = run("systemd-analyze", "cat-config", f"--root={root}", cfg)
    assert r.returncode == 0, r.stderr
    values = {}
    for line in r.stdout.splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip()
    return values


@check("effective settings: production discards core dumps, development keeps them; journal and watchdog")
def _():
    prod = effective(ROOT, "systemd/coredump.conf")
    dev = effective(DEV_ROOT, "systemd/coredump.conf")
    assert (prod.get("Storage"), prod.get("ProcessSizeMax")) == ("none", "0"), prod
    assert (dev.get("Storage"), dev.get("ProcessSizeMax")) == ("external", "1G"), dev
    journal = effective(ROOT, "systemd/journald.conf")
    assert (journal.get("Storage"), journal.get("RuntimeMaxUse")) == ("volatile", "32M"), journal
    manager = effective(ROOT, "systemd/system.conf")
    assert (manager.get("RuntimeWatchdogSec"), manager.get("RebootWatchdogSec")) == ("10s", "10s"), manager


@check("the development coredump drop-in only overrides keys of the base one")
def _():
    base = ini(CONF / "coredump.conf.d/50-balena-coredump.conf")["Coredump"]
    dev = ini(CONF / "development/coredump-development.conf")["Coredump"]
    assert set(base) <= set(dev), f"the development drop-in leaves {set(base) - set(dev)} at the production value"


# ---------------------------------------------------------------------------------------------------------
# sysctl.d, tmpfiles.d, sysusers.d

def sysctl_lines(path: Path):
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert "=" in line, f"{path.name}: {line!r} is not key=value"
        k, v = (s.strip() for s in line.split("=", 1))
        out.append((k.lstrip("-"), v))
    return out


SYSCTLS = [(src, dst) for src, (dst, _) in MAP.items() if "/sysctl.d/" in dst]


@check("sysctl.d: key=value lines, keys this kernel has, each key set once, sane values")
def _():
    seen = {}
    for src, _ in SYSCTLS:
        for k, v in sysctl_lines(CONF / src):
            assert k not in seen, f"{k} set in {seen.get(k)} and {src}"
            seen[k] = src
            assert Path("/proc/sys", k.replace(".", "/")).exists(), f"{k}: no /proc/sys entry on this kernel"
            if k == "kernel.core_pattern":
                assert v.startswith("|/"), "core dumps must go to a helper, never to a file"
                helper = v[1:].split()[0]
                assert helper == "/lib/systemd/systemd-coredump", helper
                assert "%c" in v.split(), "the crashing process's RLIMIT_CORE (%c) must reach systemd-coredump"
                assert "%P" in v.split(), "systemd-coredump needs the global PID"
            else:
                assert re.fullmatch(r"-?\d+", v), f"{k}={v}: a number is expected"


@check("sysctl.d/50-coredump.conf in /etc replaces systemd's /usr/lib/sysctl.d/50-coredump.conf")
def _():
    dst = MAP["sysctl.d/50-coredump.conf"][0]
    assert dst == "/etc/sysctl.d/50-coredump.conf", dst
    theirs = Path(coredump_binary()).parents[2] / "usr/lib/sysctl.d/50-coredump.conf"
    if not theirs.exists():
        theirs = Path("/usr/lib/sysctl.d/50-coredump.conf")
    assert theirs.exists(), "systemd's 50-coredump.conf not found"
    root = WORK / "root-sysctl"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(ROOT / "etc", root / "etc")
    (root / "usr/lib/sysctl.d").mkdir(parents=True)
    shutil.copy(theirs, root / "usr/lib/sysctl.d/50-coredump.conf")
    for src, d in SYSCTLS:
        shutil.copy(CONF / src, root / d.lstrip("/"))
    r = run("systemd-analyze", "cat-config", f"--root={root}", "sysctl.d")
    assert r.returncode == 0, r.stderr
    active = [l for l in r.stdout.splitlines() if l and not l.startswith(("#", ";"))]
    ours = [f"{k}={v}" for s, _ in SYSCTLS for k, v in sysctl_lines(CONF / s)]
    assert sorted(active) == sorted(ours), f"in effect: {active}\nours: {ours}"


@check("systemd-tmpfiles --create into the staged root: no complaint, the modes asked for")
def _():
    r = run("systemd-tmpfiles", f"--root={ROOT}", "--create")
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, f"exit {r.returncode}: {out}"
    for path, mode in (("run/balena-engine", 0o700), ("var/volatile/log", 0o755), ("var/volatile/tmp", 0o1777)):
        st = (ROOT / path).stat()
        assert stat.S_ISDIR(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == mode, f"/{path}: {oct(stat.S_IMODE(st.st_mode))}, expected {oct(mode)}"


@check("systemd-sysusers into the staged root creates the socket's group")
def _():
    r = run("systemd-sysusers", f"--root={ROOT}")
    assert r.returncode == 0, r.stdout + r.stderr
    groups = [l.split(":")[0] for l in (ROOT / "etc/group").read_text().splitlines()]
    assert "balena-engine" in groups, groups


# ---------------------------------------------------------------------------------------------------------
# Cross-checks: the files agree with each other and with the code.

def unit(name):
    p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    p.optionxform = str
    p.read_string((CONF / "units" / name).read_text())
    return p


SERVICE = unit("balena-engine.service")
SOCKET = unit("balena-engine.socket")
EXEC = SERVICE["Service"]["ExecStart"].split()


def flag(name):
    return EXEC[EXEC.index(name) + 1]


def rust_const(path, name):
    m = re.search(rf'pub const {name}: &str = "([^"]+)";', (REPO / path).read_text())
    assert m, f"{name} not found in {path}"
    return m.group(1)


def mounts():
    out = {}
    for src, (dst, img) in MAP.items():
        if src.endswith(".mount"):
            out[Path(dst).name] = (unit(Path(src).name) if src.startswith("units/") else None, src, img)
    return out


@check("each setting of the engine unit and socket is written once")
def _():
    for name in ("balena-engine.service", "balena-engine.socket"):
        keys = []
        section = None
        for line in (CONF / "units" / name).read_text().splitlines():
            if line.startswith("["):
                section = line
            elif "=" in line and not line.startswith("#"):
                keys.append((section, line.split("=", 1)[0]))
        dup = {k for k in keys if keys.count(k) > 1}
        assert not dup, f"{name}: set more than once: {dup}"


@check("each drop-in key is set in one base file only")
def _():
    seen = {}
    for src, dst, img, kind in dropin_files():
        if img != "all":
            continue
        for key in ini(CONF / src)[DROPINS[kind][1]]:
            assert (kind, key) not in seen, f"{kind} {key}: in {seen[(kind, key)]} and {src}"
            seen[(kind, key)] = src


@check("the service is socket-activated by its own socket, which is the healthcheck's default")
def _():
    assert SERVICE["Service"]["Type"] == "notify"
    assert EXEC[0] == "/usr/bin/balena-engined" and flag("-H") == "fd://", EXEC
    assert "balena-engine.socket" in SERVICE["Unit"]["Requires"].split()
    assert "balena-engine.socket" in SERVICE["Unit"]["After"].split()
    listen = SOCKET["Socket"]["ListenStream"]
    assert listen == rust_const("rust/healthcheck/src/lib.rs", "DEFAULT_SOCKET"), listen
    assert SOCKET["Socket"]["SocketMode"] == "0660"
    group = SOCKET["Socket"]["SocketGroup"]
    sysusers = (CONF / "sysusers.d/balena-engine.conf").read_text().split("\n")
    assert any(l.split()[:2] == ["g", group] for l in sysusers if l and not l.startswith("#")), group
    # /var/run is /run: the daemon's and the CLI's default socket is the same file.
    assert rust_const("rust/daemon/src/config.rs", "DEFAULT_HOST") == "unix:///var/run/balena-engine.sock"


@check("pidfile and exec root: the healthcheck's default, a tmpfiles.d entry, both in RAM (/run)")
def _():
    assert flag("--pidfile") == rust_const("rust/healthcheck/src/lib.rs", "DEFAULT_PIDFILE")
    exec_root = flag("--exec-root")
    assert exec_root.startswith("/run/") and flag("--pidfile").startswith("/run/")
    lines = [l.split() for l in (CONF / "tmpfiles.d/balena-engine.conf").read_text().splitlines() if l and l[0] != "#"]
    assert ["d", exec_root, "0700", "root", "root", "-"] in lines, lines


@check("the data root is on the data partition's mount, which RequiresMountsFor covers")
def _():
    data_root = flag("--data-root")
    required = SERVICE["Unit"]["RequiresMountsFor"].split()
    assert data_root in required, required
    m = mounts()
    where = {u["Mount"]["Where"]: n for n, (u, _, img) in m.items() if u is not None and img == "all"}
    owner = max((w for w in where if data_root.startswith(w.rstrip("/") + "/")), key=len, default=None)
    assert owner == "/mnt/data", f"{data_root} is not under a mount unit of conf/: {where}"
    assert m["mnt-data.mount"][0]["Mount"]["What"] == "/dev/disk/by-label/balena-data"
    assert m["mnt-state.mount"][0]["Mount"]["What"] == "/dev/disk/by-label/balena-state"


@check("mount unit names match their mount points (systemd-escape --path)")
def _():
    for name, (u, src, _) in mounts().items():
        p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
        p.optionxform = str
        p.read_string((CONF / src).read_text())
        where = p["Mount"]["Where"]
        r = run("systemd-escape", "--path", "--suffix=mount", where)
        assert r.stdout.strip() == name, f"{src}: Where={where} needs the name {r.stdout.strip()}"


@check("the daemon accepts every flag of ExecStart")
def _():
    r = run(str(BIN_DIR / "balena-engined"), "--help")
    assert r.returncode == 0, r.stderr
    for f in (a for a in EXEC[1:] if a.startswith("-")):
        assert re.search(rf"(^|[ ,]){re.escape(f)}[ ,=\n]", r.stdout, re.M), f"{f} not in balena-engined --help"


@check("stop and watchdog timings leave room for the daemon's own stop sequence")
def _():
    s = SERVICE["Service"]
    stop = int(s["TimeoutStopSec"])
    # containers (default StopTimeout 10 s + 5 s bound) + requests in flight (GRACE) + store close (5 s) + 1 s
    server = (REPO / "rust/daemon/src/server.rs").read_text()
    grace = int(re.search(r"pub const GRACE: Duration = Duration::from_secs\((\d+)\)", server).group(1))
    assert stop >= 10 + 5 + grace + 5 + 1, f"TimeoutStopSec={stop} is shorter than the default stop sequence"
    assert "TimeoutAbortSec" not in s, "TimeoutAbortSec would bound a watchdog stop differently from TimeoutStopSec"
    assert s["WatchdogSignal"] == "SIGTERM" and s["KillMode"] == "mixed" and s["Restart"] == "always"
    watchdog = int(s["WatchdogSec"])
    # The daemon retries a failed check every W/16 after the W/2 due time: at least ~8 tries before the kill,
    # each allowed far more than the healthcheck's 5 s default.
    assert watchdog / 16 >= 5 and watchdog <= 360, watchdog
    assert s["LimitCORE"] == "0:infinity" and s["TimeoutStartSec"] == "infinity"


passed = sum(1 for _, e in results if e is None)
failed = len(results) - passed
print(f"\nconf: {passed} passed, {failed} failed")
if os.environ.get("CONF_COUNTS"):
    with open(os.environ["CONF_COUNTS"], "a") as f:
        f.write(f"{passed} {failed}\n")
sys.exit(1 if failed else 0)
