#!/usr/bin/env bash
# make-fixtures.sh OUTDIR
#
# Builds a small multi-layer image from local content only (Debian's
# busybox-static, no registry pulls) with umoci, then has the real peer tools
# (umoci, skopeo, podman) write it out as image archives, for the engine's
# interop tests:
#
#   umoci-oci.tar          umoci's OCI image layout, tarred (gzip layers)
#   skopeo-oci.tar         skopeo copy -> oci-archive
#   skopeo-docker.tar      skopeo copy -> docker-archive
#   skopeo-zstd-oci.tar    skopeo copy -> oci-archive, zstd layers (if supported)
#   podman-docker.tar      podman load + tag + save --format docker-archive
#   podman-oci.tar         podman load + tag + save --format oci-archive
#
# and for each archive NAME.tar a NAME.expect.json: format, image_id (sha256
# of the config blob), diff_ids (config rootfs.diff_ids), repo_tags (docker
# RepoTags, or OCI org.opencontainers.image.ref.name), config path, and the
# layer list (OCI: media_type/digest/size; docker: path), read back from the
# archive.  Image content and digests are reproducible (pinned mtimes and
# SOURCE_DATE_EPOCH); the outer skopeo/podman tars carry wall-clock mtimes.
#
# Layers (built with umoci unpack/repack and umoci insert):
#   1  base rootfs: busybox + applet symlinks, /etc/passwd, a setuid file, a
#      file with a user.* xattr, a hard link, relative and absolute symlinks
#   2  adds files and directories (/opt/app, /srv/replace-me, /etc/app.d, ...)
#   3  deletes a file and a directory (.wh.<name>) and replaces the contents of
#      /srv/replace-me in the rootfs (umoci repack emits per-entry whiteouts
#      here, never .wh..wh..opq)
#   4  umoci insert --opaque: replaces /etc/app.d -> .wh..wh..opq (written
#      before its directory entry; tar has no end-of-archive trailer, see below)
#
# Needs root (apt-get, umoci unpack with real ownership, podman).  Runs in a
# private temp dir that is removed on exit; podman uses an isolated vfs store.
# Host side effects left: skopeo (as root) always updates its blob-info cache
# /var/lib/containers/cache/blob-info-cache-v1.boltdb, and podman 4.3 `load`
# probes the input by unpacking it into /var/tmp/ociNNN (removed again).
set -euo pipefail

OUT=${1:?usage: $0 OUTDIR}
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
REF=fixture:umoci                       # ref name inside the umoci layout

log() { printf '[make-fixtures] %s\n' "$*" >&2; }

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/apt.sh"

ensure_pkgs busybox-static umoci skopeo podman jq python3 tar coreutils findutils

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/make-fixtures.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export TMPDIR=$WORK/tmp
mkdir -p "$TMPDIR"
SKOPEO=(skopeo --tmpdir "$TMPDIR")      # big temp files, else /var/tmp
LAYOUT=$WORK/layout
BUNDLE=$WORK/bundle
ROOTFS=$BUNDLE/rootfs

# ---------------------------------------------------------------- umoci image

# Pin every mtime so unchanged files never show up in later diff layers and
# the layers come out identical on every run.
normalize_mtimes() { find "$ROOTFS" -exec touch -h -d "@$EPOCH" {} +; }

repack() {  # repack "created_by text"
    normalize_mtimes
    umoci repack --refresh-bundle --image "$LAYOUT:$REF" \
        --history.created "$CREATED" --history.created_by "$1" "$BUNDLE"
}

build_base() {
    local r=$ROOTFS a
    mkdir -p "$r"/{bin,etc,root,tmp,usr/bin,usr/local/bin,var/empty,data}
    chmod 1777 "$r/tmp"; chmod 0700 "$r/root"
    install -m 0755 /bin/busybox "$r/bin/busybox"
    for a in sh ls cat echo; do ln -s busybox "$r/bin/$a"; done  # relative symlinks
    ln -s /bin/busybox "$r/usr/bin/env"                         # absolute symlink
    ln "$r/bin/busybox" "$r/bin/true"                           # hard link
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    printf '#!/bin/sh\nid\n' >"$r/usr/local/bin/suid-demo"
    chmod 4755 "$r/usr/local/bin/suid-demo"                     # setuid
    echo 'has an xattr' >"$r/etc/xattr-file"
    python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.fixture", b"hello")' "$r/etc/xattr-file"
    echo 'keep me' >"$r/data/keep"
}

build_layer2() {
    local r=$ROOTFS
    mkdir -p "$r"/opt/app/logs "$r"/srv/replace-me/sub "$r"/etc/app.d
    echo 'app v1' >"$r/opt/app/VERSION"
    echo 'log line' >"$r/opt/app/logs/app.log"
    echo 'delete me' >"$r/etc/delete-me"
    printf 'old-%s\n' a >"$r/srv/replace-me/a"
    printf 'old-%s\n' b >"$r/srv/replace-me/b"
    printf 'old-%s\n' c >"$r/srv/replace-me/sub/c"
    echo 'old 1' >"$r/etc/app.d/old1.conf"
    echo 'old 2' >"$r/etc/app.d/old2.conf"
    ln -s ../opt/app/VERSION "$r/etc/app-version"
}

build_layer3() {
    local r=$ROOTFS
    rm -f "$r/etc/delete-me"                 # file whiteout
    rm -rf "$r/opt/app/logs"                 # directory whiteout
    rm -rf "$r/srv/replace-me"               # replace the directory's contents
    mkdir -p "$r/srv/replace-me"
    echo 'new-x' >"$r/srv/replace-me/x"
    echo 'app v2' >"$r/opt/app/VERSION"      # modified file
}

build_layer4() {  # umoci's own way to replace a directory: insert --opaque
    local src=$WORK/app.d
    mkdir -p "$src"
    # umoci 0.4.7 insert never closes its tar writer (umoci#436, fixed by
    # umoci#534): the layer lacks the 1 KiB end-of-archive trailer.  Keep the
    # last file a multiple of 512 bytes so the tar at least ends on a block
    # boundary (GNU tar / Python / Go read it); otherwise the final padding is
    # missing too and GNU tar fails with "Unexpected EOF in archive".
    printf '# new config, 512 bytes\n%0487d\n' 0 >"$src/new1.conf"
    find "$src" -exec touch -h -d "@$EPOCH" {} +
    umoci insert --opaque --image "$LAYOUT:$REF" \
        --history.created "$CREATED" --history.created_by "umoci insert --opaque /etc/app.d" \
        "$src" /etc/app.d
}

build_umoci_image() {
    log "building multi-layer image with umoci"
    umoci init --layout "$LAYOUT"
    umoci new --image "$LAYOUT:$REF"
    umoci config --image "$LAYOUT:$REF" --no-history --created "$CREATED" \
        --author fixtures --architecture amd64 --os linux
    umoci unpack --image "$LAYOUT:$REF" "$BUNDLE" >/dev/null
    build_base;   repack "layer 1: busybox base rootfs"
    build_layer2; repack "layer 2: add files and directories"
    build_layer3; repack "layer 3: whiteouts and directory replacement"
    build_layer4
    umoci config --image "$LAYOUT:$REF" --created "$CREATED" \
        --history.created "$CREATED" --history.created_by "umoci config" \
        --config.cmd /bin/sh --config.cmd -c --config.cmd 'cat /opt/app/VERSION' \
        --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env FIXTURE=umoci \
        --config.workingdir / \
        --config.label org.example.fixture=interop --config.label org.example.layers=4
    umoci gc --layout "$LAYOUT"
}

# ---------------------------------------------------------------- archives

# tar_dir DIR OUTFILE: reproducible tar of a directory's contents (no "./").
tar_dir() {
    (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
        tar -C "$1" --no-recursion --owner=0 --group=0 --numeric-owner \
            --mtime="@$EPOCH" --format=posix --pax-option=delete=atime,delete=ctime \
            -cf "$2" -T -
}

skopeo_copy() {  # skopeo_copy DEST [extra flags...]
    "${SKOPEO[@]}" copy -q "${@:2}" "oci:$LAYOUT:$REF" "$1"
}

# Fully private podman: own store (vfs), run root, libpod tmpdir and network
# config dir (else podman creates /etc/containers/networks); cgroupfs + file
# events so no systemd/journald is needed.
PODMAN=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run"
        --tmpdir "$WORK/podman/tmp" --network-config-dir "$WORK/podman/net"
        --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)

# expect NAME TRANSPORT: write OUT/NAME.expect.json.  The config (-> image ID,
# diff_ids) comes from skopeo and is cross-checked against the blob in the tar;
# tags and layer list are read from the archive's own index/manifest.
expect() {
    local name=$1 transport=$2 tarf=$OUT/$1.tar cfg=$WORK/$1.config.json
    local id meta cfgname
    # Kept in a file: $(...) would strip the blob's trailing newline.
    "${SKOPEO[@]}" inspect --raw --config "$transport:$tarf" >"$cfg"
    id=sha256:$(sha256sum <"$cfg" | cut -d' ' -f1)
    if [ "$transport" = docker-archive ]; then
        meta=$(tar -xOf "$tarf" manifest.json | jq -c '.[0] | {
            repo_tags: (.RepoTags // []), config: .Config,
            layers: [.Layers[] | {path: .}] }')
        cfgname=$(jq -r .config <<<"$meta")
    else
        local idx mani
        idx=$(tar -xOf "$tarf" index.json)
        mani=$(jq -r '.manifests[0].digest | sub(":"; "/")' <<<"$idx")
        meta=$(tar -xOf "$tarf" "blobs/$mani" | jq -c --argjson idx "$idx" '{
            repo_tags: [$idx.manifests[].annotations["org.opencontainers.image.ref.name"] // empty],
            manifest: "blobs/\($idx.manifests[0].digest | sub(":"; "/"))",
            config: "blobs/\(.config.digest | sub(":"; "/"))",
            layers: [.layers[] | {media_type: .mediaType, digest, size}] }')
        cfgname=$(jq -r .config <<<"$meta")
    fi
    tar -xOf "$tarf" "$cfgname" | cmp -s - "$cfg" ||
        { log "$name: skopeo's config differs from $cfgname in the archive"; exit 1; }
    jq -n --arg format "$transport" --arg id "$id" --argjson meta "$meta" \
          --slurpfile cfg "$cfg" '{
        format: $format,
        image_id: $id,
        diff_ids: $cfg[0].rootfs.diff_ids,
        repo_tags: $meta.repo_tags
    } + ($meta | del(.repo_tags))' >"$OUT/$name.expect.json"
}

make_archives() {
    local f
    for f in umoci-oci skopeo-oci skopeo-docker skopeo-zstd-oci podman-docker podman-oci; do
        rm -f "$OUT/$f.tar" "$OUT/$f.expect.json"
    done

    log "umoci-oci.tar"
    tar_dir "$LAYOUT" "$OUT/umoci-oci.tar"
    expect umoci-oci oci-archive

    log "skopeo-oci.tar / skopeo-docker.tar"
    skopeo_copy "oci-archive:$OUT/skopeo-oci.tar:$REF"
    expect skopeo-oci oci-archive
    skopeo_copy "docker-archive:$OUT/skopeo-docker.tar:localhost/fixture:skopeo"
    expect skopeo-docker docker-archive

    if skopeo_copy "oci-archive:$OUT/skopeo-zstd-oci.tar:fixture:zstd" \
           --dest-compress --dest-compress-format zstd 2>/dev/null; then
        log "skopeo-zstd-oci.tar"
        expect skopeo-zstd-oci oci-archive
    else
        rm -f "$OUT/skopeo-zstd-oci.tar"
    fi

    log "podman-docker.tar / podman-oci.tar"
    "${PODMAN[@]}" load -q -i "$OUT/skopeo-docker.tar" >/dev/null
    "${PODMAN[@]}" tag localhost/fixture:skopeo localhost/fixture:podman
    "${PODMAN[@]}" save -q --format docker-archive -o "$OUT/podman-docker.tar" localhost/fixture:podman
    expect podman-docker docker-archive
    "${PODMAN[@]}" save -q --format oci-archive -o "$OUT/podman-oci.tar" localhost/fixture:podman
    expect podman-oci oci-archive
}

build_umoci_image
make_archives
log "done: $(cd "$OUT" && ls -- *.tar | tr '\n' ' ')"
