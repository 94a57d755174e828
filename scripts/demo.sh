#!/usr/bin/env bash
# The main job on an embedded default: build the engine, generate a small two-layer image (a file deleted
# in the second layer, so it carries a whiteout), load it into a fresh data root, list it, save it, and
# load the saved archive into a second data root to show that every ID survives the round trip.
#   scripts/demo.sh [WORKDIR]      (default: a new temporary directory, kept for you to look at)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -q -p balena-engine
be=$PWD/target/release/balena-engine
work=${1:-$(mktemp -d -t balena-engine-demo.XXXXXX)}
mkdir -p "$work"

python3 - "$work/demo-image.tar" <<'PY'
# A docker-archive with two layers; layer 2 deletes /etc/motd (an OCI whiteout) and adds /app/hello.
import hashlib, io, json, sys, tarfile

def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1735689600
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o755 if kind == "exe" else 0o644
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

l1 = layer([("etc", "dir", None), ("etc/motd", "file", b"hello from layer 1\n"),
            ("etc/os-release", "file", b"NAME=demo\n"), ("bin", "dir", None),
            ("bin/hello", "exe", b"#!/bin/sh\necho hello\n"), ("usr", "dir", None), ("usr/bin", "link", "../bin")])
l2 = layer([("etc", "dir", None), ("etc/.wh.motd", "file", b""), ("app", "dir", None),
            ("app/hello", "file", b"hello from layer 2\n")])
diff = ["sha256:" + hashlib.sha256(l).hexdigest() for l in (l1, l2)]
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2025-01-01T00:00:00Z",
                     "config": {"Cmd": ["/bin/hello"], "Env": ["PATH=/usr/bin:/bin"]},
                     "rootfs": {"type": "layers", "diff_ids": diff}}).encode()
cid = hashlib.sha256(config).hexdigest()
with tarfile.open(sys.argv[1], "w") as out:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); out.addfile(ti, io.BytesIO(data))
    add(cid + ".json", config)
    for d, l in zip(diff, (l1, l2)):
        add(d[7:] + "/layer.tar", l)
    add("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": ["demo/app:1.0"],
                                      "Layers": [d[7:] + "/layer.tar" for d in diff]}]).encode())
PY

rm -rf "$work/root-a" "$work/root-b"
step() { printf '\n$ %s\n' "$*"; "$@"; }
step "$be" --data-root "$work/root-a" image load -i "$work/demo-image.tar"
step "$be" --data-root "$work/root-a" image ls
step "$be" --data-root "$work/root-a" image save -o "$work/saved.tar" demo/app:1.0
step "$be" --data-root "$work/root-b" image load -i "$work/saved.tar"
id_a=$("$be" --data-root "$work/root-a" image ls -q --no-trunc)
id_b=$("$be" --data-root "$work/root-b" image ls -q --no-trunc)
"$be" --data-root "$work/root-b" image save -o "$work/saved-again.tar" demo/app:1.0
printf '\nimage ID before: %s\nimage ID after a save/load round trip: %s\n' "$id_a" "$id_b"
[ "$id_a" = "$id_b" ] || { echo "IDs differ" >&2; exit 1; }
cmp -s "$work/saved.tar" "$work/saved-again.tar" || { echo "re-saved archive differs" >&2; exit 1; }
echo "saved archives are byte-identical; work files are in $work"
