//! Pulls from a real registry (Debian's docker-registry on 127.0.0.1) through a fault-injecting proxy: plain
//! pulls (v2s2/gzip, OCI/zstd, by digest), resumption of cut, stalled and range-ignoring transfers, bad input
//! from the registry (each a one-line error that leaves the store as it was), a full disk, authentication,
//! and TLS with docker's certs.d. Needs root (the registry and skopeo are installed when missing; tmpfs).

mod common;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use distribution::auth::Credentials;
use distribution::progress::Silent;
use distribution::{Error, Registries};
use testkit::fault_proxy::{Fault, FaultProxy, Rule};
use testkit::registry::{Compression, ManifestFormat, PushOptions, Registry, RegistryOptions};
use tokio_util::sync::CancellationToken;

fn json_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// A three-layer image: some files, some noise.
fn three_layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[("etc/os-release", b"ID=test\n"), ("bin/a", &testkit::noise(1, 200 * 1024))]),
        layer_tar(&[("data/b", &testkit::noise(2, 300 * 1024))]),
        layer_tar(&[("data/c", b"third layer\n")]),
    ]
}

// ---------------------------------------------------------------------------------------------------------
// Plain pulls
// ---------------------------------------------------------------------------------------------------------

#[test]
fn pull_v2s2_gzip_then_up_to_date_then_by_digest() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let archive = docker_archive(env.tmp.path(), "app:1", three_layers());
    srv.reg.push_archive(&archive.path, "app:1");
    let (ct, manifest) = srv.reg.manifest("app", "1");
    assert_eq!(ct, DOCKER_MANIFEST, "skopeo wrote a v2s2 manifest");
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer_digests: Vec<String> =
        m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_owned()).collect();
    assert_eq!(layer_digests.len(), 3);
    assert!(m["layers"].as_array().unwrap().iter().all(|l| l["mediaType"] == DOCKER_LAYER_GZIP));
    let manifest_digest = srv.raw().manifest_digest("app", "1");

    let progress = Recorder::default();
    let name = srv.via("app:1");
    let pulled = env.pull_with(&env.registries(), &name, Credentials::default(), &progress).expect("pull");
    assert_eq!(pulled.id.to_string(), archive.config_digest, "image ID is the archive's config digest");
    assert_eq!(pulled.tag.as_deref(), Some(name.as_str()));
    assert_eq!(pulled.digest.to_string(), manifest_digest, "the digest the registry gives");
    assert!(!pulled.up_to_date);
    let repo_digest = format!("{}@{manifest_digest}", srv.via("app"));
    assert_eq!(pulled.repo_digest, repo_digest);
    let inspect = env.inspect(&name);
    assert_eq!(inspect["Id"], archive.config_digest.as_str());
    assert_eq!(json_strings(&inspect["RepoTags"]), std::slice::from_ref(&name));
    assert_eq!(json_strings(&inspect["RepoDigests"]), std::slice::from_ref(&repo_digest));
    assert_eq!(json_strings(&inspect["RootFS"]["Layers"]), archive.diff_ids, "DiffIDs");
    // The layers are stored byte for byte.
    let diff_ids: Vec<engine::digest::Digest> = archive.diff_ids.iter().map(|d| d.parse().unwrap()).collect();
    for (i, chain) in engine::digest::Digest::chain_ids(&diff_ids).iter().enumerate() {
        assert!(env.layer_tar(chain) == archive.layers[i], "layer {i} differs from the archive's");
    }
    assert_eq!(progress.count("Pull complete"), 3, "{:?}", progress.lines());
    assert!(progress.has(&format!("Status: Downloaded newer image for {name}")), "{:?}", progress.lines());
    assert!(pulled.layer_bytes_transferred > 0);

    // Again: up to date, no layer byte.
    srv.proxy.reset_counters();
    progress.clear();
    let again = env.pull_with(&env.registries(), &name, Credentials::default(), &progress).expect("second pull");
    assert!(again.up_to_date, "second pull is up to date");
    assert_eq!((again.id.clone(), again.layer_bytes_transferred), (pulled.id.clone(), 0));
    assert_eq!(progress.count("Already exists"), 3, "{:?}", progress.lines());
    assert!(progress.has(&format!("Status: Image is up to date for {name}")), "{:?}", progress.lines());
    for d in &layer_digests {
        assert_eq!(srv.blob_gets(d), 0, "layer {d} fetched again: {:?}", srv.proxy.requests());
    }
    let forwarded = srv.proxy.body_bytes_forwarded();
    assert!(
        forwarded <= (manifest.len() + archive.config.len() + 64) as u64,
        "second pull moved {forwarded} bytes; manifest {} + config {}",
        manifest.len(),
        archive.config.len()
    );

    // A second version sharing the first two layers: only the third is downloaded.
    let mut v2_layers = three_layers();
    v2_layers[2] = layer_tar(&[("data/c", b"third layer, version 2\n")]);
    let v2 = docker_archive(env.tmp.path(), "app:2", v2_layers);
    srv.reg.push_archive(&v2.path, "app:2");
    srv.proxy.reset_counters();
    progress.clear();
    let p2 = env.pull_with(&env.registries(), &srv.via("app:2"), Credentials::default(), &progress).expect("app:2");
    assert_eq!(p2.id.to_string(), v2.config_digest);
    assert!(!p2.up_to_date);
    assert_eq!(progress.count("Already exists"), 2, "{:?}", progress.lines());
    assert_eq!(progress.count("Pull complete"), 1, "{:?}", progress.lines());
    for d in &layer_digests[..2] {
        assert_eq!(srv.blob_gets(d), 0, "shared layer {d} fetched again");
    }

    // By digest, into another store: resolves by the digest reference, no tag.
    let env2 = Env::new();
    let by_digest = srv.via(&format!("app@{manifest_digest}"));
    let p = env2.pull(&by_digest).expect("pull by digest");
    assert_eq!(p.id.to_string(), archive.config_digest);
    assert_eq!(p.tag, None);
    assert_eq!(p.repo_digest, repo_digest);
    assert_eq!(env2.resolve(&by_digest).as_deref(), Some(archive.config_digest.as_str()), "resolves by digest");
    let inspect = env2.inspect(&by_digest);
    assert_eq!(json_strings(&inspect["RepoTags"]), Vec::<String>::new());
    assert_eq!(json_strings(&inspect["RepoDigests"]), [repo_digest]);
    // And by digest in the first store (same image, now also known by its digest).
    assert!(env.pull(&by_digest).unwrap().up_to_date);
    assert_eq!(env.resolve(&by_digest).as_deref(), Some(archive.config_digest.as_str()));
}

#[test]
fn pull_oci_zstd() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let archive = docker_archive(env.tmp.path(), "zapp:1", three_layers());
    let opts = PushOptions { format: Some(ManifestFormat::Oci), compress: Some(Compression::Zstd), via: None };
    srv.reg.push_with(&format!("docker-archive:{}", archive.path.display()), "zapp:1", &opts);
    let (ct, manifest) = srv.reg.manifest("zapp", "1");
    assert_eq!(ct, OCI_MANIFEST);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert!(
        m["layers"].as_array().unwrap().iter().all(|l| l["mediaType"] == OCI_LAYER_ZSTD),
        "zstd layers: {}",
        m["layers"]
    );
    // Converting to OCI, skopeo rewrote the config (its media type and bytes): the image ID is the new one.
    let config_digest = m["config"]["digest"].as_str().unwrap().to_owned();
    let config = srv.reg.blob("zapp", &config_digest);
    let diff_ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&config).unwrap()["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(diff_ids, archive.diff_ids, "same layers");
    let manifest_digest = srv.raw().manifest_digest("zapp", "1");
    let name = srv.via("zapp:1");
    let pulled = env.pull(&name).expect("pull OCI/zstd");
    assert_eq!(pulled.id.to_string(), config_digest, "image ID is the manifest's config digest");
    assert_eq!(pulled.digest.to_string(), manifest_digest);
    let inspect = env.inspect(&name);
    assert_eq!(json_strings(&inspect["RootFS"]["Layers"]), archive.diff_ids);
    assert_eq!(json_strings(&inspect["RepoDigests"]), [format!("{}@{manifest_digest}", srv.via("zapp"))]);
}

// ---------------------------------------------------------------------------------------------------------
// Resumption
// ---------------------------------------------------------------------------------------------------------

/// Checks a pull of `img` succeeded into `env` with the right layer.
fn assert_pulled(env: &Env, name: &str, pulled: &distribution::pull::Pulled, img: &RawImage) {
    assert_eq!(pulled.id.to_string(), img.config_digest, "{name}: image ID");
    assert_eq!(
        json_strings(&env.inspect(name)["RootFS"]["Layers"]),
        std::slice::from_ref(&img.diff_id),
        "{name}: DiffID"
    );
}

#[test]
fn resume_100_mib_layer_after_a_cut() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let img = push_noise_image(&srv.raw(), "big", "1", 100, 100 * MIB);
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::CutAfter(50 * MIB as u64)));
    srv.proxy.reset_counters();
    let progress = Recorder::default();
    let name = srv.via("big:1");
    let t = Instant::now();
    let pulled = env.pull_with(&env.registries(), &name, Credentials::default(), &progress).expect("pull after a cut");
    eprintln!("100 MiB pulled with one cut in {:?}", t.elapsed());
    assert_pulled(&env, &name, &pulled, &img);
    assert!(srv.proxy.rules().is_empty(), "the cut happened");
    assert_eq!(srv.blob_gets(&img.layer_digest), 2, "one cut, one resumption: {:?}", srv.proxy.requests());
    let forwarded = srv.proxy.body_bytes_forwarded();
    let size = img.layer_size as f64;
    assert!(
        (forwarded as f64) <= 1.05 * size,
        "{forwarded} bytes forwarded for a blob of {size}: the resumption started over"
    );
    assert!(
        pulled.layer_bytes_transferred >= img.layer_size && (pulled.layer_bytes_transferred as f64) <= 1.05 * size,
        "layer bytes {}",
        pulled.layer_bytes_transferred
    );
    assert_eq!(progress.count("Retrying in"), 1, "{:?}", progress.lines());
}

#[test]
fn resume_after_ten_cuts_and_a_refused_window() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let img = push_noise_image(&srv.raw(), "cuts", "1", 10, 12 * MIB);
    // Cuts after 100 KiB, 200 KiB + 4099, …: 5.6 MB in all, before the blob's end.
    for k in 0..5u64 {
        srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::CutAfter((k + 1) * 100 * 1024 + k * 4099)));
    }
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::Status(503)).times(3));
    // The config too (read whole, verified): the pull starts over from the manifest.
    srv.proxy.add_rule(Rule::new(&img.config_digest, Fault::CutAfter(100)));
    for k in 5..10u64 {
        srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::CutAfter((k + 1) * 100 * 1024 + k * 77)));
    }
    srv.proxy.reset_counters();
    let progress = Recorder::default();
    let name = srv.via("cuts:1");
    let t = Instant::now();
    let pulled = env.pull_with(&env.registries(), &name, Credentials::default(), &progress).expect("pull");
    eprintln!("12 MiB through 10 cuts and 3 refusals in {:?}", t.elapsed());
    assert_pulled(&env, &name, &pulled, &img);
    assert!(srv.proxy.rules().is_empty(), "every fault was used: {:?}", srv.proxy.rules());
    assert_eq!(srv.blob_gets(&img.layer_digest), 14, "10 cuts + 3 refusals + the last: {:?}", srv.proxy.requests());
    let forwarded = srv.proxy.body_bytes_forwarded() as f64;
    assert!(forwarded <= 1.05 * img.layer_size as f64, "{forwarded} bytes forwarded for {}", img.layer_size);
    assert_eq!(srv.blob_gets(&img.config_digest), 2, "the config, cut once");
    assert_eq!(progress.count("Retrying in"), 14, "{:?}", progress.lines());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn stall_is_detected_and_resumed() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let img = push_noise_image(&srv.raw(), "stall", "1", 20, 16 * MIB);
    srv.proxy
        .add_rule(Rule::new(&img.layer_digest, Fault::Stall { after: 10 * MIB as u64, for_: Duration::from_secs(10) }));
    srv.proxy.reset_counters();
    let progress = Recorder::default();
    let name = srv.via("stall:1");
    let t = Instant::now();
    let pulled = env.pull_with(&env.registries(), &name, Credentials::default(), &progress).expect("pull");
    let took = t.elapsed();
    eprintln!("16 MiB with a 10 s stall (stall timeout 2 s) in {took:?}");
    assert_pulled(&env, &name, &pulled, &img);
    assert!(took < Duration::from_secs(10), "the stall was waited out instead of detected: {took:?}");
    assert_eq!(srv.blob_gets(&img.layer_digest), 2, "{:?}", srv.proxy.requests());
    assert!((srv.proxy.body_bytes_forwarded() as f64) <= 1.05 * img.layer_size as f64);
    assert_eq!(progress.count("Retrying in"), 1, "{:?}", progress.lines());
}

#[test]
fn range_ignored_after_a_cut_skips_what_it_has() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let img = push_noise_image(&srv.raw(), "norange", "1", 30, 12 * MIB);
    let cut = 5 * MIB as u64;
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::CutAfter(cut)));
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::IgnoreRange));
    srv.proxy.reset_counters();
    let name = srv.via("norange:1");
    let pulled = env.pull(&name).expect("pull");
    assert_pulled(&env, &name, &pulled, &img);
    assert!(srv.proxy.rules().is_empty());
    assert_eq!(srv.blob_gets(&img.layer_digest), 2);
    // The whole blob came again after the cut (200 instead of 206); what was there already was skipped.
    let forwarded = srv.proxy.body_bytes_forwarded();
    assert!(forwarded >= img.layer_size + cut, "{forwarded}: the second answer was not the whole blob");
    assert_eq!(pulled.layer_bytes_transferred, img.layer_size + cut, "received, skipped bytes included");
}

#[test]
fn flipped_byte_fails_with_digest_mismatch_and_keeps_the_store() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    let raw = srv.raw();
    let good = push_noise_image(&raw, "good", "1", 1, 64 * 1024);
    env.pull(&srv.via("good:1")).expect("pull the good image");
    let before = env.snapshot();

    // An uncompressed layer: only the blob digest can tell.
    let img = push_noise_image(&raw, "flip", "1", 40, 12 * MIB);
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::FlipByte(6 * MIB as u64 + 3)));
    let e = one_line_error(env.pull(&srv.via("flip:1")), &["digest mismatch", &img.layer_digest]);
    eprintln!("flipped byte, uncompressed: {e}");
    env.assert_unchanged(&before, "flipped byte (uncompressed layer)");

    // A gzip layer: the flipped byte is in stored (incompressible) data, so gzip's CRC notices it too, at
    // the end; the blob digest is what is reported.
    let tar = noise_layer("blob.bin", 41, 4 * MIB);
    let diff_id = sha256(&tar);
    let blob = gzip(&tar, 1);
    let config = image_config(std::slice::from_ref(&diff_id), "gz");
    raw.push_image("flipgz", "1", DOCKER_MANIFEST, &config, &[(DOCKER_LAYER_GZIP, blob.clone())]);
    let blob_digest = sha256(&blob);
    srv.proxy.add_rule(Rule::new(&blob_digest, Fault::FlipByte(2 * MIB as u64)));
    let e = one_line_error(env.pull(&srv.via("flipgz:1")), &["digest mismatch", &blob_digest]);
    eprintln!("flipped byte, gzip: {e}");
    env.assert_unchanged(&before, "flipped byte (gzip layer)");

    // The middle one of three layers downloaded at once: the others stop, nothing is kept.
    let layers: Vec<Vec<u8>> = (0..3).map(|i| noise_layer("f", 42 + i, 3 * MIB)).collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = image_config(&diff_ids, "three");
    let descs: Vec<(&str, Vec<u8>)> = layers.iter().map(|l| (OCI_LAYER_TAR, l.clone())).collect();
    raw.push_image("three", "1", OCI_MANIFEST, &config, &descs);
    srv.proxy.add_rule(Rule::new(&diff_ids[1], Fault::FlipByte(MIB as u64)));
    let e = one_line_error(env.pull(&srv.via("three:1")), &["digest mismatch", &diff_ids[1]]);
    eprintln!("flipped byte, one layer of three: {e}");
    env.assert_unchanged(&before, "flipped byte (one layer of three)");

    // Without the fault, all pull.
    assert!(srv.proxy.rules().is_empty());
    env.pull(&srv.via("flip:1")).expect("flip:1 without the fault");
    env.pull(&srv.via("flipgz:1")).expect("flipgz:1 without the fault");
    env.pull(&srv.via("three:1")).expect("three:1 without the fault");
    assert_eq!(env.resolve(&srv.via("good:1")).as_deref(), Some(good.config_digest.as_str()));
}

// ---------------------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------------------

/// A registry with a small image, and a store that pulled it (so "unchanged" compares something).
fn served_with_store() -> (Served, Env, RawImage, StoreSnapshot) {
    let srv = Served::start();
    let env = Env::new();
    let img = push_noise_image(&srv.raw(), "app", "1", 7, 256 * 1024);
    env.pull(&srv.via("app:1")).expect("initial pull");
    let snap = env.snapshot();
    (srv, env, img, snap)
}

#[test]
fn manifest_digest_mismatch() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let img = push_noise_image(&srv.raw(), "other", "1", 8, 100 * 1024);
    let by_digest = srv.via(&format!("other@{}", img.manifest_digest));
    srv.proxy.add_rule(Rule::new("/manifests/", Fault::FlipByte(40)));
    let e = one_line_error(env.pull(&by_digest), &["digest mismatch", "manifest", &img.manifest_digest]);
    eprintln!("by digest: {e}");
    env.assert_unchanged(&before, "manifest digest mismatch (by digest)");
    // By tag, the registry's Docker-Content-Digest is checked.
    srv.proxy.add_rule(Rule::new("/manifests/", Fault::FlipByte(40)));
    let e = one_line_error(env.pull(&srv.via("other:1")), &["digest mismatch", "manifest", &img.manifest_digest]);
    eprintln!("by tag: {e}");
    env.assert_unchanged(&before, "manifest digest mismatch (by tag)");
    // A flipped byte in the config.
    srv.proxy.add_rule(Rule::new(&img.config_digest, Fault::FlipByte(10)));
    let e = one_line_error(env.pull(&srv.via("other:1")), &["digest mismatch", &img.config_digest]);
    eprintln!("config: {e}");
    env.assert_unchanged(&before, "config digest mismatch");
    // A layer the registry lost.
    let r = srv.raw().request("DELETE", &format!("/v2/other/blobs/{}", img.layer_digest), &[], &[]);
    assert_eq!(r.status, 202, "DELETE blob: {}", String::from_utf8_lossy(&r.body));
    let e = one_line_error(env.pull(&srv.via("other:1")), &["not found", &img.layer_digest]);
    eprintln!("missing layer: {e}");
    env.assert_unchanged(&before, "missing layer");
    // A digest the repository does not have.
    let absent = sha256(b"no such manifest");
    let e = one_line_error(env.pull(&srv.via(&format!("other@{absent}"))), &["not found"]);
    eprintln!("absent digest: {e}");
    env.assert_unchanged(&before, "absent digest");
}

#[test]
fn truncated_blob_with_limited_attempts_fails() {
    if !root("registry tests") {
        return;
    }
    let (srv, mut env, _, before) = served_with_store();
    env.config.max_attempts = Some(3);
    let img = push_noise_image(&srv.raw(), "trunc", "1", 9, 2 * MIB);
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::CutAfter(0)).forever());
    let t = Instant::now();
    let e = one_line_error(env.pull(&srv.via("trunc:1")), &[&img.layer_digest]);
    eprintln!("never completes: {e} (after {:?})", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(srv.blob_gets(&img.layer_digest), 3, "three attempts: {:?}", srv.proxy.requests());
    env.assert_unchanged(&before, "truncated blob");
    srv.proxy.clear_rules();

    // A manifest that claims more bytes than the blob has: the blob ends short every time.
    let raw = srv.raw();
    let tar = noise_layer("blob.bin", 10, MIB);
    let config = image_config(&[sha256(&tar)], "short");
    let layer = raw.upload_blob("short", &tar);
    let desc = serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": layer, "size": tar.len() + 1000});
    raw.push_manifest_of("short", "1", OCI_MANIFEST, &config, vec![desc]);
    srv.proxy.reset_counters();
    let t = Instant::now();
    let e = one_line_error(env.pull(&srv.via("short:1")), &[&layer]);
    eprintln!("blob shorter than its descriptor: {e} (after {:?})", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(srv.blob_gets(&layer) <= 4, "{:?}", srv.proxy.requests());
    env.assert_unchanged(&before, "blob shorter than its descriptor");
}

#[test]
fn manifest_blobs_and_config_that_disagree() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let raw = srv.raw();
    let tar = noise_layer("blob.bin", 20, 200 * 1024);
    let diff_id = sha256(&tar);
    let layer = raw.upload_blob("odd", &tar);

    // The blob is longer than its descriptor says: refused as the extra bytes arrive.
    let config = image_config(std::slice::from_ref(&diff_id), "long");
    let desc = serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": layer, "size": tar.len() - 1000});
    raw.push_manifest_of("odd", "long", OCI_MANIFEST, &config, vec![desc]);
    let e = one_line_error(env.pull(&srv.via("odd:long")), &[&layer, &format!("more than {} bytes", tar.len() - 1000)]);
    eprintln!("longer than its descriptor: {e}");
    env.assert_unchanged(&before, "blob longer than its descriptor");

    let desc = || serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": layer, "size": tar.len()});
    // The config lists two layers, the manifest one.
    let config = image_config(&[diff_id.clone(), sha256(b"another")], "two");
    raw.push_manifest_of("odd", "count", OCI_MANIFEST, &config, vec![desc()]);
    let e = one_line_error(env.pull(&srv.via("odd:count")), &["invalid manifest", "1 layers", "2"]);
    eprintln!("layer count: {e}");
    env.assert_unchanged(&before, "layer count mismatch");

    // The config's DiffID is not the layer's: found once the layer is unpacked.
    let wrong = sha256(b"not this layer");
    let config = image_config(std::slice::from_ref(&wrong), "diffid");
    raw.push_manifest_of("odd", "diffid", OCI_MANIFEST, &config, vec![desc()]);
    let e = one_line_error(env.pull(&srv.via("odd:diffid")), &["digest mismatch", &wrong, &diff_id]);
    eprintln!("DiffID: {e}");
    env.assert_unchanged(&before, "DiffID mismatch");
}

#[test]
fn garbage_manifest_is_invalid() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    srv.proxy.add_rule(Rule::new("/manifests/", Fault::Garbage));
    let e = one_line_error(env.pull(&srv.via("app:1")), &["invalid manifest"]);
    eprintln!("{e}");
    env.assert_unchanged(&before, "garbage manifest");
}

#[test]
fn wrong_layer_media_type_is_refused() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let raw = srv.raw();
    let tar = noise_layer("x", 11, 1000);
    let config = image_config(&[sha256(&tar)], "html");
    let (_, _) = raw.push_image("html", "1", DOCKER_MANIFEST, &config, &[("text/html", tar)]);
    let e = one_line_error(env.pull(&srv.via("html:1")), &["text/html"]);
    eprintln!("{e}");
    env.assert_unchanged(&before, "text/html layer");
}

#[test]
fn redirect_loop_is_cut_short() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let img = push_noise_image(&srv.raw(), "loop", "1", 12, 1000);
    srv.proxy.add_rule(Rule::new("/blobs/", Fault::RedirectTo(srv.proxy.url())).forever());
    let t = Instant::now();
    let e = one_line_error(env.pull(&srv.via("loop:1")), &["too many redirects"]);
    eprintln!("{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    env.assert_unchanged(&before, "redirect loop");
    // The layer itself, too (the config comes straight).
    srv.proxy.clear_rules();
    srv.proxy.add_rule(Rule::new(&img.layer_digest, Fault::RedirectTo(srv.proxy.url())).forever());
    one_line_error(env.pull(&srv.via("loop:1")), &["too many redirects", &img.layer_digest]);
    env.assert_unchanged(&before, "redirect loop on a layer");
}

#[test]
fn cancel_ends_an_endless_retry_promptly() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let img = push_noise_image(&srv.raw(), "down", "1", 13, 1000);
    assert_eq!(env.config.max_attempts, None, "unlimited attempts");
    // 503 for ever: on the layer (config and manifest come through), then on every manifest.
    for (what, rule) in [
        ("layer", Rule::new(&img.layer_digest, Fault::Status(503)).forever()),
        ("manifest", Rule::new("/manifests/", Fault::Status(503)).forever()),
    ] {
        srv.proxy.clear_rules();
        srv.proxy.add_rule(rule);
        srv.proxy.reset_counters();
        let cancel = CancellationToken::new();
        let progress = Recorder::default();
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                cancel.cancel();
                Instant::now()
            })
        };
        let res =
            env.pull_cancellable(&env.registries(), &srv.via("down:1"), Credentials::default(), &progress, &cancel);
        let returned = Instant::now();
        let cancelled_at = canceller.join().unwrap();
        assert!(matches!(res, Err(Error::Cancelled)), "{what}: expected Cancelled, got {res:?}");
        let late = returned.saturating_duration_since(cancelled_at);
        assert!(late < Duration::from_secs(3), "{what}: returned {late:?} after the cancel");
        assert!(progress.count("Retrying in") >= 2, "{what}: it was retrying: {:?}", progress.lines());
        assert!(srv.proxy.requests().iter().filter(|r| r.2 == 503).count() >= 2);
        env.assert_unchanged(&before, &format!("cancelled ({what})"));
    }
}

/// A layer whose first bytes are not a tar, and whose blob then answers 503 for ever: the unpacker's error
/// ends the pull at once, however long the download would go on retrying.
#[test]
fn bad_layer_ends_the_pull_while_its_download_retries() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let garbage = testkit::noise(21, 2 << 20);
    let diff_id = sha256(&garbage);
    let config = image_config(std::slice::from_ref(&diff_id), "bad:1");
    srv.raw().push_image("bad", "1", OCI_MANIFEST, &config, &[(OCI_LAYER_TAR, garbage.clone())]);
    let digest = sha256(&garbage);
    srv.proxy.add_rule(Rule::new(&digest, Fault::CutAfter(256 << 10)));
    srv.proxy.add_rule(Rule::new(&digest, Fault::Status(503)).forever());
    assert_eq!(env.config.max_attempts, None, "unlimited attempts");
    let t = Instant::now();
    let res = env.pull(&srv.via("bad:1"));
    let took = t.elapsed();
    let msg = one_line_error(res, &["invalid"]);
    assert!(took < Duration::from_secs(15), "the bad layer's error took {took:?}: {msg}");
    env.assert_unchanged(&before, "bad layer");
}

/// A gzip stream of a tar holding one file of `len` zeros, as several gzip members (a valid gzip stream)
/// so that compressing it does not cost the unoptimised test build a minute: ~1 KiB per MiB of zeros.
fn zero_bomb(len: usize) -> (Vec<u8>, String) {
    assert_eq!(len % MIB, 0);
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros.bin").unwrap();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    let head = h.as_bytes().to_vec();
    let tail = vec![0u8; 1024]; // end of archive (the file needs no padding: a multiple of 512)
    let mib = gzip(&vec![0u8; MIB], 9);
    let mut blob = gzip(&head, 9);
    let mut hasher = engine::digest::Hasher::new();
    hasher.update(&head);
    let zeros = vec![0u8; MIB];
    for _ in 0..len / MIB {
        blob.extend_from_slice(&mib);
        hasher.update(&zeros);
    }
    blob.extend_from_slice(&gzip(&tail, 9));
    hasher.update(&tail);
    (blob, hasher.finish().to_string())
}

/// The one-line error of a pull that ran out of space: the file system's ENOSPC, or the store's reserve.
fn disk_full_error<T: std::fmt::Debug>(r: distribution::Result<T>) -> String {
    let e = one_line_error(r, &[]);
    assert!(
        e.contains("No space left on device") || e.contains("nearly full"),
        "error {e:?} does not say the disk is full"
    );
    e
}

#[test]
fn full_disk_and_decompression_bomb_keep_the_store() {
    if !root("tmpfs tests") {
        return;
    }
    let fs = match Tmpfs::mount("16m") {
        Ok(fs) => fs,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!(
                "!!!!!!!! SKIPPED full_disk_and_decompression_bomb_keep_the_store: cannot mount tmpfs ({e}) !!!!!!!!"
            );
            return;
        }
        Err(e) => panic!("mounting a tmpfs: {e}"),
    };
    let srv = Served::start();
    let tmp = tempfile::Builder::new().prefix("be-dist-").tempdir().unwrap();
    let env = Env::at(tmp, fs.path.join("root"));
    let raw = srv.raw();
    push_noise_image(&raw, "small", "1", 1, 512 * 1024);
    env.pull(&srv.via("small:1")).expect("a small image fits");
    let before = env.snapshot();

    // ~64 MiB of zeros in ~64 KiB of gzip.
    let (bomb, diff_id) = zero_bomb(64 * MIB);
    assert!(bomb.len() < 128 * 1024, "bomb of {} bytes", bomb.len());
    let config = image_config(std::slice::from_ref(&diff_id), "bomb");
    raw.push_image("bomb", "1", DOCKER_MANIFEST, &config, &[(DOCKER_LAYER_GZIP, bomb)]);
    let e = disk_full_error(env.pull(&srv.via("bomb:1")));
    eprintln!("bomb: {e}");
    env.assert_unchanged(&before, "decompression bomb");

    // 32 MiB of noise: the disk fills in the middle of the download.
    let big = push_noise_image(&raw, "big", "1", 2, 32 * MIB);
    srv.proxy.reset_counters();
    let e = disk_full_error(env.pull(&srv.via("big:1")));
    eprintln!("full disk: {e}");
    env.assert_unchanged(&before, "full disk");
    let got = srv.proxy.body_bytes_forwarded();
    assert!(got < big.layer_size, "the download went on after the disk was full: {got} of {}", big.layer_size);

    // The space came back: another small image pulls.
    push_noise_image(&raw, "small2", "1", 3, 512 * 1024);
    env.pull(&srv.via("small2:1")).expect("a small image after the failures");
    drop(env);
}

/// A stand-in for a registry that serves a manifest over 4 MiB, which Debian's registry refuses to store
/// ("http: request body too large"): `GET /v2/` answers 200, and any manifest is `body`, with a
/// `Content-Length` for tag `sized` and chunked otherwise. Stops when the returned flag is set.
fn huge_manifest_server(body: Vec<u8>) -> (String, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let body = Arc::new(body);
        let mut conns = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let body = body.clone();
            conns.push(std::thread::spawn(move || {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut first = [0u8; 1];
                if s.peek(&mut first).is_err() || first[0] == 0x16 {
                    return; // a TLS handshake: plain HTTP only here
                }
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                while let Ok(Some(head)) = testkit::http::read_head(&mut r) {
                    let target = head[0].split(' ').nth(1).unwrap_or("").to_owned();
                    let res = if target == "/v2/" {
                        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    } else if target.ends_with("/manifests/sized") {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {DOCKER_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body))
                    } else {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {DOCKER_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n"
                        );
                        let mut res = w.write_all(head.as_bytes());
                        for c in body.chunks(64 * 1024) {
                            res = res
                                .and_then(|_| w.write_all(format!("{:x}\r\n", c.len()).as_bytes()))
                                .and_then(|_| w.write_all(c))
                                .and_then(|_| w.write_all(b"\r\n"));
                        }
                        res.and_then(|_| w.write_all(b"0\r\n\r\n"))
                    };
                    if res.is_err() {
                        break;
                    }
                }
            }));
        }
        for c in conns {
            let _ = c.join();
        }
    });
    (addr, stop, handle)
}

#[test]
fn oversized_manifest_is_refused() {
    if !root("registry tests") {
        return;
    }
    let (srv, env, _, before) = served_with_store();
    let raw = srv.raw();
    let tar = noise_layer("x", 14, 1000);
    let config = image_config(&[sha256(&tar)], "huge");
    let layer = raw.upload_blob("huge", &tar);
    let config_digest = raw.upload_blob("huge", &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": layer, "size": tar.len()}],
        "annotations": {"padding": "x".repeat(5 * MIB)},
    }))
    .unwrap();
    // Debian's registry (distribution 2.8) refuses to store it; a stand-in serves it.
    let r = raw.put_manifest("huge", "1", DOCKER_MANIFEST, &manifest);
    assert_eq!(r.status, 400, "the registry refuses a {} byte manifest", manifest.len());
    let (addr, stop, server) = huge_manifest_server(manifest);
    for tag in ["sized", "chunked"] {
        let e = one_line_error(env.pull(&format!("{addr}/huge:{tag}")), &["invalid manifest", "larger than 4194304"]);
        eprintln!("{tag}: {e}");
        env.assert_unchanged(&before, &format!("oversized manifest ({tag})"));
    }
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// Authentication and TLS
// ---------------------------------------------------------------------------------------------------------

fn creds(user: &str, pass: &str) -> Credentials {
    Credentials { username: Some(user.into()), password: Some(pass.into()), ..Default::default() }
}

#[test]
fn htpasswd_registry_needs_credentials() {
    if !root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions { tls: false, htpasswd: Some(("tester".into(), "s3cret".into())) });
    let img = push_noise_image(&Raw::of(&reg), "private", "1", 15, 64 * 1024);
    let env = Env::new();
    let before = env.snapshot();
    let name = format!("{}/private:1", reg.addr());
    let e = one_line_error(env.pull(&name), &["denied"]);
    eprintln!("anonymous: {e}");
    env.assert_unchanged(&before, "anonymous pull");
    let e =
        one_line_error(env.pull_with(&env.registries(), &name, creds("tester", "wrong"), &Silent), &["denied", "401"]);
    eprintln!("wrong password: {e}");
    env.assert_unchanged(&before, "wrong password");
    let pulled = env.pull_with(&env.registries(), &name, creds("tester", "s3cret"), &Silent).expect("with credentials");
    assert_eq!(pulled.id.to_string(), img.config_digest);
}

#[test]
fn credentials_stay_home_across_a_redirect() {
    if !root("registry tests") {
        return;
    }
    // The registry with credentials, behind proxy A; its layer requests are redirected to proxy B, in front
    // of another registry (no auth) holding the same blobs, as a registry redirects to its storage.
    let home = Registry::start(RegistryOptions { tls: false, htpasswd: Some(("tester".into(), "s3cret".into())) });
    let storage = Registry::start(RegistryOptions::default());
    let img = push_noise_image(&Raw::of(&home), "app", "1", 16, 300 * 1024);
    let copy = push_noise_image(&Raw::of(&storage), "app", "1", 16, 300 * 1024);
    assert_eq!(copy.layer_digest, img.layer_digest);
    let a = FaultProxy::start(&home.addr());
    let b = FaultProxy::start(&storage.addr());
    a.add_rule(Rule::new(&img.layer_digest, Fault::RedirectTo(b.url())).forever());
    let env = Env::new();
    let name = format!("{}/app:1", a.addr());
    let pulled = env.pull_with(&env.registries(), &name, creds("tester", "s3cret"), &Silent).expect("pull");
    assert_eq!(pulled.id.to_string(), img.config_digest);
    let at_b: Vec<_> = b.requests().into_iter().filter(|(_, t, _)| t.contains(&img.layer_digest)).collect();
    assert!(!at_b.is_empty(), "the layer came from the redirect target: {:?}", b.requests());
    assert_eq!(b.authorized_requests(), Vec::<(String, String)>::new(), "credentials went to another origin");
    assert!(
        a.authorized_requests().iter().any(|(_, t)| t.contains("/manifests/")),
        "credentials were used at home: {:?}",
        a.authorized_requests()
    );
}

#[test]
fn tls_registry_with_and_without_its_ca() {
    if !root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions { tls: true, htpasswd: None });
    let env = Env::new();
    let archive = docker_archive(env.tmp.path(), "secure:1", vec![noise_layer("f", 17, 100 * 1024)]);
    reg.push_archive(&archive.path, "secure:1");
    let name = format!("{}/secure:1", reg.addr());
    let before = env.snapshot();

    // Verified TLS, no CA for it: refused with a certificate error, not retried for ever.
    let strict = distribution::RegistryConfig { insecure_loopback: false, ..env.config.clone() };
    let cancel = CancellationToken::new();
    let watchdog = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(15) && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(20));
            }
            cancel.cancel();
        })
    };
    let res = env.pull_cancellable(&Registries::new(strict.clone()), &name, Credentials::default(), &Silent, &cancel);
    cancel.cancel();
    watchdog.join().unwrap();
    let e = one_line_error(res, &["certificate"]);
    eprintln!("no CA: {e}");
    env.assert_unchanged(&before, "no CA");

    // Loopback registries are insecure by default: TLS without verification.
    let env2 = Env::new();
    assert!(env2.config.insecure_loopback);
    assert_eq!(env2.pull(&name).expect("insecure loopback").id.to_string(), archive.config_digest);

    // certs.d/<host:port>/ca.crt: verified and pulled.
    let dir = strict.certs_dir.join(reg.addr());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(reg.ca_cert_path().unwrap(), dir.join("ca.crt")).unwrap();
    let pulled = env.pull_with(&Registries::new(strict), &name, Credentials::default(), &Silent).expect("with the CA");
    assert_eq!(pulled.id.to_string(), archive.config_digest);
}
