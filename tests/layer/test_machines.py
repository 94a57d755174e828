"""The layer as a user's `kas build kas/<machine>.yml` composes it, machine by machine.

kas itself composes kas.yml with the machine's file (its Config and IncludeHandler, offline) and
writes local.conf the way kas does (the sorted local_conf_header sections, then MACHINE and
DISTRO); BitBake's parser reads that over a stub of oe-core's bitbake.conf, a stub of the
machine's configuration (the defaults of meta-raspberrypi and oe-core that the recipes must
override, copied below with their source), the classes the local.conf inherits, and the layer.
What it catches: a default SRC_URI that cannot be fetched (a placeholder, a path that is not a
git repository holding SRCREV), image types nobody flashes, a Raspberry Pi command line without
the memory cgroup controller, a development image nobody can log in to or a production image
that can be. `scripts/check-layer-bitbake.sh` runs the same composition through real BitBake.
"""
import argparse
import os
import re
import subprocess
import tempfile

import test_layer as base

# The machines' defaults the image recipe meets, as their layers set them (kas.yml's pins):
# meta-raspberrypi conf/machine/include/rpi-base.inc, oe-core conf/machine/include/qemu.inc and
# x86/x86-base.inc. Overrides: meta-raspberrypi's machines add "rpi", oe-core's qemu ones "qemuall".
MACHINE_CONF = {
    "raspberrypi3": ("rpi:raspberrypi3", 'IMAGE_FSTYPES ?= "tar.bz2 ext3 wic.bz2 wic.bmap"\n'),
    "raspberrypi4-64": ("rpi:raspberrypi4-64", 'IMAGE_FSTYPES ?= "tar.bz2 ext3 wic.bz2 wic.bmap"\n'),
    "raspberrypi5": ("rpi:raspberrypi5", 'IMAGE_FSTYPES ?= "tar.bz2 ext3 wic.bz2 wic.bmap"\n'),
    "qemuarm64": ("qemuall:qemuarm64", 'IMAGE_FSTYPES += "tar.zst ext4.zst"\n'),
    "qemux86-64": ("qemuall:qemux86-64", 'IMAGE_FSTYPES += "tar.zst ext4.zst"\nIMAGE_FSTYPES ?= "wic.zst"\n'),
}
# What is flashed (Raspberry Pi: the card image and its block map for bmaptool) or booted (runqemu).
FLASHED = {"rpi": ["wic.bz2", "wic.bmap"], "qemuall": ["wic"]}
# oe-core's distrooverrides class (meta/classes/distrooverrides.bbclass), which kas.yml inherits.
DISTROOVERRIDES_CLASS = (
    "DISTROOVERRIDES .= \"${@ ''.join([':df-' + x for x in sorted(set(d.getVar('DISTRO_FEATURES_OVERRIDES')"
    ".split()) & set((d.getVar('DISTRO_FEATURES') or '').split()))]) }\"\n")
PI_CMDLINE_MEMCG = ["cgroup_enable=memory", "cgroup_memory=1"]
DEVELOPMENT_FEATURES = {"empty-root-password", "serial-autologin-root"}
SSH_FEATURES = {"allow-root-login", "ssh-server-dropbear"}
OPEN_FEATURES = DEVELOPMENT_FEATURES | SSH_FEATURES | {"allow-empty-password", "debug-tweaks"}


def kas_compose(*files):
    """(local.conf text, MACHINE) exactly as `kas build FILE[:FILE...]` writes them."""
    base.kas_context()
    from kas.config import Config
    from kas.context import get_context
    config = Config(get_context(), ":".join(os.path.join(base.ROOT, f) for f in files))
    config.find_missing_repos()
    machine = config.get_machine()
    text = config.get_local_conf_header()
    text += 'MACHINE ??= "%s"\nDISTRO ??= "%s"\n' % (machine, config.get_distro())
    return text, machine


def machine_datastore(bb, tmp, local_conf, machine, extra=""):
    """The stub bitbake.conf, the machine's defaults, local.conf (+ extra lines) and its INHERITs, the layer."""
    stub = base.bb_stub_tree(tmp)
    overrides, machine_conf = MACHINE_CONF[machine]
    with open(os.path.join(stub, "conf", "machine.conf"), "w") as f:
        f.write('MACHINEOVERRIDES = "%s"\n' % overrides + machine_conf)
    with open(os.path.join(stub, "conf", "local.conf"), "w") as f:
        f.write(local_conf + extra)
    for c in ("distrooverrides", "rm_work", "externalsrc"):
        with open(os.path.join(stub, "classes", c + ".bbclass"), "w") as f:
            f.write(DISTROOVERRIDES_CLASS if c == "distrooverrides" else "")
    d = bb.data.init()
    d.setVar("__bbclasstype", "recipe")
    d.setVar("BBPATH", stub + ":" + base.LAYER)
    bb.parse.handle(os.path.join(stub, "conf", "bitbake.conf"), d, include=True)
    bb.parse.handle(os.path.join(stub, "conf", "machine.conf"), d, include=True)
    bb.parse.handle(os.path.join(stub, "conf", "local.conf"), d, include=True)
    assert d.getVar("MACHINE") == machine, "local.conf builds MACHINE %r" % d.getVar("MACHINE")
    for c in (d.getVar("INHERIT") or "").split():
        path = os.path.join(stub, "classes", c + ".bbclass")
        assert os.path.exists(path), "local.conf inherits %s, which this check does not know" % c
        bb.parse.handle(path, d, include=True)
    return base.bb_load_layer(bb, d)


def dynamic_appends(d, recipe_name):
    """The layer's bbappends for RECIPE_NAME from BBFILES_DYNAMIC (meta-raspberrypi is in every build)."""
    import glob
    found = []
    for dyn in d.getVar("BBFILES_DYNAMIC").split():
        _, pat = dyn.split(":", 1)
        found += [p for p in glob.glob(pat) if os.path.basename(p).split("_")[0].split(".")[0] == recipe_name]
    return found


def each_machine(check):
    problems = []
    bb = base.bb_setup()
    for m in base.MACHINES:
        local_conf, machine = kas_compose("kas/%s.yml" % m)
        assert machine == m, "kas/%s.yml composes MACHINE %s" % (m, machine)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                check(bb, tmp, m, local_conf)
            except AssertionError as e:
                problems.append("%s: %s" % (m, e))
    assert not problems, "\n".join(problems)


def git_source(src_uri):
    """(path, params) of a git SRC_URI entry with protocol=file; fails on anything else."""
    import bb.fetch2
    scheme, host, path, _, _, params = bb.fetch2.decodeurl(src_uri)
    assert scheme == "git", "the engine's source is %r, not a git URL" % src_uri
    assert not re.search(r"\bORG\b|example|placeholder", src_uri, re.I), "placeholder source %r" % src_uri
    assert params.get("protocol") == "file", \
        "the default source %r is remote: a default must be fetchable from the checkout (protocol=file)" % src_uri
    return host + path, params


def test_default_source_is_the_checkout_at_srcrev():
    """Each machine as kas composes it: the engine's source is this git checkout, and it holds SRCREV."""
    def check(bb, tmp, m, local_conf):
        d = machine_datastore(bb, tmp, local_conf, m)
        r = base.bb_parse_recipe(bb, d, base.ENGINE_BB)[""]
        assert not r.getVar("EXTERNALSRC"), "EXTERNALSRC is set without kas/local-source.yml"
        path, params = git_source(r.getVar("SRC_URI").split()[0])
        assert os.path.realpath(path) == os.path.realpath(base.ROOT), "source %s is not this checkout %s" % (
            path, base.ROOT)
        rev = r.getVar("SRCREV")
        assert re.fullmatch(r"[0-9a-f]{40}", rev), "SRCREV %r" % rev
        p = subprocess.run(["git", "-C", path, "cat-file", "-e", rev + "^{commit}"], capture_output=True, text=True)
        assert p.returncode == 0, "the checkout lacks SRCREV %s (a shallow clone?): %s" % (rev, p.stderr.strip())
        if params.get("nobranch") != "1":
            branch = params.get("branch", "master")
            p = subprocess.run(["git", "-C", path, "merge-base", "--is-ancestor", rev, branch], capture_output=True)
            assert p.returncode == 0, "SRCREV %s is not on branch %s of the checkout" % (rev, branch)
    each_machine(check)


def test_default_source_check_rejects_a_placeholder_and_a_missing_commit():
    """The source check is not vacuous: a placeholder URL, a remote URL and an absent SRCREV all fail."""
    base.bb_setup()
    for uri in ("git://github.com/ORG/balena-engine-rs.git;protocol=https;branch=main",
                "git://github.com/balena-os/balena-engine.git;protocol=https;branch=main"):
        try:
            git_source(uri)
        except AssertionError:
            continue
        raise AssertionError("accepted %s" % uri)
    p = subprocess.run(["git", "-C", base.ROOT, "cat-file", "-e", "0" * 39 + "1^{commit}"], capture_output=True)
    assert p.returncode != 0, "git found a commit that does not exist"


def test_local_source_builds_the_working_tree():
    """kas/local-source.yml after a machine's file points externalsrc at this working tree."""
    bb = base.bb_setup()
    local_conf, m = kas_compose("kas/qemuarm64.yml", "kas/local-source.yml")
    with tempfile.TemporaryDirectory() as tmp:
        d = machine_datastore(bb, tmp, local_conf, m)
        r = base.bb_parse_recipe(bb, d, base.ENGINE_BB)[""]
        for pn in ("balena-engine", "balena-engine-native"):
            v = d.getVar("EXTERNALSRC:pn-" + pn)
            assert v and os.path.realpath(v) == os.path.realpath(base.ROOT), "EXTERNALSRC:pn-%s = %r" % (pn, v)
        assert "externalsrc" in d.getVar("INHERIT").split()
        assert r.getVar("PN") == "balena-engine"


def test_image_types_are_what_is_flashed_or_booted():
    """Each machine's IMAGE_FSTYPES is exactly the card image (+ bmap) on a Pi, the wic runqemu boots on QEMU."""
    def check(bb, tmp, m, local_conf):
        d = machine_datastore(bb, tmp, local_conf, m)
        r = base.bb_parse_recipe(bb, d, base.IMAGE_BB)[""]
        kind = MACHINE_CONF[m][0].split(":")[0]
        fstypes = r.getVar("IMAGE_FSTYPES").split()
        assert fstypes == FLASHED[kind], "IMAGE_FSTYPES %s, expected %s" % (fstypes, FLASHED[kind])
        # A user's own additions still work.
        d2 = machine_datastore(bb, tempfile.mkdtemp(dir=tmp), local_conf, m, 'IMAGE_FSTYPES:append = " ext4"\n')
        more = base.bb_parse_recipe(bb, d2, base.IMAGE_BB)[""].getVar("IMAGE_FSTYPES").split()
        assert more == FLASHED[kind] + ["ext4"], "IMAGE_FSTYPES:append in local.conf gives %s" % more
    each_machine(check)


def test_raspberry_pi_command_line_enables_the_memory_controller():
    """On the Pi machines rpi-cmdline's CMDLINE gets cgroup_enable=memory cgroup_memory=1 (else no --memory)."""
    def check(bb, tmp, m, local_conf):
        if not m.startswith("raspberrypi"):
            return
        d = machine_datastore(bb, tmp, local_conf, m)
        appends = dynamic_appends(d, "rpi-cmdline")
        assert appends, "no bbappend for meta-raspberrypi's rpi-cmdline in the layer"
        fake = os.path.join(tmp, "rpi-cmdline.bb")
        with open(fake, "w") as f:  # rpi-cmdline.bb's own assignments (meta-raspberrypi), shortened
            f.write('LICENSE = "MIT"\nCMDLINE_DWC_OTG ?= "dwc_otg.lpm_enable=0"\n'
                    'CMDLINE_ROOTFS ?= "root=/dev/mmcblk0p2 rootfstype=ext4 rootwait"\n'
                    'CMDLINE = " ${CMDLINE_DWC_OTG} ${CMDLINE_ROOTFS}"\n')
        cmdline = base.bb_parse_recipe(bb, d, fake, appends)[""].getVar("CMDLINE").split()
        missing = [a for a in PI_CMDLINE_MEMCG if a not in cmdline]
        assert not missing, "CMDLINE %s lacks %s" % (cmdline, missing)
        assert "ro" in cmdline, "the root is not mounted read-only from the start: %s" % cmdline
    each_machine(check)


def test_development_images_have_a_way_in_and_production_images_none():
    """balena-development: empty root password, serial autologin (+ ssh by key if keys are set); else closed."""
    def check(bb, tmp, m, local_conf):
        def features(extra):
            d = machine_datastore(bb, tempfile.mkdtemp(dir=tmp), local_conf, m, extra)
            r = base.bb_parse_recipe(bb, d, base.IMAGE_BB)[""]
            return set(r.getVar("IMAGE_FEATURES").split()), r.getVar("ROOTFS_POSTPROCESS_COMMAND") or ""
        prod, post = features("")
        assert not prod & OPEN_FEATURES, "a production image has %s" % sorted(prod & OPEN_FEATURES)
        assert "balena_development_ssh_keys" not in post
        dev, post = features('EXTRA_IMAGE_FEATURES += "balena-development"\n')
        assert DEVELOPMENT_FEATURES <= dev, "a development image lacks %s" % sorted(DEVELOPMENT_FEATURES - dev)
        assert not dev & SSH_FEATURES, "ssh without keys: %s" % sorted(dev & SSH_FEATURES)
        keyed, post = features('EXTRA_IMAGE_FEATURES += "balena-development"\n'
                               'BALENA_DEVELOPMENT_SSH_KEYS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA dev@host"\n')
        assert SSH_FEATURES <= keyed and "allow-empty-password" not in keyed, "with keys: %s" % sorted(keyed)
        assert "balena_development_ssh_keys" in post, "the keys are not installed"
        assert "balena-development" in keyed
    each_machine(check)


def kas_development_fragment():
    return os.path.join(base.ROOT, "kas", "development.yml")


def test_kas_development_fragment_makes_a_development_image():
    """kas/development.yml (the README's way to a development image) turns balena-development on."""
    local_conf, m = kas_compose("kas/qemux86-64.yml", "kas/development.yml")
    bb = base.bb_setup()
    with tempfile.TemporaryDirectory() as tmp:
        d = machine_datastore(bb, tmp, local_conf, m)
        r = base.bb_parse_recipe(bb, d, base.IMAGE_BB)[""]
        feats = set(r.getVar("IMAGE_FEATURES").split())
        assert {"balena-development"} | DEVELOPMENT_FEATURES <= feats, sorted(feats)
    assert os.path.exists(kas_development_fragment())


if __name__ == "__main__":
    import sys
    sys.exit(base.main(sys.argv[1:], [sys.modules[__name__]]))
