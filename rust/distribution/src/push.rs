//! `push`: each layer the registry has is skipped (HEAD), one it has in another repository is mounted, and
//! the rest is rebuilt from the store, gzip-compressed and uploaded in chunks as it is produced (no
//! compressed copy on disk). A pulled image keeps its compressed blobs and its manifest bytes, so pushing
//! it back where its blobs are yields the same manifest digest.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use engine::digest::{Digest, Hasher};
use engine::store::{Access, BlobSource, Store};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::Credentials;
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, ImageManifest, Parsed};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::retry::retrying;
use crate::session::{check, Registries, Req, Session};
use crate::store_access::StoreAccess;

/// Size of one PATCH of a chunked upload.
const CHUNK: usize = 4 << 20;

pub struct PushRequest {
    /// With a tag (the local image of that name is pushed).
    pub reference: Reference,
    pub creds: Credentials,
}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub tag: String,
    pub digest: Digest,
    pub size: usize,
}

/// What the push needs of the local image.
struct Local {
    id: Digest,
    config: Vec<u8>,
    diff_ids: Vec<Digest>,
    manifests: Vec<Vec<u8>>,
    sources: Vec<Vec<BlobSource>>,
}

/// Names the transient leases of pushes in progress.
static PUSHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn push<S: StoreAccess>(
    rt: &Handle,
    reg: &Registries,
    store: &S,
    req: &PushRequest,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Pushed> {
    let r = &req.reference;
    let tag = r.tag.clone().ok_or_else(|| Error::BadReference(format!("{r}: push needs a tag")))?;
    let local_name = r.familiar_tag().unwrap_or_default();
    // The image's layers are leased for the push (an rmi meanwhile does not pull them from under it), without
    // keeping a reader open: that would hold back every collection of the daemon while the push retries.
    let n = PUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let lease = format!("{}push-{}-{n}", engine::store::TRANSIENT_LEASE, std::process::id());
    let (local, root) = store.read(|s| {
        let local = local_image(s, &local_name)?;
        s.add_lease(&lease, &Digest::chain_ids(&local.diff_ids))?;
        Ok((local, s.root().to_path_buf()))
    })?;
    let res = push_leased(rt, reg, store, &root, req, &tag, local, progress, cancel);
    let _ = store.read(|s| s.remove_lease(&lease));
    res
}

#[allow(clippy::too_many_arguments)]
fn push_leased<S: StoreAccess>(
    rt: &Handle,
    reg: &Registries,
    store: &S,
    root: &std::path::Path,
    req: &PushRequest,
    tag: &str,
    local: Local,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Pushed> {
    let r = &req.reference;
    progress.status(None, &format!("The push refers to repository [{}]", r.familiar_repository()));
    let endpoints = reg.endpoints(r, false);
    let notify =
        |e: &Error, d: Duration| progress.status(None, &format!("{e}: Retrying in {} seconds", d.as_secs().max(1)));
    // Pick the endpoint that answers (https, or http for an insecure registry).
    let session = rt.block_on(retrying(reg.config(), cancel, &notify, || async {
        let mut last = None;
        for ep in &endpoints {
            let s = Session::new(reg, ep.clone(), &r.path, &req.creds, true)?;
            match s.ping().await {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config(format!("no endpoint for {}", r.domain))))
    }))?;
    for srcs in &local.sources {
        for s in srcs.iter().filter(|s| s.registry == r.domain && s.repository != r.path) {
            session.add_pull_scope(&s.repository);
        }
    }
    let chains = Digest::chain_ids(&local.diff_ids);
    let mut layers = Vec::new();
    for (i, diff_id) in local.diff_ids.iter().enumerate() {
        progress.status(Some(diff_id.short()), "Preparing");
        let desc = rt.block_on(retrying(reg.config(), cancel, &notify, || {
            push_layer(&session, root, &chains[i], diff_id, &local.sources[i], progress, r)
        }))?;
        layers.push(desc);
    }
    let config_desc = Descriptor {
        media_type: manifest::DOCKER_CONFIG.into(),
        digest: local.id.clone(),
        size: local.config.len() as u64,
        urls: Vec::new(),
        platform: None,
    };
    rt.block_on(retrying(reg.config(), cancel, &notify, || push_small(&session, &config_desc.digest, &local.config)))?;
    let (bytes, media_type) = manifest_for(&local, config_desc, &layers)?;
    let digest = Digest::of_bytes(&bytes);
    rt.block_on(retrying(reg.config(), cancel, &notify, || async {
        let req = Req::new(Method::PUT, format!("/v2/{}/manifests/{tag}", r.path))
            .header(CONTENT_TYPE, &media_type)
            .body(Bytes::from(bytes.clone()));
        session.send_ok(req, &format!("manifest {r}")).await.map(|_| ())
    }))?;
    // Remember where the blobs now live, and the repo digest.
    let repo_digest = r.repo_digest(&digest);
    let manifest_bytes = bytes.clone();
    store.write(|s| {
        let mut meta = s.metadata().clone();
        for (diff_id, l) in local.diff_ids.iter().zip(&layers) {
            meta.add_blob_source(
                diff_id,
                BlobSource {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                    registry: r.domain.clone(),
                    repository: r.path.clone(),
                },
            );
        }
        let m = s.put_blob(&manifest_bytes)?;
        if let Some(rec) = meta.images.get_mut(&local.id) {
            if !rec.repo_digests.contains(&repo_digest) {
                rec.repo_digests.push(repo_digest.clone());
            }
            if !rec.manifests.contains(&m) {
                rec.manifests.push(m);
            }
        }
        s.commit(meta)
    })?;
    progress.status(None, &format!("{tag}: digest: {digest} size: {}", bytes.len()));
    Ok(Pushed { tag: tag.to_owned(), digest, size: bytes.len() })
}

fn local_image(s: &Store, name: &str) -> engine::error::Result<Local> {
    let id = engine::images::resolve(s, name)?;
    let rec =
        s.metadata().images.get(&id).cloned().ok_or_else(|| engine::error::Error::ImageNotFound(name.to_owned()))?;
    let config = s.get_blob(&id)?;
    let manifests = rec.manifests.iter().filter_map(|m| s.get_blob(m).ok()).collect();
    let sources = rec.diff_ids.iter().map(|d| s.metadata().blob_sources.get(d).cloned().unwrap_or_default()).collect();
    Ok(Local { id, config, diff_ids: rec.diff_ids, manifests, sources })
}

/// A stored manifest that names exactly these blobs is pushed as it is (same digest); otherwise a new one.
fn manifest_for(local: &Local, config: Descriptor, layers: &[Descriptor]) -> Result<(Vec<u8>, String)> {
    for bytes in &local.manifests {
        if let Ok((mt, Parsed::Image(m))) = manifest::parse(bytes, None) {
            let same = m.config.digest == config.digest
                && m.layers.len() == layers.len()
                && m.layers.iter().zip(layers).all(|(a, b)| a.digest == b.digest);
            if same {
                return Ok((bytes.clone(), mt));
            }
        }
    }
    let oci = layers.iter().any(|l| l.media_type.starts_with("application/vnd.oci."));
    let (mt, config_mt) = if oci {
        (manifest::OCI_MANIFEST, manifest::OCI_CONFIG)
    } else {
        (manifest::DOCKER_MANIFEST, manifest::DOCKER_CONFIG)
    };
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(mt.to_owned()),
        config: Descriptor { media_type: config_mt.to_owned(), ..config },
        // One vocabulary per manifest: a gzip layer uploaded here under docker's type is OCI's gzip type in an
        // OCI manifest (the bytes are the same).
        layers: layers
            .iter()
            .map(|l| match (oci, l.media_type.as_str()) {
                (true, manifest::DOCKER_LAYER) => {
                    Descriptor { media_type: manifest::OCI_LAYER_GZIP.into(), ..l.clone() }
                }
                _ => l.clone(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&m).map_err(|e| Error::BadManifest(format!("encoding manifest: {e}")))?;
    Ok((bytes, mt.to_owned()))
}

async fn blob_exists(s: &Session<'_>, digest: &Digest) -> Result<bool> {
    let resp = s.send(Req::new(Method::HEAD, format!("/v2/{}/blobs/{digest}", s.repo))).await?;
    match resp.status() {
        st if st.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => check(resp, &format!("blob {digest}"), s).await.map(|_| false),
    }
}

/// One layer: skip, mount, or upload. Returns its descriptor in the registry.
async fn push_layer(
    s: &Session<'_>,
    root: &std::path::Path,
    chain: &Digest,
    diff_id: &Digest,
    sources: &[BlobSource],
    progress: &dyn Progress,
    r: &Reference,
) -> Result<Descriptor> {
    let id = diff_id.short();
    let desc = |b: &BlobSource| Descriptor {
        media_type: b.media_type.clone(),
        digest: b.digest.clone(),
        size: b.size,
        urls: Vec::new(),
        platform: None,
    };
    let here: Vec<&BlobSource> = sources.iter().filter(|b| b.registry == r.domain).collect();
    for b in here.iter().rev() {
        if blob_exists(s, &b.digest).await? {
            progress.status(Some(id), "Layer already exists");
            return Ok(desc(b));
        }
    }
    for b in here.iter().rev().filter(|b| b.repository != s.repo) {
        let url = format!("/v2/{}/blobs/uploads/?mount={}&from={}", s.repo, b.digest, b.repository);
        let resp = s.send(Req::new(Method::POST, url).header(CONTENT_LENGTH, "0")).await?;
        match resp.status() {
            StatusCode::CREATED => {
                progress.status(Some(id), &format!("Mounted from {}", b.repository));
                return Ok(desc(b));
            }
            StatusCode::ACCEPTED => {
                // The registry opened an upload instead: close it, upload below.
                if let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    let _ = s.send(Req::new(Method::DELETE, loc.to_owned())).await;
                }
            }
            _ => match check(resp, "cross-repository mount", s).await {
                // A registry that cannot mount (no read access to the other repository, …): upload instead.
                Err(e) if !e.is_transient() => log::info!("mount of {} from {} refused: {e}", b.digest, b.repository),
                other => {
                    other?;
                }
            },
        }
    }
    let (digest, size) = upload_layer(s, root, chain, id, progress).await?;
    progress.status(Some(id), "Pushed");
    Ok(Descriptor { media_type: manifest::DOCKER_LAYER.into(), digest, size, urls: Vec::new(), platform: None })
}

/// Sends compressed chunks from the producing thread to the uploader; the last message carries the digest.
enum Piece {
    Data(Bytes),
    Done(Result<(Digest, u64)>),
}

struct ChunkSink {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
    hasher: Hasher,
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Piece::Data(chunk)).map_err(|_| std::io::Error::other("upload stopped"))
    }
}

/// Rebuilds the layer's tar from the store, gzips it and uploads it in chunks (POST, PATCH…, PUT ?digest=).
async fn upload_layer(
    s: &Session<'_>,
    root: &std::path::Path,
    chain: &Digest,
    id: &str,
    progress: &dyn Progress,
) -> Result<(Digest, u64)> {
    let (tx, mut rx) = mpsc::channel::<Piece>(2);
    let root = root.to_path_buf();
    let chain = chain.clone();
    let producer = std::thread::spawn(move || {
        let done_tx = tx.clone();
        let res = (|| -> Result<(Digest, u64)> {
            let store = Store::open(&root, Access::Read)?;
            let mut sink = ChunkSink { tx, buf: Vec::with_capacity(CHUNK), hasher: Hasher::new() };
            {
                let mut gz = flate2::write::GzEncoder::new(&mut sink, flate2::Compression::default());
                store.write_layer_tar(&chain, &mut gz)?;
                gz.finish().map_err(|e| engine::error::Error::Io { context: "compressing layer".into(), err: e })?;
            }
            sink.flush().map_err(|e| engine::error::Error::Io { context: "uploading layer".into(), err: e })?;
            let size = sink.hasher.len();
            Ok((sink.hasher.finish(), size))
        })();
        let _ = done_tx.blocking_send(Piece::Done(res));
    });
    let start = s
        .send_ok(
            Req::new(Method::POST, format!("/v2/{}/blobs/uploads/", s.repo)).header(CONTENT_LENGTH, "0"),
            "starting an upload",
        )
        .await?;
    let mut location = location_of(&start)?;
    let mut offset: u64 = 0;
    let result = loop {
        match rx.recv().await {
            Some(Piece::Data(chunk)) => {
                let end = offset + chunk.len() as u64 - 1;
                let req = Req::new(Method::PATCH, location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, &format!("{offset}-{end}"))
                    .body(chunk.clone());
                let resp = s.send_ok(req, "uploading a layer").await?;
                location = location_of(&resp)?;
                offset += chunk.len() as u64;
                progress.progress(id, "Pushing", offset, 0);
            }
            Some(Piece::Done(r)) => break r,
            None => break Err(Error::Registry("layer producer ended without a result".into())),
        }
    };
    let _ = producer.join();
    let (digest, size) = result?;
    let sep = if location.contains('?') { '&' } else { '?' };
    let req = Req::new(Method::PUT, format!("{location}{sep}digest={digest}")).header(CONTENT_LENGTH, "0");
    s.send_ok(req, "completing an upload").await?;
    Ok((digest, size))
}

fn location_of(resp: &reqwest::Response) -> Result<String> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Registry("upload answer without a Location".into()))?;
    Ok(reqwest::Url::parse(resp.url().as_str())
        .and_then(|b| b.join(loc))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| loc.to_owned()))
}

/// A small blob (a config) in one request, unless the registry has it.
async fn push_small(s: &Session<'_>, digest: &Digest, data: &[u8]) -> Result<()> {
    if blob_exists(s, digest).await? {
        return Ok(());
    }
    let start = s
        .send_ok(
            Req::new(Method::POST, format!("/v2/{}/blobs/uploads/", s.repo)).header(CONTENT_LENGTH, "0"),
            "starting an upload",
        )
        .await?;
    let location = location_of(&start)?;
    let sep = if location.contains('?') { '&' } else { '?' };
    let req = Req::new(Method::PUT, format!("{location}{sep}digest={digest}"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Bytes::copy_from_slice(data));
    s.send_ok(req, &format!("uploading blob {digest}")).await.map(|_| ())
}
