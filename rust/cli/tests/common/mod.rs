//! Shared helpers of the CLI integration tests: archives crafted byte by byte (so a test can plant exactly the
//! malformed header it needs), a data root in a temporary directory driven through the real binary, and a
//! small tmpfs for full-disk tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_balena-engine");
pub const BLOCK: usize = 512;

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// ChainIDs of a layer stack, as hex (the names of the store's layer dirs).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => digest(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out.into_iter().map(|d| d.trim_start_matches("sha256:").to_owned()).collect()
}

pub use testkit::noise;

// ---------------------------------------------------------------------------------------------------------
// Raw tar
// ---------------------------------------------------------------------------------------------------------

/// One ustar header with every field settable, including values no well-behaved writer would produce.
#[derive(Clone, Debug)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Written in octal when it fits 11 digits, else in GNU base-256.
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub linkname: Vec<u8>,
    pub devmajor: u32,
    pub devminor: u32,
}

impl Hdr {
    pub fn new(typeflag: u8, name: impl AsRef<[u8]>) -> Hdr {
        let mode = match typeflag {
            b'5' => 0o755,
            b'2' => 0o777,
            _ => 0o644,
        };
        Hdr {
            name: name.as_ref().to_vec(),
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_700_000_000,
            typeflag,
            linkname: Vec::new(),
            devmajor: 0,
            devminor: 0,
        }
    }

    pub fn size(mut self, size: u64) -> Hdr {
        self.size = size;
        self
    }

    pub fn link(mut self, target: impl AsRef<[u8]>) -> Hdr {
        self.linkname = target.as_ref().to_vec();
        self
    }

    pub fn mode(mut self, mode: u32) -> Hdr {
        self.mode = mode;
        self
    }

    pub fn dev(mut self, major: u32, minor: u32) -> Hdr {
        self.devmajor = major;
        self.devminor = minor;
        self
    }

    pub fn to_block(&self) -> [u8; BLOCK] {
        fn octal(field: &mut [u8], v: u64) {
            let digits = field.len() - 1;
            let s = format!("{v:0digits$o}");
            assert!(s.len() == digits, "{v} does not fit {digits} octal digits");
            field[..digits].copy_from_slice(s.as_bytes());
            field[digits] = 0;
        }
        fn text(field: &mut [u8], v: &[u8]) {
            assert!(v.len() <= field.len(), "{:?} too long for a header field", String::from_utf8_lossy(v));
            field[..v.len()].copy_from_slice(v);
        }
        let mut b = [0u8; BLOCK];
        text(&mut b[0..100], &self.name);
        octal(&mut b[100..108], u64::from(self.mode));
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        if self.size < 1 << 33 {
            octal(&mut b[124..136], self.size);
        } else {
            b[124] = 0x80;
            b[128..136].copy_from_slice(&self.size.to_be_bytes());
        }
        octal(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        text(&mut b[157..257], &self.linkname);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        text(&mut b[265..297], b"root");
        text(&mut b[297..329], b"root");
        octal(&mut b[329..337], u64::from(self.devmajor));
        octal(&mut b[337..345], u64::from(self.devminor));
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&c| u64::from(c)).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
        b
    }
}

/// `<len> <key>=<value>\n` records of a pax extended header.
pub fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while len != base + len.to_string().len() {
            len = base + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A tar stream assembled entry by entry.
#[derive(Default, Clone)]
pub struct TarBuf {
    pub bytes: Vec<u8>,
}

impl TarBuf {
    pub fn new() -> TarBuf {
        TarBuf::default()
    }

    /// A header followed by `data` and its padding; the header's size field is taken as given, so it may lie.
    pub fn entry(&mut self, h: &Hdr, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&h.to_block());
        self.bytes.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.resize(self.bytes.len() + pad, 0);
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.entry(&Hdr::new(b'0', path).size(data.len() as u64), data)
    }

    pub fn exec(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.entry(&Hdr::new(b'0', path).size(data.len() as u64).mode(0o755), data)
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(&Hdr::new(b'5', path), &[])
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(&Hdr::new(b'2', path).link(target), &[])
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(&Hdr::new(b'1', path).link(target), &[])
    }

    pub fn chardev(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.entry(&Hdr::new(b'3', path).dev(major, minor).mode(0o666), &[])
    }

    /// A pax extended header ('x') applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data = pax_records(records);
        self.entry(&Hdr::new(b'x', "PaxHeaders/next").size(data.len() as u64), &data)
    }

    /// Appends the end-of-archive marker (two zero blocks).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.bytes);
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }
}

/// One entry of an outer image archive.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub data: Vec<u8>,
    /// Written instead of the plain header when set (its size field may disagree with `data`).
    pub header: Option<Hdr>,
}

impl Member {
    pub fn new(name: impl Into<String>, data: Vec<u8>) -> Member {
        Member { name: name.into(), data, header: None }
    }
}

pub fn outer_tar(members: &[Member]) -> Vec<u8> {
    let mut t = TarBuf::new();
    for m in members {
        match &m.header {
            Some(h) => t.entry(h, &m.data),
            None => t.file(&m.name, &m.data),
        };
    }
    t.finish()
}

pub fn find<'a>(members: &'a mut [Member], name: &str) -> &'a mut Member {
    members.iter_mut().find(|m| m.name == name).unwrap_or_else(|| panic!("no member {name}"))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The content of entry `name` of a tar stream (read with the `tar` crate, independent of the engine).
pub fn tar_member(archive: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return Some(v);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------------------

/// A small, valid layer: directories, files, a symlink and a hard link.
pub fn base_layer(seed: u64) -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("./")
        .dir("bin/")
        .exec("bin/sh", &noise(seed, 3000))
        .symlink("bin/ash", "sh")
        .hardlink("bin/busybox", "bin/sh")
        .dir("etc/")
        .file("etc/hostname", format!("host-{seed}\n").as_bytes())
        .file("etc/empty", b"");
    t.finish()
}

/// An image to be written as a docker-archive or an OCI layout.
#[derive(Clone)]
pub struct ImageSpec {
    pub tag: Option<String>,
    pub layers: Vec<Vec<u8>>,
    pub created: String,
}

impl ImageSpec {
    pub fn new(tag: &str, layers: Vec<Vec<u8>>) -> ImageSpec {
        ImageSpec { tag: Some(tag.to_owned()), layers, created: "2024-05-01T12:00:00Z".into() }
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| digest(l)).collect()
    }

    pub fn config_with(&self, diff_ids: &[String]) -> Vec<u8> {
        let cfg = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": self.created,
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": self.created, "created_by": "test"}],
        });
        serde_json::to_vec(&cfg).unwrap()
    }

    pub fn config(&self) -> Vec<u8> {
        self.config_with(&self.diff_ids())
    }

    /// The image ID (config digest).
    pub fn id(&self) -> String {
        digest(&self.config())
    }

    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(&self.diff_ids())
    }

    /// Legacy docker-archive: `<hex>/layer.tar`, `<hex>.json`, `manifest.json` last (as `docker save` writes).
    pub fn docker_members_with(&self, config: Vec<u8>) -> Vec<Member> {
        let mut out = Vec::new();
        let mut layer_names = Vec::new();
        for l in &self.layers {
            let name = format!("{}/layer.tar", sha256_hex(l));
            layer_names.push(name.clone());
            out.push(Member::new(name, l.clone()));
        }
        let config_name = format!("{}.json", sha256_hex(&config));
        out.push(Member::new(config_name.clone(), config));
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": self.tag.iter().collect::<Vec<_>>(),
            "Layers": layer_names,
        }]);
        out.push(Member::new("manifest.json", serde_json::to_vec(&manifest).unwrap()));
        out
    }

    pub fn docker_members(&self) -> Vec<Member> {
        self.docker_members_with(self.config())
    }

    pub fn docker(&self) -> Vec<u8> {
        outer_tar(&self.docker_members())
    }

    /// OCI image layout; layers optionally gzip-compressed.
    pub fn oci_members(&self, gzip_layers: bool) -> Vec<Member> {
        self.oci_members_map(gzip_layers, |_, b| b)
    }

    /// OCI image layout whose layer blobs pass through `f(index, blob)` before they are named and described,
    /// so the layout stays self-consistent around whatever `f` does to a blob.
    pub fn oci_members_map(&self, gzip_layers: bool, f: impl Fn(usize, Vec<u8>) -> Vec<u8>) -> Vec<Member> {
        self.oci_members_with(gzip_layers, self.config(), f)
    }

    /// The general form: any config document, any change to the layer blobs.
    pub fn oci_members_with(&self, gzip_layers: bool, config: Vec<u8>, f: impl Fn(usize, Vec<u8>) -> Vec<u8>) -> Vec<Member> {
        let mut out = vec![Member::new("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())];
        let mut descs = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let (blob, mt) = if gzip_layers {
                (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (l.clone(), "application/vnd.oci.image.layer.v1.tar")
            };
            let blob = f(i, blob);
            descs.push(serde_json::json!({"mediaType": mt, "digest": digest(&blob), "size": blob.len()}));
            out.push(Member::new(format!("blobs/sha256/{}", sha256_hex(&blob)), blob));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let mut desc = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
        });
        if let Some(t) = &self.tag {
            desc["annotations"] = serde_json::json!({"io.containerd.image.name": t});
        }
        out.push(Member::new(format!("blobs/sha256/{}", sha256_hex(&config)), config));
        out.push(Member::new(format!("blobs/sha256/{}", sha256_hex(&manifest)), manifest));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
        out.push(Member::new("index.json", serde_json::to_vec(&index).unwrap()));
        out
    }

    pub fn oci(&self, gzip_layers: bool) -> Vec<u8> {
        outer_tar(&self.oci_members(gzip_layers))
    }
}

/// The image every test loads first: two layers, tagged `good:1`.
pub fn good_image() -> ImageSpec {
    let mut top = TarBuf::new();
    top.dir("etc/").file("etc/motd", b"welcome\n").dir("var/").dir("var/lib/");
    ImageSpec::new("good:1", vec![base_layer(1), top.finish()])
}

/// A docker-archive `bad:1` whose second layer is `layer` (correct DiffIDs: any failure comes from the layer).
pub fn image_with_layer(layer: Vec<u8>) -> Vec<u8> {
    ImageSpec::new("bad:1", vec![base_layer(1), layer]).docker()
}

// ---------------------------------------------------------------------------------------------------------
// The binary and its data root
// ---------------------------------------------------------------------------------------------------------

pub struct Engine {
    _dir: Option<TempDir>,
    pub root: PathBuf,
    /// For archives and other files of the test, outside the data root.
    pub scratch: TempDir,
}

/// What must survive a failed operation untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub images: Vec<(String, String, String)>,
    pub saves: Vec<(String, Vec<u8>)>,
    pub layer_dirs: BTreeSet<String>,
    pub blobs: BTreeSet<String>,
}

pub fn names_in(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(4000)]),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Engine {
    pub fn new() -> Engine {
        let dir = tempfile::Builder::new().prefix("be-root-").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Engine { _dir: Some(dir), root, scratch: tempfile::Builder::new().prefix("be-scratch-").tempdir().unwrap() }
    }

    /// An engine on an existing directory (e.g. a mount point) that the caller owns.
    pub fn at(root: &Path) -> Engine {
        Engine { _dir: None, root: root.to_path_buf(), scratch: tempfile::Builder::new().prefix("be-scratch-").tempdir().unwrap() }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data-root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        // Write from a thread: the child may exit (with an error) before reading everything.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed:\n{}", show(&out));
        out.stdout
    }

    pub fn write_scratch(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.scratch.path().join(name);
        fs::write(&p, data).unwrap();
        p
    }

    /// `image load -i FILE`.
    pub fn load(&self, archive: &[u8]) -> Output {
        let p = self.write_scratch("archive.tar", archive);
        self.run(&["image", "load", "-i", p.to_str().unwrap()])
    }

    pub fn load_ok(&self, archive: &[u8]) -> String {
        let out = self.load(archive);
        assert!(out.status.success(), "load failed:\n{}", show(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn save(&self, images: &[&str]) -> Vec<u8> {
        let mut args = vec!["image", "save"];
        args.extend_from_slice(images);
        self.ok(&args)
    }

    /// (full ID, repository, tag) of every listed row, sorted.
    pub fn images(&self) -> Vec<(String, String, String)> {
        let out = self.ok(&["image", "ls", "--format", "json", "--no-trunc"]);
        let mut rows: Vec<(String, String, String)> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_owned();
                (s("ID"), s("Repository"), s("Tag"))
            })
            .collect();
        rows.sort();
        rows
    }

    pub fn tmp_entries(&self) -> BTreeSet<String> {
        names_in(&self.root.join("tmp"))
    }

    pub fn layer_dirs(&self) -> BTreeSet<String> {
        names_in(&self.root.join("layers"))
    }

    pub fn snapshot(&self, saved: &[&str]) -> Snapshot {
        Snapshot {
            images: self.images(),
            saves: saved.iter().map(|i| (i.to_string(), self.save(&[i]))).collect(),
            layer_dirs: self.layer_dirs(),
            blobs: names_in(&self.root.join("blobs/sha256")),
        }
    }

    /// The store is exactly as `before`: same images, byte-identical saves, no new layer dir or blob, empty tmp/.
    pub fn assert_unchanged(&self, before: &Snapshot) {
        assert_eq!(self.tmp_entries(), BTreeSet::new(), "tmp/ is not empty");
        assert_eq!(self.layer_dirs(), before.layer_dirs, "layer dirs changed");
        assert_eq!(names_in(&self.root.join("blobs/sha256")), before.blobs, "blobs changed");
        assert_eq!(self.images(), before.images, "image list changed");
        for (img, bytes) in &before.saves {
            let now = self.save(&[img]);
            assert!(now == *bytes, "`image save {img}` is no longer byte-identical ({} vs {} bytes)", now.len(), bytes.len());
        }
    }

    /// tmp/ is empty and layers/ holds exactly the layers of the listed images.
    pub fn assert_clean(&self, chains_of: impl Fn(&str) -> Vec<String>) {
        assert_eq!(self.tmp_entries(), BTreeSet::new(), "tmp/ is not empty");
        let mut want = BTreeSet::new();
        for (id, _, _) in self.images() {
            want.extend(chains_of(&id));
        }
        assert_eq!(self.layer_dirs(), want, "layers/ holds unreferenced or lacks referenced layer dirs");
    }
}

/// Asserts a failed command: exit status 1, stderr one line `Error: …` containing every needle. Returns stderr.
pub fn expect_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected failure:\n{}", show(out));
    let line = stderr.strip_suffix('\n').unwrap_or(&stderr);
    assert!(!line.contains('\n'), "stderr is not one line:\n{stderr}");
    assert!(line.starts_with("Error: "), "stderr does not start with `Error: `: {stderr}");
    for n in needles {
        assert!(line.contains(n), "stderr lacks {n:?}: {line}");
    }
    line.to_owned()
}

/// A fresh store holding the good image, and its snapshot.
pub fn store_with_good_image() -> (Engine, Snapshot) {
    let eng = Engine::new();
    eng.load_ok(&good_image().docker());
    let snap = eng.snapshot(&["good:1"]);
    assert_eq!(snap.images.len(), 1);
    (eng, snap)
}

/// Loads `bad` into a store holding the good image; asserts it fails naming the problem and changes nothing.
pub fn assert_rejected(bad: &[u8], needles: &[&str]) -> String {
    let (eng, snap) = store_with_good_image();
    let line = expect_error(&eng.load(bad), needles);
    eng.assert_unchanged(&snap);
    line
}

/// Offset of each member's header in `outer_tar(members)`.
pub fn member_offsets(members: &[Member]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    for m in members {
        out.push(pos);
        pos += BLOCK + m.data.len().div_ceil(BLOCK) * BLOCK;
    }
    out
}

#[allow(unused_imports)]
pub use testkit::tmpfs::Tmpfs;
