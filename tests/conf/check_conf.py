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
    # What the units run besides them, on a merged-/usr system: /bin/sh (balena-root-overlay.service) and
    # systemd-hostnamed (verified with conf/'s drop-in), the host's.
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    shutil.copy(os.path.realpath("/bin/sh"), root / "usr/bin/sh")
    shutil.copy(HOST_UNITS.parent / "systemd-hostnamed", root / "usr/lib/systemd/systemd-hostnamed")
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
    for path, mode in (("run/balena-engine", 0o700), ("run/lock", 0o1777), ("var/volatile/log", 0o755),
                       ("var/volatile/tmp", 0o1777)):
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



# ---------------------------------------------------------------------------------------------------------
# Persistent state: state/root-overlay.conf and .sh, balena-root-overlay.service, hostnamed's drop-in.

OVERLAY_LIST = CONF / "state/root-overlay.conf"
OVERLAY_SH = CONF / "state/root-overlay.sh"
HOSTNAMED_DROPIN = "units/systemd-hostnamed.service.d/50-balena-root-overlay.conf"


def overlay_entries():
    out = []
    for line in OVERLAY_LIST.read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            out.append(words)
    return out


def overlay_links():
    """link PATH TARGET -> {PATH: the absolute path TARGET names}."""
    return {w[1]: os.path.normpath(os.path.join(os.path.dirname(w[1]), w[2]))
            for w in overlay_entries() if w[0] == "link"}


@check("root-overlay.conf: bind and link entries, absolute paths, none under another, links into bind directories")
def _():
    binds = []
    for w in overlay_entries():
        assert w[0] in ("bind", "link"), f"unknown entry {w}"
        assert len(w) == (2 if w[0] == "bind" else 3), f"{w}: wrong number of words"
        assert w[1].startswith("/") and os.path.normpath(w[1]) == w[1].rstrip("/"), f"{w[1]}: not a clean absolute path"
        if w[0] == "bind":
            binds.append(w[1])
    dirs = [b.rstrip("/") + "/" for b in binds if b.endswith("/")]
    for b in binds:
        under = [d for d in dirs if b.startswith(d) and b != d]
        assert not under, f"{b} lies under the bind directory {under}: the outer mount would hide or duplicate it"
    for path, target in overlay_links().items():
        assert any(target.startswith(d) for d in dirs), f"link {path} -> {target}: not into a bind directory {dirs}"
        assert not any(path.startswith(d) for d in dirs), f"link {path} lies in a bind directory"
    for must in ("/etc/machine-id", "/etc/systemd/network/", "/etc/balena-engine/"):
        assert must in binds, f"{must} is not kept on the state partition"
    assert set(overlay_links()) >= {"/etc/hostname", "/etc/machine-info"}, overlay_links()


@check("root-overlay.conf keeps what the engine reads: --registry-certs-dir's default, not overridden by the unit")
def _():
    certs = rust_const("rust/distribution/src/config.rs", "DEFAULT_CERTS_DIR")
    assert "--registry-certs-dir" not in EXEC, "the unit moves the certificates away from the default"
    dirs = [w[1] for w in overlay_entries() if w[0] == "bind" and w[1].endswith("/")]
    assert any(certs.startswith(d) for d in dirs), f"{certs} is under no bind directory of root-overlay.conf"


@check("balena-root-overlay.service runs the installed script once the state partition is mounted, early")
def _():
    u = unit("balena-root-overlay.service")
    script, listed = MAP["state/root-overlay.sh"][0], MAP["state/root-overlay.conf"][0]
    assert u["Service"]["ExecStart"].split() == ["/bin/sh", script], u["Service"]["ExecStart"]
    assert (u["Service"]["Type"], u["Service"]["RemainAfterExit"]) == ("oneshot", "yes")
    sh = OVERLAY_SH.read_text()
    assert re.search(rf"^LIST={re.escape(listed)}$", sh, re.M), f"the script's default list is not {listed}"
    where = mounts()["mnt-state.mount"][0]["Mount"]["Where"]
    assert u["Unit"]["RequiresMountsFor"] == where, u["Unit"]["RequiresMountsFor"]
    assert re.search(rf"^STATE={re.escape(where)}/root-overlay$", sh, re.M), "the script's state directory"
    assert u["Unit"]["DefaultDependencies"] == "no"
    before = u["Unit"]["Before"].split()
    for b in ("local-fs.target", "systemd-networkd.service", "balena-engine.service"):
        assert b in before, f"not before {b}"
    assert u["Install"]["WantedBy"] == "local-fs.target"
    r = run("sh", "-n", str(OVERLAY_SH))
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        r = run("shellcheck", "-s", "sh", str(OVERLAY_SH))
        assert r.returncode == 0, r.stdout


@check("hostnamed's drop-in writes where /etc/hostname and /etc/machine-info link to; systemd-analyze verify")
def _():
    p = ini(CONF / HOSTNAMED_DROPIN)
    env = dict(kv.split("=", 1) for kv in p["Service"]["Environment"].split())
    links = overlay_links()
    assert env == {"SYSTEMD_ETC_HOSTNAME": links["/etc/hostname"],
                   "SYSTEMD_ETC_MACHINE_INFO": links["/etc/machine-info"]}, env
    rw = p["Service"]["ReadWritePaths"].split()
    assert all(any(v.startswith(d.rstrip("/") + "/") for d in rw) for v in env.values()), rw
    assert "balena-root-overlay.service" in p["Unit"]["After"].split()
    verify(ROOT, "systemd-hostnamed.service")


def overlay_boot(img: Path, state: Path, transient: str, then: str = ""):
    """One boot of the image root IMG as far as root-overlay.sh is concerned, in private mount and UTS
    namespaces: the root read-only, /run a tmpfs, the state directory on /mnt/state, PID 1's transient machine ID
    bound read-only over /etc/machine-id and the kernel hostname from the image's /etc/hostname; then the
    script, under busybox in a chroot; then the shell commands THEN there. Returns (exit status, output)."""
    inner = f"""
set -e
R={img}
mount --bind "$R" "$R" && mount -o remount,bind,ro "$R"
mount -t tmpfs tmpfs "$R/run" && mount --bind {state} "$R/mnt/state"
mount --bind /proc "$R/proc" && mount --bind /dev "$R/dev"
echo {transient} > "$R/run/machine-id"
mount --bind "$R/run/machine-id" "$R/etc/machine-id" && mount -o remount,bind,ro "$R/etc/machine-id"
cat "$R/etc/writable/hostname" > /proc/sys/kernel/hostname
set +e
CHROOT=$(command -v chroot)
PATH=/bin "$CHROOT" "$R" /bin/sh /usr/lib/balena-state/root-overlay.sh
echo "rc=$?"
PATH=/bin "$CHROOT" "$R" /bin/sh -c '{then}'
"""
    r = subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", inner],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    m = re.search(r"^rc=(\d+)$", out, re.M)
    assert r.returncode == 0 and m, f"the boot simulation failed (exit {r.returncode}):\n{out}"
    return int(m.group(1)), out


@check("root-overlay.sh under busybox: the image's layout, a first boot, a reboot, a repeat, a bad persisted ID")
def _():
    assert os.geteuid() == 0, "needs root (mount and UTS namespaces, chroot)"
    busybox = shutil.which("busybox")
    assert busybox, "busybox (busybox-static) is not installed"
    w = WORK / "overlay"
    shutil.rmtree(w, ignore_errors=True)
    img, state = w / "root", w / "state"
    for d in ("bin", "etc/systemd/network", "mnt/state", "run", "proc", "dev"):
        (img / d).mkdir(parents=True)
    state.mkdir()
    # The image: busybox as every tool, a systemctl that only records what it is asked, the image's hostname
    # and network default, conf/'s files where the table puts them.
    shutil.copy(busybox, img / "bin/busybox")
    for applet in run(busybox, "--list").stdout.split():
        if applet != "busybox" and not (img / "bin" / applet).exists():
            (img / "bin" / applet).symlink_to("busybox")
    (img / "bin/systemctl").unlink(missing_ok=True)
    (img / "bin/systemctl").write_text('#!/bin/sh\necho "$*" >> /run/systemctl.log\n')
    (img / "bin/systemctl").chmod(0o755)
    (img / "etc/hostname").write_text("image-default\n")
    (img / "etc/systemd/network/80-image.network").write_text("[Match]\nName=eth0\n")
    for src in ("state/root-overlay.conf", "state/root-overlay.sh"):
        dst = img / MAP[src][0].lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CONF / src, dst)

    # Image build time (the host's sh, as in a Yocto ROOTFS_POSTPROCESS_COMMAND): twice, the second a no-op.
    for _ in range(2):
        r = run("sh", str(OVERLAY_SH), "--image", str(img))
        assert r.returncode == 0 and not r.stdout + r.stderr, f"--image: exit {r.returncode}: {r.stdout}{r.stderr}"
    assert os.readlink(img / "etc/hostname") == "writable/hostname"
    assert os.readlink(img / "etc/machine-info") == "writable/machine-info"
    assert (img / "etc/writable/hostname").read_text() == "image-default\n"
    assert (img / "etc/machine-id").stat().st_size == 0 and (img / "etc/balena-engine").is_dir()

    a, b, c = "1" * 32, "2" * 32, "3" * 32
    probe = ('echo "id=$(cat /etc/machine-id)"; echo "host=$(cat /proc/sys/kernel/hostname)"; '
             'echo "net=$(ls /etc/systemd/network | tr "\\n" " ")"; echo "ctl=$(cat /run/systemctl.log 2>/dev/null)"; '
             'echo "binds=$(grep -c " /etc/" /proc/self/mountinfo)"; ')
    # First boot: everything seeded from the image, PID 1's ID persisted, nothing restarted; the operator's
    # writes go to the state partition, /etc itself and the machine ID stay read-only; a repeat binds nothing.
    rc, out = overlay_boot(img, state, a, probe + (
        "echo newname > /etc/hostname; echo [Match] > /etc/systemd/network/50-op.network; "
        "mkdir -p /etc/balena-engine/certs.d/reg.test:5000 && echo CA > /etc/balena-engine/certs.d/reg.test:5000/ca.crt; "
        "echo x 2>/dev/null > /etc/machine-id || echo id-ro; touch /etc/new 2>/dev/null || echo etc-ro; "
        "/bin/sh /usr/lib/balena-state/root-overlay.sh >/dev/null; echo again=$?; " + probe.replace("echo \"", "echo \"2")))
    assert rc == 0, out
    for want in (f"id={a}", "host=image-default", "net=80-image.network ", "ctl=", "id-ro", "etc-ro", "again=0"):
        assert re.search(rf"^{re.escape(want)}$", out, re.M), f"first boot: no {want!r} in:\n{out}"
    binds = re.search(r"^binds=(\d+)$", out, re.M).group(1)
    assert re.search(rf"^2binds={binds}$", out, re.M), f"the repeat bound again:\n{out}"
    assert (state / "root-overlay/etc/machine-id").read_text() == a + "\n"
    assert (state / "root-overlay/etc/writable/hostname").read_text() == "newname\n"
    assert (state / "root-overlay/etc/balena-engine/certs.d/reg.test:5000/ca.crt").read_text() == "CA\n"
    assert sorted(os.listdir(state / "root-overlay/etc/systemd/network")) == ["50-op.network", "80-image.network"]
    assert not list(state.rglob(".*.seeding")), "a temporary copy was left"

    # Reboot: a new transient ID; the persisted one wins, journald is restarted, the hostname is the operator's.
    rc, out = overlay_boot(img, state, b, probe)
    assert rc == 0, out
    for want in (f"id={a}", "host=newname", "net=50-op.network 80-image.network ",
                 "ctl=--no-block try-restart systemd-journald.service"):
        assert re.search(rf"^{re.escape(want)}$", out, re.M), f"reboot: no {want!r} in:\n{out}"

    # A persisted file without a valid ID (a damaged card): replaced by the current one, with a warning.
    (state / "root-overlay/etc/machine-id").write_text("uninitialized\n")
    rc, out = overlay_boot(img, state, c, probe)
    assert rc == 0 and f"id={c}" in out and "WARNING" in out, out
    assert (state / "root-overlay/etc/machine-id").read_text() == c + "\n"

passed = sum(1 for _, e in results if e is None)
failed = len(results) - passed
print(f"\nconf: {passed} passed, {failed} failed")
if os.environ.get("CONF_COUNTS"):
    with open(os.environ["CONF_COUNTS"], "a") as f:
        f.write(f"{passed} {failed}\n")
sys.exit(1 if failed else 0)
