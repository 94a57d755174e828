//! `pull`: manifest (through mirrors, with platform selection), config, then every layer the store lacks
//! streamed HTTP → decompressor → unpacker into staging, a few at once, each blob's digest checked as it
//! streams and each DiffID by the unpacker; then the import stage that `image load` uses commits the image
//! atomically. Delta images are applied against their base in the store on the way; a delta whose target
//! is already here costs only its manifest and config.

use std::collections::HashMap;

use engine::delta::labels::{self, DeltaInfo};
use engine::digest::Digest;
use engine::image_config::diff_ids_of;
use engine::import::{import, ImageImport, LayerInput, RegistryOrigin};
use engine::store::{BlobSource, Staging};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::auth::Credentials;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::progress::{short_id, Progress};
use crate::reference::Reference;
use crate::session::Registries;
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

mod download;
mod resolve;

use resolve::Resolved;

/// Names the transient leases of pulls in progress.
static PULLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What every step of a pull works with.
struct Ctx<'a> {
    rt: &'a Handle,
    reg: &'a Registries,
    progress: &'a dyn Progress,
    cancel: &'a CancellationToken,
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
    let ctx = Ctx { rt, reg, progress, cancel };
    // As dockerd: a reference the registry does not know fails before the progress stream starts.
    let resolved = rt.block_on(resolve::resolve(&ctx, req))?;
    progress.status(
        Some(&r.tag.clone().unwrap_or_else(|| r.manifest_reference())),
        &format!("Pulling from {}", r.path_for_status()),
    );
    let config = &resolved.config;
    let delta = labels::detect(config)?;
    let target_id = delta.as_ref().map_or_else(|| Digest::of_bytes(config), DeltaInfo::target_id);

    // What the store already has, and a lease on it for the duration (nothing may collect it meanwhile).
    let n = PULLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let lease = format!("{}pull-{}-{n}", engine::store::TRANSIENT_LEASE, std::process::id());
    let (present, already_tagged, known, staging) = store.read(|s| {
        let meta = s.metadata();
        let known = meta.chains_by_diff_id();
        // Only what this pull reuses: the layers it will not download, and a delta's base.
        let mut keep: Vec<Digest> = match &delta {
            None => diff_ids_of(config)?.iter().filter_map(|d| known.get(d).cloned()).collect(),
            Some(_) => Vec::new(),
        };
        if let Some(d) = &delta {
            if let Some(base) = meta.images.get(&d.base) {
                keep.extend(base.chain_ids());
            }
        }
        keep.sort();
        keep.dedup();
        s.add_lease(&lease, &keep)?;
        let tagged = r.familiar_tag().is_none_or(|t| meta.tags.get(&t) == Some(&target_id));
        Ok((meta.images.contains_key(&target_id), tagged, known, s.begin_staging()?))
    })?;
    let res = pull_layers(&ctx, store, req, &resolved, delta.as_ref(), present, &known, &staging);
    let _ = store.read(|s| s.remove_lease(&lease));
    // What an `rmi` freed meanwhile can go now.
    store.collect_garbage();
    let (loaded, transferred) = res?;
    let up_to_date = present;
    let tag = r.familiar_tag();
    progress.status(None, &format!("Digest: {}", resolved.digest));
    let name = tag.clone().unwrap_or_else(|| r.repo_digest(&resolved.digest));
    // dockerd's wording: a new tag on an image already here is news too.
    progress.status(
        None,
        &if up_to_date && already_tagged {
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
    ctx: &Ctx<'_>,
    store: &S,
    req: &PullRequest,
    resolved: &Resolved<'_>,
    delta: Option<&DeltaInfo>,
    present: bool,
    known: &HashMap<Digest, Digest>,
    staging: &Staging,
) -> Result<(engine::import::LoadedImage, u64)> {
    let (r, progress) = (&req.reference, ctx.progress);
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
                inputs[i] = Some(LayerInput::Stored { diff_id: d.clone(), chain: known[d].clone() });
            } else {
                progress.status(Some(&short_id(&l.digest)), "Pulling fs layer");
            }
        }
        let todo: Vec<usize> = (0..layers.len()).filter(|i| inputs[*i].is_none()).collect();
        for i in todo.iter().skip(ctx.reg.config().download_workers()) {
            progress.status(Some(&short_id(&layers[*i].digest)), "Waiting");
        }
        let (staged, bytes) = download::download_all(ctx, &resolved.session, layers, &todo, staging)?;
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
