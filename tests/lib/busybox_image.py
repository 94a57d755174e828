"""A one-layer image holding Debian's busybox-static (one symlink per applet) as a docker-archive: the image the
conf tests run through the engine, and the app images of the QEMU test image (for the guest's architecture).
Usage: busybox_image.py OUT.tar [TAG [DEB_ARCH [BUSYBOX_BINARY [NAME]]]]
  defaults: busybox:conf, amd64, /bin/busybox; NAME goes into the label `io.balena.qemu-test.name` (another
  image ID with the same layer)."""

import hashlib
import io
import json
import subprocess
import sys
import tarfile

MTIME = 1_700_000_000
BUSYBOX = "/bin/busybox"


def _add(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.linkname, info.mtime = mode, kind, link, MTIME
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _applets() -> list:
    # The applet list is the same for every architecture of one Debian version: ask the host's busybox.
    return subprocess.run(["busybox", "--list"], check=True, capture_output=True, text=True).stdout.split()


def layer(busybox: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)):
            _add(t, d, mode=mode, kind=tarfile.DIRTYPE)
        with open(busybox, "rb") as f:
            _add(t, "bin/busybox", f.read(), mode=0o755)
        for a in _applets():
            if a != "busybox":
                _add(t, f"bin/{a}", mode=0o777, kind=tarfile.SYMTYPE, link="busybox")
        _add(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add(t, "etc/group", b"root:x:0:\n")
    return buf.getvalue()


def archive(tag: str, arch: str = "amd64", busybox: str = BUSYBOX, name: str = "") -> bytes:
    lay = layer(busybox)
    diff_id = hashlib.sha256(lay).hexdigest()
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": "2024-05-01T12:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], **({"Labels": {"io.balena.qemu-test.name": name}} if name else {})},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
    }).encode()
    cfg = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{cfg}.json", "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        _add(t, diff_id, mode=0o755, kind=tarfile.DIRTYPE)
        _add(t, f"{diff_id}/layer.tar", lay)
        _add(t, f"{cfg}.json", config)
        _add(t, "manifest.json", manifest)
    return buf.getvalue()


if __name__ == "__main__":
    out, tag, arch, busybox, name = (sys.argv[1:] + [None] * 5)[:5]
    with open(out, "wb") as f:
        f.write(archive(tag or "busybox:conf", arch or "amd64", busybox or BUSYBOX, name or ""))
