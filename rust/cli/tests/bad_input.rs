//! Hostile and broken input to `image load`: every test first loads a good image, then feeds one crafted
//! archive and checks that the load fails with a one-line error naming the problem and that the store is
//! exactly as before (same images, byte-identical `image save`, no new layer dir, empty tmp/).
//! Also: a full disk, SIGKILL in the middle of a load, and a second writer while the store is held.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------------------
// The outer archive
// ---------------------------------------------------------------------------------------------------------

#[test]
fn truncated_archive_is_rejected_at_every_cut() {
    let mut second = TarBuf::new();
    second.dir("opt/").file("opt/data", &noise(5, 20_000)).file("opt/small", b"x");
    let spec = ImageSpec::new("new:1", vec![base_layer(2), second.finish()]);
    let members = spec.docker_members();
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert!(names[2].ends_with(".json") && names[3] == "manifest.json", "{names:?}");
    let at = member_offsets(&members);
    let archive = outer_tar(&members);
    // (cut, what the error must say)
    let cuts: &[(usize, &str, &str)] = &[
        (100, "inside the first header", "truncated"),
        (at[0] + BLOCK + 100, "inside the first layer's first header", "truncated"),
        (at[0] + BLOCK + 3 * BLOCK + 1000, "inside a file of the first layer", "truncated"),
        (at[1] + BLOCK + 2 * BLOCK + 7000, "inside a file of the second layer", "truncated"),
        (at[1] + BLOCK + 2 * BLOCK + 20_000 + 200, "inside the second layer's padding", "truncated"),
        (at[2] + 300, "inside the config's header", "truncated"),
        (at[2] + BLOCK + 10, "inside the config", "truncated"),
        (at[3], "before manifest.json (at a block boundary)", "manifest.json"),
        (at[3] + BLOCK + 5, "inside manifest.json", "truncated"),
    ];
    let (eng, snap) = store_with_good_image();
    for &(cut, where_, needle) in cuts {
        assert!(cut < archive.len());
        let out = eng.load(&archive[..cut]);
        let line = expect_error(&out, &[needle]);
        eprintln!("cut at {cut} ({where_}): {line}");
        eng.assert_unchanged(&snap);
    }
    // The same image, whole, loads.
    eng.load_ok(&archive);
}

#[test]
fn truncated_oci_layout_before_index_json_is_rejected() {
    let members = good_image().oci_members(true);
    let at = member_offsets(&members);
    let archive = outer_tar(&members);
    let index = members.iter().position(|m| m.name == "index.json").unwrap();
    let (eng, snap) = store_with_good_image();
    for (cut, needle) in [(at[index], "index.json"), (at[1] + BLOCK + 40, "truncated")] {
        expect_error(&eng.load(&archive[..cut]), &[needle]);
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn oci_blob_whose_name_is_not_its_digest_is_rejected() {
    let spec = ImageSpec::new("new:1", vec![base_layer(2)]);
    let (eng, snap) = store_with_good_image();

    // The config blob edited after it was named.
    let mut members = spec.oci_members(false);
    let config_name = format!("blobs/sha256/{}", sha256_hex(&spec.config()));
    let cfg = find(&mut members, &config_name);
    cfg.data = String::from_utf8(cfg.data.clone()).unwrap().replace("2024-05-01", "2024-05-02").into_bytes();
    let line = expect_error(&eng.load(&outer_tar(&members)), &["digest mismatch", &config_name]);
    eprintln!("{line}");
    eng.assert_unchanged(&snap);

    // A layer blob with one byte of file content changed (still a valid tar).
    let mut members = spec.oci_members(false);
    let layer_name = format!("blobs/sha256/{}", sha256_hex(&spec.layers[0]));
    let layer = find(&mut members, &layer_name);
    layer.data[3 * BLOCK + 10] ^= 0xff;
    expect_error(&eng.load(&outer_tar(&members)), &["digest mismatch", &layer_name]);
    eng.assert_unchanged(&snap);
}

#[test]
fn layer_not_matching_the_configs_diff_id_is_rejected() {
    let spec = ImageSpec::new("new:1", vec![base_layer(2), base_layer(3)]);
    let (eng, snap) = store_with_good_image();
    // docker-archive: the config lists the layers in the wrong order.
    let mut swapped = spec.diff_ids();
    swapped.swap(0, 1);
    let members = spec.docker_members_with(spec.config_with(&swapped));
    let line = expect_error(&eng.load(&outer_tar(&members)), &["digest mismatch", "layer 0"]);
    eprintln!("{line}");
    eng.assert_unchanged(&snap);

    // OCI layout with gzip layers: blob names match the compressed bytes, but the config's DiffID does not
    // match the uncompressed tar.
    let other = ImageSpec::new("new:1", vec![base_layer(2), base_layer(4)]);
    let members = other.oci_members_with(true, other.config_with(&spec.diff_ids()), |_, b| b);
    expect_error(&eng.load(&outer_tar(&members)), &["digest mismatch", "layer 1"]);
    eng.assert_unchanged(&snap);
}

#[test]
fn missing_layer_config_or_blob_is_rejected() {
    let spec = ImageSpec::new("new:1", vec![base_layer(2), base_layer(3)]);
    let (eng, snap) = store_with_good_image();
    let docker = spec.docker_members();
    let layer1 = format!("{}/layer.tar", sha256_hex(&spec.layers[1]));
    let config = format!("{}.json", sha256_hex(&spec.config()));
    let oci = spec.oci_members(true);
    let gz_layer0 = oci.iter().find(|m| m.data.starts_with(&[0x1f, 0x8b])).unwrap().name.clone();
    let manifest = oci
        .iter()
        .find(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.data).is_ok_and(|v| v["mediaType"].as_str() == Some("application/vnd.oci.image.manifest.v1+json"))
        })
        .unwrap()
        .name
        .clone();
    let cases: Vec<(Vec<Member>, &str, Vec<&str>)> = vec![
        (docker.clone(), layer1.as_str(), vec!["missing from the archive", layer1.as_str()]),
        (docker.clone(), config.as_str(), vec!["missing from the archive", "config"]),
        (oci.clone(), gz_layer0.as_str(), vec!["missing from the archive", gz_layer0.as_str()]),
        (oci.clone(), manifest.as_str(), vec!["missing from the archive", "manifest"]),
    ];
    for (members, drop, needles) in cases {
        let members: Vec<Member> = members.into_iter().filter(|m| m.name != drop).collect();
        let line = expect_error(&eng.load(&outer_tar(&members)), &needles);
        eprintln!("without {drop}: {line}");
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn duplicate_entries_in_the_outer_archive_are_rejected() {
    let spec = ImageSpec::new("new:1", vec![base_layer(2)]);
    let (eng, snap) = store_with_good_image();
    for dup in ["manifest.json", &format!("{}.json", sha256_hex(&spec.config())), &format!("{}/layer.tar", sha256_hex(&spec.layers[0]))] {
        let mut members = spec.docker_members();
        let i = members.iter().position(|m| m.name == dup).unwrap();
        let copy = members[i].clone();
        members.insert(i + 1, copy);
        let line = expect_error(&eng.load(&outer_tar(&members)), &["duplicate", dup]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
    // Same name, different content (a second manifest.json pointing elsewhere), spelled differently.
    let mut members = spec.docker_members();
    members.push(Member::new("./manifest.json", b"[]".to_vec()));
    expect_error(&eng.load(&outer_tar(&members)), &["duplicate", "manifest.json"]);
    eng.assert_unchanged(&snap);
}

#[test]
fn absurd_sizes_are_rejected_without_allocating() {
    let (eng, snap) = store_with_good_image();
    let spec = ImageSpec::new("new:1", vec![base_layer(2)]);

    // Outer entry whose base-256 size field claims 8 EiB.
    let mut members = spec.docker_members();
    members.insert(0, Member { name: "junk".into(), data: noise(9, 3000), header: Some(Hdr::new(b'0', "junk").size(1 << 63)) });
    let line = expect_error(&eng.load(&outer_tar(&members)), &["truncated"]);
    eprintln!("8 EiB outer entry: {line}");
    eng.assert_unchanged(&snap);

    // Layer file whose base-256 size field claims 8 EiB.
    let mut t = TarBuf::new();
    t.dir("etc/").entry(&Hdr::new(b'0', "etc/huge").size(1 << 63), &noise(10, 5000));
    let line = expect_error(&eng.load(&image_with_layer(t.finish())), &["truncated"]);
    eprintln!("8 EiB layer file: {line}");
    eng.assert_unchanged(&snap);

    // Layer file whose pax size record claims 8 EiB.
    let mut t = TarBuf::new();
    t.pax(&[("size", b"9223372036854775808")]).file("etc-huge", b"tiny");
    let line = expect_error(&eng.load(&image_with_layer(t.finish())), &["truncated"]);
    eprintln!("pax size 8 EiB: {line}");
    eng.assert_unchanged(&snap);

    // A pax extended header claiming 1 GiB, in a layer and in the outer archive.
    let mut t = TarBuf::new();
    t.entry(&Hdr::new(b'x', "PaxHeaders/big").size(1 << 30), &pax_records(&[("path", b"x")])).file("x", b"1");
    let line = expect_error(&eng.load(&image_with_layer(t.finish())), &["extension header", "1073741824"]);
    eprintln!("1 GiB pax in layer: {line}");
    eng.assert_unchanged(&snap);

    let mut members = spec.docker_members();
    members.insert(0, Member { name: "pax".into(), data: pax_records(&[("path", b"x")]), header: Some(Hdr::new(b'x', "pax").size(1 << 30)) });
    expect_error(&eng.load(&outer_tar(&members)), &["extension header", "1073741824"]);
    eng.assert_unchanged(&snap);

    // A GNU long name claiming 1 GiB.
    let mut t = TarBuf::new();
    t.entry(&Hdr::new(b'L', "././@LongLink").size(1 << 30), b"name\0").file("x", b"1");
    expect_error(&eng.load(&image_with_layer(t.finish())), &["extension header"]);
    eng.assert_unchanged(&snap);
}

#[test]
fn json_claiming_more_than_the_metadata_limit_is_rejected() {
    let (eng, snap) = store_with_good_image();
    let spec = ImageSpec::new("new:1", vec![base_layer(2)]);
    let mut members = spec.docker_members();
    let m = find(&mut members, "manifest.json");
    // The header claims 100 MiB; the stream holds only the real (small) document.
    m.header = Some(Hdr::new(b'0', "manifest.json").size(100 << 20));
    let line = expect_error(&eng.load(&outer_tar(&members)), &["manifest.json", "limited"]);
    eprintln!("{line}");
    eng.assert_unchanged(&snap);
}

#[test]
fn garbage_and_empty_input_are_rejected() {
    let (eng, snap) = store_with_good_image();
    let line = expect_error(&eng.load(&noise(42, 10_000)), &["not a tar"]);
    eprintln!("noise: {line}");
    eng.assert_unchanged(&snap);

    // A compressed archive is decompressed first (`docker save | gzip` loads); compressed noise is still noise.
    let line = expect_error(&eng.load(&gzip(&noise(43, 10_000))), &["not a tar"]);
    eprintln!("gzip of noise: {line}");
    eng.assert_unchanged(&snap);
    let mut cut = gzip(&good_image().docker());
    cut.truncate(cut.len() / 2);
    let line = expect_error(&eng.load(&cut), &["truncated"]);
    eprintln!("cut gzip archive: {line}");
    eng.assert_unchanged(&snap);

    let text = "this is not an archive\n".repeat(40);
    let line = expect_error(&eng.load(text.as_bytes()), &["not a tar"]);
    eprintln!("text: {line}");
    eng.assert_unchanged(&snap);

    // Empty input, from a file and from standard input.
    let line = expect_error(&eng.load(b""), &["neither manifest.json", "nor index.json"]);
    eprintln!("empty file: {line}");
    eng.assert_unchanged(&snap);
    let line = expect_error(&eng.run_stdin(&["load"], b""), &["neither manifest.json", "nor index.json"]);
    eprintln!("empty stdin: {line}");
    eng.assert_unchanged(&snap);

    // Only an end-of-archive marker: a valid, empty tar.
    let line = expect_error(&eng.load(&[0u8; 2 * BLOCK]), &["neither manifest.json", "nor index.json"]);
    eprintln!("empty tar: {line}");
    eng.assert_unchanged(&snap);
}

// ---------------------------------------------------------------------------------------------------------
// Layer entries
// ---------------------------------------------------------------------------------------------------------

fn layer(build: impl FnOnce(&mut TarBuf)) -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("./");
    build(&mut t);
    t.finish()
}

#[test]
fn layer_entry_with_absolute_path_is_rejected() {
    let bad = layer(|t| {
        t.dir("etc/").file("/etc/passwd", b"root::0:0::/:/bin/sh\n");
    });
    let line = assert_rejected(&image_with_layer(bad), &["absolute path", "/etc/passwd"]);
    eprintln!("{line}");
}

#[test]
fn layer_entry_with_dotdot_is_rejected() {
    let (eng, snap) = store_with_good_image();
    let cases = [
        layer(|t| {
            t.dir("usr/").file("usr/../../escape", b"x");
        }),
        layer(|t| {
            t.file("..", b"x");
        }),
        layer(|t| {
            t.dir("a/").dir("a/../../b/");
        }),
        // The header's name is harmless; the pax path that overrides it is not.
        layer(|t| {
            t.pax(&[("path", b"../../../../tmp/pwned")]).file("innocent", b"x");
        }),
        // GNU long name, likewise.
        layer(|t| {
            let name = format!("{}../../../../tmp/pwned\0", "a/".repeat(60));
            t.entry(&Hdr::new(b'L', "././@LongLink").size(name.len() as u64), name.as_bytes()).file("innocent", b"x");
        }),
    ];
    for bad in cases {
        let line = expect_error(&eng.load(&image_with_layer(bad)), &["'..'"]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn writing_through_a_planted_symlink_is_rejected() {
    let (eng, snap) = store_with_good_image();
    let victim = eng.scratch.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let victim_s = victim.to_str().unwrap().to_owned();
    let cases = [
        // link -> /etc, then link/passwd.
        layer(|t| {
            t.symlink("link", "/etc").file("link/passwd", b"owned\n");
        }),
        // Absolute link to a real host directory (would land there if followed).
        layer(|t| {
            t.symlink("link", &victim_s).file("link/file", b"owned\n");
        }),
        // Relative link inside the layer is refused as a path component too.
        layer(|t| {
            t.dir("real/").symlink("alias", "real").file("alias/file", b"x");
        }),
        // A directory entry through the link.
        layer(|t| {
            t.symlink("link", &victim_s).dir("link/sub/");
        }),
        // Deeper: a/b -> /, then a/b/etc/passwd.
        layer(|t| {
            t.dir("a/").symlink("a/b", "/").file("a/b/etc/passwd", b"x");
        }),
    ];
    for bad in cases {
        let line = expect_error(&eng.load(&image_with_layer(bad)), &["symlink"]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
    assert_eq!(names_in(&victim), BTreeSet::new(), "something was written through the symlink");
}

#[test]
fn symlink_climbing_out_of_the_root_is_rejected() {
    let (eng, snap) = store_with_good_image();
    for (path, target) in [("up", ".."), ("a/up", "../../etc/shadow"), ("a/b/c", "../x/../../../.."), ("x", "./../y")] {
        let bad = layer(|t| {
            if path.contains('/') {
                t.dir("a/").dir("a/b/");
            }
            t.symlink(path, target);
        });
        let line = expect_error(&eng.load(&image_with_layer(bad)), &["symlink target escapes", path]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn bad_hard_links_are_rejected() {
    let (eng, snap) = store_with_good_image();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (layer(|t| { t.hardlink("pw", "/etc/passwd"); }), "absolute path"),
        (layer(|t| { t.dir("a/").hardlink("a/pw", "../../etc/passwd"); }), "'..'"),
        (layer(|t| { t.hardlink("pw", "does/not/exist"); }), "not in this layer"),
        (layer(|t| { t.hardlink("pw", "absent"); }), "not in this layer"),
        // Targets a file of a lower layer (bin/sh of the base): layers are unpacked on their own.
        (layer(|t| { t.dir("bin/").hardlink("bin/sh2", "bin/sh"); }), "not in this layer"),
        (layer(|t| { t.symlink("l", "/etc").hardlink("pw", "l/passwd"); }), "symlink"),
        (layer(|t| { t.dir("d/").hardlink("d2", "d"); }), "directory"),
        (layer(|t| { t.hardlink("self", ""); }), "layer root"),
    ];
    for (bad, needle) in cases {
        let line = expect_error(&eng.load(&image_with_layer(bad)), &[needle]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn device_node_outside_dev_is_rejected() {
    let (eng, snap) = store_with_good_image();
    let cases = [
        layer(|t| {
            t.dir("usr/").chardev("usr/dev0", 1, 3);
        }),
        layer(|t| {
            t.entry(&Hdr::new(b'4', "sda").dev(8, 0).mode(0o660), &[]);
        }),
        // Not under dev/ although its name contains it.
        layer(|t| {
            t.dir("devices/").chardev("devices/mem", 1, 1);
        }),
    ];
    for bad in cases {
        let line = expect_error(&eng.load(&image_with_layer(bad)), &["device node outside /dev"]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn device_nodes_under_dev_are_kept_in_the_tar_only() {
    let (eng, snap) = store_with_good_image();
    let devs = layer(|t| {
        t.dir("dev/")
            .chardev("dev/null", 1, 3)
            .chardev("./dev/console", 5, 1)
            .entry(&Hdr::new(b'4', "dev/sda").dev(8, 0).mode(0o660), &[])
            .dir("dev/pts/")
            .chardev("dev/pts/ptmx", 5, 2)
            .file("dev/README", b"device nodes live in the tar-split only\n");
    });
    let spec = ImageSpec::new("devs:1", vec![devs.clone()]);
    eng.load_ok(&spec.docker());
    let diff = eng.root.join("layers").join(&spec.chain_ids()[0]).join("diff");
    assert!(diff.join("dev/pts").is_dir());
    assert!(diff.join("dev/README").is_file());
    for node in ["dev/null", "dev/console", "dev/sda", "dev/pts/ptmx"] {
        assert!(std::fs::symlink_metadata(diff.join(node)).is_err(), "{node} was created on disk");
    }
    let saved = eng.save(&["devs:1"]);
    let blob = tar_member(&saved, &format!("blobs/sha256/{}", sha256_hex(&devs))).expect("layer in saved archive");
    assert!(blob == devs, "layer with device nodes does not save byte-identically");
    // The saved archive loads again into a fresh store, to the same image ID.
    let other = Engine::new();
    other.load_ok(&saved);
    assert_eq!(other.images(), vec![(spec.id(), "devs".into(), "1".into())]);
    // The good image is untouched.
    assert_eq!(eng.save(&["good:1"]), snap.saves[0].1);
}

#[test]
fn duplicate_entries_in_a_layer_are_rejected() {
    let (eng, snap) = store_with_good_image();
    let cases = [
        layer(|t| {
            t.dir("etc/").file("etc/a", b"first").file("etc/a", b"second");
        }),
        // Same file, spelled differently.
        layer(|t| {
            t.dir("etc/").file("etc/a", b"first").file("./etc//a", b"second");
        }),
        // A symlink where a file already is.
        layer(|t| {
            t.file("x", b"1").symlink("x", "y");
        }),
        // A file where a directory already is.
        layer(|t| {
            t.dir("d/").file("d", b"1");
        }),
    ];
    for bad in cases {
        let line = expect_error(&eng.load(&image_with_layer(bad)), &["duplicate"]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn reserved_overlay_xattr_is_rejected() {
    let (eng, snap) = store_with_good_image();
    let cases = [
        layer(|t| {
            t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]).dir("etc/");
        }),
        layer(|t| {
            t.pax(&[("SCHILY.xattr.user.ok", b"1"), ("SCHILY.xattr.trusted.overlay.redirect", b"/etc")]).file("f", b"x");
        }),
    ];
    for bad in cases {
        let line = expect_error(&eng.load(&image_with_layer(bad)), &["trusted.overlay"]);
        eprintln!("{line}");
        eng.assert_unchanged(&snap);
    }
}

#[test]
fn corrupt_gzip_layer_is_rejected() {
    let mut big = TarBuf::new();
    big.dir("opt/").file("opt/blob", &noise(77, 200_000)).file("opt/after", b"after");
    let spec = ImageSpec::new("new:1", vec![base_layer(2), big.finish()]);
    let (eng, snap) = store_with_good_image();
    type Corrupt = fn(Vec<u8>) -> Vec<u8>;
    let cases: [(&str, Corrupt); 4] = [
        // An invalid deflate block type right after the 10-byte gzip header.
        ("bad block type", |mut b| {
            b[10] = 0xff;
            b
        }),
        // A flipped byte in the middle of the stored (incompressible) data: only the CRC can tell.
        ("flipped byte", |mut b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
            b
        }),
        // The CRC32 of the trailer.
        ("bad crc", |mut b| {
            let n = b.len();
            b[n - 8] ^= 0xff;
            b
        }),
        // Cut short (but named and described consistently).
        ("cut short", |mut b| {
            b.truncate(b.len() * 2 / 3);
            b
        }),
    ];
    for (what, f) in cases {
        let members = spec.oci_members_map(true, |i, b| if i == 1 { f(b) } else { b });
        let out = eng.load(&outer_tar(&members));
        let needle = if what == "cut short" { "truncated" } else { "corrupt" };
        let line = expect_error(&out, &[needle]);
        eprintln!("{what}: {line}");
        eng.assert_unchanged(&snap);
    }
    // Untouched, the same layout loads.
    eng.load_ok(&spec.oci(true));
}

// ---------------------------------------------------------------------------------------------------------
// Full disk
// ---------------------------------------------------------------------------------------------------------

#[test]
fn full_disk_fails_cleanly_and_keeps_the_store() {
    let fs = match Tmpfs::mount("3m") {
        Ok(fs) => fs,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("!!!!!!!! SKIPPED full_disk_fails_cleanly_and_keeps_the_store: cannot mount tmpfs ({e}) !!!!!!!!");
            return;
        }
        Err(e) => panic!("mounting tmpfs: {e}"),
    };
    let eng = Engine::at(&fs.path);
    let good = good_image();
    eng.load_ok(&good.docker());
    let snap = eng.snapshot(&["good:1"]);

    let mut big = TarBuf::new();
    big.dir("opt/").file("opt/blob", &noise(3, 4 << 20));
    let spec = ImageSpec::new("big:1", vec![base_layer(2), big.finish()]);
    let line = expect_error(&eng.load(&spec.docker()), &["No space left on device"]);
    eprintln!("{line}");
    eng.assert_unchanged(&snap);

    // Also as an OCI layout with a gzip layer (decompressed while unpacking).
    let line = expect_error(&eng.load(&spec.oci(true)), &["No space left on device"]);
    eprintln!("{line}");
    eng.assert_unchanged(&snap);

    // The space came back: a small image still loads.
    let small = ImageSpec::new("small:1", vec![base_layer(5)]);
    eng.load_ok(&small.docker());
    assert_eq!(eng.images().len(), 2);
    eng.assert_clean(|id| if id == good.id() { good.chain_ids() } else { small.chain_ids() });
    drop(eng);
}

// ---------------------------------------------------------------------------------------------------------
// SIGKILL in the middle of a load
// ---------------------------------------------------------------------------------------------------------

/// Size of each of the 6 files of the big image (2 layers of 3). The unoptimised test build hashes at about
/// 20 MB/s, which bounds this; every kill point below is placed relative to the archive's size.
const BIG_FILE: usize = 4 << 20;

fn big_image() -> ImageSpec {
    let mut layers = Vec::new();
    for l in 0..2u64 {
        let mut t = TarBuf::new();
        t.dir("data/");
        for f in 0..3u64 {
            t.file(&format!("data/l{l}f{f}"), &noise(100 + l * 10 + f, BIG_FILE));
        }
        layers.push(t.finish());
    }
    ImageSpec::new("big:1", layers)
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sigkill_mid_load_leaves_the_old_or_the_new_state() {
    let (eng, snap) = store_with_good_image();
    let good = good_image();
    let big = big_image();
    let archive = big.docker();
    let path = eng.write_scratch("big.tar", &archive);
    let path_s = path.to_str().unwrap().to_owned();
    let chains = |id: &str| -> Vec<String> {
        if id == good.id() {
            good.chain_ids()
        } else if id == big.id() {
            big.chain_ids()
        } else {
            panic!("unexpected image {id}")
        }
    };
    let mut with_big = snap.images.clone();
    with_big.push((big.id(), "big".into(), "1".into()));
    with_big.sort();
    let verify_big = |saved: &[u8]| {
        for (l, d) in big.layers.iter().zip(big.diff_ids()) {
            let blob = tar_member(saved, &format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))).unwrap();
            assert!(blob == *l, "layer {d} does not save byte-identically");
        }
    };
    let mut complete_seen = 0;
    let mut leftovers_seen = 0;
    // After a kill: a reader sees the old or the whole new state; the next writer cleans tmp/ and layers/.
    let mut check = |label: &str, must_be_old: bool| {
        let rows = eng.images();
        let complete = rows == with_big;
        assert!(complete || rows == snap.images, "{label}: neither the old nor the new state: {rows:?}");
        assert!(!(complete && must_be_old), "{label}: a load that never saw the whole archive committed");
        let tmp_left = eng.tmp_entries();
        let layers_left: Vec<String> = eng.layer_dirs().into_iter().filter(|d| !good.chain_ids().contains(d)).collect();
        if !tmp_left.is_empty() || (!complete && !layers_left.is_empty()) {
            leftovers_seen += 1;
        }
        // A writer (tag to the same name: no visible change) recovers what the killed load left.
        eng.ok(&["image", "tag", "good:1", "good:1"]);
        eng.assert_clean(chains);
        if complete {
            complete_seen += 1;
            verify_big(&eng.save(&["big:1"]));
            eng.ok(&["rmi", "big:1"]);
        }
        eng.assert_unchanged(&snap);
        eprintln!(
            "{label}: {}; left behind: tmp/ {tmp_left:?}, layers/ {layers_left:?}",
            if complete { "complete" } else { "old state" }
        );
    };

    // Killed after fixed delays, reading the archive from a file.
    for ms in [0u64, 20, 80, 200] {
        let mut child = eng.cmd(&["load", "-q", "-i", &path_s]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        child.wait().unwrap();
        check(&format!("killed after {ms} ms"), false);
    }

    // Killed at known positions of the stream, reading from a pipe: once `n` bytes are written, at least
    // `n` minus the pipe's buffer have been consumed, and nothing past `n` can have been. The last position
    // is everything but the end-of-archive marker: all layers are staged, the loader waits for the marker.
    let len = archive.len();
    for n in [len / 10, len * 45 / 100, len * 8 / 10, len - 2 * BLOCK] {
        let mut child =
            eng.cmd(&["load", "-q"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&archive[..n]);
        let _ = child.kill();
        child.wait().unwrap();
        drop(stdin);
        check(&format!("killed after {n} of {len} bytes"), true);
    }

    // Killed during the commit: as soon as a layer dir of the new image appears under layers/ (the staged
    // layers are being installed; the metadata is not written yet, or only just).
    let mut child = eng.cmd(&["load", "-q", "-i", &path_s]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let big_chains: BTreeSet<String> = big.chain_ids().into_iter().collect();
    let caught = loop {
        if eng.layer_dirs().iter().any(|d| big_chains.contains(d)) {
            let _ = child.kill();
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(Instant::now() < deadline, "load did not finish");
        std::thread::sleep(Duration::from_micros(200));
    };
    child.wait().unwrap();
    check(if caught { "killed while installing layers" } else { "commit finished before the kill" }, false);
    assert!(leftovers_seen > 0, "no kill left anything behind: recovery was not exercised");

    // Retried, the load succeeds.
    let out = eng.cmd(&["load", "-i", &path_s]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(eng.images(), with_big);
    eng.assert_clean(chains);
    verify_big(&eng.save(&["big:1"]));
    assert_eq!(eng.save(&["good:1"]), snap.saves[0].1);
    eprintln!("complete states seen after a kill: {complete_seen}");
}

// ---------------------------------------------------------------------------------------------------------
// The store lock
// ---------------------------------------------------------------------------------------------------------

#[test]
fn second_writer_fails_fast_and_readers_go_on_while_a_load_holds_the_store() {
    let (eng, snap) = store_with_good_image();
    let good_archive = good_image().docker();
    let good_path = eng.write_scratch("good.tar", &good_archive);
    let mut child = eng
        .cmd(&["image", "load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The loader holds the lock once its staging dir exists (it is created after the lock is taken).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !eng.tmp_entries().iter().any(|n| n.starts_with("load-")) {
        assert!(child.try_wait().unwrap().is_none(), "the loader exited early");
        assert!(Instant::now() < deadline, "the loader never started staging");
        std::thread::sleep(Duration::from_millis(5));
    }
    let writers: [&[&str]; 4] = [
        &["image", "tag", "good:1", "other:1"],
        &["image", "load", "-i", good_path.to_str().unwrap()],
        &["rmi", "good:1"],
        &["image", "rm", "-f", "good:1"],
    ];
    for args in writers {
        let t = Instant::now();
        let out = eng.run(args);
        let line = expect_error(&out, &["in use"]);
        assert!(t.elapsed() < Duration::from_secs(5), "{args:?} took {:?}", t.elapsed());
        eprintln!("{args:?}: {line}");
    }
    // Readers never wait for a writer: they see the committed state, and what they save is intact.
    assert_eq!(eng.images(), snap.images, "a reader during the load saw another state");
    for (img, bytes) in &snap.saves {
        assert!(eng.save(&[img]) == *bytes, "`image save {img}` during a load differs");
    }
    // Finish the first load with a valid archive: it succeeds, and the store is as before.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&good_archive).unwrap();
    drop(stdin);
    let st = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert!(st.success());
    eng.assert_unchanged(&snap);
    // Now a writer gets in.
    eng.ok(&["image", "tag", "good:1", "other:1"]);
    assert_eq!(eng.images().len(), 2);
}
