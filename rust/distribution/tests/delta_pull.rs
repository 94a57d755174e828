//! Delta images through a real registry: a delta made by the engine is pushed, then pulled by a device that
//! has only the base. The pull goes through the import stage `image load` uses: the target is rebuilt, the
//! delta's name resolves to it, and only the delta's bytes cross the network.

use std::io::Cursor;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use distribution::progress::Silent;
use distribution::pull::{pull, PullRequest, Pulled};
use distribution::push::{push, PushRequest};
use distribution::{Reference, Registries, RegistryConfig};
use engine::digest::Digest;
use engine::store::{Access, Store};
use serde_json::json;
use testkit::archive::layer_tar as layer;
use testkit::fault_proxy::FaultProxy;
use testkit::registry::{Registry, RegistryOptions};
use tokio_util::sync::CancellationToken;

/// A docker-archive of `layers` tagged `tag`; returns it and the image ID.
fn archive(tag: &str, layers: &[Vec<u8>]) -> (Vec<u8>, Digest) {
    let a = testkit::archive::docker_archive(&[tag], layers);
    (a.bytes, a.id.parse().unwrap())
}

fn open(root: &Path) -> Mutex<Store> {
    Mutex::new(Store::open(root, Access::Write).unwrap())
}

fn load(store: &Mutex<Store>, archive: &[u8]) {
    engine::archive::load(&mut store.lock().unwrap(), Cursor::new(archive)).unwrap();
}

struct Env {
    rt: tokio::runtime::Runtime,
    reg: Registries,
}

impl Env {
    fn new() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let reg = Registries::new(RegistryConfig {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_attempts: Some(5),
            certs_dir: "/nonexistent".into(),
            ..Default::default()
        });
        Env { rt, reg }
    }

    fn pull(&self, store: &Mutex<Store>, reference: &str) -> distribution::Result<Pulled> {
        let req =
            PullRequest { reference: Reference::parse(reference).unwrap(), platform: None, creds: Default::default() };
        pull(self.rt.handle(), &self.reg, store, &req, &Silent, &CancellationToken::new())
    }
}

/// Base and target: a shared bottom layer, and a top layer where one big file changed a little and one was
/// added. Returns (base archive, base ID, target archive, target ID).
fn images() -> (Vec<u8>, Digest, Vec<u8>, Digest) {
    let shared = layer(&[("lib/shared.bin", testkit::noise(1, 1 << 20))]);
    let app_v1 = testkit::noise(2, 3 << 20);
    let mut app_v2 = app_v1.clone();
    app_v2[1000..1100].copy_from_slice(&testkit::noise(3, 100));
    let (base, base_id) = archive("app:1", &[shared.clone(), layer(&[("bin/app", app_v1)])]);
    let (target, target_id) =
        archive("app:2", &[shared, layer(&[("bin/app", app_v2), ("etc/new.conf", testkit::noise(4, 64 << 10))])]);
    (base, base_id, target, target_id)
}

#[test]
fn delta_pull_rebuilds_the_target_and_transfers_only_the_delta() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let proxy = FaultProxy::start(&registry.addr());
    let env = Env::new();
    let (base, base_id, target, target_id) = images();

    // The build server: both images, the delta between them, pushed.
    let server = open(&tmp.path().join("server"));
    load(&server, &base);
    load(&server, &target);
    let delta_ref = format!("{}/app:delta", registry.addr());
    {
        let mut s = server.lock().unwrap();
        engine::delta::create::create(&mut s, "app:1", "app:2", Some(&delta_ref)).unwrap();
    }
    let req = PushRequest { reference: Reference::parse(&delta_ref).unwrap(), creds: Default::default() };
    push(env.rt.handle(), &env.reg, &server, &req, &Silent, &CancellationToken::new()).unwrap();
    let (_, manifest) = registry.manifest("app", "delta");
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let delta_blobs: u64 = m["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum();
    let small: u64 = m["config"]["size"].as_u64().unwrap() + manifest.len() as u64;

    // The device: only the base. The pull goes through the proxy, which counts what crosses the network.
    let device = open(&tmp.path().join("device"));
    load(&device, &base);
    let via_proxy = format!("{}/app:delta", proxy.addr());
    let pulled = env.pull(&device, &via_proxy).expect("delta pull");
    assert_eq!(pulled.id, target_id, "the delta's name resolves to the target image");
    assert_eq!(pulled.delta_base.as_ref(), Some(&base_id));
    assert!(!pulled.up_to_date);
    let transferred = proxy.body_bytes_forwarded();
    assert!(
        transferred <= delta_blobs + small + 64 * 1024,
        "a delta pull moved {transferred} bytes for {delta_blobs} bytes of delta blobs"
    );
    let full: u64 = 3 << 20;
    assert!(transferred < full / 4, "{transferred} bytes is not a delta of a 4 MiB image");
    {
        let s = device.lock().unwrap();
        assert_eq!(engine::images::resolve(&s, &format!("{}/app:delta", proxy.addr())).unwrap(), target_id);
        // Byte-exact: the rebuilt layers' tars have the target's DiffIDs (checked on commit) and save back.
        let rec = &s.metadata().images[&target_id];
        for chain in rec.chain_ids() {
            let mut sink = std::io::sink();
            s.write_layer_tar(&chain, &mut sink).unwrap();
        }
        assert!(s.metadata().images.contains_key(&base_id), "the base stays");
        assert!(std::fs::read_dir(s.root().join("tmp")).unwrap().next().is_none(), "tmp/ is empty after the pull");
    }

    // Again: the target is here, so only the manifest and the config move.
    proxy.reset_counters();
    let again = env.pull(&device, &via_proxy).unwrap();
    assert!(again.up_to_date);
    assert_eq!(again.id, target_id);
    assert!(
        proxy.body_bytes_forwarded() <= small + 1024,
        "up-to-date delta pull moved {}",
        proxy.body_bytes_forwarded()
    );
}

#[test]
fn delta_pull_without_its_base_names_the_base_and_stores_nothing() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let env = Env::new();
    let (base, base_id, target, target_id) = images();
    let server = open(&tmp.path().join("server"));
    load(&server, &base);
    load(&server, &target);
    let delta_ref = format!("{}/app:delta", registry.addr());
    engine::delta::create::create(&mut server.lock().unwrap(), "app:1", "app:2", Some(&delta_ref)).unwrap();
    let req = PushRequest { reference: Reference::parse(&delta_ref).unwrap(), creds: Default::default() };
    push(env.rt.handle(), &env.reg, &server, &req, &Silent, &CancellationToken::new()).unwrap();

    // A device with an unrelated image only.
    let device_root = tmp.path().join("device");
    let device = open(&device_root);
    let (other, _) = archive("other:1", &[layer(&[("x", b"x".to_vec())])]);
    load(&device, &other);
    let before = std::fs::read(device_root.join("metadata.json")).unwrap();
    let err = env.pull(&device, &delta_ref).expect_err("no base");
    let msg = err.to_string();
    assert!(msg.contains(&base_id.to_string()), "the error names the base image: {msg}");
    assert!(msg.contains("app:1"), "and what it was called: {msg}");
    assert_eq!(std::fs::read(device_root.join("metadata.json")).unwrap(), before, "nothing stored");
    assert!(std::fs::read_dir(device_root.join("tmp")).unwrap().next().is_none());

    // A device that already has the target (but not the base): the delta only names it.
    let third = open(&tmp.path().join("third"));
    load(&third, &target);
    let pulled = env.pull(&third, &delta_ref).expect("target present: nothing to rebuild");
    assert!(pulled.up_to_date);
    assert_eq!(engine::images::resolve(&third.lock().unwrap(), &delta_ref).unwrap(), target_id);
}

fn rdiff(args: &[&Path]) {
    let out = std::process::Command::new("rdiff")
        .args(args)
        .output()
        .expect("rdiff (Debian package rdiff, scripts/setup.sh)");
    assert!(out.status.success(), "rdiff {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// balenaEngine's delta format, made with the real `rdiff` and balenaEngine's parameters: its config labels
/// `io.resin.delta.base`/`.config`, an empty layer (1024 zero bytes) where the base has the layer, else a
/// tar holding `delta`, an rdiff delta against the base's concatenated layer tars.
fn rdiff_delta(
    dir: &Path,
    base_layers: &[Vec<u8>],
    target_layers: &[Vec<u8>],
    base_id: &Digest,
    target_config: &[u8],
) -> Vec<u8> {
    let p = |n: &str| dir.join(n);
    std::fs::write(p("base.stream"), base_layers.concat()).unwrap();
    std::process::Command::new("rdiff")
        .args(["-H", "blake2", "-R", "rollsum", "-b", "512", "-S", "32", "signature"])
        .arg(p("base.stream"))
        .arg(p("base.sig"))
        .status()
        .unwrap()
        .success()
        .then_some(())
        .expect("rdiff signature");
    let mut layers = Vec::new();
    for (i, l) in target_layers.iter().enumerate() {
        if base_layers.get(i) == Some(l) {
            layers.push(vec![0u8; 1024]);
            continue;
        }
        std::fs::write(p("layer.tar"), l).unwrap();
        let _ = std::fs::remove_file(p("layer.delta"));
        rdiff(&[Path::new("delta"), &p("base.sig"), &p("layer.tar"), &p("layer.delta")]);
        layers.push(layer(&[("delta", std::fs::read(p("layer.delta")).unwrap())]));
    }
    let config = json!({
        "created": "2024-09-01T10:00:00Z",
        "config": {"Labels": {
            "io.resin.delta.base": base_id.to_string(),
            "io.resin.delta.config": std::str::from_utf8(target_config).unwrap(),
        }},
    });
    testkit::archive::docker_archive_with(&["app:rdiff"], &layers, config).bytes
}

#[test]
fn balena_engine_rdiff_delta_pulled_from_a_registry_is_applied() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let env = Env::new();
    let shared = layer(&[("lib/shared.bin", testkit::noise(1, 256 << 10))]);
    let old = testkit::noise(2, 1 << 20);
    let mut new = old.clone();
    new[5000..5100].copy_from_slice(&testkit::noise(3, 100));
    let base_layers = vec![shared.clone(), layer(&[("bin/app", old)])];
    let target_layers = vec![shared, layer(&[("bin/app", new)])];
    let (base, base_id) = archive("app:1", &base_layers);
    let (target, target_id) = archive("app:2", &target_layers);
    // The target's exact config, as the archive holds it.
    let target_config = {
        let s = open(&tmp.path().join("scratch"));
        load(&s, &target);
        let cfg = s.lock().unwrap().get_blob(&target_id).unwrap();
        cfg
    };
    let delta = rdiff_delta(tmp.path(), &base_layers, &target_layers, &base_id, &target_config);
    let delta_path = tmp.path().join("delta.tar");
    std::fs::write(&delta_path, &delta).unwrap();
    registry.push_archive(&delta_path, "app:rdiff");

    let device = open(&tmp.path().join("device"));
    load(&device, &base);
    let r = format!("{}/app:rdiff", registry.addr());
    let pulled = env.pull(&device, &r).expect("balenaEngine delta pull");
    assert_eq!(pulled.id, target_id, "rebuilt from the rdiff delta");
    assert_eq!(pulled.delta_base.as_ref(), Some(&base_id));
    let s = device.lock().unwrap();
    assert_eq!(engine::images::resolve(&s, &r).unwrap(), target_id, "the delta's name resolves to the target");
}
