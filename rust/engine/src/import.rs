//! The import stage shared by `image load` and registry pulls: images whose layers were unpacked into a
//! staging area (or that the store already has) are verified against their configs, delta images are
//! rebuilt into their targets, new layers are installed, and everything is committed in one atomic
//! metadata replacement. On any error the store is left exactly as it was.
//!
//! Where the layers came from (an archive's entries, a registry's blobs) is the caller's business; this
//! stage sees only staged layer dirs and DiffIDs.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::archive::compression::{decompressor, sniff, Sniffed};
use crate::delta;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image_config::diff_ids_of;
use crate::store::{BlobSource, ImageRecord, StagedLayer, Staging, Store};

/// One layer of an image to import, in manifest order.
#[derive(Debug, Clone)]
pub enum LayerInput {
    /// Unpacked into this import's staging; its DiffID is checked against the config.
    Staged(StagedLayer),
    /// The store holds a layer with this DiffID as `chain` (whoever found it keeps it, e.g. by a lease, until
    /// the import): reused, not transferred.
    Stored { diff_id: Digest, chain: Digest },
}

impl LayerInput {
    fn diff_id(&self) -> &Digest {
        match self {
            LayerInput::Staged(s) => &s.record.diff_id,
            LayerInput::Stored { diff_id, .. } => diff_id,
        }
    }
}

/// Where an image came from in a registry: recorded so that `RepoDigests`, digest references and pushes
/// (which mount or skip the original blobs, keeping the manifest digest) work.
#[derive(Debug, Clone)]
pub struct RegistryOrigin {
    /// `repository@sha256:…` (familiar repository name).
    pub repo_digest: String,
    /// The manifest's exact bytes; kept in the store.
    pub manifest: Vec<u8>,
    /// The compressed blob of each manifest layer.
    pub blobs: Vec<BlobSource>,
}

#[derive(Debug, Clone)]
pub struct ImageImport {
    pub config: Vec<u8>,
    /// Empty only for a delta whose target the store already has (nothing to rebuild).
    pub layers: Vec<LayerInput>,
    /// Tags the image arrived under (normalised).
    pub tags: Vec<String>,
    /// For a delta image in our format: tag the target with the tags recorded in the delta (an archive's
    /// delta) instead of `tags` (a pulled delta takes the name it was pulled as, as balenaEngine does).
    pub delta_recorded_tags: bool,
    pub origin: Option<RegistryOrigin>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<String>,
    /// Images that lost one of these tags to this import.
    pub retagged_from: Vec<(String, Digest)>,
    /// Set when the image was rebuilt from a delta against this base image.
    pub delta_base: Option<Digest>,
}

/// Unpacks one layer blob (uncompressed, gzip or zstd: recognised by its first bytes) into `staging`, then
/// reads `blob` to its end, so that a reader which verifies a digest at EOF has its say.
pub fn stage_layer(staging: &Staging, mut blob: impl Read, name: &str) -> Result<StagedLayer> {
    let mut head = Vec::with_capacity(4);
    (&mut blob).take(4).read_to_end(&mut head).ctx(|| format!("reading layer {name}"))?;
    let kind = match sniff(&head) {
        k @ (Sniffed::Gzip | Sniffed::Zstd) => k,
        _ => Sniffed::Tar,
    };
    let mut input = io::Cursor::new(head).chain(&mut blob);
    let staged = {
        let dec = decompressor(kind, &mut input).ctx(|| format!("reading compressed layer {name}"))?;
        staging.unpack(dec, name)?
    };
    io::copy(&mut input, &mut io::sink()).ctx(|| format!("reading layer {name}"))?;
    Ok(staged)
}

/// An image to record once its layers are installed.
struct ToCommit {
    config: Vec<u8>,
    diff_ids: Vec<Digest>,
    tags: Vec<String>,
    delta_base: Option<Digest>,
    origin: Option<RegistryOrigin>,
}

/// Verifies, rebuilds deltas, installs and commits `images`; their staged layers are in `staging`.
pub fn import(store: &mut Store, staging: &Staging, images: Vec<ImageImport>) -> Result<Vec<LoadedImage>> {
    if store.access() != crate::store::Access::Write {
        return Err(Error::Conflict("store opened read-only".into()));
    }
    let mut new_layers: Vec<(Digest, StagedLayer)> = Vec::new();
    let mut planned: HashSet<Digest> = HashSet::new();
    let mut claimed: HashSet<PathBuf> = HashSet::new();
    let mut to_commit = Vec::new();
    for img in images {
        if let Some(info) = delta::labels::detect(&img.config)? {
            to_commit.push(from_delta(store, staging, img, &info, &mut planned, &mut new_layers)?);
            continue;
        }
        let diff_ids = verify(&img)?;
        for (chain, layer) in Digest::chain_ids(&diff_ids).into_iter().zip(&img.layers) {
            if store.has_layer(&chain) || !planned.insert(chain.clone()) {
                continue;
            }
            let staged = match layer {
                LayerInput::Staged(s) if claimed.insert(s.dir.clone()) => s.clone(),
                LayerInput::Staged(s) => staging.clone_layer(&s.dir)?,
                LayerInput::Stored { chain: existing, .. } => staging.clone_layer(&store.layer_dir(existing))?,
            };
            new_layers.push((chain, staged));
        }
        to_commit.push(ToCommit { config: img.config, diff_ids, tags: img.tags, delta_base: None, origin: img.origin });
    }
    install(store, staging, &new_layers)?;
    let res = commit(store, to_commit);
    if res.is_err() {
        let _ = store.collect_garbage();
    }
    res
}

/// A delta image: rebuild its target (unless the store has it) instead of keeping the delta.
fn from_delta(
    store: &Store,
    staging: &Staging,
    img: ImageImport,
    info: &delta::labels::DeltaInfo,
    planned: &mut HashSet<Digest>,
    new_layers: &mut Vec<(Digest, StagedLayer)>,
) -> Result<ToCommit> {
    let tags = match (info.kind, img.delta_recorded_tags) {
        (delta::labels::Kind::Bedelta, true) => info.target_tags.clone(),
        _ => img.tags.clone(),
    };
    // The repo digest names the delta's manifest; pulling it again must resolve to the target, so it is
    // kept. The manifest and its blobs describe the delta, not the target: they are not.
    let origin = img.origin.as_ref().map(|o| RegistryOrigin {
        repo_digest: o.repo_digest.clone(),
        manifest: Vec::new(),
        blobs: Vec::new(),
    });
    if store.metadata().images.contains_key(&info.target_id()) {
        // Nothing to rebuild (the base need not even be here): only the tags change.
        let diff_ids = diff_ids_of(&info.target_config)?;
        return Ok(ToCommit { config: info.target_config.clone(), diff_ids, tags, delta_base: None, origin });
    }
    verify(&img)?;
    let mut dirs = Vec::new();
    for layer in &img.layers {
        dirs.push(match layer {
            LayerInput::Staged(s) => s.dir.clone(),
            LayerInput::Stored { chain, .. } => store.layer_dir(chain),
        });
    }
    let rebuilt = delta::rebuild::rebuild(store, staging, info, &dirs)?;
    for (chain, s) in rebuilt.layers {
        if planned.insert(chain.clone()) {
            new_layers.push((chain, s));
        }
    }
    Ok(ToCommit {
        config: rebuilt.config,
        diff_ids: rebuilt.diff_ids,
        tags,
        delta_base: Some(info.base.clone()),
        origin,
    })
}

/// Checks an image's layers against its config; returns its DiffIDs.
fn verify(img: &ImageImport) -> Result<Vec<Digest>> {
    let id = Digest::of_bytes(&img.config);
    let diff_ids = diff_ids_of(&img.config)?;
    if diff_ids.len() != img.layers.len() {
        return Err(Error::bad_archive(format!(
            "image {id}: config lists {} layers, manifest {}",
            diff_ids.len(),
            img.layers.len()
        )));
    }
    for (i, (layer, expected)) in img.layers.iter().zip(&diff_ids).enumerate() {
        if layer.diff_id() != expected {
            return Err(Error::DigestMismatch {
                what: format!("layer {i} of image {id}"),
                expected: expected.to_string(),
                actual: layer.diff_id().to_string(),
            });
        }
    }
    Ok(diff_ids)
}

fn install(store: &Store, staging: &Staging, layers: &[(Digest, StagedLayer)]) -> Result<()> {
    staging.sync()?;
    let res = (|| {
        for (chain, s) in layers {
            staging.install(s, chain)?;
        }
        staging.finish_installs()
    })();
    if res.is_err() {
        let _ = store.collect_garbage();
    }
    res
}

fn commit(store: &mut Store, images: Vec<ToCommit>) -> Result<Vec<LoadedImage>> {
    let mut meta = store.metadata().clone();
    let now = crate::time::now_rfc3339();
    let mut out = Vec::new();
    for img in images {
        let id = store.put_blob(&img.config)?;
        let size = Digest::chain_ids(&img.diff_ids)
            .iter()
            .map(|chain| store.layer_record(chain).map(|r| r.tar_size))
            .sum::<Result<u64>>()?;
        let mut record = meta.images.remove(&id).unwrap_or(ImageRecord {
            diff_ids: img.diff_ids.clone(),
            size,
            last_tag_time: String::new(),
            repo_digests: Vec::new(),
            manifests: Vec::new(),
        });
        record.diff_ids = img.diff_ids.clone();
        record.size = size;
        record.last_tag_time = now.clone();
        if let Some(origin) = img.origin {
            if !record.repo_digests.contains(&origin.repo_digest) {
                record.repo_digests.push(origin.repo_digest);
            }
            if !origin.manifest.is_empty() {
                let m = store.put_blob(&origin.manifest)?;
                if !record.manifests.contains(&m) {
                    record.manifests.push(m);
                }
            }
            for (diff_id, src) in img.diff_ids.iter().zip(origin.blobs) {
                meta.add_blob_source(diff_id, src);
            }
        }
        meta.images.insert(id.clone(), record);
        let mut retagged_from = Vec::new();
        for t in &img.tags {
            if let Some(old) = meta.tags.insert(t.clone(), id.clone()) {
                if old != id {
                    retagged_from.push((t.clone(), old));
                }
            }
        }
        out.push(LoadedImage { id, tags: img.tags, retagged_from, delta_base: img.delta_base });
    }
    store.commit(meta)?;
    Ok(out)
}
