"""What the layer builds from the source tree: the commit it pins, and the Rust that builds it.

- SRCREV: the default build fetches this checkout at SRCREV, so everything the recipe builds or
  installs from (the workspace, Cargo.lock, conf/, .cargo/) must be the same at SRCREV as at HEAD,
  or `kas build` makes an engine older than the tree it was run from.
- rust-version: one minimum for the whole workspace, inherited by every member, no lower than any
  locked dependency asks for (cargo metadata), and no higher than the Rust oe-core ships. clippy's
  incompatible_msrv (scripts/test.sh lint) keeps our own code within it.
"""
import json
import os
import re
import shutil
import subprocess
import tomllib

import test_layer as base

# The Rust of openembedded-core at kas.yml's pinned commit (meta/conf/distro/include/tcmode-default.inc:
# RUSTVERSION ?= "1.94.1%"); scripts/check-layer-bitbake.sh prints the real one.
OE_CORE_RUST_VERSION = "1.94.1"
# Paths of the source tree the recipe builds or installs from.
BUILT_FROM = ["rust", "conf", "Cargo.toml", "Cargo.lock", ".cargo", "LICENSE"]


def version(v):
    return tuple(int(x) for x in v.split("."))


def recipe_srcrev():
    m = re.search(r'^SRCREV = "([0-9a-f]{40})"$', open(base.ENGINE_BB).read(), re.M)
    assert m, "no SRCREV in %s" % base.rel(base.ENGINE_BB)
    return m.group(1)


def changed_since(rev, paths):
    p = subprocess.run(["git", "-C", base.ROOT, "diff", "--name-only", rev, "HEAD", "--"] + paths,
                       capture_output=True, text=True)
    assert p.returncode == 0, "git diff %s HEAD: %s" % (rev, p.stderr.strip())
    return p.stdout.split()


def test_srcrev_is_the_tree_at_head():
    """The workspace, Cargo.lock, conf/ and .cargo/ at SRCREV are those of HEAD (else bump SRCREV)."""
    rev = recipe_srcrev()
    changed = changed_since(rev, BUILT_FROM)
    assert not changed, ("SRCREV %s builds an older tree than HEAD: %d file(s) changed since, e.g. %s; "
                         "set SRCREV to the commit that changed them" % (rev[:12], len(changed), changed[:5]))


def test_srcrev_check_sees_a_stale_commit():
    """The SRCREV check is not vacuous: the first commit differs from HEAD in what the recipe builds."""
    p = subprocess.run(["git", "-C", base.ROOT, "rev-list", "--max-parents=0", "HEAD"], capture_output=True, text=True)
    root = p.stdout.split()[-1]
    assert changed_since(root, BUILT_FROM), "the first commit has the same tree as HEAD"


def workspace_rust_version():
    manifest = tomllib.load(open(os.path.join(base.ROOT, "Cargo.toml"), "rb"))
    return manifest, manifest["workspace"]["package"]["rust-version"]


def test_every_member_inherits_the_rust_version():
    """The workspace sets rust-version once and every member takes it (rust-version.workspace = true)."""
    manifest, _ = workspace_rust_version()
    problems = []
    for member in manifest["workspace"]["members"]:
        pkg = tomllib.load(open(os.path.join(base.ROOT, member, "Cargo.toml"), "rb"))["package"]
        if pkg.get("rust-version") != {"workspace": True}:
            problems.append("%s: rust-version %r" % (member, pkg.get("rust-version")))
    assert not problems, "members that do not inherit the workspace's rust-version: %s" % problems


def test_rust_version_is_the_real_minimum_and_oe_core_has_it():
    """rust-version >= every locked dependency's (and 1.85 for edition 2024), <= oe-core's Rust."""
    _, msrv = workspace_rust_version()
    cargo = shutil.which("cargo")
    assert cargo, "cargo is not on PATH: the check reads the dependencies' rust-version with cargo metadata"
    p = subprocess.run([cargo, "metadata", "--format-version", "1", "--locked"], cwd=base.ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, "cargo metadata: %s" % p.stderr[-800:]
    meta = json.loads(p.stdout)
    ours = set(meta["workspace_members"])
    resolved = {n["id"] for n in meta["resolve"]["nodes"]}
    needs = []
    for pkg in meta["packages"]:
        if pkg["id"] in resolved and pkg["id"] not in ours:
            if pkg.get("rust_version"):
                needs.append((version(pkg["rust_version"]), "%s %s" % (pkg["name"], pkg["version"])))
            if pkg["edition"] == "2024":
                needs.append(((1, 85), "%s %s (edition 2024)" % (pkg["name"], pkg["version"])))
    highest = max(needs)
    assert version(msrv) >= highest[0], "rust-version %s, but %s needs %s" % (
        msrv, highest[1], ".".join(map(str, highest[0])))
    assert version(msrv) <= version(OE_CORE_RUST_VERSION), "rust-version %s, oe-core ships %s" % (
        msrv, OE_CORE_RUST_VERSION)


def test_kas_pins_the_oe_core_whose_rust_is_recorded():
    """OE_CORE_RUST_VERSION above belongs to the openembedded-core commit kas.yml pins."""
    text = open(os.path.join(base.ROOT, "kas.yml")).read()
    m = re.search(r'openembedded-core:\s*\n(?:\s+\w+:.*\n)*?\s+commit:\s*"([0-9a-f]{40})"', text)
    assert m and m.group(1) == "ef022bf82d79015802309d14c28b13373ebe53f5", (
        "kas.yml pins another openembedded-core (%s): look up its RUSTVERSION and update OE_CORE_RUST_VERSION"
        % (m and m.group(1)))


if __name__ == "__main__":
    import sys
    sys.exit(base.main(sys.argv[1:], [sys.modules[__name__]]))
