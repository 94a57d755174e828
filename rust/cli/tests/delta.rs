//! Delta updates through the real binary: `image delta` on a "server" store, `image save` of the delta,
//! `image load` on a "device" store holding only the base. The target must come out bit for bit (same image
//! ID, same DiffIDs, byte-identical `image save`), unchanged files hard-linked to the base's, and every
//! broken delta refused with the store left exactly as it was. Also balenaEngine's rdiff deltas, built here
//! with the real `rdiff` tool.

mod common;

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------------
// The images
// ---------------------------------------------------------------------------------------------------------

const MTIME: u64 = 1_700_000_000;
const BIG: usize = 2 << 20;

/// Text-like lines, different for every seed.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {i:06} of document {seed}: the quick brown fox {}\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Semi-random bytes, like a binary: 4 KiB blocks alternating noise, repeated structure and text.
fn semi_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4096);
    let mut block = 0u64;
    while out.len() < len {
        match block % 3 {
            0 => out.extend_from_slice(&noise(seed * 1000 + block, 4096)),
            1 => {
                for j in 0..256u32 {
                    out.extend_from_slice(&(j.wrapping_mul(2_654_435_761) ^ block as u32).to_le_bytes());
                    out.extend_from_slice(&[0, 0, 0x48, 0x89, 0xe5, 0xc3, 0x90, 0x90, 0x0f, 0x1f, 0x40, 0x00]);
                }
            }
            _ => out.extend_from_slice(&text(seed + block, 4096)),
        }
        block += 1;
    }
    out.truncate(len);
    out
}

/// Small edits: a few overwritten runs, an insertion and a deletion.
fn edited(old: &[u8], seed: u64) -> Vec<u8> {
    let mut new = old.to_vec();
    let n = new.len();
    for k in 1..=12usize {
        let at = n * k / 13;
        let patch = noise(seed + k as u64, 16);
        new[at..at + 16].copy_from_slice(&patch);
    }
    let mid = n / 2;
    new.splice(mid..mid, noise(seed + 99, 300));
    let late = n * 3 / 4;
    new.drain(late..late + 100);
    new
}

fn libfoo() -> Vec<u8> {
    semi_random(7, 300_000)
}

fn big_file() -> Vec<u8> {
    semi_random(8, BIG)
}

/// A regular file with explicit metadata.
fn file_with(t: &mut TarBuf, path: &str, data: &[u8], mode: u32, mtime: u64) {
    let mut h = Hdr::new(b'0', path).size(data.len() as u64).mode(mode);
    h.mtime = mtime;
    t.entry(&h, data);
}

fn owned_file(t: &mut TarBuf, path: &str, data: &[u8], uid: u64) {
    let mut h = Hdr::new(b'0', path).size(data.len() as u64);
    h.uid = uid;
    h.gid = uid;
    t.entry(&h, data);
}

/// A file name longer than ustar's 100 bytes: the path travels in a pax header.
fn long_name() -> String {
    format!("usr/share/doc/{}", "a-rather-long-file-name-".repeat(6))
}

/// Files both versions share in `usr/share/doc/`: a long name, an owner, an extended attribute.
fn shared_docs(t: &mut TarBuf, owner_of_changes: u64) {
    t.dir("usr/").dir("usr/share/").dir("usr/share/doc/").file("usr/share/doc/README", &text(15, 8000));
    t.pax(&[("path", long_name().as_bytes())]).file("long-name-placeholder", &text(17, 3000));
    owned_file(t, "usr/share/doc/owned", &text(18, 2000), 1000);
    owned_file(t, "usr/share/doc/owner-changes", &text(19, 2000), owner_of_changes);
    t.pax(&[("SCHILY.xattr.user.note", b"kept")]).file("usr/share/doc/with-xattr", &text(21, 2000));
}

fn base_libs() -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("lib/");
    file_with(&mut t, "lib/libfoo.so.1.2.3", &libfoo(), 0o755, MTIME);
    t.symlink("lib/libfoo.so.1", "libfoo.so.1.2.3")
        .exec("lib/libbar.so", &noise(11, 50_000))
        .hardlink("lib/libbar-link.so", "lib/libbar.so")
        .file("lib/mode-changes", &text(12, 20_000))
        .file("lib/mtime-changes", &noise(13, 10_000))
        .file("lib/empty", b"")
        .dir("opt/")
        .file("opt/data.bin", &big_file())
        .file("opt/removed", &text(14, 5000));
    shared_docs(&mut t, 0);
    t.finish()
}

fn target_libs() -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("lib/");
    // Renamed by a version bump, and edited: found by its shape, sent as a patch.
    file_with(&mut t, "lib/libfoo.so.1.2.4", &edited(&libfoo(), 100), 0o755, MTIME + 50);
    t.symlink("lib/libfoo.so.1", "libfoo.so.1.2.4")
        // Unchanged, with its in-layer hard link.
        .exec("lib/libbar.so", &noise(11, 50_000))
        .hardlink("lib/libbar-link.so", "lib/libbar.so");
    // Same content as a base file under another name, same metadata: a copy, hard-linked.
    t.exec("lib/libbar-copy.so", &noise(11, 50_000));
    // Same content, other metadata: copied, but must not share the base's inode.
    file_with(&mut t, "lib/mode-changes", &text(12, 20_000), 0o755, MTIME);
    file_with(&mut t, "lib/mtime-changes", &noise(13, 10_000), 0o644, MTIME + 1);
    t.file("lib/empty", b"")
        .file("lib/new-empty", b"")
        .exec("lib/libnew.so", &noise(16, 30_000))
        .dir("opt/")
        .file("opt/data.bin", &edited(&big_file(), 200));
    shared_docs(&mut t, 1000);
    t.finish()
}

fn base_app() -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("app/").file("app/main.py", &text(20, 6000)).file("app/config.json", br#"{"debug": false}"#);
    t.finish()
}

fn target_app() -> Vec<u8> {
    let mut main = text(20, 6000);
    main.extend_from_slice(b"print('version 2')\n");
    let mut t = TarBuf::new();
    // A whiteout deleting a file of the shared bottom layer.
    t.dir("etc/").file("etc/.wh.hostname", b"");
    t.dir("app/").file("app/main.py", &main).file("app/config.json", br#"{"debug": false}"#);
    // An opaque directory.
    t.dir("cache/").file("cache/.wh..wh..opq", b"").file("cache/fresh", b"1");
    t.finish()
}

fn added_layer() -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("srv/").file("srv/extra", &text(30, 3000)).symlink("srv/main", "../app/main.py");
    t.finish()
}

fn base_image() -> ImageSpec {
    ImageSpec::new("app:1", vec![base_layer(1), base_libs(), base_app()])
}

fn target_image() -> ImageSpec {
    let mut s = ImageSpec::new("app:2", vec![base_layer(1), target_libs(), target_app(), added_layer()]);
    s.created = "2024-06-01T12:00:00Z".into();
    s
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn inspect(eng: &Engine, image: &str) -> Value {
    let out = eng.ok(&["image", "inspect", image]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    v[0].clone()
}

/// The layer dirs (`…/diff`) of an image, bottom first.
fn layer_diffs(eng: &Engine, image: &str) -> Vec<PathBuf> {
    let doc = inspect(eng, image);
    let lower = doc["GraphDriver"]["Data"]["LowerDir"].as_str().expect("LowerDir");
    let mut dirs: Vec<PathBuf> = lower.split(':').map(PathBuf::from).collect();
    dirs.reverse();
    dirs
}

fn ino(p: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.dev(), m.ino())
}

/// A store holding the listed images (loaded from their docker-archives).
fn store_with(images: &[&ImageSpec]) -> Engine {
    let eng = Engine::new();
    for i in images {
        eng.load_ok(&i.docker());
    }
    eng
}

/// `image delta BASE TARGET --tag TAG` on `server`, then `image save TAG`: the delta archive.
fn make_delta(server: &Engine, base: &str, target: &str, tag: &str) -> Vec<u8> {
    let out = server.ok(&["image", "delta", base, target, "--tag", tag]);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("Created delta: sha256:"), "{out}");
    server.save(&[tag])
}

/// What a saved archive holds, read through its `manifest.json`: the config and the layer tars, in order.
struct Saved {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

fn parse_saved(archive: &[u8]) -> Saved {
    let manifest: Value =
        serde_json::from_slice(&tar_member(archive, "manifest.json").expect("manifest.json")).unwrap();
    let m = &manifest[0];
    let config = tar_member(archive, m["Config"].as_str().unwrap()).expect("config");
    let layers = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| tar_member(archive, l.as_str().unwrap()).expect("layer"))
        .collect();
    Saved { config, layers }
}

/// The one entry of a delta layer: `delta`.
fn delta_payload(layer: &[u8]) -> Vec<u8> {
    let mut a = tar::Archive::new(layer);
    let names: Vec<String> =
        a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["delta".to_string()], "a delta layer holds exactly one entry `delta`");
    tar_member(layer, "delta").unwrap()
}

/// A delta layer tar holding `payload` as `delta` (mode 0600, mtime 0, as the engine and balenaEngine write it).
fn delta_layer(payload: &[u8]) -> Vec<u8> {
    let mut h = Hdr::new(b'0', "delta").size(payload.len() as u64).mode(0o600);
    h.mtime = 0;
    let mut t = TarBuf::new();
    t.entry(&h, payload);
    t.finish()
}

/// A docker-archive tagged `tag` of an image with this config (its `rootfs.diff_ids` set to match `layers`);
/// a layer listed twice (balenaEngine's empty layers) is stored once.
fn archive_of(tag: &str, mut config: Value, layers: Vec<Vec<u8>>) -> Vec<u8> {
    let spec = ImageSpec::new(tag, layers);
    config["rootfs"]["diff_ids"] = serde_json::json!(spec.diff_ids());
    let mut seen = BTreeSet::new();
    let members: Vec<Member> = spec
        .docker_members_with(serde_json::to_vec(&config).unwrap())
        .into_iter()
        .filter(|m| seen.insert(m.name.clone()))
        .collect();
    outer_tar(&members)
}

/// The delta archive rewritten: each payload through `f(index, payload)`, each label through `labels`, and the
/// digests fixed up so that only what `f` and `labels` did is wrong.
fn rewrite(
    delta: &[u8],
    f: impl Fn(usize, Vec<u8>) -> Vec<u8>,
    labels: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Vec<u8> {
    let saved = parse_saved(delta);
    let mut config: Value = serde_json::from_slice(&saved.config).unwrap();
    labels(config["config"]["Labels"].as_object_mut().unwrap());
    let layers = saved.layers.iter().enumerate().map(|(i, l)| delta_layer(&f(i, delta_payload(l)))).collect();
    archive_of("app:delta", config, layers)
}

/// A bedelta/1 payload's header and where its sections start.
struct PayloadHeader {
    json: Value,
    start: usize,
}

fn payload_header(p: &[u8]) -> PayloadHeader {
    assert_eq!(&p[..8], b"BEDELTA1");
    let len = u32::from_le_bytes(p[8..12].try_into().unwrap()) as usize;
    PayloadHeader { json: serde_json::from_slice(&p[12..12 + len]).unwrap(), start: 12 + len }
}

/// (start, len) of section `k` (0 ops, 1 data, 2 diff) of a payload.
fn section(p: &[u8], k: usize) -> (usize, usize) {
    let h = payload_header(p);
    let lens: Vec<usize> = (0..3).map(|i| h.json["sections"][i].as_u64().unwrap() as usize).collect();
    (h.start + lens[..k].iter().sum::<usize>(), lens[k])
}

/// A payload with a replaced header (the sections kept).
fn with_header(p: &[u8], json: &Value) -> Vec<u8> {
    let h = payload_header(p);
    let j = serde_json::to_vec(json).unwrap();
    let mut out = b"BEDELTA1".to_vec();
    out.extend_from_slice(&(j.len() as u32).to_le_bytes());
    out.extend_from_slice(&j);
    out.extend_from_slice(&p[h.start..]);
    out
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A payload built from scratch: header for target layer `index` with these sections.
fn handmade_payload(index: u32, diff_id: &str, target_size: u64, ops: &[u8], data: &[u8], diff: &[u8]) -> Vec<u8> {
    let sections = [zstd_frame(ops), zstd_frame(data), zstd_frame(diff)];
    let json = serde_json::json!({
        "target_index": index,
        "target_diff_id": diff_id,
        "target_size": target_size,
        "sections": [sections[0].len(), sections[1].len(), sections[2].len()],
    });
    let j = serde_json::to_vec(&json).unwrap();
    let mut out = b"BEDELTA1".to_vec();
    out.extend_from_slice(&(j.len() as u32).to_le_bytes());
    out.extend_from_slice(&j);
    for s in &sections {
        out.extend_from_slice(s);
    }
    out
}

fn loaded_lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

/// What the server made, once for all tests: `image delta app:1 app:2 --tag app:delta`, saved.
struct Shared {
    delta: Vec<u8>,
    base_save: Vec<u8>,
    target_save: Vec<u8>,
    target_inspect: Value,
    delta_inspect: Value,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let t = Instant::now();
        let server = store_with(&[&base_image(), &target_image()]);
        let out = server.ok(&["image", "delta", "app:1", "app:2", "--tag", "app:delta"]);
        eprintln!("image delta ({:?}):\n{}", t.elapsed(), String::from_utf8_lossy(&out));
        Shared {
            delta: server.save(&["app:delta"]),
            base_save: server.save(&["app:1"]),
            target_save: server.save(&["app:2"]),
            target_inspect: inspect(&server, "app:2"),
            delta_inspect: inspect(&server, "app:delta"),
        }
    })
}

/// A device holding the base (and whatever else is listed), with its snapshot.
fn device_with_base(extra: &[&ImageSpec]) -> (Engine, Snapshot) {
    let dev = Engine::new();
    dev.load_ok(&shared().base_save);
    for i in extra {
        dev.load_ok(&i.docker());
    }
    let snap = dev.snapshot(&["app:1"]);
    (dev, snap)
}

// ---------------------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------------------

#[test]
fn delta_rebuilds_the_target_bit_for_bit_with_unchanged_files_linked() {
    let t0 = Instant::now();
    let base = base_image();
    let target = target_image();
    let sh = shared();
    let (delta, target_save, server_doc) = (&sh.delta, &sh.target_save, &sh.target_inspect);
    assert_eq!(server_doc["Id"], target.id());

    // The delta image: our labels, one layer per target layer the base lacks, each one entry `delta`.
    let d = &sh.delta_inspect;
    let labels = &d["Config"]["Labels"];
    assert_eq!(labels["io.balena.delta.base"], base.id());
    assert_eq!(labels["io.balena.delta.format"], "bedelta/1");
    assert_eq!(labels["io.balena.delta.config"].as_str().unwrap().as_bytes(), target.config().as_slice());
    assert_eq!(labels["io.balena.delta.tags"], "app:2");
    let saved = parse_saved(delta);
    assert_eq!(saved.layers.len(), 3, "the shared bottom layer costs nothing");
    for (i, l) in saved.layers.iter().enumerate() {
        let p = delta_payload(l);
        let h = payload_header(&p);
        assert_eq!(h.json["target_index"], i + 1);
        assert_eq!(h.json["target_diff_id"], target.diff_ids()[i + 1]);
        eprintln!("payload for target layer {}: {} bytes (layer {} bytes)", i + 1, p.len(), target.layers[i + 1].len());
    }

    // Much smaller than the target itself.
    let ratio = target_save.len() as f64 / delta.len() as f64;
    eprintln!("target save {} bytes, delta archive {} bytes: {ratio:.1}x", target_save.len(), delta.len());
    assert!(
        ratio > 25.0,
        "delta archive {} bytes vs target {} bytes: only {ratio:.1}x",
        delta.len(),
        target_save.len()
    );

    // The device: only the base.
    let device = store_with(&[&base]);
    let base_save = device.save(&["app:1"]);
    let t1 = Instant::now();
    let printed = device.load_ok(delta);
    eprintln!("load of the delta: {:?}", t1.elapsed());
    assert_eq!(
        loaded_lines(&printed),
        vec![format!("Applied delta: rebuilt {} from base {}", target.id(), base.id()).as_str(), "Loaded image: app:2"]
    );
    // The target, not the delta.
    let mut want = vec![(base.id(), "app".into(), "1".into()), (target.id(), "app".into(), "2".into())];
    want.sort();
    assert_eq!(device.images(), want);
    device.assert_clean(|id| if id == base.id() { base.chain_ids() } else { target.chain_ids() });
    let device_doc = inspect(&device, "app:2");
    assert_eq!(device_doc["Id"], server_doc["Id"]);
    assert_eq!(device_doc["RootFS"], server_doc["RootFS"]);
    assert!(device.save(&["app:2"]) == *target_save, "the rebuilt target does not save byte-identically");
    assert!(device.save(&["app:1"]) == base_save, "the base changed");

    // Unchanged files are the base's inodes; files with other metadata (or content) are not.
    let b = layer_diffs(&device, "app:1");
    let t = layer_diffs(&device, "app:2");
    assert_eq!(b[0], t[0], "shared bottom layer");
    let long = long_name();
    let linked = [
        ("lib/libbar.so", "lib/libbar.so"),
        ("lib/libbar-link.so", "lib/libbar.so"),
        ("lib/libbar-copy.so", "lib/libbar.so"),
        ("usr/share/doc/README", "usr/share/doc/README"),
        (long.as_str(), long.as_str()),
        ("usr/share/doc/owned", "usr/share/doc/owned"),
    ];
    for (tp, bp) in linked {
        assert_eq!(ino(&t[1].join(tp)), ino(&b[1].join(bp)), "{tp} is not a hard link to the base's {bp}");
        assert!(std::fs::metadata(t[1].join(tp)).unwrap().nlink() >= 2, "{tp}");
    }
    assert_eq!(ino(&t[2].join("app/config.json")), ino(&b[2].join("app/config.json")));
    let not_linked = [
        ("lib/mode-changes", "lib/mode-changes"),
        ("lib/mtime-changes", "lib/mtime-changes"),
        ("usr/share/doc/owner-changes", "usr/share/doc/owner-changes"),
        ("usr/share/doc/with-xattr", "usr/share/doc/with-xattr"),
        ("lib/libfoo.so.1.2.4", "lib/libfoo.so.1.2.3"),
        ("opt/data.bin", "opt/data.bin"),
    ];
    for (tp, bp) in not_linked {
        assert_ne!(
            ino(&t[1].join(tp)),
            ino(&b[1].join(bp)),
            "{tp} shares the base's inode though its metadata differs"
        );
    }
    let m = std::fs::metadata(t[1].join("lib/mode-changes")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert_eq!(std::fs::metadata(b[1].join("lib/mode-changes")).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(std::fs::metadata(t[1].join("lib/mtime-changes")).unwrap().mtime(), MTIME as i64 + 1);
    assert_eq!(std::fs::metadata(b[1].join("lib/mtime-changes")).unwrap().mtime(), MTIME as i64);
    assert_eq!(std::fs::read(t[1].join("opt/data.bin")).unwrap(), edited(&big_file(), 200));
    assert_eq!(std::fs::read_link(t[1].join("lib/libfoo.so.1")).unwrap(), Path::new("libfoo.so.1.2.4"));
    assert!(!t[1].join("opt/removed").exists());
    assert_eq!(std::fs::metadata(t[1].join("lib/new-empty")).unwrap().len(), 0);
    // The whiteout became an overlay whiteout (a 0/0 character device).
    let wh = std::fs::symlink_metadata(t[2].join("etc/hostname")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()));

    // The base goes; the target's linked files stay with it.
    device.ok(&["rmi", "app:1"]);
    assert!(device.save(&["app:2"]) == *target_save, "the target changed when its base was removed");
    device.assert_clean(|_| target.chain_ids());
    eprintln!("total {:?}", t0.elapsed());
}

#[test]
fn small_edits_to_a_large_file_cost_a_few_kilobytes() {
    let mut old = TarBuf::new();
    old.dir("opt/").file("opt/data.bin", &big_file());
    let mut new = TarBuf::new();
    new.dir("opt/").file("opt/data.bin", &edited(&big_file(), 300));
    let base = ImageSpec::new("big:1", vec![base_layer(1), old.finish()]);
    let target = ImageSpec::new("big:2", vec![base_layer(1), new.finish()]);
    let server = store_with(&[&base, &target]);
    let delta = make_delta(&server, "big:1", "big:2", "big:delta");
    let target_save = server.save(&["big:2"]);
    let payload = delta_payload(&parse_saved(&delta).layers[0]);
    let ratio = target_save.len() as f64 / delta.len() as f64;
    eprintln!(
        "2 MiB file, 12 overwrites, an insertion, a deletion: payload {} bytes, delta archive {} bytes, \
         target {} bytes ({ratio:.0}x)",
        payload.len(),
        delta.len(),
        target_save.len()
    );
    assert!(payload.len() < 8_000, "payload of {} bytes", payload.len());
    assert!(ratio > 100.0, "only {ratio:.0}x");
    let dev = store_with(&[&base]);
    dev.load_ok(&delta);
    assert!(dev.save(&["big:2"]) == target_save);
}

#[test]
fn shared_layers_cost_nothing() {
    let base = base_image();
    // The base's layers plus one: the delta holds that one layer.
    let mut grown = ImageSpec::new("app:3", [base.layers.clone(), vec![added_layer()]].concat());
    grown.created = "2024-07-01T12:00:00Z".into();
    // The base's layers exactly, another config: the delta holds no layer at all.
    let mut retagged = ImageSpec::new("app:4", base.layers.clone());
    retagged.created = "2024-08-01T12:00:00Z".into();
    let server = store_with(&[&base, &grown, &retagged]);
    let d3 = make_delta(&server, "app:1", "app:3", "app:d3");
    let d4 = make_delta(&server, "app:1", "app:4", "app:d4");
    let s3 = parse_saved(&d3);
    assert_eq!(s3.layers.len(), 1);
    assert_eq!(payload_header(&delta_payload(&s3.layers[0])).json["target_index"], 3);
    assert_eq!(parse_saved(&d4).layers.len(), 0);
    eprintln!("delta archives: one new layer {} bytes, config only {} bytes", d3.len(), d4.len());

    let (dev, snap) = device_with_base(&[]);
    let printed = dev.load_ok(&d3);
    assert!(printed.ends_with("Loaded image: app:3\n"), "{printed}");
    let printed = dev.load_ok(&d4);
    assert!(printed.ends_with("Loaded image: app:4\n"), "{printed}");
    assert!(dev.save(&["app:3"]) == server.save(&["app:3"]));
    assert!(dev.save(&["app:4"]) == server.save(&["app:4"]));
    // One new layer dir, nothing else.
    let new: Vec<String> = dev.layer_dirs().difference(&snap.layer_dirs).cloned().collect();
    assert_eq!(new, vec![grown.chain_ids()[3].clone()]);
    assert_eq!(dev.tmp_entries(), BTreeSet::new());
}

#[test]
fn delta_for_a_target_already_present_only_tags_it() {
    let target = target_image();
    let mut other_name = target.clone();
    other_name.tag = Some("other:9".into());
    let (dev, _) = device_with_base(&[&other_name]);
    let before = dev.snapshot(&["app:1", "other:9"]);
    // Nothing rebuilt, so no "Applied delta" line.
    assert_eq!(dev.load_ok(&shared().delta), "Loaded image: app:2\n");
    let mut want = before.images.clone();
    want.push((target.id(), "app".into(), "2".into()));
    want.sort();
    assert_eq!(dev.images(), want);
    assert_eq!(dev.layer_dirs(), before.layer_dirs, "no layer written");
    assert_eq!(dev.tmp_entries(), BTreeSet::new());
    for (img, bytes) in &before.saves {
        assert!(dev.save(&[img]) == *bytes);
    }

    // The target alone is enough: the base is not needed when there is nothing to rebuild.
    let dev = store_with(&[&other_name]);
    assert_eq!(dev.load_ok(&shared().delta), "Loaded image: app:2\n");
    assert_eq!(dev.images(), vec![(target.id(), "app".into(), "2".into()), (target.id(), "other".into(), "9".into())]);
    assert_eq!(dev.layer_dirs(), target.chain_ids().into_iter().collect());
}

// ---------------------------------------------------------------------------------------------------------
// Bad input: refused, the store as it was
// ---------------------------------------------------------------------------------------------------------

#[test]
fn missing_base_is_named() {
    let base_id = base_image().id();
    // Named by ID, and by the tags it had where the delta was made.
    let needles = ["delta base image", base_id.as_str(), "(app:1)", "is not in the store"];
    // An empty store, and one with an unrelated image.
    let (eng, snap) = store_with_good_image();
    let line = expect_error(&eng.load(&shared().delta), &needles);
    eprintln!("{line}");
    eng.assert_unchanged(&snap);
    // Another image under the base's name: the delta's base is an image ID, not a name.
    let impostor = ImageSpec::new("app:1", vec![base_layer(1), base_libs()]);
    let eng = store_with(&[&impostor]);
    let snap = eng.snapshot(&["app:1"]);
    expect_error(&eng.load(&shared().delta), &needles);
    eng.assert_unchanged(&snap);
}

/// Address space allowed to a load of a crafted delta: an allocation sized by a lying header fails it.
const MEMORY_LIMIT: u64 = 128 << 20;

/// `image load -i FILE` with the address space limited to `MEMORY_LIMIT`.
fn load_limited(eng: &Engine, archive: &[u8]) -> std::process::Output {
    let p = eng.write_scratch("limited.tar", archive);
    let mut c = eng.cmd(&["image", "load", "-i", p.to_str().unwrap()]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: MEMORY_LIMIT, rlim_max: MEMORY_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

/// Loads each crafted delta on a device holding the base, in limited memory; each must fail naming
/// `needles`, changing nothing.
fn assert_all_rejected(cases: Vec<(String, Vec<u8>, Vec<&str>)>) {
    let (dev, snap) = device_with_base(&[]);
    for (what, archive, needles) in cases {
        let t = Instant::now();
        let out = load_limited(&dev, &archive);
        let line = expect_error(&out, &needles);
        eprintln!("{what} ({:?}): {line}", t.elapsed());
        dev.assert_unchanged(&snap);
    }
    // The genuine delta, through the same rewriting with nothing changed, applies in the same limit.
    let out = load_limited(&dev, &rewrite(&shared().delta, |_, p| p, |_| {}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn corrupted_payloads_are_refused() {
    let delta = &shared().delta;
    let first = delta_payload(&parse_saved(delta).layers[0]);
    let mut cases = Vec::new();
    for (k, name) in ["ops", "data", "diff"].iter().enumerate() {
        let (start, len) = section(&first, k);
        assert!(len > 40, "{name} section of {len} bytes");
        for (where_, at) in [("start", start + 20), ("middle", start + len / 2), ("end", start + len - 3)] {
            let archive = rewrite(
                delta,
                |i, mut p| {
                    if i == 0 {
                        p[at] ^= 0x5a;
                        p[at + 1] ^= 0xff;
                    }
                    p
                },
                |_| {},
            );
            cases.push((format!("{name} section flipped at its {where_}"), archive, vec!["invalid archive: delta payload"]));
        }
    }
    // A payload moved to another layer slot still carries its header: the missing layer is named.
    let archive = rewrite(
        delta,
        |i, p| {
            if i == 1 {
                let mut h = payload_header(&p).json;
                h["target_index"] = 3.into();
                with_header(&p, &h)
            } else {
                p
            }
        },
        |_| {},
    );
    cases.push(("payload claiming another layer".into(), archive, vec!["target layer 2"]));
    // A header naming another DiffID: the rebuilt layer does not match it.
    let archive = rewrite(
        delta,
        |i, p| {
            if i == 0 {
                let mut h = payload_header(&p).json;
                h["target_diff_id"] = digest(b"something else").into();
                with_header(&p, &h)
            } else {
                p
            }
        },
        |_| {},
    );
    cases.push(("header with a wrong DiffID".into(), archive, vec!["digest mismatch"]));
    // Not a payload at all.
    let archive = rewrite(delta, |i, p| if i == 2 { noise(5, p.len()) } else { p }, |_| {});
    cases.push(("noise instead of a payload".into(), archive, vec!["invalid archive: delta payload", "bad magic"]));
    assert_all_rejected(cases);
}

#[test]
fn truncated_payloads_are_refused() {
    let delta = &shared().delta;
    let first = delta_payload(&parse_saved(delta).layers[0]);
    let h = payload_header(&first);
    let (data_start, _) = section(&first, 1);
    let (diff_start, _) = section(&first, 2);
    let mut cases = Vec::new();
    for (what, cut) in [
        ("empty", 0),
        ("inside the magic", 5),
        ("inside the header", h.start - 10),
        ("after the header", h.start),
        ("inside the ops section", h.start + 30),
        ("inside the data section", data_start + 100),
        ("inside the diff section", diff_start + 10),
        ("one byte short", first.len() - 1),
    ] {
        let archive = rewrite(delta, |i, p| if i == 0 { p[..cut].to_vec() } else { p }, |_| {});
        cases.push((format!("payload cut {what} ({cut} of {} bytes)", first.len()), archive, vec!["invalid archive: delta payload"]));
    }
    assert_all_rejected(cases);
}

#[test]
fn absurd_sizes_in_payloads_are_refused_without_allocating() {
    let delta = &shared().delta;
    let target = target_image();
    let top_diff_id = target.diff_ids()[3].clone();
    let mut cases = Vec::new();
    let with_payload = |top: Vec<u8>| rewrite(delta, move |i, p| if i == 2 { top.clone() } else { p }, |_| {});

    // The header's sizes.
    let real = delta_payload(&parse_saved(delta).layers[2]);
    for (what, field, value, needle) in [
        ("sections of 2^62 bytes", "sections", serde_json::json!([1u64 << 62, 1u64 << 62, 1u64 << 62]), "invalid archive: delta payload"),
        ("sections overflowing u64", "sections", serde_json::json!([u64::MAX, u64::MAX, 5]), "invalid archive: delta payload"),
        ("target of 2^64-1 bytes", "target_size", serde_json::json!(u64::MAX), "invalid archive: delta payload"),
        ("target index 2^32-1", "target_index", serde_json::json!(u32::MAX), "no data for target layer 3"),
    ] {
        let mut h = payload_header(&real).json;
        h[field] = value;
        cases.push((format!("header: {what}"), with_payload(with_header(&real, &h)), vec![needle]));
    }
    // A header length of 4 GiB.
    let mut p = real.clone();
    p[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("header length 4 GiB".into(), with_payload(p), vec!["delta payload", "header too large"]));

    // Ops with absurd lengths, in a well-formed payload.
    let ops_cases: Vec<(&str, Vec<u8>)> = vec![
        ("RAW of 2^62 bytes", [vec![1u8], varint(1 << 62)].concat()),
        ("LITERAL of 2^62 bytes", [vec![4u8], varint(1 << 62)].concat()),
        ("COPY of 2^62 bytes", [vec![2u8], varint(0), varint(6), b"bin/sh".to_vec(), varint(1 << 62)].concat()),
        (
            "COPY naming base layer 2^32-1",
            [vec![2u8], varint(u64::from(u32::MAX)), varint(6), b"bin/sh".to_vec(), varint(3000)].concat(),
        ),
        ("COPY with a path of 2^40 bytes", [vec![2u8], varint(0), varint(1 << 40)].concat()),
        (
            "PATCH with a 2^62-byte control block",
            [vec![3u8], varint(0), varint(6), b"bin/sh".to_vec(), varint(3000), varint(1 << 62), varint(1 << 62)]
                .concat(),
        ),
        (
            "PATCH to 2^62 bytes",
            [vec![3u8], varint(0), varint(6), b"bin/sh".to_vec(), varint(3000), varint(1 << 62), varint(0)].concat(),
        ),
        ("varint of 11 bytes", [vec![4u8], vec![0xff; 11]].concat()),
        ("unknown op", vec![9u8]),
        ("END claiming 2^63 bytes", [vec![0u8], varint(1 << 63)].concat()),
        ("no END", vec![]),
    ];
    for (what, ops) in ops_cases {
        let p = handmade_payload(3, &top_diff_id, 1 << 62, &ops, &noise(1, 1000), b"");
        // A COPY's size is checked against the base file: the base may have changed on disk.
        let needle = if what == "COPY of 2^62 bytes" { "the delta expects 4611686018427387904" } else { "invalid archive: delta payload" };
        cases.push((format!("ops: {what}"), with_payload(p), vec![needle]));
    }
    assert_all_rejected(cases);
}

#[test]
fn copies_from_outside_the_base_layers_are_refused() {
    let delta = &shared().delta;
    let top_diff_id = target_image().diff_ids()[3].clone();
    let mut cases = Vec::new();
    let host_file = std::env::current_exe().unwrap();
    let host_size = std::fs::metadata(&host_file).unwrap().len();
    for (what, path, size, needle) in [
        ("a path with ..", b"../../../../../../../../etc/passwd".to_vec(), 10u64, "etc/passwd"),
        ("an absolute path", host_file.as_os_str().as_bytes().to_vec(), host_size, "delta-"),
        ("a path through a symlink of the base", b"bin/ash".to_vec(), 3000, "bin/ash"),
        ("a directory", b"bin".to_vec(), 0, "not a regular file"),
        ("a file the base lacks", b"etc/shadow".to_vec(), 10, "etc/shadow"),
    ] {
        let ops =
            [vec![2u8], varint(0), varint(path.len() as u64), path.clone(), varint(size), vec![0u8], varint(size)]
                .concat();
        let p = handmade_payload(3, &top_diff_id, size, &ops, b"", b"");
        let archive = rewrite(delta, move |i, q| if i == 2 { p.clone() } else { q }, |_| {});
        cases.push((format!("COPY from {what}"), archive, vec!["invalid archive: delta payload: base layer 0", needle]));
    }
    assert_all_rejected(cases);
}

#[test]
fn unknown_or_missing_delta_labels_are_refused() {
    let delta = &shared().delta;
    let cases = vec![
        (
            "format bedelta/9".to_string(),
            rewrite(
                delta,
                |_, p| p,
                |l| {
                    l.insert("io.balena.delta.format".into(), "bedelta/9".into());
                },
            ),
            vec!["unsupported", "bedelta/9"],
        ),
        (
            "no format label".to_string(),
            rewrite(
                delta,
                |_, p| p,
                |l| {
                    l.remove("io.balena.delta.format");
                },
            ),
            vec!["io.balena.delta.format"],
        ),
        (
            "no target config label".to_string(),
            rewrite(
                delta,
                |_, p| p,
                |l| {
                    l.remove("io.balena.delta.config");
                },
            ),
            vec!["target"],
        ),
        (
            "base label that is not an ID".to_string(),
            rewrite(
                delta,
                |_, p| p,
                |l| {
                    l.insert("io.balena.delta.base".into(), "app:1".into());
                },
            ),
            vec!["delta base", "app:1"],
        ),
        (
            "target config whose layers the delta does not match".to_string(),
            rewrite(
                delta,
                |_, p| p,
                |l| {
                    let cfg = l["io.balena.delta.config"].as_str().unwrap().replace("2024-06-01", "2024-06-02");
                    let mut v: Value = serde_json::from_str(&cfg).unwrap();
                    v["rootfs"]["diff_ids"][2] = digest(b"x").into();
                    l.insert("io.balena.delta.config".into(), serde_json::to_string(&v).unwrap().into());
                },
            ),
            vec!["target layer 2"],
        ),
    ];
    // A delta layer holding something else than one file `delta`.
    let saved = parse_saved(delta);
    let mut t = TarBuf::new();
    t.dir("delta/").file("delta/x", b"1");
    let mut layers = saved.layers.clone();
    layers[1] = t.finish();
    let mut cases = cases;
    cases.push((
        "delta layer without a `delta` file".into(),
        archive_of("app:delta", serde_json::from_slice(&saved.config).unwrap(), layers),
        vec!["delta layer 1", "'delta'"],
    ));
    assert_all_rejected(cases);
}

#[test]
fn tampered_base_files_fail_the_diff_id_check() {
    let base = base_image();
    let delta = &shared().delta;
    // Same size, other bytes: a COPY source (linked when intact) and a PATCH source.
    for (path, layer) in [("usr/share/doc/README", 1usize), ("lib/libfoo.so.1.2.3", 1), ("app/main.py", 2)] {
        let (dev, _) = device_with_base(&[]);
        let file = layer_diffs(&dev, "app:1")[layer].join(path);
        let original = std::fs::read(&file).unwrap();
        let mut tampered = original.clone();
        tampered[original.len() / 2] ^= 0x20;
        std::fs::write(&file, &tampered).unwrap();
        let snap = dev.snapshot(&[]);
        let line = expect_error(&dev.load(delta), &["digest mismatch", "rebuilt from the delta"]);
        eprintln!("{path} tampered: {line}");
        dev.assert_unchanged(&snap);
        assert_eq!(std::fs::read(&file).unwrap(), tampered);
        // Apart from the tampering, the store is as it was: repaired, the base saves as before.
        std::fs::write(&file, &original).unwrap();
        assert!(dev.save(&["app:1"]) == shared().base_save);
        assert_eq!(dev.images(), vec![(base.id(), "app".into(), "1".into())]);
    }
    // Another size: named as such.
    let (dev, _) = device_with_base(&[]);
    let file = layer_diffs(&dev, "app:1")[1].join("lib/libfoo.so.1.2.3");
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    std::io::Write::write_all(&mut f, b"more").unwrap();
    drop(f);
    let snap = dev.snapshot(&[]);
    let line = expect_error(&dev.load(delta), &["lib/libfoo.so.1.2.3", "300004 bytes", "expects 300000"]);
    eprintln!("base file grown: {line}");
    dev.assert_unchanged(&snap);
}

// ---------------------------------------------------------------------------------------------------------
// Full disk
// ---------------------------------------------------------------------------------------------------------

#[test]
fn full_disk_during_apply_fails_cleanly_and_linked_files_cost_no_space() {
    let fs = match Tmpfs::mount("2500k") {
        Ok(fs) => fs,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!(
                "!!!!!!!! SKIPPED full_disk_during_apply_fails_cleanly_and_linked_files_cost_no_space: \
                 cannot mount tmpfs ({e}) !!!!!!!!"
            );
            return;
        }
        Err(e) => panic!("mounting tmpfs: {e}"),
    };
    let blob = noise(40, 1 << 20);
    let mut l1 = TarBuf::new();
    l1.dir("data/").file("data/blob", &blob);
    let base = ImageSpec::new("fd:1", vec![base_layer(1), l1.finish()]);
    // Three copies of the base's 1 MiB file with another mode: a tiny delta, 3 MiB to write.
    let mut copies = TarBuf::new();
    copies.dir("copies/");
    for n in ["a", "b", "c"] {
        copies.entry(&Hdr::new(b'0', format!("copies/{n}")).size(blob.len() as u64).mode(0o600), &blob);
    }
    let heavy = ImageSpec::new("fd:heavy", [base.layers.clone(), vec![copies.finish()]].concat());
    // The same with the base's metadata: hard links, no space.
    let mut links = TarBuf::new();
    links.dir("linked/");
    for n in ["a", "b", "c"] {
        links.file(&format!("linked/{n}"), &blob);
    }
    let light = ImageSpec::new("fd:light", [base.layers.clone(), vec![links.finish()]].concat());
    let server = store_with(&[&base, &heavy, &light]);
    let heavy_delta = make_delta(&server, "fd:1", "fd:heavy", "fd:dh");
    let light_delta = make_delta(&server, "fd:1", "fd:light", "fd:dl");
    assert!(heavy_delta.len() < 100_000, "{}", heavy_delta.len());

    let dev = Engine::at(&fs.path);
    dev.load_ok(&base.docker());
    let snap = dev.snapshot(&["fd:1"]);
    let line = expect_error(&dev.load(&heavy_delta), &["No space left on device"]);
    eprintln!("{line}");
    dev.assert_unchanged(&snap);
    // The same through balenaEngine's format.
    let heavy_rdiff = rdiff_delta(&server.save(&["fd:1"]), &base, &heavy, "fd:heavy", |s| s);
    assert!(heavy_rdiff.len() < 200_000, "{}", heavy_rdiff.len());
    let line = expect_error(&dev.load(&heavy_rdiff), &["No space left on device"]);
    eprintln!("{line}");
    dev.assert_unchanged(&snap);

    let printed = dev.load_ok(&light_delta);
    assert!(printed.ends_with("Loaded image: fd:light\n"), "{printed}");
    assert!(dev.save(&["fd:light"]) == server.save(&["fd:light"]));
    let d = layer_diffs(&dev, "fd:light");
    let b = layer_diffs(&dev, "fd:1");
    for n in ["a", "b", "c"] {
        assert_eq!(ino(&d[2].join(format!("linked/{n}"))), ino(&b[1].join("data/blob")));
    }
    assert_eq!(std::fs::metadata(b[1].join("data/blob")).unwrap().nlink(), 4);
    drop(dev);
}

// ---------------------------------------------------------------------------------------------------------
// balenaEngine's deltas: rdiff against the base's concatenated layer tars
// ---------------------------------------------------------------------------------------------------------

fn rdiff(args: &[&std::ffi::OsStr]) {
    let out = match Command::new("rdiff").args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`rdiff` is not installed: run scripts/setup.sh (Debian package `rdiff`)")
        }
        Err(e) => panic!("running rdiff: {e}"),
    };
    assert!(out.status.success(), "rdiff {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The empty layer balenaEngine sends for a layer the base already has (docker's `layer.EmptyLayer`).
fn empty_layer() -> Vec<u8> {
    vec![0u8; 1024]
}

/// The config balenaEngine gives a delta image: Go's `image.Image` marshalled (no architecture or os,
/// empty `container_config`), with the two labels.
fn resin_config(base_id: &str, target_config: &[u8]) -> Value {
    let empty = serde_json::json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
        "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": null, "Cmd": null,
        "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    let mut config = empty.clone();
    config["Labels"] = serde_json::json!({
        "io.resin.delta.base": base_id,
        "io.resin.delta.config": std::str::from_utf8(target_config).unwrap(),
    });
    serde_json::json!({
        "created": "2024-09-01T10:00:00.123456789Z",
        "container_config": empty,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
    })
}

/// balenaEngine's delta of `target` against `base`, made with the real `rdiff` and its parameters, as a
/// docker-archive tagged `tag`. `sign` may change the base stream before it is signed.
fn rdiff_delta(
    base_save: &[u8],
    base: &ImageSpec,
    target: &ImageSpec,
    tag: &str,
    sign: impl Fn(Vec<u8>) -> Vec<u8>,
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let stream: Vec<u8> = parse_saved(base_save).layers.concat();
    std::fs::write(p("base.stream"), sign(stream)).unwrap();
    rdiff(&[
        "-H".as_ref(),
        "blake2".as_ref(),
        "-R".as_ref(),
        "rollsum".as_ref(),
        "-b".as_ref(),
        "512".as_ref(),
        "-S".as_ref(),
        "32".as_ref(),
        "signature".as_ref(),
        p("base.stream").as_os_str(),
        p("base.sig").as_os_str(),
    ]);
    let base_chains = base.chain_ids();
    let mut layers = Vec::new();
    for (i, (layer, chain)) in target.layers.iter().zip(target.chain_ids()).enumerate() {
        if base_chains.get(i) == Some(&chain) {
            layers.push(empty_layer());
            continue;
        }
        std::fs::write(p("layer.tar"), layer).unwrap();
        let _ = std::fs::remove_file(p("layer.delta"));
        rdiff(&["delta".as_ref(), p("base.sig").as_os_str(), p("layer.tar").as_os_str(), p("layer.delta").as_os_str()]);
        let d = std::fs::read(p("layer.delta")).unwrap();
        assert_eq!(&d[..4], &0x7273_0236u32.to_be_bytes(), "rdiff delta magic");
        layers.push(delta_layer(&d));
    }
    archive_of(tag, resin_config(&base.id(), &target.config()), layers)
}

#[test]
fn balena_engine_rdiff_deltas_are_applied() {
    let base = base_image();
    let target = target_image();
    let sh = shared();
    let t = Instant::now();
    let archive = rdiff_delta(&sh.base_save, &base, &target, "app:2", |s| s);
    eprintln!(
        "rdiff delta archive: {} bytes (target {} bytes), made in {:?}",
        archive.len(),
        sh.target_save.len(),
        t.elapsed()
    );
    assert!(archive.len() * 4 < sh.target_save.len());

    let (dev, snap) = device_with_base(&[]);
    let t = Instant::now();
    let printed = dev.load_ok(&archive);
    eprintln!("applied in {:?}", t.elapsed());
    assert_eq!(
        loaded_lines(&printed),
        vec![format!("Applied delta: rebuilt {} from base {}", target.id(), base.id()).as_str(), "Loaded image: app:2"]
    );
    let mut want = snap.images.clone();
    want.push((target.id(), "app".into(), "2".into()));
    want.sort();
    assert_eq!(dev.images(), want);
    assert_eq!(inspect(&dev, "app:2")["RootFS"], sh.target_inspect["RootFS"]);
    assert!(dev.save(&["app:2"]) == sh.target_save, "rebuilt target does not save byte-identically");
    dev.assert_clean(|id| if id == base.id() { base.chain_ids() } else { target.chain_ids() });
    // Again: the target exists, nothing to do.
    assert_eq!(dev.load_ok(&archive), "Loaded image: app:2\n");
    assert_eq!(dev.images(), want);

    // Signed against a stream shifted by 100 bytes (another base, same ID label): every COPY lands wrong.
    let wrong = rdiff_delta(&sh.base_save, &base, &target, "app:2", |s| [vec![b'x'; 100], s].concat());
    let (dev, snap) = device_with_base(&[]);
    let line = expect_error(&dev.load(&wrong), &["rebuilt from the rdiff delta"]);
    eprintln!("wrong base stream: {line}");
    dev.assert_unchanged(&snap);
    // Truncated.
    let saved = parse_saved(&archive);
    let cfg: Value = serde_json::from_slice(&saved.config).unwrap();
    let mut layers = saved.layers.clone();
    let d = delta_payload(&layers[1]);
    layers[1] = delta_layer(&d[..d.len() / 2]);
    let line = expect_error(&dev.load(&archive_of("app:2", cfg.clone(), layers)), &["rdiff delta"]);
    eprintln!("truncated rdiff delta: {line}");
    dev.assert_unchanged(&snap);
    // Missing base.
    let (eng, snap) = store_with_good_image();
    expect_error(&eng.load(&archive), &["delta base image", &base.id(), "is not in the store"]);
    eng.assert_unchanged(&snap);
}
