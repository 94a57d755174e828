//! Interop tests against the real peer tools: umoci, skopeo and podman.
//!
//! The fixture archives come from `tests/interop/make-fixtures.sh` (images built with umoci and written out by
//! umoci, skopeo and podman, each with a NAME.expect.json).  They are generated once per test process, cached
//! under `<target>/interop-fixtures/<hash of the script>/` and rebuilt only when missing or when the script changes.
//!
//! Every test is ignored by default, so a plain `cargo test` needs none of the peers.  Run them (as root: the
//! fixture script, overlay mounts and podman need it) with
//!
//! ```text
//! cargo test -p balena-engine --test interop -- --ignored
//! ```
//!
//! The tests are independent (own data roots, own podman stores, own mount points) and safe to run in parallel.
//! Host side effects are only those of the peers themselves: skopeo (as root) updates its blob-info cache in
//! /var/lib/containers/cache, and podman 4.3 `load` probes an archive by unpacking it under /var/tmp (removed again).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// Every fixture the script writes, in the order it writes them.
const FIXTURES: [&str; 6] =
    ["umoci-oci", "skopeo-oci", "skopeo-docker", "skopeo-zstd-oci", "podman-docker", "podman-oci"];

// ------------------------------------------------------------------ helpers

fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Runs a command, panicking with its output unless it succeeds.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn stdout_string(out: Output) -> String {
    String::from_utf8(out.stdout).expect("output is UTF-8")
}

fn parse_json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{text}"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => {
            a.iter().map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")).to_owned()).collect()
        }
        other => panic!("not an array of strings: {other}"),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the interop tests need root (fixture script, overlay mounts, podman)");
    }
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_balena-engine"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>/<profile>/balena-engine` → `<target>`.
fn target_dir() -> PathBuf {
    let b = bin();
    b.parent().and_then(Path::parent).expect("binary lives in <target>/<profile>/").to_path_buf()
}

// ------------------------------------------------------------------ fixtures

/// The fixture directory: generated on first use (once per process), reused while the script is unchanged.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_root();
        let script = repo_root().join("tests/interop/make-fixtures.sh");
        let text = fs::read(&script).unwrap_or_else(|e| panic!("reading {}: {e}", script.display()));
        let key = sha256(&text)[7..23].to_owned();
        let base = target_dir().join("interop-fixtures");
        let dir = base.join(&key);
        if dir.is_dir() {
            return dir;
        }
        fs::create_dir_all(&base).expect("creating fixture cache directory");
        // Generate beside the final place and rename, so an interrupted run never leaves a partial set behind.
        let tmp = base.join(format!(".tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let started = std::time::Instant::now();
        run(Command::new("bash").arg(&script).arg(&tmp));
        eprintln!("interop: generated fixtures in {:.1?} into {}", started.elapsed(), dir.display());
        if fs::rename(&tmp, &dir).is_err() {
            // Another process got there first: theirs is as good as ours.
            let _ = fs::remove_dir_all(&tmp);
            assert!(dir.is_dir(), "could not move fixtures into {}", dir.display());
        }
        // Drop fixture sets of older script versions.
        for e in fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name();
            if name != OsStr::new(&key) && !name.to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        dir
    })
}

struct Expect {
    image_id: String,
    diff_ids: Vec<String>,
    repo_tags: Vec<String>,
}

/// The archive of fixture `name` and what the peers say is in it.
fn fixture(name: &str) -> (PathBuf, Expect) {
    let dir = fixtures();
    let archive = dir.join(format!("{name}.tar"));
    assert!(
        archive.is_file(),
        "fixture {} is missing (make-fixtures.sh skips skopeo-zstd-oci when skopeo cannot write zstd layers)",
        archive.display()
    );
    let path = dir.join(format!("{name}.expect.json"));
    let v = parse_json(&fs::read_to_string(&path).expect("reading expect.json"), &path.display().to_string());
    let e = Expect {
        image_id: v["image_id"].as_str().expect("image_id").to_owned(),
        diff_ids: strings(&v["diff_ids"]),
        repo_tags: strings(&v["repo_tags"]),
    };
    assert!(e.image_id.starts_with("sha256:") && !e.diff_ids.is_empty(), "odd {}", path.display());
    (archive, e)
}

// ------------------------------------------------------------------ the engine

/// The CLI working directly on a fresh data root.
struct Engine {
    root: TempDir,
}

impl Engine {
    fn new() -> Self {
        Engine { root: TempDir::new().expect("data root") }
    }

    fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        stdout_string(run(Command::new(bin()).arg("--data-root").arg(self.root.path()).args(args)))
    }

    /// `image load -q -i FILE`; the lines it prints.
    fn load(&self, archive: &Path) -> Vec<String> {
        let out = self.run([OsStr::new("image"), "load".as_ref(), "-q".as_ref(), "-i".as_ref(), archive.as_os_str()]);
        out.lines().map(str::to_owned).collect()
    }

    fn save(&self, out: &Path, images: &[&str]) {
        let mut args: Vec<&OsStr> = vec!["image".as_ref(), "save".as_ref(), "-o".as_ref(), out.as_os_str()];
        args.extend(images.iter().map(OsStr::new));
        let printed = self.run(args);
        assert!(printed.is_empty(), "image save -o printed {printed:?}");
    }

    fn inspect(&self, image: &str) -> Value {
        let v = parse_json(&self.run(["image", "inspect", image]), "image inspect");
        let docs = v.as_array().expect("inspect prints an array");
        assert_eq!(docs.len(), 1, "one image asked for");
        docs[0].clone()
    }

    fn tag(&self, source: &str, target: &str) {
        self.run(["image", "tag", source, target]);
    }

    /// `image ls --format json --no-trunc`: "repo:tag" (or "<none>:<none>") → full ID.
    fn list(&self) -> BTreeMap<String, String> {
        let out = self.run(["image", "ls", "--format", "json", "--no-trunc"]);
        out.lines()
            .map(|l| {
                let v = parse_json(l, "image ls line");
                let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} in {l}")).to_owned();
                (format!("{}:{}", s("Repository"), s("Tag")), s("ID"))
            })
            .collect()
    }

    /// The layer directories of an image, top first (GraphDriver.Data.LowerDir).
    fn lower_dirs(&self, image: &str) -> Vec<PathBuf> {
        let doc = self.inspect(image);
        let lower = doc["GraphDriver"]["Data"]["LowerDir"].as_str().expect("LowerDir");
        lower.split(':').map(PathBuf::from).collect()
    }
}

/// Loads an archive and checks what the engine reports against the peers' expectations.
fn assert_loads_as_expected(name: &str) {
    let (archive, exp) = fixture(name);
    let e = Engine::new();
    let printed = e.load(&archive);
    let want: Vec<String> = if exp.repo_tags.is_empty() {
        vec![format!("Loaded image ID: {}", exp.image_id)]
    } else {
        exp.repo_tags.iter().map(|t| format!("Loaded image: {t}")).collect()
    };
    assert_eq!(printed, want, "{name}: load output");

    let by = exp.repo_tags.first().cloned().unwrap_or_else(|| exp.image_id.clone());
    for reference in [by.as_str(), exp.image_id.as_str()] {
        let doc = e.inspect(reference);
        assert_eq!(doc["Id"], exp.image_id.as_str(), "{name}: Id of {reference}");
        assert_eq!(strings(&doc["RootFS"]["Layers"]), exp.diff_ids, "{name}: RootFS.Layers");
        assert_eq!(sorted(strings(&doc["RepoTags"])), sorted(exp.repo_tags.clone()), "{name}: RepoTags");
    }
    let dirs = e.lower_dirs(&exp.image_id);
    assert_eq!(dirs.len(), exp.diff_ids.len(), "{name}: one layer directory per diff_id");
    for d in &dirs {
        assert!(d.is_dir(), "{name}: layer directory {} missing", d.display());
    }
    let listed = e.list();
    let want: BTreeMap<String, String> = if exp.repo_tags.is_empty() {
        [("<none>:<none>".to_owned(), exp.image_id.clone())].into()
    } else {
        exp.repo_tags.iter().map(|t| (t.clone(), exp.image_id.clone())).collect()
    };
    assert_eq!(listed, want, "{name}: image ls");
}

// ------------------------------------------------------------------ archives

/// The entries of a (small) tar archive: name → content; panics on a duplicate name.
fn read_tar(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut ar = tar::Archive::new(fs::File::open(path).expect("opening archive"));
    let mut out = BTreeMap::new();
    for entry in ar.entries().expect("reading archive") {
        let mut entry = entry.expect("archive entry");
        let name = entry.path().expect("entry path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        assert!(out.insert(name.clone(), data).is_none(), "{}: entry {name} twice", path.display());
    }
    out
}

/// Structural checks of an `image save` archive: every blob is named by its sha256, manifest.json and index.json
/// only point at blobs that are there, layers are stored uncompressed (named by their diff_id).
fn check_saved_archive(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let entries = read_tar(path);
    for (name, data) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(
                sha256(data),
                format!("sha256:{hex}"),
                "{}: blob {name} does not match its name",
                path.display()
            );
        }
    }
    let blob = |digest: &str| -> &Vec<u8> {
        let name = format!("blobs/sha256/{}", digest.strip_prefix("sha256:").expect("sha256 digest"));
        entries.get(&name).unwrap_or_else(|| panic!("{}: {name} referenced but missing", path.display()))
    };
    assert_eq!(
        entries
            .get("oci-layout")
            .map(|b| parse_json(std::str::from_utf8(b).unwrap(), "oci-layout"))
            .map(|v| v["imageLayoutVersion"].clone()),
        Some(Value::from("1.0.0")),
        "oci-layout"
    );
    let index = parse_json(std::str::from_utf8(&entries["index.json"]).unwrap(), "index.json");
    for m in index["manifests"].as_array().expect("index manifests") {
        let manifest = parse_json(std::str::from_utf8(blob(m["digest"].as_str().unwrap())).unwrap(), "manifest");
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        let cfg = parse_json(std::str::from_utf8(config).unwrap(), "config");
        let layers: Vec<String> =
            manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_owned()).collect();
        assert_eq!(layers, strings(&cfg["rootfs"]["diff_ids"]), "OCI layers are the uncompressed diff_ids");
        for l in &layers {
            blob(l);
        }
    }
    let docker = parse_json(std::str::from_utf8(&entries["manifest.json"]).unwrap(), "manifest.json");
    for item in docker.as_array().expect("manifest.json is an array") {
        let config = entries.get(item["Config"].as_str().unwrap()).expect("docker Config present");
        let cfg = parse_json(std::str::from_utf8(config).unwrap(), "config");
        let layers: Vec<String> = strings(&item["Layers"])
            .iter()
            .map(|l| format!("sha256:{}", l.strip_prefix("blobs/sha256/").unwrap()))
            .collect();
        assert_eq!(layers, strings(&cfg["rootfs"]["diff_ids"]), "docker Layers are the diff_ids");
        for l in &layers {
            blob(l);
        }
    }
    entries
}

// ------------------------------------------------------------------ peers

fn skopeo(args: &[&str]) -> Vec<u8> {
    run(Command::new("skopeo").args(args)).stdout
}

fn skopeo_json(args: &[&str]) -> Value {
    let out = skopeo(args);
    parse_json(std::str::from_utf8(&out).expect("UTF-8"), &format!("skopeo {args:?}"))
}

/// podman with a private store (vfs), run root, temp dir and network config dir, like make-fixtures.sh uses.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Self {
        Podman { dir: TempDir::new().expect("podman dir") }
    }

    fn run(&self, args: &[&str]) -> String {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root").arg(d.join("root"));
        cmd.arg("--runroot").arg(d.join("run"));
        cmd.arg("--tmpdir").arg(d.join("tmp"));
        cmd.arg("--network-config-dir").arg(d.join("net"));
        cmd.args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        stdout_string(run(cmd.args(args)))
    }

    /// `podman images`: name → full ID.
    fn images(&self) -> BTreeMap<String, String> {
        let out = self.run(&["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
        out.lines()
            .map(|l| {
                let (name, id) = l.split_once(' ').expect("name and ID");
                (name.to_owned(), id.to_owned())
            })
            .collect()
    }

    fn inspect(&self, image: &str) -> Value {
        let v = parse_json(&self.run(&["image", "inspect", image]), "podman image inspect");
        v[0].clone()
    }
}

/// How podman names a short reference like `fixture:umoci`: its OCI-archive path takes the
/// `io.containerd.image.name` annotation (docker.io/library/…), its docker-archive path qualifies it with localhost/.
fn podman_names(tag: &str) -> [String; 2] {
    [format!("docker.io/library/{tag}"), format!("localhost/{tag}")]
}

fn podman_id_of(images: &BTreeMap<String, String>, tag: &str) -> String {
    let hits: Vec<&String> = podman_names(tag).iter().filter_map(|n| images.get(n)).collect::<Vec<_>>();
    assert_eq!(hits.len(), 1, "podman should know {tag} under exactly one of {:?}: {images:?}", podman_names(tag));
    hits[0].clone()
}

// ------------------------------------------------------------------ layer directories and overlayfs

/// An extended attribute of `path` itself (not following symlinks), None when absent.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENODATA) {
            return None;
        }
        panic!("lgetxattr {} {name}: {err}", path.display());
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Every path under `root` (relative, sorted), not following symlinks.
fn walk(root: &Path) -> Vec<PathBuf> {
    fn go(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<_> =
            fs::read_dir(root.join(rel)).expect("read_dir").map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(n);
            let is_dir = fs::symlink_metadata(root.join(&r)).unwrap().is_dir();
            out.push(r.clone());
            if is_dir {
                go(root, &r, out);
            }
        }
    }
    let mut out = Vec::new();
    go(root, Path::new(""), &mut out);
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_whiteout(path: &Path) {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("whiteout {} missing: {e}", path.display()));
    assert!(md.file_type().is_char_device() && md.rdev() == 0, "{} is not a 0/0 character device", path.display());
}

fn assert_absent(path: &Path) {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => panic!("{} should not exist: {other:?}", path.display()),
    }
}

fn read_string(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A read-only overlayfs mount of layer directories (top first), unmounted on drop.
struct OverlayMount {
    point: PathBuf,
}

impl OverlayMount {
    fn new(lower: &[PathBuf], point: &Path) -> Self {
        let lowerdir = lower.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let c = |s: &str| CString::new(s).unwrap();
        let (src, fstype, data) = (c("overlay"), c("overlay"), c(&format!("lowerdir={lowerdir}")));
        let target = CString::new(point.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated strings; `data` is the overlay option string.
        let r = unsafe {
            libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), libc::MS_RDONLY, data.as_ptr().cast())
        };
        if r != 0 {
            panic!("mount -t overlay -o lowerdir={lowerdir} {}: {}", point.display(), io::Error::last_os_error());
        }
        OverlayMount { point: point.to_path_buf() }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let target = CString::new(self.point.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            // Busy (a failing assertion may have left something open): detach instead.
            // SAFETY: as above.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

// ------------------------------------------------------------------ tests

/// umoci's own OCI layout (gzip layers, a layer without tar trailer).
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn load_umoci_oci() {
    assert_loads_as_expected("umoci-oci")
}

/// skopeo copy → oci-archive.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn load_skopeo_oci() {
    assert_loads_as_expected("skopeo-oci")
}

/// skopeo copy → docker-archive (uncompressed layers, RepoTags).
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn load_skopeo_docker() {
    assert_loads_as_expected("skopeo-docker")
}

/// skopeo copy → oci-archive with zstd layers.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn load_skopeo_zstd_oci() {
    assert_loads_as_expected("skopeo-zstd-oci")
}

/// podman save --format docker-archive.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn load_podman_docker() {
    assert_loads_as_expected("podman-docker")
}

/// podman save --format oci-archive (podman rewrites the config: another image ID).
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn load_podman_oci() {
    assert_loads_as_expected("podman-oci")
}

/// Layer 3 deletes files and a directory with per-entry whiteouts, layer 4 replaces /etc/app.d with an opaque
/// whiteout: on disk they become overlay whiteouts and `trusted.overlay.opaque=y`, and overlayfs merges the
/// layer directories into the image's root filesystem.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn whiteouts_become_overlay_whiteouts() {
    let (archive, exp) = fixture("umoci-oci");
    let e = Engine::new();
    e.load(&archive);
    let dirs = e.lower_dirs(&exp.image_id);
    assert_eq!(dirs.len(), 4, "four layers");
    let (l4, l3, l2, l1) = (&dirs[0], &dirs[1], &dirs[2], &dirs[3]);

    // No whiteout *file* survives anywhere; only /etc/app.d of layer 4 is opaque.
    let mut opaque = Vec::new();
    for d in &dirs {
        for rel in walk(d) {
            let name = rel.file_name().unwrap().to_string_lossy();
            assert!(!name.starts_with(".wh."), "whiteout file left in the layer: {}", d.join(&rel).display());
            if let Some(v) = xattr(&d.join(&rel), "trusted.overlay.opaque") {
                opaque.push((d.clone(), rel.clone(), v));
            }
        }
    }
    assert_eq!(opaque, vec![(l4.clone(), PathBuf::from("etc/app.d"), b"y".to_vec())], "opaque directories");

    // Layer 4: the replaced directory holds only the new content.
    assert_eq!(names_in(&l4.join("etc/app.d")), ["new1.conf"]);
    // Layer 3: deletions are 0/0 character devices, the replaced directory is not opaque (umoci repack writes
    // one whiteout per old entry), and the modified file is there.
    assert_whiteout(&l3.join("etc/delete-me"));
    assert_whiteout(&l3.join("opt/app/logs"));
    for n in ["a", "b", "sub"] {
        assert_whiteout(&l3.join("srv/replace-me").join(n));
    }
    assert_eq!(read_string(&l3.join("srv/replace-me/x")), "new-x\n");
    assert_eq!(read_string(&l3.join("opt/app/VERSION")), "app v2\n");
    // Layer 2 is untouched by the later deletions.
    assert_eq!(read_string(&l2.join("etc/delete-me")), "delete me\n");
    assert_eq!(names_in(&l2.join("etc/app.d")), ["old1.conf", "old2.conf"]);
    // Layer 1: hard link, setuid bit, user xattr.
    let (bb, tr) = (fs::metadata(l1.join("bin/busybox")).unwrap(), fs::metadata(l1.join("bin/true")).unwrap());
    assert_eq!((bb.ino(), bb.nlink()), (tr.ino(), 2), "bin/true is a hard link of bin/busybox");
    assert_eq!(fs::metadata(l1.join("usr/local/bin/suid-demo")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(xattr(&l1.join("etc/xattr-file"), "user.fixture").as_deref(), Some(&b"hello"[..]));

    // The merged view through overlayfs.
    let point = TempDir::new().unwrap();
    let m = OverlayMount::new(&dirs, point.path());
    let root = m.point.as_path();
    let bb = fs::metadata(root.join("bin/busybox")).unwrap();
    assert!(bb.is_file() && bb.mode() & 0o111 != 0 && bb.len() > 100_000, "busybox present and executable");
    assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("busybox"));
    assert_eq!(fs::read_link(root.join("usr/bin/env")).unwrap(), Path::new("/bin/busybox"));
    assert_absent(&root.join("etc/delete-me"));
    assert_absent(&root.join("opt/app/logs"));
    assert_eq!(names_in(&root.join("etc")), ["app-version", "app.d", "group", "passwd", "xattr-file"]);
    assert_eq!(names_in(&root.join("etc/app.d")), ["new1.conf"]);
    assert!(read_string(&root.join("etc/app.d/new1.conf")).starts_with("# new config, 512 bytes\n"));
    assert_eq!(names_in(&root.join("srv/replace-me")), ["x"]);
    assert_eq!(names_in(&root.join("opt/app")), ["VERSION"]);
    assert_eq!(read_string(&root.join("etc/app-version")), "app v2\n", "relative symlink into a later layer");
    assert_eq!(read_string(&root.join("data/keep")), "keep me\n");
    assert_eq!(xattr(&root.join("etc/xattr-file"), "user.fixture").as_deref(), Some(&b"hello"[..]));
    assert_eq!(fs::metadata(root.join("usr/local/bin/suid-demo")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
    for rel in walk(root) {
        let md = fs::symlink_metadata(root.join(&rel)).unwrap();
        assert!(!md.file_type().is_char_device(), "whiteout visible in the merged view: {}", rel.display());
    }
    drop(m);
}

/// What `image save` writes is read by skopeo as both docker-archive and oci-archive (same config bytes, the
/// diff_ids as layers, the tag findable), skopeo can copy it (checking every blob digest), and podman loads it
/// with the same image ID, layers and tag.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn saved_archive_accepted_by_skopeo_and_podman() {
    let (archive, exp) = fixture("umoci-oci");
    let tag = "fixture:umoci";
    let e = Engine::new();
    assert_eq!(e.load(&archive), [format!("Loaded image: {tag}")]);
    let tmp = TempDir::new().unwrap();
    let saved = tmp.path().join("saved.tar");
    e.save(&saved, &[tag]);
    check_saved_archive(&saved);
    let file = saved.to_str().unwrap();

    for transport in ["docker-archive", "oci-archive"] {
        let src = format!("{transport}:{file}");
        let insp = skopeo_json(&["inspect", &src]);
        assert_eq!(strings(&insp["Layers"]), exp.diff_ids, "skopeo inspect {src}: Layers");
        assert_eq!(insp["Os"], "linux");
        assert_eq!(insp["Architecture"], "amd64");
        let raw = skopeo(&["inspect", "--raw", "--config", &src]);
        assert_eq!(sha256(&raw), exp.image_id, "skopeo inspect --raw --config {src}: config digest");
    }
    // The tag: docker-archive finds it in manifest.json's RepoTags, oci-archive by the short ref.name.
    let raw = skopeo(&["inspect", "--raw", "--config", &format!("docker-archive:{file}:{tag}")]);
    assert_eq!(sha256(&raw), exp.image_id, "docker-archive:FILE:{tag}");
    let raw = skopeo(&["inspect", "--raw", "--config", &format!("oci-archive:{file}:umoci")]);
    assert_eq!(sha256(&raw), exp.image_id, "oci-archive:FILE:umoci");
    let manifest = skopeo_json(&["inspect", "--raw", &format!("oci-archive:{file}")]);
    assert_eq!(manifest["config"]["digest"], exp.image_id.as_str());
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    }
    // skopeo copy reads every layer and verifies its digest.
    let skopeo_tmp = tmp.path().join("skopeo-tmp");
    fs::create_dir(&skopeo_tmp).unwrap();
    let copied = tmp.path().join("copied");
    skopeo(&[
        "--tmpdir",
        skopeo_tmp.to_str().unwrap(),
        "copy",
        "-q",
        &format!("docker-archive:{file}"),
        &format!("dir:{}", copied.display()),
    ]);
    let m = parse_json(&fs::read_to_string(copied.join("manifest.json")).unwrap(), "dir: manifest");
    assert_eq!(m["config"]["digest"], exp.image_id.as_str(), "skopeo copy: config digest");

    let podman = Podman::new();
    let out = podman.run(&["load", "-q", "-i", file]);
    let images = podman.images();
    assert_eq!(images.len(), 1, "podman load printed {out:?}; images {images:?}");
    assert_eq!(podman_id_of(&images, tag), exp.image_id, "podman image ID");
    let pi = podman.inspect(&exp.image_id);
    assert_eq!(format!("sha256:{}", pi["Id"].as_str().unwrap()), exp.image_id);
    assert_eq!(strings(&pi["RootFS"]["Layers"]), exp.diff_ids, "podman RootFS.Layers");
    assert_eq!(pi["Config"]["Labels"]["org.example.fixture"], "interop");
}

/// load → save → load into a fresh data root → save again: same IDs, diff_ids and tags, and byte-identical
/// archives; for every fixture.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn round_trip_is_byte_identical() {
    let tmp = TempDir::new().unwrap();
    for name in FIXTURES {
        let (archive, exp) = fixture(name);
        let images: Vec<&str> = if exp.repo_tags.is_empty() {
            vec![exp.image_id.as_str()]
        } else {
            exp.repo_tags.iter().map(String::as_str).collect()
        };
        let (a, b) = (Engine::new(), Engine::new());
        a.load(&archive);
        let first = tmp.path().join(format!("{name}.1.tar"));
        a.save(&first, &images);
        let entries = check_saved_archive(&first);
        for d in &exp.diff_ids {
            assert!(entries.contains_key(&format!("blobs/sha256/{}", &d[7..])), "{name}: layer {d} saved uncompressed");
        }
        let printed = b.load(&first);
        let want: Vec<String> = if exp.repo_tags.is_empty() {
            vec![format!("Loaded image ID: {}", exp.image_id)]
        } else {
            exp.repo_tags.iter().map(|t| format!("Loaded image: {t}")).collect()
        };
        assert_eq!(printed, want, "{name}: reload output");
        let second = tmp.path().join(format!("{name}.2.tar"));
        b.save(&second, &images);
        let (da, db) = (a.inspect(&exp.image_id), b.inspect(&exp.image_id));
        for doc in [&da, &db] {
            assert_eq!(doc["Id"], exp.image_id.as_str(), "{name}: Id");
            assert_eq!(strings(&doc["RootFS"]["Layers"]), exp.diff_ids, "{name}: RootFS.Layers");
        }
        assert_eq!(da["RepoTags"], db["RepoTags"], "{name}: tags survive the round trip");
        assert_eq!(da["Config"], db["Config"], "{name}: Config");
        assert_eq!(da["Size"], db["Size"], "{name}: Size");
        let (x, y) = (fs::read(&first).unwrap(), fs::read(&second).unwrap());
        assert!(x == y, "{name}: the two saved archives differ ({} vs {} bytes)", x.len(), y.len());
    }
}

/// Several images in one archive (two tags of one image, plus another image sharing its layers): written once
/// per blob, and the engine, skopeo and podman all find every tag.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn save_several_images_in_one_archive() {
    let (umoci, x) = fixture("umoci-oci");
    let (podman_oci, y) = fixture("podman-oci");
    assert_ne!(x.image_id, y.image_id);
    assert_eq!(x.diff_ids, y.diff_ids, "the two fixtures share their layers");
    let e = Engine::new();
    e.load(&umoci);
    e.load(&podman_oci);
    e.tag("fixture:umoci", "example.com/team/app:v2");
    let tmp = TempDir::new().unwrap();
    let saved = tmp.path().join("multi.tar");
    e.save(&saved, &["fixture:umoci", "example.com/team/app:v2", "localhost/fixture:podman"]);

    let entries = check_saved_archive(&saved);
    let blobs = entries.keys().filter(|k| k.starts_with("blobs/sha256/") && k.len() > 13).count();
    assert_eq!(blobs, 4 + 2 + 2, "4 shared layers, 2 configs and 2 manifests, each once");
    let docker = parse_json(std::str::from_utf8(&entries["manifest.json"]).unwrap(), "manifest.json");
    let docker: Vec<(String, Vec<String>)> = docker
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["Config"].as_str().unwrap().to_owned(), strings(&i["RepoTags"])))
        .collect();
    assert_eq!(
        docker,
        vec![
            (
                format!("blobs/sha256/{}", &x.image_id[7..]),
                vec!["fixture:umoci".to_owned(), "example.com/team/app:v2".to_owned()]
            ),
            (format!("blobs/sha256/{}", &y.image_id[7..]), vec!["localhost/fixture:podman".to_owned()]),
        ]
    );

    let want: BTreeMap<String, String> = [
        ("fixture:umoci", &x.image_id),
        ("example.com/team/app:v2", &x.image_id),
        ("localhost/fixture:podman", &y.image_id),
    ]
    .into_iter()
    .map(|(t, id)| (t.to_owned(), id.clone()))
    .collect();

    // The engine.
    let f = Engine::new();
    let printed: BTreeSet<String> = f.load(&saved).into_iter().collect();
    let expected: BTreeSet<String> = want.keys().map(|t| format!("Loaded image: {t}")).collect();
    assert_eq!(printed, expected, "engine load output");
    assert_eq!(f.list(), want, "engine image ls after reload");
    assert_eq!(sorted(strings(&f.inspect(&x.image_id)["RepoTags"])), ["example.com/team/app:v2", "fixture:umoci"]);
    assert_eq!(strings(&f.inspect(&y.image_id)["RootFS"]["Layers"]), y.diff_ids);

    // skopeo: every tag through manifest.json, every short ref.name through index.json.
    let file = saved.to_str().unwrap();
    for (tag, id) in &want {
        let raw = skopeo(&["inspect", "--raw", "--config", &format!("docker-archive:{file}:{tag}")]);
        assert_eq!(&sha256(&raw), id, "docker-archive:FILE:{tag}");
    }
    for (ref_name, id) in [("umoci", &x.image_id), ("v2", &x.image_id), ("podman", &y.image_id)] {
        let raw = skopeo(&["inspect", "--raw", "--config", &format!("oci-archive:{file}:{ref_name}")]);
        assert_eq!(&sha256(&raw), id, "oci-archive:FILE:{ref_name}");
    }

    // podman (4.3 takes a multi-image archive through its docker-archive path).
    let podman = Podman::new();
    podman.run(&["load", "-q", "-i", file]);
    let images = podman.images();
    assert_eq!(images.len(), 3, "podman images: {images:?}");
    assert_eq!(podman_id_of(&images, "fixture:umoci"), x.image_id);
    assert_eq!(images.get("example.com/team/app:v2"), Some(&x.image_id));
    assert_eq!(images.get("localhost/fixture:podman"), Some(&y.image_id));
}

/// Saved by ID, an image carries no tag: the engine reloads it as `Loaded image ID:`, skopeo reads it, podman
/// loads it with the same ID.
#[test]
#[ignore = "peer interop: needs podman, skopeo, umoci (run scripts/test.sh interop)"]
fn save_by_id_is_untagged() {
    let (archive, exp) = fixture("skopeo-docker");
    let e = Engine::new();
    e.load(&archive);
    let tmp = TempDir::new().unwrap();
    let saved = tmp.path().join("by-id.tar");
    e.save(&saved, &[&exp.image_id[7..19]]);
    let entries = check_saved_archive(&saved);
    let docker = parse_json(std::str::from_utf8(&entries["manifest.json"]).unwrap(), "manifest.json");
    assert!(strings(&docker[0]["RepoTags"]).is_empty(), "no RepoTags: {docker}");

    let f = Engine::new();
    assert_eq!(f.load(&saved), [format!("Loaded image ID: {}", exp.image_id)]);
    assert_eq!(f.list(), [("<none>:<none>".to_owned(), exp.image_id.clone())].into());

    let file = saved.to_str().unwrap();
    for transport in ["docker-archive", "oci-archive"] {
        let raw = skopeo(&["inspect", "--raw", "--config", &format!("{transport}:{file}")]);
        assert_eq!(sha256(&raw), exp.image_id, "{transport}: config digest");
    }
    let podman = Podman::new();
    podman.run(&["load", "-q", "-i", file]);
    let pi = podman.inspect(&exp.image_id);
    assert_eq!(format!("sha256:{}", pi["Id"].as_str().unwrap()), exp.image_id);
    assert_eq!(strings(&pi["RootFS"]["Layers"]), exp.diff_ids);
}
