//! Our rdiff patcher against the real librsync `rdiff`, and the store's base stream against the layer tars
//! it rebuilds. balenaEngine signs the source image's concatenated layer tars with librsync-go's BLAKE2
//! signature (block 512, strong sum 32, the original rollsum: `rdiff signature -R rollsum -H blake2 -b 512
//! -S 32`), then makes one delta per target layer against it.
//!
//! Needs `rdiff` (Debian package `rdiff`); without it these tests print a loud notice and pass.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use engine::delta::base_stream::BaseStream;
use engine::delta::rdiff::{apply, ReadAt};
use engine::digest::Digest;
use engine::error::Error;
use engine::store::{Access, Store};

/// The real `rdiff` (librsync) is a test peer: `scripts/setup.sh` installs it, and its absence is a failure.
fn require_rdiff() {
    let ok = Command::new("rdiff").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "`rdiff` (librsync) is not installed: run scripts/setup.sh (apt-get install rdiff)");
}

fn rdiff(args: &[&str]) {
    let out = Command::new("rdiff").args(args).output().expect("running rdiff");
    assert!(out.status.success(), "rdiff {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// balenaEngine's parameters (librsync-go: BLAKE2, block 512, strong sum 32, rollsum).
const BALENA_SIG: &[&str] = &["-R", "rollsum", "-H", "blake2", "-b", "512", "-S", "32"];

/// Signature of `base` with `sig_args`, then the delta to `new`; returns the delta bytes.
fn real_delta(dir: &Path, base: &Path, new: &Path, sig_args: &[&str]) -> Vec<u8> {
    let sig = dir.join("sig");
    let delta = dir.join("delta");
    let _ = fs::remove_file(&sig);
    let _ = fs::remove_file(&delta);
    let mut a = vec!["signature"];
    a.extend_from_slice(sig_args);
    let (b, s, n, d) = (base.to_str().unwrap(), sig.to_str().unwrap(), new.to_str().unwrap(), delta.to_str().unwrap());
    a.extend_from_slice(&[b, s]);
    rdiff(&a);
    rdiff(&["delta", s, n, d]);
    if sig_args == BALENA_SIG {
        let magic = fs::read(&sig).unwrap()[..4].to_vec();
        assert_eq!(magic, [0x72, 0x73, 0x01, 0x37], "librsync-go's BLAKE2_SIG_MAGIC");
    }
    fs::read(&delta).unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        // Text-like (compressible, repetitive) with random stretches, like real files.
        let words: [&[u8]; 6] = [b"usr/lib/", b"the ", b"\0\0\0\0", b"config=", b"\n", b"0123"];
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            if self.below(3) == 0 {
                let k = self.below(40);
                for _ in 0..k {
                    v.push(self.next() as u8);
                }
            } else {
                v.extend_from_slice(words[self.below(words.len())]);
            }
        }
        v.truncate(n);
        v
    }
    /// `base` with random insertions, deletions, overwrites and moved blocks.
    fn edit(&mut self, base: &[u8], edits: usize) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..edits {
            let at = self.below(v.len() + 1);
            match self.below(4) {
                0 => {
                    let n = 1 + self.below(3000);
                    let ins = self.bytes(n);
                    v.splice(at..at, ins);
                }
                1 => {
                    let end = (at + 1 + self.below(3000)).min(v.len());
                    v.drain(at..end);
                }
                2 => {
                    let end = (at + 1 + self.below(100)).min(v.len());
                    for b in &mut v[at..end] {
                        *b = b.wrapping_add(1);
                    }
                }
                _ => {
                    let end = (at + self.below(20_000)).min(v.len());
                    let block: Vec<u8> = v.drain(at..end).collect();
                    let to = self.below(v.len() + 1);
                    v.splice(to..to, block);
                }
            }
        }
        v
    }
}

fn check_pairs(sig_args: &[&str]) {
    require_rdiff();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let big = rng.bytes(3 << 20);
    let mid = rng.bytes(100_000);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("both empty", vec![], vec![]),
        ("empty base", vec![], rng.bytes(5000)),
        ("empty new", rng.bytes(5000), vec![]),
        ("one byte", b"a".to_vec(), b"b".to_vec()),
        ("identical 512", big[..512].to_vec(), big[..512].to_vec()),
        ("identical 513", big[..513].to_vec(), big[..513].to_vec()),
        ("identical 511", big[..511].to_vec(), big[..511].to_vec()),
        ("identical 3 MiB", big.clone(), big.clone()),
        ("edited 100 KiB", mid.clone(), rng.edit(&mid, 20)),
        ("edited 3 MiB", big.clone(), rng.edit(&big, 200)),
        ("unrelated", rng.bytes(200_000), rng.bytes(300_000)),
        ("appended", mid.clone(), [mid.clone(), rng.bytes(70_000)].concat()),
        ("prefix only", big.clone(), big[..1_000_003].to_vec()),
        ("long literal", vec![1u8; 600], [vec![1u8; 600], rng.bytes(1 << 20)].concat()),
    ];
    for (name, base, new) in cases {
        let (bp, np) = (dir.path().join("base"), dir.path().join("new"));
        fs::write(&bp, &base).unwrap();
        fs::write(&np, &new).unwrap();
        let delta = real_delta(dir.path(), &bp, &np, sig_args);
        let mut out = Vec::new();
        let n = apply(&delta[..], &base[..], &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(n, new.len() as u64, "{name}");
        assert!(out == new, "{name}: output differs ({} bytes, want {})", out.len(), new.len());
        // The real rdiff agrees on the same delta (keeps the test honest about the format).
        let pp = dir.path().join("patched");
        let _ = fs::remove_file(&pp);
        rdiff(&["patch", bp.to_str().unwrap(), dir.path().join("delta").to_str().unwrap(), pp.to_str().unwrap()]);
        assert!(fs::read(&pp).unwrap() == new, "{name}: rdiff patch itself");
        // Every truncation of the delta is refused, never a panic nor a silent short output.
        for cut in [0, 1, 3, 4, 5, delta.len() / 2, delta.len() - 1] {
            if cut >= delta.len() {
                continue;
            }
            let e = apply(&delta[..cut], &base[..], &mut Vec::new()).unwrap_err();
            assert!(matches!(e, Error::BadArchive(_)), "{name}: cut at {cut}: {e:?}");
        }
        // A delta against this base does not silently apply to a shorter one when it copies.
        if base.len() > 1024 && delta.len() > 16 {
            let _ = apply(&delta[..], &base[..base.len() / 2], &mut Vec::new());
        }
    }
}

#[test]
fn real_rdiff_deltas_with_balena_parameters() {
    check_pairs(BALENA_SIG);
}

#[test]
fn real_rdiff_deltas_with_default_parameters() {
    check_pairs(&[]);
}

#[test]
fn real_rdiff_deltas_with_md4_and_odd_blocks() {
    check_pairs(&["-H", "md4", "-b", "777", "-S", "8"]);
}

// ------------------------------------------------------------------ store-backed base stream

/// A layer tar built with the `tar` crate: directories, files of awkward sizes, a long name (GNU long-name
/// entry), a symlink, a hard link and an empty file.
fn layer_tar(rng: &mut Rng, variant: u8, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    dir(&mut b, "etc/");
    dir(&mut b, "usr/");
    dir(&mut b, "usr/lib/");
    let long = format!("usr/lib/{}/", "a-very-long-directory-name-".repeat(5));
    dir(&mut b, &long);
    let mut all: Vec<(String, Vec<u8>)> = files.iter().map(|(p, d)| (p.to_string(), d.clone())).collect();
    all.push((format!("{long}file-with-long-name-{variant}"), rng.bytes(777)));
    all.push(("etc/empty".into(), vec![]));
    for (path, data) in &all {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000 + u64::from(variant));
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "usr/lib/link", "../../etc/empty").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    b.append_link(&mut h, "usr/hard", &all[0].0).unwrap();
    b.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    Digest::of_bytes(data).to_string()
}

/// A docker-archive of one image with these layer tars; returns (archive, image ID).
fn docker_archive(tag: &str, layers: &[Vec<u8>]) -> (Vec<u8>, Digest) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T12:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let id = Digest::of_bytes(&config);
    let config_name = format!("{}.json", id.hex());
    let layer_names: Vec<String> = diff_ids.iter().map(|d| format!("{}/layer.tar", &d[7..])).collect();
    let manifest =
        serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]))
            .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", &manifest);
    add(&config_name, &config);
    for (n, l) in layer_names.iter().zip(layers) {
        add(n, l);
    }
    (b.into_inner().unwrap(), id)
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    base_id: Digest,
    base_layers: Vec<Vec<u8>>,
    target_layers: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut rng = Rng(42);
    let sizes = [1usize, 511, 512, 513, 1024, 4096, 100_000, 700_001];
    let files: Vec<(String, Vec<u8>)> =
        sizes.iter().enumerate().map(|(i, &n)| (format!("usr/lib/f{i}"), rng.bytes(n))).collect();
    let fref: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    let l1 = layer_tar(&mut rng, 1, &fref[..4]);
    let l2 = layer_tar(&mut rng, 2, &fref[4..]);
    // The target: same bottom layer, an edited second layer and a new third one.
    let edited: Vec<(&str, Vec<u8>)> = fref[4..].iter().map(|(p, d)| (*p, rng.edit(d, 5))).collect();
    let l3 = layer_tar(&mut rng, 3, &edited);
    let new_file = rng.bytes(30_000);
    let l4 = layer_tar(&mut rng, 4, &[("etc/new", new_file), ("usr/lib/f7", files[7].1.clone())]);
    let base_layers = vec![l1.clone(), l2];
    let target_layers = vec![l1, l3, l4];
    let (a, base_id) = docker_archive("test/base:1", &base_layers);
    let (b, _) = docker_archive("test/target:2", &target_layers);
    let mut store = Store::open(&root, Access::Write).unwrap();
    engine::archive::load(&mut store, &a[..]).unwrap();
    engine::archive::load(&mut store, &b[..]).unwrap();
    Fixture { _dir: dir, root, base_id, base_layers, target_layers }
}

#[test]
fn base_stream_equals_rebuilt_layer_tars() {
    let f = fixture();
    let store = Store::open(&f.root, Access::Read).unwrap();
    let rec = &store.metadata().images[&f.base_id];
    let mut expect = Vec::new();
    for chain in rec.chain_ids() {
        store.write_layer_tar(&chain, &mut expect).unwrap();
    }
    assert_eq!(expect, f.base_layers.concat(), "the store rebuilds the original tars");
    let base = BaseStream::open(&store, &f.base_id).unwrap();
    assert_eq!(base.len(), expect.len() as u64);
    let mut all = Vec::new();
    base.reader().read_to_end(&mut all).unwrap();
    assert!(all == expect, "sequential read");
    // Random reads of every size, across segment and layer boundaries.
    let mut rng = Rng(7);
    for _ in 0..3000 {
        let off = rng.below(expect.len() + 10) as u64;
        let len = [1, 2, 511, 512, 513, 4096, 200_000][rng.below(7)];
        let mut buf = vec![0xEEu8; len];
        let n = base.read_at(off, &mut buf).unwrap();
        let from = (off as usize).min(expect.len());
        let to = (from + len).min(expect.len());
        assert_eq!(n, to - from, "read_at({off}, {len})");
        assert!(buf[..n] == expect[from..to], "read_at({off}, {len})");
    }
    let mut r = base.reader();
    r.seek(SeekFrom::Start(f.base_layers[0].len() as u64)).unwrap();
    let mut second = Vec::new();
    r.read_to_end(&mut second).unwrap();
    assert!(second == f.base_layers[1]);
    // The index is small next to the content.
    assert!(base.heap_bytes() < expect.len() / 4, "index {} bytes for {}", base.heap_bytes(), expect.len());
    // Unknown image.
    let e = BaseStream::open(&store, &Digest::of_bytes(b"nope")).unwrap_err();
    assert!(matches!(e, Error::ImageNotFound(_)), "{e:?}");
}

#[test]
fn real_rdiff_delta_applies_through_the_base_stream() {
    require_rdiff();
    let f = fixture();
    let store = Store::open(&f.root, Access::Read).unwrap();
    let work = tempfile::tempdir().unwrap();
    // The source stream exactly as balenaEngine signs it: the rebuilt layer tars, concatenated.
    let src = work.path().join("src.tar");
    {
        let mut out = fs::File::create(&src).unwrap();
        for chain in store.metadata().images[&f.base_id].chain_ids() {
            store.write_layer_tar(&chain, &mut out).unwrap();
        }
    }
    let base = BaseStream::open(&store, &f.base_id).unwrap();
    assert_eq!(base.len(), fs::metadata(&src).unwrap().len());
    for (i, layer) in f.target_layers.iter().enumerate() {
        let new = work.path().join(format!("layer{i}.tar"));
        fs::write(&new, layer).unwrap();
        let delta = real_delta(work.path(), &src, &new, BALENA_SIG);
        let mut hw = engine::digest::HashingWriter::new(std::io::sink());
        let n = apply(&delta[..], &base, &mut hw).unwrap();
        let (_, h) = hw.into_parts();
        assert_eq!(n, layer.len() as u64, "layer {i}");
        assert_eq!(h.finish().to_string(), sha(layer), "layer {i}: the result's sha256 is the target DiffID");
        if i == 0 {
            // The common layer is all COPY: the delta is tiny.
            assert!(delta.len() < 64, "common layer delta is {} bytes", delta.len());
        }
    }
    // Through the trait object form too.
    let dynbase: &dyn ReadAt = &base;
    assert_eq!(dynbase.len(), base.len());
}

#[test]
fn base_stream_notices_a_changed_layer_file() {
    let f = fixture();
    let store = Store::open(&f.root, Access::Read).unwrap();
    let base = BaseStream::open(&store, &f.base_id).unwrap();
    // Grow one content file of the second layer behind the store's back.
    let chain = store.metadata().images[&f.base_id].chain_ids()[1].clone();
    let victim = store.layer_dir(&chain).join("diff/usr/lib/f7");
    let mut data = fs::read(&victim).unwrap();
    data.push(b'!');
    let mut perms = fs::metadata(&victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&victim, perms).unwrap();
    fs::write(&victim, &data).unwrap();
    let mut all = Vec::new();
    let e = base.reader().read_to_end(&mut all).unwrap_err();
    assert!(e.to_string().contains("usr/lib/f7"), "{e}");
    let mut buf = vec![0u8; base.len() as usize];
    let e = base.read_at(0, &mut buf).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
}
