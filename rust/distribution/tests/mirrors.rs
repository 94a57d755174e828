//! Registry mirrors (`RegistryConfig::add_mirror("DOMAIN=URL")`): tried before the registry for pulls; a
//! mirror that lacks the image or cannot be reached is passed over, one that has it serves the whole pull,
//! and what a mirror serves is verified like anything else (a corrupt blob fails the pull, nothing stored).
//!
//! The registry is a real one behind a `FaultProxy` (the reference names the proxy, whose request log shows
//! what reached the registry); each mirror is a second registry behind its own proxy.

use std::io::Cursor;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distribution::progress::Silent;
use distribution::pull::{pull, PullRequest, Pulled};
use distribution::push::{push, PushRequest};
use distribution::{Error, Reference, Registries, RegistryConfig};
use engine::digest::Digest;
use engine::store::{Access, Store};
use testkit::archive::layer_tar as layer;
use testkit::fault_proxy::{Fault, FaultProxy, Rule};
use testkit::registry::{Registry, RegistryOptions};
use tokio_util::sync::CancellationToken;

/// A docker-archive of `layers` with the tags `tags`; returns it and the image ID.
fn archive(tags: &[String], layers: &[Vec<u8>]) -> (Vec<u8>, Digest) {
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let a = testkit::archive::docker_archive(&tags, layers);
    (a.bytes, a.id.parse().unwrap())
}

fn open(root: &Path) -> Mutex<Store> {
    Mutex::new(Store::open(root, Access::Write).unwrap())
}

fn load(store: &Mutex<Store>, archive: &[u8]) {
    engine::archive::load(&mut store.lock().unwrap(), Cursor::new(archive)).unwrap();
}

fn config() -> RegistryConfig {
    RegistryConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_attempts: Some(3),
        certs_dir: "/nonexistent".into(),
        ..Default::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn pull_with(
    rt: &tokio::runtime::Runtime,
    reg: &Registries,
    store: &Mutex<Store>,
    reference: &str,
) -> distribution::Result<Pulled> {
    let req =
        PullRequest { reference: Reference::parse(reference).unwrap(), platform: None, creds: Default::default() };
    pull(rt.handle(), reg, store, &req, &Silent, &CancellationToken::new())
}

/// The registry (behind a proxy: the reference names the proxy) holding `app:1`, and a second registry
/// behind its own proxy for a mirror, holding the same image when `mirror_has_it`.
struct Setup {
    tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    _registry: Registry,
    proxy: FaultProxy,
    mirror_registry: Registry,
    mirror: FaultProxy,
    id: Digest,
}

impl Setup {
    fn new(mirror_has_it: bool) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let rt = runtime();
        let registry = Registry::start(RegistryOptions::default());
        let mirror_registry = Registry::start(RegistryOptions::default());
        let layers: Vec<Vec<u8>> =
            (0..3).map(|i| layer(&[(&format!("bin/part{i}"), testkit::noise(7 + i, 200 << 10))])).collect();
        let tags = [format!("{}/app:1", registry.addr()), format!("{}/app:1", mirror_registry.addr())];
        let (a, id) = archive(&tags, &layers);
        let root = tmp.path().join("build");
        let build = open(&root);
        load(&build, &a);
        let reg = Registries::new(config());
        let targets = if mirror_has_it { &tags[..] } else { &tags[..1] };
        for t in targets {
            let req = PushRequest { reference: Reference::parse(t).unwrap(), creds: Default::default() };
            push(rt.handle(), &reg, &build, &req, &Silent, &CancellationToken::new()).expect("fill registry");
        }
        let proxy = FaultProxy::start(&registry.addr());
        let mirror = FaultProxy::start(&mirror_registry.addr());
        Setup { tmp, rt, _registry: registry, proxy, mirror_registry, mirror, id }
    }

    fn reference(&self) -> String {
        format!("{}/app:1", self.proxy.addr())
    }

    /// A client with `mirror_url` as the mirror of the registry.
    fn client(&self, mirror_url: &str) -> Registries {
        let mut c = config();
        c.add_mirror(&format!("{}={mirror_url}", self.proxy.addr())).unwrap();
        Registries::new(c)
    }

    fn pull(&self, reg: &Registries, store: &Mutex<Store>) -> distribution::Result<Pulled> {
        pull_with(&self.rt, reg, store, &self.reference())
    }
}

fn blob_requests(p: &FaultProxy) -> Vec<(String, String, u16)> {
    p.requests().into_iter().filter(|(_, t, _)| t.contains("/blobs/")).collect()
}

#[test]
fn mirror_without_the_image_falls_back_to_the_registry() {
    if !testkit::root("registry tests") {
        return;
    }
    let s = Setup::new(false);
    let reg = s.client(&s.mirror.url());
    let device = open(&s.tmp.path().join("device"));
    let t = Instant::now();
    let pulled = s.pull(&reg, &device).expect("pull falls back to the registry");
    eprintln!("pull took {:?}", t.elapsed());
    assert_eq!(pulled.id, s.id);
    assert_eq!(engine::images::resolve(&device.lock().unwrap(), &s.reference()).unwrap(), s.id);
    let asked = s.mirror.requests();
    assert!(
        asked.iter().any(|(m, t, st)| m == "GET" && t == "/v2/app/manifests/1" && *st == 404),
        "the mirror was asked first: {asked:?}"
    );
    assert!(blob_requests(&s.mirror).is_empty(), "{asked:?}");
    let blobs = blob_requests(&s.proxy);
    assert_eq!(blobs.iter().filter(|(m, _, st)| m == "GET" && *st == 200).count(), 4, "config and layers: {blobs:?}");
}

#[test]
fn mirror_refusing_connections_falls_back_to_the_registry() {
    if !testkit::root("registry tests") {
        return;
    }
    let s = Setup::new(false);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let reg = s.client(&format!("http://127.0.0.1:{closed}"));
    let device = open(&s.tmp.path().join("device"));
    let t = Instant::now();
    let pulled = s.pull(&reg, &device).expect("pull falls back to the registry");
    let took = t.elapsed();
    eprintln!("pull took {took:?}");
    assert_eq!(pulled.id, s.id);
    assert!(took < Duration::from_secs(10), "a refused connection costs no wait: {took:?}");
    assert_eq!(blob_requests(&s.proxy).iter().filter(|(m, _, st)| m == "GET" && *st == 200).count(), 4);
}

#[test]
fn mirror_with_the_image_serves_the_pull() {
    if !testkit::root("registry tests") {
        return;
    }
    let s = Setup::new(true);
    let reg = s.client(&s.mirror.url());
    let device = open(&s.tmp.path().join("device"));
    let t = Instant::now();
    let pulled = s.pull(&reg, &device).expect("pull from the mirror");
    eprintln!("pull took {:?}", t.elapsed());
    assert_eq!(pulled.id, s.id);
    // Recorded under the registry's name, not the mirror's.
    assert_eq!(engine::images::resolve(&device.lock().unwrap(), &s.reference()).unwrap(), s.id);
    assert!(pulled.repo_digest.starts_with(&format!("{}/app@sha256:", s.proxy.addr())), "{}", pulled.repo_digest);
    let registry_saw = s.proxy.requests();
    assert!(blob_requests(&s.proxy).is_empty(), "the registry served no blob: {registry_saw:?}");
    assert!(!registry_saw.iter().any(|(_, t, _)| t.contains("/manifests/")), "{registry_saw:?}");
    let blobs = blob_requests(&s.mirror);
    assert_eq!(blobs.iter().filter(|(m, _, st)| m == "GET" && *st == 200).count(), 4, "{blobs:?}");
    assert!(s.mirror.body_bytes_forwarded() >= 3 * (200 << 10), "the layers came from the mirror");
}

#[test]
fn corrupt_blob_from_a_mirror_fails_the_pull_with_a_digest_mismatch() {
    if !testkit::root("registry tests") {
        return;
    }
    let s = Setup::new(true);
    let (_, m) = s.mirror_registry.manifest("app", "1");
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    let first = &m["layers"][0];
    let (digest, size) = (first["digest"].as_str().unwrap().to_owned(), first["size"].as_u64().unwrap());
    s.mirror.add_rule(Rule::new(format!("/blobs/{digest}"), Fault::FlipByte(size / 2)).method("GET").forever());
    let reg = s.client(&s.mirror.url());
    let root = s.tmp.path().join("device");
    let device = open(&root);
    // Something already there, to see that it stays as it was.
    let (other, other_id) = archive(&["other:1".into()], &[layer(&[("x", b"x".to_vec())])]);
    load(&device, &other);
    let before = std::fs::read(root.join("metadata.json")).unwrap();
    let t = Instant::now();
    let err = s.pull(&reg, &device).expect_err("a corrupt blob is refused");
    eprintln!("failed after {:?}: {err}", t.elapsed());
    match &err {
        Error::DigestMismatch { expected, actual, .. } => {
            assert_eq!(expected, &digest);
            assert_ne!(actual, &digest);
        }
        e => panic!("expected a digest mismatch, got {e:?}"),
    }
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_eq!(std::fs::read(root.join("metadata.json")).unwrap(), before, "the store is unchanged");
    assert!(std::fs::read_dir(root.join("tmp")).unwrap().next().is_none(), "tmp/ is empty after the failure");
    {
        let store = device.lock().unwrap();
        assert!(engine::images::resolve(&store, &s.reference()).is_err());
        assert_eq!(store.metadata().images.len(), 1);
        assert!(store.metadata().images.contains_key(&other_id));
    }
    assert!(
        s.mirror.requests().iter().any(|(_, t, st)| t.ends_with(&digest) && *st == 200),
        "the corrupt blob came from the mirror"
    );

    // The mirror healed: the same store pulls the image.
    s.mirror.clear_rules();
    let pulled = s.pull(&reg, &device).expect("pull after the mirror healed");
    assert_eq!(pulled.id, s.id);
}
