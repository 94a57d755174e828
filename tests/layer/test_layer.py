#!/usr/bin/env python3
"""Offline checks of the Yocto layer (meta-balena-engine), the kas files and the CI workflow.

Run through scripts/test-layer.sh, which installs the pinned tools (kas, oelint-adv,
bitbake-setup for BitBake's `bb` library) into a venv and runs this file with it:

    python3 tests/layer/test_layer.py [NAME_SUBSTRING ...]

Each test_* function is one check; the last line printed is `N passed, M failed`. The file
also works under pytest (the functions are plain tests).
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYER = os.path.join(ROOT, "meta-balena-engine")
RECIPE_DIR = os.path.join(LAYER, "recipes-containers", "balena-engine")
ENGINE_BB = os.path.join(RECIPE_DIR, "balena-engine_git.bb")
CRATES_INC = os.path.join(RECIPE_DIR, "balena-engine-crates.inc")
IMAGE_BB = os.path.join(LAYER, "recipes-core", "images", "balena-engine-image.bb")
WKS = os.path.join(LAYER, "files", "wic", "balena-engine-sdcard.wks.in")
WORKFLOW = os.path.join(ROOT, ".github", "workflows", "yocto.yml")
MACHINES = ["raspberrypi3", "raspberrypi4-64", "raspberrypi5", "qemuarm64", "qemux86-64"]
# Classes the recipes inherit: all of them exist in openembedded-core wrynose (meta/classes*).
OE_CLASSES = ["base", "cargo", "cargo-update-recipe-crates", "systemd", "useradd", "features_check",
              "core-image", "allarch", "native"]


def layer_files(*patterns):
    out = []
    for pat in patterns:
        out += glob.glob(os.path.join(LAYER, "**", pat), recursive=True)
    return sorted(set(out))


def lint_targets():
    return layer_files("*.bb", "*.bbappend", "*.inc")


def rel(path):
    return os.path.relpath(path, ROOT)


def load_lock():
    import tomllib
    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as f:
        return tomllib.load(f)


# --------------------------------------------------------------------------- oelint-adv

def test_oelint_no_findings():
    """oelint-adv (wrynose rules, mode all) finds nothing in any recipe, append or include."""
    exe = shutil.which("oelint-adv")
    assert exe, "oelint-adv is not on PATH (scripts/test-layer.sh installs it)"
    env = dict(os.environ, OELINT_CONFIG=os.path.join(LAYER, ".oelint.cfg"))
    targets = lint_targets()
    assert len(targets) >= 5, "expected at least 5 recipe files, found %s" % targets
    p = subprocess.run([exe, "--quiet", "--relpaths"] + [os.path.relpath(t, LAYER) for t in targets],
                       cwd=LAYER, env=env, capture_output=True, text=True)
    findings = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
    assert p.returncode == 0 and not findings, \
        "oelint-adv reported %d finding(s) (exit %d):\n%s" % (len(findings), p.returncode,
                                                             "\n".join(findings[:40]))


def test_oelint_suppressions_have_reasons():
    """Every rule turned off in .oelint.cfg has a comment giving the reason just above it."""
    lines = open(os.path.join(LAYER, ".oelint.cfg")).read().splitlines()
    in_suppress = False
    problems = []
    for i, line in enumerate(lines):
        if line.startswith("suppress"):
            in_suppress = True
            continue
        if in_suppress and line and not line[0].isspace() and not line.startswith("#"):
            in_suppress = False
        if in_suppress and line.strip().startswith("oelint."):
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("oelint."):
                j -= 1
            if j < 0 or not lines[j].startswith("#"):
                problems.append(line.strip())
    assert not problems, "suppressed without a reason comment: %s" % problems


# --------------------------------------------------------------------------- kas

def kas_files():
    return [os.path.join(ROOT, "kas.yml")] + sorted(glob.glob(os.path.join(ROOT, "kas", "*.yml")))


def test_kas_schema():
    """kas.yml and every kas/ fragment load with kas's own loader (JSON schema + format version)."""
    from kas.includehandler import ConfigFile
    errors = []
    for f in kas_files():
        try:
            ConfigFile.load(f)
        except Exception as e:  # kas raises LoadConfigException with the details logged
            errors.append("%s: %s" % (rel(f), e))
    assert not errors, "kas schema validation failed:\n" + "\n".join(errors)


def test_kas_schema_rejects_bad_file():
    """The schema check is not vacuous: an unknown key is rejected."""
    from kas.includehandler import ConfigFile
    import logging
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as t:
        t.write("header:\n  version: 14\nmachnie: qemuarm64\n")
    logging.disable(logging.CRITICAL)  # kas logs the (expected) validation error
    try:
        ConfigFile.load(t.name)
    except Exception:
        return
    finally:
        logging.disable(logging.NOTSET)
        os.unlink(t.name)
    raise AssertionError("kas accepted a file with the misspelt key 'machnie'")


def kas_context():
    """kas's global context, which its include handler needs (no network, no clone)."""
    import argparse
    from kas.context import create_global_context
    os.environ.setdefault("KAS_WORK_DIR", tempfile.gettempdir())
    create_global_context(argparse.Namespace(no_color=True, log_level="error"))


def test_kas_fragments_merge():
    """Each machine fragment includes kas.yml, sets its own MACHINE, and merges (offline) with it."""
    kas_context()
    from kas.includehandler import IncludeHandler
    for m in MACHINES:
        f = os.path.join(ROOT, "kas", m + ".yml")
        assert os.path.exists(f), "missing kas fragment kas/%s.yml" % m
        config, missing = IncludeHandler([f]).get_config()
        assert not missing, "kas/%s.yml needs repos that are not defined: %s" % (m, missing)
        assert config.get("machine") == m, "kas/%s.yml builds MACHINE %r" % (m, config.get("machine"))
        assert config.get("target") == "balena-engine-image", "kas/%s.yml target %r" % (m, config.get("target"))
        assert "meta-raspberrypi" in config["repos"] and "openembedded-core" in config["repos"]
    config, _ = IncludeHandler([os.path.join(ROOT, "kas.yml")]).get_config()
    assert config.get("machine") in MACHINES, "kas.yml's default machine %r" % config.get("machine")


def test_kas_layers_pinned():
    """Every fetched repository is pinned to a full commit given as a quoted string, with its branch."""
    import yaml
    problems = []
    for f in kas_files():
        data = yaml.safe_load(open(f)) or {}
        for name, repo in (data.get("repos") or {}).items():
            if not repo or not repo.get("url"):
                continue
            commit = repo.get("commit")
            if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
                problems.append("%s: repo %s: commit %r is not a quoted 40-hex string" % (rel(f), name, commit))
            if not isinstance(repo.get("branch"), str):
                problems.append("%s: repo %s: branch %r missing or not a string" % (rel(f), name, repo.get("branch")))
    assert not problems, "\n".join(problems)
    text = open(os.path.join(ROOT, "kas.yml")).read()
    for h in re.findall(r"commit:\s*(\S+)", text):
        assert h.startswith('"') or h.startswith("'"), "unquoted commit hash in kas.yml: %s" % h


def test_workflow_matrix_matches_kas():
    """The CI workflow builds exactly the machines that have a kas fragment."""
    import yaml
    wf = yaml.safe_load(open(WORKFLOW))
    matrix = wf["jobs"]["build"]["strategy"]["matrix"]["machine"]
    assert sorted(matrix) == sorted(MACHINES), "workflow matrix %s != %s" % (matrix, MACHINES)
    steps = " ".join(str(s.get("run", "")) for s in wf["jobs"]["build"]["steps"])
    assert 'kas build "kas/${{ matrix.machine }}.yml"' in steps, "the build step does not run kas build kas/<machine>.yml"


# --------------------------------------------------------------------------- BitBake's parser

STUB_BITBAKE_CONF = r'''
PN = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[0] or 'defaultpkgname'}"
BPN = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[0] or 'defaultpkgname'}"
PV = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[1] or '1.0'}"
BP = "${BPN}-${PV}"
FILE_DIRNAME = "${@os.path.dirname(d.getVar('FILE', False))}"
THISDIR = "${@os.path.dirname(d.getVar('FILE'))}"
CLASSOVERRIDE ?= "class-target"
MACHINEOVERRIDES ?= "qemuall:qemuarm64"
DISTROOVERRIDES ?= "nodistro"
OVERRIDES = "pn-${PN}:${CLASSOVERRIDE}:${DISTROOVERRIDES}:${MACHINEOVERRIDES}:forcevariable"
DISTRO_FEATURES ?= "systemd usrmerge"
WORKDIR = "/work/${PN}"
TOPDIR = "/build"
bindir = "/usr/bin"
nonarch_libdir = "/usr/lib"
sbindir = "/usr/sbin"
sysconfdir = "/etc"
localstatedir = "/var"
systemd_unitdir = "/usr/lib/systemd"
systemd_system_unitdir = "/usr/lib/systemd/system"
UNPACKDIR = "${WORKDIR}/sources"
PACKAGECONFIG ??= "acl"
EXTRA_IMAGE_FEATURES ??= ""
IMAGE_FEATURES += "${EXTRA_IMAGE_FEATURES}"
ROOT_HOME ??= "/root"
PACKAGES = "${PN}-src ${PN}-dbg ${PN}-staticdev ${PN}-dev ${PN}-doc ${PN}-locale ${PACKAGE_BEFORE_PN} ${PN}"
'''


def bb_setup():
    """Import BitBake's bb (from bitbake-setup) with a stub for hashserv, which it lacks."""
    for name in ("hashserv", "hashserv.client"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["hashserv"].client = sys.modules["hashserv.client"]
    import bb
    import bb.data
    import bb.parse
    import bb.utils  # noqa: F401
    return bb


def bb_stub_tree(tmp):
    os.makedirs(os.path.join(tmp, "conf"))
    os.makedirs(os.path.join(tmp, "classes"))
    with open(os.path.join(tmp, "conf", "bitbake.conf"), "w") as f:
        f.write(STUB_BITBAKE_CONF)
    for c in OE_CLASSES:
        with open(os.path.join(tmp, "classes", c + ".bbclass"), "w") as f:
            if c == "native":
                f.write('CLASSOVERRIDE = "class-native"\nPN = "${BPN}-native"\n')
    return tmp


def bb_datastore(bb, stubdir):
    d = bb.data.init()
    d.setVar("__bbclasstype", "recipe")
    d.setVar("BBPATH", stubdir + ":" + LAYER)
    bb.parse.handle(os.path.join(stubdir, "conf", "bitbake.conf"), d, include=True)
    return bb_load_layer(bb, d)


def bb_load_layer(bb, d):
    """Reads the layer's conf/layer.conf into D, as BitBake reads bblayers' layers, and returns D."""
    d.setVar("LAYERDIR", LAYER)
    d.setVar("LAYERDIR_RE", re.escape(LAYER))
    bb.parse.handle(os.path.join(LAYER, "conf", "layer.conf"), d, include=True)
    d.expandVarref("LAYERDIR")
    d.delVar("LAYERDIR")
    import bb.siggen
    bb.parse.siggen = bb.siggen.init(d)  # the default ("noop") signature generator, as bitbake -p sets up
    return d


def bb_parse_recipe(bb, d, fn, appends=()):
    d = bb.data.createCopy(d)
    if appends:
        d.setVar("__BBAPPEND", " ".join(appends))
    return bb.parse.handle(fn, d, include=0)


def test_bitbake_parses_layer_conf():
    """BitBake's parser reads conf/layer.conf: collection, priority, series, dependencies, BBFILES."""
    bb = bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        assert d.getVar("BBFILE_COLLECTIONS").split() == ["balena-engine"], d.getVar("BBFILE_COLLECTIONS")
        assert d.getVar("BBFILE_PATTERN_balena-engine") == "^%s/" % LAYER
        assert d.getVar("LAYERSERIES_COMPAT_balena-engine").split() == ["wrynose"]
        assert d.getVar("LAYERDEPENDS_balena-engine").split() == ["core"]
        assert d.getVar("BALENA_ENGINE_LAYERDIR") == LAYER
        matched = set()
        for pat in d.getVar("BBFILES").split():
            matched |= set(glob.glob(pat))
        for dyn in d.getVar("BBFILES_DYNAMIC").split():
            coll, pat = dyn.split(":", 1)
            assert coll == "raspberrypi", "unexpected dynamic layer %s" % coll
            matched |= set(glob.glob(pat))
        recipes = set(layer_files("*.bb", "*.bbappend"))
        assert recipes == matched, "recipes not reached by BBFILES/BBFILES_DYNAMIC: %s" % sorted(recipes - matched)


def test_bitbake_parses_engine_recipe():
    """The engine recipe parses (target and native variants) and says what the layer promises."""
    bb = bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        variants = bb_parse_recipe(bb, d, ENGINE_BB)
        assert set(variants) == {"", "native"}, "variants: %s" % sorted(variants)
        r = variants[""]
        assert r.getVar("PN") == "balena-engine"
        inherits = [os.path.basename(c) for c in r.getVar("__inherit_cache", False)]
        for c in ("cargo.bbclass", "cargo-update-recipe-crates.bbclass", "systemd.bbclass"):
            assert c in inherits, "balena-engine does not inherit %s" % c
        assert r.getVar("LICENSE") == "Apache-2.0"
        lic = r.getVar("LIC_FILES_CHKSUM")
        m = re.fullmatch(r"file://LICENSE;md5=([0-9a-f]{32})", lic)
        assert m, "LIC_FILES_CHKSUM %r" % lic
        actual = hashlib.md5(open(os.path.join(ROOT, "LICENSE"), "rb").read()).hexdigest()
        assert m.group(1) == actual, "LICENSE md5 is %s, the recipe says %s" % (actual, m.group(1))
        src = r.getVar("SRC_URI").split()
        assert src[0].startswith("git://") and "branch=" in src[0], "first SRC_URI %r" % src[0]
        assert re.fullmatch(r"[0-9a-f]{40}", r.getVar("SRCREV")), "SRCREV %r" % r.getVar("SRCREV")
        crates = [u for u in src if u.startswith("crate://")]
        lock = [p for p in load_lock()["package"] if "crates.io" in p.get("source", "")]
        assert len(crates) == len(lock), "%d crate:// URIs for %d crates.io packages" % (len(crates), len(lock))
        for p in lock:
            flag = r.getVarFlag("SRC_URI", "%s-%s.sha256sum" % (p["name"], p["version"]))
            assert flag == p["checksum"], "SRC_URI[%s-%s.sha256sum] = %r" % (p["name"], p["version"], flag)
        assert r.getVar("SYSTEMD_SERVICE:balena-engine").split() == ["balena-engine.socket", "balena-engine.service"]
        packages = r.getVar("PACKAGES").split()
        for p in ("balena-engine", "balena-engine-healthcheck", "balena-engine-policy"):
            assert p in packages, "no package %s in %s" % (p, packages)
        assert r.getVar("FILES:balena-engine-healthcheck").split() == ["/usr/bin/balena-engine-healthcheck"]
        assert r.getVar("BALENA_ENGINE_BINARIES").split() == \
            ["balena-engine", "balena-engined", "balena-engine-healthcheck"]
        assert "${S}/conf/" in r.getVar("do_install", False), "do_install does not install from ${S}/conf"
        assert r.getVar("GROUPADD_PARAM:balena-engine") == "-r balena-engine", "the socket's group is not created"
        n = variants["native"]
        assert n.getVar("PN") == "balena-engine-native"
        assert n.getVar("BALENA_ENGINE_BINARIES") == "balena-engine"
        assert "-p balena-engine" in (n.getVar("CARGO_BUILD_FLAGS") or "")
        assert n.getVar("REQUIRED_DISTRO_FEATURES") == ""


def test_bitbake_parses_image_recipe():
    """The image recipe parses: systemd, read-only root, the wic runqemu boots, wks found, preload task."""
    bb = bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        r = bb_parse_recipe(bb, d, IMAGE_BB)[""]
        assert "systemd" in r.getVar("REQUIRED_DISTRO_FEATURES").split()
        assert "read-only-rootfs" in r.getVar("IMAGE_FEATURES").split()
        fstypes = r.getVar("IMAGE_FSTYPES").split()  # the stub's machine is qemuarm64 (test_machines: all five)
        assert fstypes == ["wic"], "IMAGE_FSTYPES %s" % fstypes
        assert "balena-engine" in r.getVar("IMAGE_INSTALL").split()
        wks = r.getVar("WKS_FILE")
        assert os.path.exists(os.path.join(LAYER, "files", "wic", wks)), \
            "WKS_FILE %s is not in files/wic/ (where image_types_wic looks on wrynose)" % wks
        tasks = r.getVar("__BBTASKS", False) or []
        assert "do_balena_preload" in tasks, "no do_balena_preload task"
        assert r.getVarFlag("do_balena_preload", "fakeroot"), "do_balena_preload must run under pseudo"
        assert "do_image" in (r.getVarFlag("do_balena_preload", "postdeps", False) or []) or \
            "do_balena_preload" in (r.getVarFlag("do_image", "deps", False) or []), "preload does not run before do_image"
        assert r.getVar("BALENA_DATA_DIR") in r.getVar("PSEUDO_INCLUDE_PATHS")
        assert r.getVar("DEPENDS").split() == [], "no native engine needed without preloads"
        # As if set in local.conf: DEPENDS is final once the recipe is parsed.
        d.setVar("BALENA_ENGINE_PRELOAD", "apps/app.tar /abs/b.tar")
        r = bb_parse_recipe(bb, d, IMAGE_BB)[""]
        assert "balena-engine-native" in r.getVar("DEPENDS").split(), "DEPENDS %r" % r.getVar("DEPENDS")
        body = r.expand(r.getVar("do_balena_preload", False))
        assert "/build/apps/app.tar /abs/b.tar" in body, "preload paths are not resolved against TOPDIR"
        assert "--data-root" in body and "image load -i" in body
        assert r.getVar("QB_KERNEL_ROOT") == "/dev/vda2 ro"
        post = r.getVar("ROOTFS_POSTPROCESS_COMMAND").split()
        for f in ("balena_mountpoints", "balena_fstab", "balena_root_overlay"):
            assert f in post, "%s is not run on the root file system (ROOTFS_POSTPROCESS_COMMAND %s)" % (f, post)
        assert "root-overlay.sh --image" in r.getVar("balena_root_overlay", False)


def test_bitbake_parses_appends_and_includes():
    """Every .bbappend parses onto a recipe of its name and changes it only under df-balena-engine."""
    bb = bb_setup()
    touched = ("SRC_URI", "FILESEXTRAPATHS", "PACKAGECONFIG", "CMDLINE")
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        for inc in layer_files("*.inc"):
            bb.parse.handle(inc, bb.data.createCopy(d), include=True)
        d_on = bb.data.createCopy(d)
        d_on.setVar("DISTROOVERRIDES", "nodistro:df-balena-engine")
        for app in layer_files("*.bbappend"):
            name = os.path.basename(app)[:-len(".bbappend")].replace("%", "6.18")
            if "_" not in name:
                name += "_6.18"
            fake = os.path.join(tmp, name + ".bb")
            open(fake, "w").write('LICENSE = "GPL-2.0-only"\nSRC_URI = "git://example/src.git"\n')
            base = bb_parse_recipe(bb, d, fake)[""]
            plain = bb_parse_recipe(bb, d, fake, [app])[""]
            on = bb_parse_recipe(bb, d_on, fake, [app])[""]
            for v in touched:
                assert base.getVar(v) == plain.getVar(v), \
                    "%s changes %s without the df-balena-engine override" % (rel(app), v)
            assert any(plain.getVar(v) != on.getVar(v) for v in touched), \
                "%s changes nothing under df-balena-engine" % rel(app)
            if "file://balena-engine.cfg" in on.getVar("SRC_URI").split():
                paths = on.getVar("FILESEXTRAPATHS").split(":")
                assert any(os.path.exists(os.path.join(p, "balena-engine.cfg")) for p in paths if p), \
                    "%s: balena-engine.cfg not found in FILESEXTRAPATHS %s" % (rel(app), paths)


def test_bitbake_parses_data_grow_recipe():
    """balena-data-grow parses; its unit runs the installed script and waits for the data mount."""
    bb = bb_setup()
    fn = os.path.join(LAYER, "recipes-core", "balena-data-grow", "balena-data-grow_1.0.bb")
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        r = bb_parse_recipe(bb, d, fn)[""]
        assert r.getVar("SYSTEMD_SERVICE:balena-data-grow") == "balena-data-grow.service"
        files = os.path.join(os.path.dirname(fn), "files")
        for u in r.getVar("SRC_URI").split():
            assert os.path.exists(os.path.join(files, u[len("file://"):])), "missing %s" % u
        lic = r.getVar("LIC_FILES_CHKSUM")
        m = re.fullmatch(r"file://(\S+);beginline=(\d+);endline=(\d+);md5=([0-9a-f]{32})", lic)
        assert m, "LIC_FILES_CHKSUM %r" % lic
        lines = open(os.path.join(files, m.group(1)), "rb").read().splitlines(True)
        chunk = b"".join(lines[int(m.group(2)) - 1:int(m.group(3))])
        assert hashlib.md5(chunk).hexdigest() == m.group(4), "license lines' md5 changed: %r" % chunk
        unit = open(os.path.join(files, "balena-data-grow.service")).read()
        assert "ExecStart=/usr/sbin/balena-data-grow" in unit and "mnt-data.mount" in unit
        assert "${sbindir}/balena-data-grow" in r.getVar("do_install", False)


def test_bitbake_parser_catches_errors():
    """The parser check is not vacuous: an unterminated shell function is a parse error."""
    bb = bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        bad = os.path.join(tmp, "bad_1.0.bb")
        open(bad, "w").write('LICENSE = "MIT"\ndo_install() {\n    true\n')
        try:
            bb_parse_recipe(bb, d, bad)
        except Exception:
            return
        raise AssertionError("bb.parse accepted a recipe with an unterminated function")


# --------------------------------------------------------------------------- crates.inc

def test_crates_inc_in_sync_with_cargo_lock():
    """balena-engine-crates.inc is what scripts/gen-crates-inc.py writes from Cargo.lock today."""
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-crates-inc.py"), "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, "crates.inc drifted from Cargo.lock:\n" + p.stdout + p.stderr


def test_crates_inc_lists_every_crate():
    """Independently of the generator: each crates.io package of Cargo.lock, and nothing else."""
    text = open(CRATES_INC).read()
    listed = re.findall(r"^    crate://crates\.io/([^/\s]+)/(\S+) \\$", text, re.M)
    sums = dict(re.findall(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', text, re.M))
    lock = [(p["name"], p["version"], p["checksum"]) for p in load_lock()["package"]
            if "crates.io" in p.get("source", "")]
    missing = [(n, v) for n, v, _ in lock if (n, v) not in listed]
    extra = [x for x in listed if x not in [(n, v) for n, v, _ in lock]]
    wrong = ["%s-%s" % (n, v) for n, v, c in lock if sums.get("%s-%s" % (n, v)) != c]
    assert not missing and not extra and not wrong, \
        "crates.inc vs Cargo.lock: missing %s, extra %s, wrong checksum %s" % (missing[:10], extra[:10], wrong[:10])
    assert text.startswith("# Autogenerated with 'bitbake -c update_crates balena-engine'\n\n# from Cargo.lock\n")


def test_crates_check_detects_drift():
    """The sync check fails on a Cargo.lock with one more crate."""
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    lock += ('\n[[package]]\nname = "zz-extra"\nversion = "1.0.0"\n'
             'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
             'checksum = "%s"\n' % ("0" * 64))
    with tempfile.TemporaryDirectory() as tmp:
        open(os.path.join(tmp, "Cargo.lock"), "w").write(lock)
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-crates-inc.py"), "--check",
                            "--lock", os.path.join(tmp, "Cargo.lock")], capture_output=True, text=True)
    assert p.returncode == 1 and "zz-extra" in p.stdout, "drift not reported: %s" % p.stdout[-400:]


# --------------------------------------------------------------------------- wic layout

def parse_wks():
    parts = []
    for line in open(WKS):
        line = line.strip()
        if not line.startswith("part "):
            continue
        toks = line.split()
        opts = {}
        i = 1
        mount = None
        if not toks[1].startswith("--"):
            mount = toks[1]
            i = 2
        while i < len(toks):
            t = toks[i]
            if "=" in t:
                k, v = t.split("=", 1)
                opts[k] = v
            elif i + 1 < len(toks) and not toks[i + 1].startswith("--"):
                opts[t] = toks[i + 1]
                i += 1
            else:
                opts[t] = True
            i += 1
        parts.append((mount, opts))
    return parts


def test_wks_layout():
    """SD card layout: msdos, boot/rootA/rootB/state/data in that order, 4 MiB aligned, equal slots."""
    parts = parse_wks()
    labels = [o.get("--label") for _, o in parts]
    assert labels == ["balena-boot", "balena-rootA", "balena-rootB", "balena-state", "balena-data"], labels
    for _, o in parts:
        assert o.get("--align") == "4096", "%s is not 4 MiB aligned" % o.get("--label")
        assert len(o["--label"]) <= (11 if o.get("--fstype") == "vfat" else 16), "label too long: %s" % o["--label"]
    boot, root_a, root_b, state, data = [o for _, o in parts]
    assert boot.get("--fstype") == "vfat" and boot.get("--active") is True
    assert parts[1][0] == "/" and root_a.get("--source") == "rootfs"
    assert root_a.get("--fixed-size") == root_b.get("--fixed-size") == "${BALENA_ROOT_SIZE}M"
    assert "--source" not in root_b and "--source" not in state, "rootB and state start empty"
    assert state.get("--fixed-size") == "${BALENA_STATE_SIZE}M"
    assert data.get("--rootfs-dir") == "${BALENA_DATA_DIR}", "the data partition is not filled from BALENA_DATA_DIR"
    assert re.search(r"^bootloader\s+--ptable\s+msdos\s*$", open(WKS).read(), re.M), "not an msdos table"
    image = open(IMAGE_BB).read()
    sizes = dict(re.findall(r'^(BALENA_\w+_SIZE) \?= "(\d+)"$', image, re.M))
    assert sizes.get("BALENA_STATE_SIZE") == "80" and sizes.get("BALENA_BOOT_SIZE") == "100", sizes


# --------------------------------------------------------------------------- the source tree

def workspace_binaries():
    import tomllib
    root = tomllib.load(open(os.path.join(ROOT, "Cargo.toml"), "rb"))
    bins = set()
    for member in root["workspace"]["members"]:
        manifest = tomllib.load(open(os.path.join(ROOT, member, "Cargo.toml"), "rb"))
        targets = manifest.get("bin")
        if targets:
            bins |= {b["name"] for b in targets}
        elif os.path.exists(os.path.join(ROOT, member, "src", "main.rs")):
            bins.add(manifest["package"]["name"])
    return bins


def test_recipe_binaries_are_built_by_the_workspace():
    """Every binary the recipe installs is a binary target of a workspace member."""
    text = open(ENGINE_BB).read()
    wanted = re.search(r'^BALENA_ENGINE_BINARIES = "([^"]*)"', text, re.M).group(1).split()
    built = workspace_binaries()
    missing = [b for b in wanted if b not in built]
    assert not missing, "the recipe installs %s, which no workspace member builds (members build %s)" % (
        missing, sorted(built))


def conf_readme_table():
    """(file, install path, images) rows of conf/README.md's table: the other side's install map."""
    text = open(os.path.join(ROOT, "conf", "README.md")).read()
    rows = re.findall(r"^\| `([^`]+)` \| `(/[^`]+)` \| (all|development) \|", text, re.M)
    assert rows, "conf/README.md has no file table"
    return rows


def recipe_install_map(r, var):
    return {e.split(":", 1)[0]: e.split(":", 1)[1] for e in r.getVar(var).split()}


def test_recipe_installs_conf_as_conf_readme_maps_it():
    """Each file of conf/README.md's table is installed at its stated path, development ones apart."""
    assert os.path.isdir(os.path.join(ROOT, "conf")), "no conf/ in the source tree: the recipe installs from it"
    bb = bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        r = bb_parse_recipe(bb, d, ENGINE_BB)[""]
    everywhere = {**recipe_install_map(r, "BALENA_ENGINE_CONF"), **recipe_install_map(r, "BALENA_ENGINE_POLICY_CONF")}
    development = recipe_install_map(r, "BALENA_ENGINE_DEVELOPMENT_CONF")
    problems = []
    rows = conf_readme_table()
    for src, dest, images in rows:
        mine = development if images == "development" else everywhere
        if src not in mine:
            problems.append("conf/%s (%s images) is not installed by the recipe" % (src, images))
        elif mine[src] != dest:
            problems.append("conf/%s goes to %s in the recipe, %s in conf/README.md" % (src, mine[src], dest))
        if not os.path.isfile(os.path.join(ROOT, "conf", src)):
            problems.append("conf/README.md lists conf/%s, which does not exist" % src)
    listed = {src for src, _, _ in rows}
    for src in list(everywhere) + list(development):
        if src not in listed:
            problems.append("the recipe installs conf/%s, which conf/README.md does not list" % src)
    shipped = {os.path.relpath(p, os.path.join(ROOT, "conf"))
               for p in glob.glob(os.path.join(ROOT, "conf", "**", "*"), recursive=True) if os.path.isfile(p)}
    for f in sorted(shipped - listed - {"README.md"}):
        problems.append("conf/%s is in no row of conf/README.md's table, so not installed" % f)
    assert not problems, "\n".join(problems)


def test_recipe_enables_the_units_conf_readme_asks_for():
    """SYSTEMD_SERVICE enables exactly the units conf/README.md lists as enabled."""
    text = open(os.path.join(ROOT, "conf", "README.md")).read()
    m = re.search(r"enabled units: (.*?);", text, re.S)
    assert m, "conf/README.md no longer says which units are enabled"
    wanted = set(re.findall(r"`([\w.@-]+\.(?:service|socket|mount|timer))`", m.group(1)))
    bb = bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = bb_datastore(bb, bb_stub_tree(tmp))
        r = bb_parse_recipe(bb, d, ENGINE_BB)[""]
    enabled = set()
    for pkg in r.getVar("SYSTEMD_PACKAGES").split():
        enabled |= set((r.getVar("SYSTEMD_SERVICE:" + pkg) or "").split())
    assert enabled == wanted, "enabled %s, conf/README.md asks for %s" % (sorted(enabled), sorted(wanted))
    assert r.getVar("SYSTEMD_AUTO_ENABLE") == "enable"


# --------------------------------------------------------------------------- scripts

def own_shell_scripts():
    return [os.path.join(ROOT, "scripts", "test-layer.sh"), os.path.join(ROOT, "scripts", "check-layer-bitbake.sh")] + \
        sorted(glob.glob(os.path.join(ROOT, "tests", "layer", "*.sh"))) + layer_files("*.sh")


def test_shell_scripts_bash_n_and_shellcheck():
    """bash -n and shellcheck pass on the shell scripts of the layer work."""
    problems = []
    for s in own_shell_scripts():
        p = subprocess.run(["bash", "-n", s], capture_output=True, text=True)
        if p.returncode:
            problems.append("bash -n %s: %s" % (rel(s), p.stderr.strip()))
    sc = shutil.which("shellcheck")
    assert sc, "shellcheck is not installed (scripts/test-layer.sh installs it with apt)"
    p = subprocess.run([sc, "-x"] + own_shell_scripts(), capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        problems.append("shellcheck:\n" + p.stdout[-3000:])
    assert not problems, "\n".join(problems)


def test_python_scripts_compile():
    """The generator and these tests are valid Python."""
    import py_compile
    for f in [os.path.join(ROOT, "scripts", "gen-crates-inc.py")] + glob.glob(os.path.join(ROOT, "tests", "layer", "*.py")):
        py_compile.compile(f, doraise=True, cfile=os.path.join(tempfile.gettempdir(), "layer-pycheck.pyc"))


# --------------------------------------------------------------------------- runner

# The other files of this directory, each one concern of the layer's checks.
MODULES = ["test_machines", "test_source", "test_os_policy", "test_kernel_config"]


def collect(modules):
    tests = []
    for mod in modules:
        fns = [(n, f) for n, f in vars(mod).items()
               if n.startswith("test_") and callable(f) and getattr(f, "__module__", None) == mod.__name__]
        tests += sorted(fns, key=lambda kv: kv[1].__code__.co_firstlineno)
    return tests


def main(argv, modules=None):
    if modules is None:
        import importlib
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        modules = [sys.modules[__name__]] + [importlib.import_module(m) for m in MODULES]
    tests = collect(modules)
    if argv:
        tests = [(n, f) for n, f in tests if any(a in n for a in argv)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception as e:
            failed += 1
            msg = str(e) if isinstance(e, AssertionError) and str(e) else traceback.format_exc(limit=3)
            print("FAIL %s: %s\n     %s" % (name, fn.__doc__.strip().splitlines()[0], msg.replace("\n", "\n     ")))
        else:
            passed += 1
            print("ok   %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
