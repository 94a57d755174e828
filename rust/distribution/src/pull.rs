//! `pull`: manifest (through mirrors, with platform selection), config, then every layer the store lacks
//! streamed HTTP → decompressor → unpacker into staging, a few at once, each blob's digest checked as it
//! streams and each DiffID by the unpacker; then the import stage that `image load` uses commits the image
//! atomically. Delta images are applied against their base in the store on the way; a delta whose target
//! is already here costs only its manifest and config.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::delta::labels::{self, DeltaInfo};
use engine::digest::Digest;
use engine::image_config::diff_ids_of;
use engine::import::{import, stage_layer, ImageImport, LayerInput, RegistryOrigin};
use engine::store::{BlobSource, StagedLayer, Staging};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::auth::Credentials;
use crate::blob::{fetch_small, BlobDownload};
use crate::bridge;
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Fetched, ImageManifest, Parsed};
use crate::platform::{self, Platform};
use crate::progress::{short_id, Progress};
use crate::reference::Reference;
use crate::retry::retrying;
use crate::session::{Registries, Session};
use crate::store_access::StoreAccess;

pub struct PullRequest {
    pub reference: Reference,
    /// `None`: the host's platform.
    pub platform: Option<Platform>,
    pub creds: Credentials,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: Digest,
    /// The tag recorded (none for a pull by digest).
    pub tag: Option<String>,
    pub repo_digest: String,
    /// The digest of what the reference named (a manifest list's, when it was one).
    pub digest: Digest,
    /// The store had the image already: nothing was downloaded but manifest and config.
    pub up_to_date: bool,
    pub delta_base: Option<Digest>,
    pub retagged_from: Vec<(String, Digest)>,
    /// Bytes received for layers, from the network (resumed and skipped bytes included).
    pub layer_bytes_transferred: u64,
}

/// What the registry says the reference is.
struct Resolved<'r> {
    session: Session<'r>,
    /// What the reference named (a list's digest when it was a list).
    digest: Digest,
    manifest: Fetched,
    image: ImageManifest,
    config: Vec<u8>,
}

/// Pulls `req` into the store. Blocking: call from a thread that may block; `rt` runs the network side.
pub fn pull<S: StoreAccess>(
    rt: &Handle,
    reg: &Registries,
    store: &S,
    req: &PullRequest,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Pulled> {
    let r = &req.reference;
    let display = r.to_string();
    progress.status(
        Some(&r.tag.clone().unwrap_or_else(|| r.manifest_reference())),
        &format!("Pulling from {}", r.path_for_status()),
    );
    let resolved = rt.block_on(resolve(reg, req, progress, cancel))?;
    let config = &resolved.config;
    let delta = labels::detect(config)?;
    let target_id = delta.as_ref().map_or_else(|| Digest::of_bytes(config), DeltaInfo::target_id);

    // What the store already has, and a lease on it for the duration (nothing may collect it meanwhile).
    let lease = format!(
        "{}pull-{}-{}",
        engine::store::TRANSIENT_LEASE,
        std::process::id(),
        Digest::of_bytes(format!("{display}{:?}", Instant::now()).as_bytes()).short()
    );
    let (present, known, staging) = store.read(|s| {
        let meta = s.metadata();
        let known: HashMap<Digest, Digest> =
            meta.images.values().flat_map(|rec| rec.diff_ids.iter().cloned().zip(rec.chain_ids())).collect();
        let mut keep: Vec<Digest> = known.values().cloned().collect();
        if let Some(d) = &delta {
            if let Some(base) = meta.images.get(&d.base) {
                keep.extend(base.chain_ids());
            }
        }
        keep.sort();
        keep.dedup();
        s.add_lease(&lease, &keep)?;
        Ok((meta.images.contains_key(&target_id), known, s.begin_staging()?))
    })?;
    let res = pull_layers(rt, reg, store, req, progress, cancel, &resolved, delta.as_ref(), present, &known, &staging);
    let _ = store.read(|s| s.remove_lease(&lease));
    let (loaded, transferred) = res?;
    let up_to_date = present;
    let tag = r.familiar_tag();
    progress.status(None, &format!("Digest: {}", resolved.digest));
    let name = tag.clone().unwrap_or_else(|| r.repo_digest(&resolved.digest));
    progress.status(
        None,
        &if up_to_date {
            format!("Status: Image is up to date for {name}")
        } else {
            format!("Status: Downloaded newer image for {name}")
        },
    );
    Ok(Pulled {
        id: loaded.id,
        tag,
        repo_digest: r.repo_digest(&resolved.digest),
        digest: resolved.digest.clone(),
        up_to_date,
        delta_base: loaded.delta_base,
        retagged_from: loaded.retagged_from,
        layer_bytes_transferred: transferred,
    })
}

impl Reference {
    /// docker's "Pulling from library/busybox".
    fn path_for_status(&self) -> String {
        if self.domain == crate::reference::DOCKER_HUB {
            self.path.clone()
        } else {
            self.familiar_repository()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pull_layers<S: StoreAccess>(
    rt: &Handle,
    reg: &Registries,
    store: &S,
    req: &PullRequest,
    progress: &dyn Progress,
    cancel: &CancellationToken,
    resolved: &Resolved<'_>,
    delta: Option<&DeltaInfo>,
    present: bool,
    known: &HashMap<Digest, Digest>,
    staging: &Staging,
) -> Result<(engine::import::LoadedImage, u64)> {
    let r = &req.reference;
    let layers = &resolved.image.layers;
    let mut inputs: Vec<Option<LayerInput>> = vec![None; layers.len()];
    let mut transferred = 0;
    let skip_layers = present && delta.is_some();
    if !skip_layers {
        if let Some(d) = delta {
            if !store.read(|s| Ok(s.metadata().images.contains_key(&d.base)))? {
                let known_as =
                    if d.base_tags.is_empty() { String::new() } else { format!(" ({})", d.base_tags.join(", ")) };
                return Err(Error::Store(engine::error::Error::MissingBase(format!("{}{known_as}", d.base))));
            }
        }
        // A delta's own layers are never in the store; an image's may be, by DiffID.
        let diff_ids = if delta.is_some() { Vec::new() } else { diff_ids_of(&resolved.config)? };
        if delta.is_none() && diff_ids.len() != layers.len() {
            return Err(Error::BadManifest(format!(
                "the manifest lists {} layers, the image config {}",
                layers.len(),
                diff_ids.len()
            )));
        }
        for (i, l) in layers.iter().enumerate() {
            if let Some(d) = diff_ids.get(i).filter(|d| known.contains_key(*d)) {
                progress.status(Some(&short_id(&l.digest)), "Already exists");
                inputs[i] = Some(LayerInput::Stored(d.clone()));
            } else {
                progress.status(Some(&short_id(&l.digest)), "Pulling fs layer");
            }
        }
        let todo: Vec<usize> = (0..layers.len()).filter(|i| inputs[*i].is_none()).collect();
        for i in todo.iter().skip(reg.config().max_concurrent_downloads) {
            progress.status(Some(&short_id(&layers[*i].digest)), "Waiting");
        }
        let (staged, bytes) = download_all(rt, reg, &resolved.session, layers, &todo, staging, progress, cancel)?;
        transferred = bytes;
        for (i, s) in staged {
            inputs[i] = Some(LayerInput::Staged(s));
        }
    }
    let layer_inputs: Vec<LayerInput> = if skip_layers { Vec::new() } else { inputs.into_iter().flatten().collect() };
    let origin = RegistryOrigin {
        repo_digest: r.repo_digest(&resolved.digest),
        manifest: resolved.manifest.bytes.clone(),
        blobs: layers
            .iter()
            .map(|l| BlobSource {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
                registry: r.domain.clone(),
                repository: r.path.clone(),
            })
            .collect(),
    };
    let image = ImageImport {
        config: resolved.config.clone(),
        layers: layer_inputs,
        tags: r.familiar_tag().into_iter().collect(),
        delta_recorded_tags: false,
        origin: Some(origin),
    };
    let mut loaded = store.write(|s| import(s, staging, vec![image]))?;
    let loaded = loaded.pop().ok_or_else(|| Error::Registry("the import produced no image".into()))?;
    Ok((loaded, transferred))
}

/// Finds the manifest (mirrors first, then the registry; retrying transient failures), picks the platform's
/// manifest from a list, and fetches the config.
async fn resolve<'r>(
    reg: &'r Registries,
    req: &PullRequest,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Resolved<'r>> {
    let r = &req.reference;
    let want = req.platform.clone().unwrap_or_else(Platform::host);
    let endpoints = reg.endpoints(r, true);
    let notify =
        |e: &Error, d: Duration| progress.status(None, &format!("{e}: Retrying in {} seconds", d.as_secs().max(1)));
    retrying(reg.config(), cancel, &notify, || async {
        let mut last = None;
        for ep in &endpoints {
            let mirror = ep.mirror;
            match resolve_at(reg, ep.clone(), req, &want, cancel).await {
                Ok(res) => return Ok(res),
                Err(e) if mirror || e.is_transient() => {
                    log::info!("{}: {e}", ep.base);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config(format!("no endpoint for {}", r.domain))))
    })
    .await
}

async fn resolve_at<'r>(
    reg: &'r Registries,
    ep: crate::config::Endpoint,
    req: &PullRequest,
    want: &Platform,
    cancel: &CancellationToken,
) -> Result<Resolved<'r>> {
    let r = &req.reference;
    let display = r.to_string();
    let session = Session::new(reg, ep, &r.path, &req.creds, false)?;
    session.ping().await?;
    let top = manifest::fetch(&session, &r.manifest_reference(), &display).await?;
    let digest = top.digest.clone();
    let manifest = match &top.parsed {
        Parsed::Image(_) => top,
        Parsed::List(list) => {
            let entries: Vec<(Option<Platform>, &Descriptor)> =
                list.manifests.iter().map(|d| (d.platform.clone(), d)).collect();
            let chosen = platform::select(&entries, want).ok_or_else(|| Error::NoMatchingPlatform(want.to_string()))?;
            let child = manifest::fetch(&session, &chosen.digest.to_string(), &format!("{display} ({want})")).await?;
            if !matches!(child.parsed, Parsed::Image(_)) {
                return Err(Error::BadManifest("a manifest list names another list for a platform".into()));
            }
            child
        }
    };
    let Parsed::Image(image) = manifest.parsed.clone() else { unreachable!("checked above") };
    let config = fetch_small(&session, &image.config.digest, image.config.size, manifest::MAX_CONFIG, cancel).await?;
    Ok(Resolved { session, digest, manifest, image, config })
}

/// Downloads and unpacks the layers `todo` (indices into `layers`), up to the configured number at once.
/// Returns the staged layers by index and the bytes received.
#[allow(clippy::too_many_arguments)]
fn download_all(
    rt: &Handle,
    reg: &Registries,
    session: &Session<'_>,
    layers: &[Descriptor],
    todo: &[usize],
    staging: &Staging,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(Vec<(usize, StagedLayer)>, u64)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, StagedLayer)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let transferred = std::sync::atomic::AtomicU64::new(0);
    let stop = cancel.child_token();
    let workers = reg.config().max_concurrent_downloads.clamp(1, 8).min(todo.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = todo.get(k) else { break };
                if stop.is_cancelled() {
                    break;
                }
                match download_one(rt, session, &layers[i], staging, progress, &stop) {
                    Ok((s, n)) => {
                        transferred.fetch_add(n, Ordering::Relaxed);
                        results.lock().unwrap_or_else(|e| e.into_inner()).push((i, s));
                    }
                    Err(e) => {
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        // The first real failure wins over the cancellations it causes in the others.
                        if first.is_none() || matches!(*first, Some(Error::Cancelled)) {
                            *first = Some(e);
                        }
                        stop.cancel();
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    Ok((results.into_inner().unwrap_or_else(|e| e.into_inner()), transferred.into_inner()))
}

/// How often a layer's byte count is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How much more of a blob is read, after the unpacker found its bytes bad, to learn whether its digest fails.
const VERIFY_TAIL: u64 = 1 << 20;

/// One layer: the network side runs on `rt` and feeds chunks to this thread, which unpacks them.
fn download_one(
    rt: &Handle,
    session: &Session<'_>,
    desc: &Descriptor,
    staging: &Staging,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(StagedLayer, u64)> {
    let id = short_id(&desc.digest);
    let (tx, reader, failure) = bridge::channel();
    let transferred = std::sync::atomic::AtomicU64::new(0);
    let (id_ref, transferred_ref) = (&id, &transferred);
    let staged = std::thread::scope(|scope| {
        // `tx` moves into the network thread: its end closes the channel, which is the reader's EOF.
        let net = scope.spawn(move || {
            let (id, transferred) = (id_ref, transferred_ref);
            rt.block_on(async {
                let mut dl = BlobDownload::new(session, desc.digest.clone(), desc.size);
                let mut last = Instant::now() - PROGRESS_EVERY;
                let on_retry = |e: &Error, d: Duration| {
                    // docker's wording exactly (clients match on it); the cause is in the daemon's log.
                    log::info!("layer {id}: {e}");
                    progress.status(Some(id), &format!("Retrying in {} seconds", d.as_secs().max(1)));
                };
                loop {
                    match dl.next(cancel, &on_retry).await {
                        Ok(Some(b)) => {
                            if last.elapsed() >= PROGRESS_EVERY {
                                last = Instant::now();
                                progress.progress(id, "Downloading", dl.offset(), desc.size);
                            }
                            if tx.send(Ok(b)).await.is_err() {
                                break; // the unpacker stopped; its error is the one to report
                            }
                        }
                        Ok(None) => {
                            progress.progress(id, "Downloading", dl.offset(), desc.size);
                            progress.status(Some(id), "Verifying Checksum");
                            progress.status(Some(id), "Download complete");
                            break;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            break;
                        }
                    }
                }
                transferred.store(dl.transferred, Ordering::Relaxed);
            })
        });
        let mut reader = reader;
        let staged = stage_layer(staging, &mut reader, &desc.digest.to_string());
        // Bad bytes (gzip's CRC notices a flipped byte at the blob's end, before the blob digest is known):
        // read on a little so that a corrupt blob is reported as the digest mismatch it is.
        if matches!(staged, Err(engine::error::Error::BadArchive(_))) {
            let _ = std::io::copy(&mut std::io::Read::take(&mut reader, VERIFY_TAIL), &mut std::io::sink());
        }
        drop(reader);
        let _ = net.join();
        staged
    });
    let download_error = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    let staged = match (staged, download_error) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) if cancel.is_cancelled() => {
            log::debug!("layer {id} stopped: {e}");
            return Err(Error::Cancelled);
        }
        (r, None) => r?,
    };
    progress.progress(&id, "Extracting", desc.size, desc.size);
    progress.status(Some(&id), "Pull complete");
    Ok((staged, transferred.into_inner()))
}
