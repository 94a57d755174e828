//! Shared parts of the registry client's integration tests: images built as docker-archives or as raw
//! blobs, a real registry (Debian's docker-registry) with a fault proxy in front, a data root with its
//! store, pulls driven without a daemon, a progress recorder, and a check that a failed pull left the store
//! exactly as it was.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use distribution::auth::Credentials;
use distribution::progress::Progress;
use distribution::pull::{PullRequest, Pulled};
use distribution::push::{PushRequest, Pushed};
use distribution::{Reference, Registries, RegistryConfig};
use engine::digest::Digest;
use engine::store::{Access, Store};
use testkit::fault_proxy::FaultProxy;
use testkit::http;
use testkit::registry::{Registry, RegistryOptions};
use tokio_util::sync::CancellationToken;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MIB: usize = 1 << 20;

/// True when running as root (the registry fixture installs packages; tmpfs mounts need it too).
pub fn root(what: &str) -> bool {
    testkit::root(what)
}

pub fn sha256(b: &[u8]) -> String {
    Digest::of_bytes(b).to_string()
}

// ---------------------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------------------

/// An uncompressed layer tar holding `files` (path, contents), regular files with mode 0644.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    testkit::archive::layer_tar(files)
}

/// A layer of one file `name` of `len` noise bytes (seeded).
pub fn noise_layer(name: &str, seed: u64, len: usize) -> Vec<u8> {
    layer_tar(&[(name, &testkit::noise(seed, len))])
}

/// An image config (`amd64`/`linux`, whatever the host: pulls here name a single manifest, no list).
pub fn image_config(diff_ids: &[String], label: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"], "Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "distribution tests"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A docker-archive on disk and what it holds.
pub struct Archive {
    pub path: PathBuf,
    pub config: Vec<u8>,
    /// The image ID.
    pub config_digest: String,
    pub diff_ids: Vec<String>,
    pub layers: Vec<Vec<u8>>,
}

/// Writes a docker-archive (`manifest.json`, `<hex>.json`, `<diff-hex>/layer.tar`) of `layers` (uncompressed
/// tars), tagged `repo_tag`.
pub fn docker_archive(dir: &Path, repo_tag: &str, layers: Vec<Vec<u8>>) -> Archive {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config: serde_json::Value = serde_json::from_slice(&image_config(&diff_ids, repo_tag)).unwrap();
    let a = testkit::archive::docker_archive_with(&[repo_tag], &layers, config);
    let path = dir.join(format!("{}.tar", repo_tag.replace(['/', ':'], "_")));
    std::fs::write(&path, &a.bytes).unwrap();
    Archive { path, config: a.config, config_digest: a.id, diff_ids, layers }
}

pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// Registry, by hand
// ---------------------------------------------------------------------------------------------------------

/// A registry reached over plain HTTP with testkit's client, optionally with Basic credentials: for blobs
/// and manifests that skopeo would not write (uncompressed layers, bombs, wrong media types, lies).
pub struct Raw {
    pub addr: String,
    pub auth: Option<String>,
}

impl Raw {
    pub fn of(reg: &Registry) -> Raw {
        Raw {
            addr: reg.addr(),
            auth: reg.creds().map(|(u, p)| format!("Basic {}", http::base64(format!("{u}:{p}").as_bytes()))),
        }
    }

    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
        let mut h = headers.to_vec();
        if let Some(a) = &self.auth {
            h.push(("Authorization", a));
        }
        http::request(&self.addr, method, target, &h, body).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    /// Uploads `data` monolithically (POST, PUT ?digest=); returns its digest.
    pub fn upload_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[]);
        assert_eq!(r.status, 202, "POST upload: {}", String::from_utf8_lossy(&r.body));
        let loc = r.header("location").expect("upload Location").to_string();
        let target = match loc.find("/v2/") {
            Some(i) => loc[i..].to_string(),
            None => panic!("upload Location {loc:?}"),
        };
        let sep = if target.contains('?') { '&' } else { '?' };
        let r = self.request(
            "PUT",
            &format!("{target}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "PUT blob {digest}: {}", String::from_utf8_lossy(&r.body));
        digest
    }

    /// PUTs manifest bytes; returns the registry's answer (the caller checks it).
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> http::Response {
        self.request("PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("Content-Type", media_type)], bytes)
    }

    /// Uploads `config` and `layers` (media type, blob bytes as stored) and tags a manifest of `manifest_type`
    /// naming them; returns the manifest's bytes and digest.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        manifest_type: &str,
        config: &[u8],
        layers: &[(&str, Vec<u8>)],
    ) -> (Vec<u8>, String) {
        let descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|(mt, blob)| serde_json::json!({"mediaType": mt, "digest": self.upload_blob(repo, blob), "size": blob.len()}))
            .collect();
        self.push_manifest_of(repo, tag, manifest_type, config, descs)
    }

    /// Like [`push_image`] with layer descriptors given as they are (blobs uploaded by the caller).
    pub fn push_manifest_of(
        &self,
        repo: &str,
        tag: &str,
        manifest_type: &str,
        config: &[u8],
        layer_descs: Vec<serde_json::Value>,
    ) -> (Vec<u8>, String) {
        let config_type = if manifest_type == OCI_MANIFEST { OCI_CONFIG } else { DOCKER_CONFIG };
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": self.upload_blob(repo, config), "size": config.len()},
            "layers": layer_descs,
        }))
        .unwrap();
        let r = self.put_manifest(repo, tag, manifest_type, &manifest);
        assert_eq!(r.status, 201, "PUT manifest {repo}:{tag}: {}", String::from_utf8_lossy(&r.body));
        let digest = sha256(&manifest);
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        (manifest, digest)
    }

    /// The `Docker-Content-Digest` the registry gives for `repo:reference`.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> String {
        let r = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", testkit::registry::MANIFEST_ACCEPT)],
            &[],
        );
        assert_eq!(r.status, 200, "GET manifest {repo}:{reference}");
        let d = r.header("docker-content-digest").expect("Docker-Content-Digest").to_string();
        assert_eq!(d, sha256(&r.body), "the registry's digest is that of the bytes it sends");
        d
    }
}

/// A one-layer image of uncompressed noise (`len` bytes in `/blob.bin`) pushed by hand as an OCI manifest
/// with an uncompressed layer: the blob the client downloads is the tar itself (`len` + ~1.5 KiB).
pub struct RawImage {
    pub config_digest: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    pub layer_size: u64,
    pub diff_id: String,
}

pub fn push_noise_image(raw: &Raw, repo: &str, tag: &str, seed: u64, len: usize) -> RawImage {
    let tar = noise_layer("blob.bin", seed, len);
    let diff_id = sha256(&tar);
    let config = image_config(std::slice::from_ref(&diff_id), &format!("{repo}:{tag}"));
    let (_, manifest_digest) = raw.push_image(repo, tag, OCI_MANIFEST, &config, &[(OCI_LAYER_TAR, tar.clone())]);
    RawImage {
        config_digest: sha256(&config),
        manifest_digest,
        layer_digest: diff_id.clone(),
        layer_size: tar.len() as u64,
        diff_id,
    }
}

/// A plain registry and a fault proxy in front of it.
pub struct Served {
    pub proxy: FaultProxy,
    pub reg: Registry,
}

impl Served {
    pub fn start() -> Served {
        Served::with(RegistryOptions::default())
    }

    pub fn with(opts: RegistryOptions) -> Served {
        let reg = Registry::start(opts);
        let proxy = FaultProxy::start(&reg.addr());
        Served { proxy, reg }
    }

    pub fn raw(&self) -> Raw {
        Raw::of(&self.reg)
    }

    /// `PROXY/repo:tag` or `PROXY/repo@digest`: references through the proxy.
    pub fn via(&self, name: &str) -> String {
        format!("{}/{name}", self.proxy.addr())
    }

    pub fn direct(&self, name: &str) -> String {
        format!("{}/{name}", self.reg.addr())
    }

    /// GETs of blob `digest` that went through the proxy.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.proxy.requests().iter().filter(|(m, t, _)| m == "GET" && t.contains(&format!("/blobs/{digest}"))).count()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Store and pulls
// ---------------------------------------------------------------------------------------------------------

/// Settings for tests: short back-off, a 2 s stall timeout, per-test certs.d.
pub fn test_config(dir: &Path) -> RegistryConfig {
    RegistryConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        stall_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(5),
        certs_dir: dir.join("certs.d"),
        ..Default::default()
    }
}

/// A data root with its store open for writing, a runtime for the network side, and registry settings.
pub struct Env {
    pub store: Mutex<Store>,
    pub rt: tokio::runtime::Runtime,
    pub root: PathBuf,
    pub config: RegistryConfig,
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new().prefix("be-dist-").tempdir().unwrap();
        let root = tmp.path().join("root");
        Env::at(tmp, root)
    }

    /// A store at `root` (e.g. on a tmpfs), with `tmp` for everything else.
    pub fn at(tmp: tempfile::TempDir, root: PathBuf) -> Env {
        let store = Mutex::new(Store::open(&root, Access::Write).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let config = test_config(tmp.path());
        Env { store, rt, root, config, tmp }
    }

    pub fn registries(&self) -> Registries {
        Registries::new(self.config.clone())
    }

    pub fn pull(&self, reference: &str) -> distribution::Result<Pulled> {
        self.pull_with(&self.registries(), reference, Credentials::default(), &distribution::progress::Silent)
    }

    pub fn pull_with(
        &self,
        reg: &Registries,
        reference: &str,
        creds: Credentials,
        progress: &dyn Progress,
    ) -> distribution::Result<Pulled> {
        self.pull_cancellable(reg, reference, creds, progress, &CancellationToken::new())
    }

    pub fn pull_cancellable(
        &self,
        reg: &Registries,
        reference: &str,
        creds: Credentials,
        progress: &dyn Progress,
        cancel: &CancellationToken,
    ) -> distribution::Result<Pulled> {
        let req = PullRequest { reference: Reference::parse(reference).unwrap(), platform: None, creds };
        distribution::pull::pull(self.rt.handle(), reg, &self.store, &req, progress, cancel)
    }

    pub fn push(&self, reference: &str, progress: &dyn Progress) -> distribution::Result<Pushed> {
        self.push_with(&self.registries(), reference, Credentials::default(), progress)
    }

    pub fn push_with(
        &self,
        reg: &Registries,
        reference: &str,
        creds: Credentials,
        progress: &dyn Progress,
    ) -> distribution::Result<Pushed> {
        let req = PushRequest { reference: Reference::parse(reference).unwrap(), creds };
        distribution::push::push(
            self.rt.handle(),
            reg,
            &self.store,
            &req,
            progress,
            &CancellationToken::new(),
        )
    }

    /// `image load` of a docker-archive.
    pub fn load(&self, archive: &Path) -> Vec<engine::import::LoadedImage> {
        let mut s = self.store.lock().unwrap();
        engine::archive::load(&mut s, std::fs::File::open(archive).unwrap()).unwrap()
    }

    pub fn resolve(&self, name: &str) -> Option<String> {
        engine::images::resolve(&self.store.lock().unwrap(), name).ok().map(|d| d.to_string())
    }

    /// `image inspect` of `name` (panics if it is not there).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let s = self.store.lock().unwrap();
        let id = engine::images::resolve(&s, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        engine::images::inspect(&s, &id).unwrap()
    }

    pub fn tag(&self, source: &str, target: &str) {
        engine::images::tag(&mut self.store.lock().unwrap(), source, target).unwrap();
    }

    /// The uncompressed tar of layer `chain_id` as the store rebuilds it.
    pub fn layer_tar(&self, chain_id: &Digest) -> Vec<u8> {
        let mut out = Vec::new();
        self.store.lock().unwrap().write_layer_tar(chain_id, &mut out).unwrap();
        out
    }

    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot::of(&self.root)
    }

    /// Asserts the data root is as `before`, and that nothing is left in `tmp/`.
    pub fn assert_unchanged(&self, before: &StoreSnapshot, what: &str) {
        let now = StoreSnapshot::of(&self.root);
        assert!(now.metadata == before.metadata, "{what}: metadata.json changed");
        assert_eq!(now.layers, before.layers, "{what}: layers/ changed");
        assert_eq!(now.blobs, before.blobs, "{what}: blobs/ changed");
        assert_eq!(now.leases, before.leases, "{what}: leases/ changed");
        assert!(now.tmp.is_empty(), "{what}: tmp/ is not empty: {:?}", now.tmp);
    }
}

/// What a data root holds, to compare before and after a failed operation.
#[derive(Debug)]
pub struct StoreSnapshot {
    pub metadata: Option<Vec<u8>>,
    pub layers: BTreeSet<String>,
    pub blobs: BTreeSet<String>,
    pub leases: BTreeSet<String>,
    pub tmp: BTreeSet<String>,
}

pub fn names_in(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

impl StoreSnapshot {
    pub fn of(root: &Path) -> StoreSnapshot {
        StoreSnapshot {
            metadata: std::fs::read(root.join("metadata.json")).ok(),
            layers: names_in(&root.join("layers")),
            blobs: names_in(&root.join("blobs/sha256")),
            leases: names_in(&root.join("leases")),
            tmp: names_in(&root.join("tmp")),
        }
    }
}

/// Asserts an error renders as one line holding every one of `needles` (case-insensitive); returns it.
pub fn one_line_error<T: std::fmt::Debug>(r: distribution::Result<T>, needles: &[&str]) -> String {
    let e = match r {
        Ok(v) => panic!("expected an error containing {needles:?}, got Ok({v:?})"),
        Err(e) => e.to_string(),
    };
    assert!(!e.contains('\n'), "error is not one line: {e:?}");
    let lower = e.to_lowercase();
    for n in needles {
        assert!(lower.contains(&n.to_lowercase()), "error {e:?} does not mention {n:?}");
    }
    e
}

// ---------------------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------------------

/// Records every status line (`id: status`, or `status` for the whole operation).
#[derive(Default)]
pub struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn status(&self, id: Option<&str>, status: &str) {
        let line = match id {
            Some(id) => format!("{id}: {status}"),
            None => status.to_owned(),
        };
        self.lines.lock().unwrap().push(line);
    }
    fn progress(&self, _: &str, _: &str, _: u64, _: u64) {}
}

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn has(&self, needle: &str) -> bool {
        self.count(needle) > 0
    }

    pub fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

// ---------------------------------------------------------------------------------------------------------
// tmpfs
// ---------------------------------------------------------------------------------------------------------

#[allow(unused_imports)]
pub use testkit::tmpfs::Tmpfs;
