"""conf/ meets oe-core: the files the layer installs over or beside oe-core's own.

- oe-core's read-only images lay RAM over /var/lib, /var/cache, /var/spool and /srv (volatile-binds,
  which oe-core's systemd recipe depends on): a mount of ours under those paths must come after the
  overlay, or the overlay hides it.
- tmpfiles.d/00-create-volatile.conf replaces oe-core's file of that name, so it must create
  everything oe-core's does (or the root file system must hold it).
- the kernel modules the engine recommends cover the tristate options of the kernel fragment.
"""
import configparser
import glob
import os
import re

import test_layer as base

CONF = os.path.join(base.ROOT, "conf")
# oe-core volatile-binds.bb VOLATILE_BINDS (wrynose): RAM-backed directory -> the path it covers; the
# service of each is named after the first path (var-volatile-lib.service).
VOLATILE_BINDS = {"/var/volatile/lib": "/var/lib", "/var/volatile/cache": "/var/cache",
                  "/var/volatile/spool": "/var/spool", "/var/volatile/srv": "/srv"}
# oe-core meta/recipes-core/systemd/systemd/00-create-volatile.conf (wrynose), the lines that
# our replacement must repeat; its L lines (/var/tmp, /var/log symlinks) are in the root file system
# (base-files, conf/README.md).
OE_CORE_CREATE_VOLATILE = [("d", "/run/lock", "1777"), ("d", "/var/volatile/log", None),
                           ("d", "/var/volatile/tmp", "1777")]
# Tristate options of the kernel fragment -> the modules they build (kernel-module-<name, _ as ->).
MODULES_OF = {
    "OVERLAY_FS": ["overlay"], "VETH": ["veth"], "BRIDGE": ["bridge"], "BRIDGE_NETFILTER": ["br_netfilter"],
    "NF_CONNTRACK": ["nf_conntrack"], "NF_NAT": ["nf_nat"], "NF_TABLES": ["nf_tables"],
    "NFT_NAT": ["nft_nat", "nft_chain_nat"], "NFT_MASQ": ["nft_masq"], "NFT_CT": ["nft_ct"],
    "NF_DEFRAG_IPV4": ["nf_defrag_ipv4"], "NF_DEFRAG_IPV6": ["nf_defrag_ipv6"],
}


def unit_file(path):
    p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    p.optionxform = str
    p.read(path)
    return p


def volatile_service_for(where):
    for what, covered in VOLATILE_BINDS.items():
        if where == covered or where.startswith(covered + "/"):
            return what[1:].replace("/", "-") + ".service"
    return None


def mount_ordering_problems(paths):
    problems = []
    for path in paths:
        u = unit_file(path)
        where = u.get("Mount", "Where", fallback=None)
        service = where and volatile_service_for(where)
        if service and service not in u.get("Unit", "After", fallback="").split():
            problems.append("%s mounts %s but is not After=%s" % (base.rel(path), where, service))
    return problems


def test_mounts_under_volatile_binds_come_after_the_overlay():
    """Every mount unit of conf/ under /var/lib, /var/cache, /var/spool or /srv is After= oe-core's overlay."""
    units = glob.glob(os.path.join(CONF, "**", "*.mount"), recursive=True)
    assert units, "no mount units in conf/"
    problems = mount_ordering_problems(units)
    assert not problems, "\n".join(problems)


def test_mount_ordering_check_catches_a_missing_after(tmp="/tmp"):
    """The ordering check is not vacuous: a bind on /var/lib/x without the After= fails."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".mount", dir=tmp, delete=False) as f:
        f.write("[Unit]\nRequiresMountsFor=/mnt/data\n[Mount]\nWhat=/mnt/data/x\nWhere=/var/lib/x\n")
    try:
        assert mount_ordering_problems([f.name]), "accepted a /var/lib mount with no ordering"
    finally:
        os.unlink(f.name)


def tmpfiles_entries(path):
    out = []
    for line in open(path):
        f = line.split()
        if f and not f[0].startswith("#"):
            out.append((f[0], f[1], f[2] if len(f) > 2 and f[2] != "-" else None))
    return out


def test_create_volatile_repeats_oe_core():
    """tmpfiles.d/00-create-volatile.conf creates all that oe-core's file of that name creates, same modes."""
    ours = tmpfiles_entries(os.path.join(CONF, "tmpfiles.d", "00-create-volatile.conf"))
    by_path = {p: (t, m) for t, p, m in ours}
    problems = []
    for typ, path, mode in OE_CORE_CREATE_VOLATILE:
        if path not in by_path:
            problems.append("%s %s is missing (oe-core's file creates it)" % (typ, path))
        elif by_path[path][0] != typ or (mode and by_path[path][1] != mode):
            problems.append("%s: ours %s %s, oe-core's %s %s" % (path, by_path[path][0], by_path[path][1], typ, mode))
    assert not problems, "\n".join(problems)


def fragment_options():
    frag = os.path.join(base.LAYER, "recipes-kernel", "linux", "files", "balena-engine.cfg")
    return dict(re.findall(r"^CONFIG_(\w+)=([ym])$", open(frag).read(), re.M))


def test_engine_recommends_the_modules_of_its_kernel_options():
    """Each tristate option of the kernel fragment has its kernel-module-* in the engine's RRECOMMENDS."""
    bb = base.bb_setup()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        d = base.bb_datastore(bb, base.bb_stub_tree(tmp))
        r = base.bb_parse_recipe(bb, d, base.ENGINE_BB)[""]
    recommends = set((r.getVar("RRECOMMENDS:balena-engine") or "").split())
    package = {m: "kernel-module-" + m.replace("_", "-") for mods in MODULES_OF.values() for m in mods}
    missing = ["CONFIG_%s -> %s" % (o, package[m]) for o in fragment_options() if o in MODULES_OF
               for m in MODULES_OF[o] if package[m] not in recommends]
    assert not missing, "the engine does not recommend: %s" % missing
    unknown = sorted(p for p in recommends if p.startswith("kernel-module-") and p not in package.values())
    assert not unknown, "recommended modules of no fragment option: %s" % unknown


if __name__ == "__main__":
    import sys
    sys.exit(base.main(sys.argv[1:], [sys.modules[__name__]]))
