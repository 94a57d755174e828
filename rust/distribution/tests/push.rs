//! Pushes to a real registry (Debian's docker-registry on 127.0.0.1), read back by the registry's API and by
//! skopeo: an image loaded from a docker-archive, a pulled image pushed to another repository (its layers
//! mounted, its manifest digest kept), a push of what the registry has, and a push through a proxy whose
//! PATCHes fail. Needs root (the registry and skopeo are installed when missing).

mod common;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::fault_proxy::{Fault, Rule};
use testkit::registry::{ensure_tool, run, Registry, RegistryOptions};

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

fn manifest_json(reg: &Registry, repo: &str, reference: &str) -> (String, Vec<u8>, serde_json::Value) {
    let (ct, bytes) = reg.manifest(repo, reference);
    let v = serde_json::from_slice(&bytes).unwrap();
    (ct, bytes, v)
}

/// Checks that `repo:tag` in the registry is the image of `archive`: config bytes, and each layer a gzip
/// blob of the archive's layer tar.
fn assert_in_registry(reg: &Registry, repo: &str, tag: &str, archive: &Archive) -> serde_json::Value {
    let (ct, _, m) = manifest_json(reg, repo, tag);
    assert_eq!(ct, DOCKER_MANIFEST, "{repo}:{tag}: media type");
    assert_eq!(m["config"]["digest"], archive.config_digest.as_str(), "{repo}:{tag}: config digest (image ID)");
    assert_eq!(reg.blob(repo, &archive.config_digest), archive.config, "{repo}:{tag}: config bytes");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), archive.layers.len(), "{repo}:{tag}: layer count");
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["mediaType"], DOCKER_LAYER_GZIP);
        let digest = l["digest"].as_str().unwrap();
        let blob = reg.blob(repo, digest);
        assert_eq!(sha256(&blob), digest, "{repo}:{tag}: layer {i} digest");
        assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap(), "{repo}:{tag}: layer {i} size");
        assert!(gunzip(&blob) == archive.layers[i], "{repo}:{tag}: layer {i} is not the archive's tar");
    }
    m
}

/// `skopeo copy docker://ADDR/REPO:TAG docker-archive:OUT`; returns the config digest it wrote.
fn skopeo_config_digest(addr: &str, repo_tag: &str, out: &std::path::Path) -> String {
    let skopeo = ensure_tool("skopeo", "skopeo");
    let o = run(
        Command::new(skopeo)
            .args(["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{addr}/{repo_tag}"))
            .arg(format!("docker-archive:{}", out.display())),
        None,
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&o.stderr));
    let mut a = tar::Archive::new(std::fs::File::open(out).unwrap());
    let mut members = std::collections::HashMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        members.insert(name, b);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap();
    sha256(&members[config_name])
}

fn two_layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[("etc/hostname", b"pushed\n"), ("bin/tool", &testkit::noise(50, 700 * 1024))]),
        layer_tar(&[("data/x", &testkit::noise(51, 200 * 1024))]),
    ]
}

#[test]
fn push_loaded_image_then_again() {
    if !root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions::default());
    let env = Env::new();
    let archive = docker_archive(env.tmp.path(), "app:1", two_layers());
    env.load(&archive.path);
    let name = format!("{}/pushed:1", reg.addr());
    env.tag("app:1", &name);

    let progress = Recorder::default();
    let pushed = env.push(&name, &progress).expect("push");
    assert_eq!(pushed.tag, "1");
    assert!(progress.has(&format!("The push refers to repository [{}/pushed]", reg.addr())), "{:?}", progress.lines());
    assert_eq!(progress.count(": Pushed"), 2, "{:?}", progress.lines());
    assert!(progress.has(&format!("1: digest: {} size: {}", pushed.digest, pushed.size)), "{:?}", progress.lines());

    // The registry's view.
    assert_eq!(Raw::of(&reg).manifest_digest("pushed", "1"), pushed.digest.to_string(), "manifest digest");
    assert_in_registry(&reg, "pushed", "1", &archive);
    // skopeo's: the same image ID.
    let out = env.tmp.path().join("back.tar");
    assert_eq!(skopeo_config_digest(&reg.addr(), "pushed:1", &out), archive.config_digest, "image ID via skopeo");
    // The store knows the image by its new digest.
    let repo_digest = format!("{}/pushed@{}", reg.addr(), pushed.digest);
    let inspect = env.inspect(&name);
    assert!(inspect["RepoDigests"].as_array().unwrap().iter().any(|d| d == repo_digest.as_str()), "{inspect}");
    assert_eq!(env.resolve(&repo_digest).as_deref(), Some(archive.config_digest.as_str()));

    // Again: nothing to upload.
    progress.clear();
    let again = env.push(&name, &progress).expect("push again");
    assert_eq!(progress.count("Layer already exists"), 2, "{:?}", progress.lines());
    assert_eq!(progress.count(": Pushed"), 0, "{:?}", progress.lines());
    assert_eq!(again.digest, pushed.digest, "same manifest");
}

#[test]
fn pulled_image_pushed_to_another_repository_mounts_its_layers() {
    if !root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions::default());
    let env = Env::new();
    let archive = docker_archive(
        env.tmp.path(),
        "src:1",
        vec![noise_layer("a", 60, 300 * 1024), noise_layer("b", 61, 100 * 1024), layer_tar(&[("c", b"three\n")])],
    );
    reg.push_archive(&archive.path, "team/src:1");
    let (_, manifest, _) = manifest_json(&reg, "team/src", "1");
    let src = format!("{}/team/src:1", reg.addr());
    let pulled = env.pull(&src).expect("pull");
    assert_eq!(pulled.id.to_string(), archive.config_digest);

    let dst = format!("{}/other/dst:2", reg.addr());
    env.tag(&src, &dst);
    let progress = Recorder::default();
    let pushed = env.push(&dst, &progress).expect("push to another repository");
    assert_eq!(progress.count("Mounted from team/src"), 3, "{:?}", progress.lines());
    assert_eq!(progress.count(": Pushed"), 0, "nothing uploaded: {:?}", progress.lines());
    assert_eq!(pushed.digest, pulled.digest, "the manifest digest is kept");
    let (_, dst_manifest, _) = manifest_json(&reg, "other/dst", "2");
    assert!(dst_manifest == manifest, "the same manifest bytes");
    assert_eq!(Raw::of(&reg).manifest_digest("other/dst", "2"), pulled.digest.to_string());
    let inspect = env.inspect(&dst);
    let digests: Vec<&str> = inspect["RepoDigests"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(digests.contains(&format!("{}/other/dst@{}", reg.addr(), pushed.digest).as_str()), "{digests:?}");
    assert!(digests.contains(&pulled.repo_digest.as_str()), "{digests:?}");
}

#[test]
fn push_through_proxy_survives_failed_patches() {
    if !root("registry tests") {
        return;
    }
    let srv = Served::start();
    let env = Env::new();
    // ~5 MiB of noise: gzip leaves it at that, two PATCHes of at most 4 MiB.
    let archive = docker_archive(env.tmp.path(), "app:1", vec![noise_layer("big", 70, 5 * MIB)]);
    env.load(&archive.path);
    let name = srv.via("cut:1");
    env.tag("app:1", &name);
    // The first PATCH's answer arrives and its connection is cut; the second is refused with a 503.
    srv.proxy.add_rule(Rule::new("/blobs/uploads/", Fault::CutAfter(0)).method("PATCH"));
    srv.proxy.add_rule(Rule::new("/blobs/uploads/", Fault::Status(503)).method("PATCH"));
    let progress = Recorder::default();
    let pushed = env.push(&name, &progress).expect("push through faults");
    assert!(srv.proxy.rules().is_empty(), "both faults applied: {:?}", srv.proxy.rules());
    let patches: Vec<u16> =
        srv.proxy.requests().into_iter().filter(|(m, _, _)| m == "PATCH").map(|(_, _, s)| s).collect();
    assert!(patches.contains(&503), "{patches:?}");
    assert!(patches.iter().filter(|s| **s == 202).count() >= 3, "the layer was uploaded again: {patches:?}");
    assert!(progress.has("Retrying in"), "{:?}", progress.lines());
    assert_eq!(srv.raw().manifest_digest("cut", "1"), pushed.digest.to_string());
    assert_in_registry(&srv.reg, "cut", "1", &archive);
}

#[test]
fn push_to_a_registry_with_credentials() {
    if !root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions { tls: false, htpasswd: Some(("pusher".into(), "pw".into())) });
    let env = Env::new();
    let archive = docker_archive(env.tmp.path(), "app:1", vec![noise_layer("a", 80, 100 * 1024)]);
    env.load(&archive.path);
    let name = format!("{}/private:1", reg.addr());
    env.tag("app:1", &name);
    let before = env.snapshot();
    let e = one_line_error(env.push(&name, &Recorder::default()), &["denied", "private"]);
    eprintln!("anonymous push: {e}");
    env.assert_unchanged(&before, "anonymous push");
    let creds = distribution::auth::Credentials {
        username: Some("pusher".into()),
        password: Some("pw".into()),
        ..Default::default()
    };
    let pushed = env.push_with(&env.registries(), &name, creds, &Recorder::default()).expect("push with credentials");
    assert_eq!(Raw::of(&reg).manifest_digest("private", "1"), pushed.digest.to_string());
    assert_in_registry(&reg, "private", "1", &archive);
}
