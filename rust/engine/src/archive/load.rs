//! `image load`: one pass over the archive, then verification against each image's config, then one atomic
//! commit. On any error the store is left exactly as it was.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::PathBuf;

use super::collect::{collect, Blob, Collected};
use super::compression::{decompressor, sniff, Sniffed};
use super::plan::{plan, ImagePlan};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::delta;
use crate::store::{Access, ImageRecord, StagedLayer, Staging, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<String>,
    /// Images that lost one of these tags to this load.
    pub retagged_from: Vec<(String, Digest)>,
    /// Set when the image was rebuilt from a delta against this base image.
    pub delta_base: Option<Digest>,
}

pub fn diff_ids_of(config: &[u8]) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let cfg: Config = serde_json::from_slice(config).map_err(|e| Error::bad_archive(format!("image config: {e}")))?;
    cfg.rootfs.diff_ids.iter().map(|d| d.parse()).collect()
}

/// The archive itself may be gzip- or zstd-compressed (`docker save | gzip`), as `docker load` accepts.
fn decompressed<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut head = Vec::with_capacity(4);
    (&mut input).take(4).read_to_end(&mut head).ctx(|| "reading archive".into())?;
    let kind = match sniff(&head) {
        k @ (Sniffed::Gzip | Sniffed::Zstd) => k,
        _ => Sniffed::Tar,
    };
    decompressor(kind, io::Cursor::new(head).chain(input)).ctx(|| "reading compressed archive".into())
}

/// Loads every image of the archive read from `input`.
pub fn load(store: &mut Store, input: impl Read) -> Result<Vec<LoadedImage>> {
    if store.access() != Access::Write {
        return Err(Error::Conflict("store opened read-only".into()));
    }
    let known: HashMap<Digest, Digest> = store
        .metadata()
        .images
        .values()
        .flat_map(|r| r.diff_ids.iter().cloned().zip(r.chain_ids()))
        .collect();
    let known_ids: HashSet<Digest> = known.keys().cloned().collect();
    let mut staging = store.begin_staging()?;
    let collected = collect(decompressed(input)?, &mut staging, &known_ids)?;
    let plans = plan(&collected)?;
    if plans.is_empty() {
        return Err(Error::bad_archive("archive lists no image"));
    }
    let mut new_layers: Vec<(Digest, StagedLayer)> = Vec::new();
    let mut planned: HashSet<Digest> = HashSet::new();
    let mut claimed: HashMap<String, PathBuf> = HashMap::new();
    let mut images = Vec::new();
    for p in &plans {
        let (_, diff_ids) = verify(p, &collected)?;
        if let Some(info) = delta::labels::detect(&p.config)? {
            images.push(from_delta(store, &mut staging, &collected, &known, p, &info, &mut planned, &mut new_layers)?);
            continue;
        }
        for ((chain, path), diff_id) in Digest::chain_ids(&diff_ids).into_iter().zip(&p.layer_paths).zip(&diff_ids) {
            if store.has_layer(&chain) || !planned.insert(chain.clone()) {
                continue;
            }
            let key = collected.resolve(path)?;
            let staged = match (collected.blobs.get(&key), claimed.get(&key)) {
                (Some(Blob::Staged(s)), None) => {
                    claimed.insert(key, s.dir.clone());
                    s.clone()
                }
                (Some(Blob::Staged(_)), Some(first)) => staging.clone_layer(&first.clone())?,
                (Some(Blob::Known(_)), _) => {
                    let existing = known.get(diff_id).ok_or_else(|| Error::Corrupt(format!("layer {diff_id} vanished")))?;
                    staging.clone_layer(&store.layer_dir(existing))?
                }
                (None, _) => return Err(Error::bad_archive(format!("layer {path:?} is missing from the archive"))),
            };
            new_layers.push((chain, staged));
        }
        images.push(ToCommit { config: p.config.clone(), diff_ids, tags: p.tags.clone(), delta_base: None });
    }
    install(store, &staging, &new_layers)?;
    let res = commit(store, images);
    if res.is_err() {
        let _ = store.collect_garbage();
    }
    res
}

/// An image to record once its layers are installed.
struct ToCommit {
    config: Vec<u8>,
    diff_ids: Vec<Digest>,
    tags: Vec<String>,
    delta_base: Option<Digest>,
}

/// A delta image in the archive: rebuild its target (unless the store has it) instead of keeping the delta.
#[allow(clippy::too_many_arguments)]
fn from_delta(
    store: &Store,
    staging: &mut Staging,
    collected: &Collected,
    known: &HashMap<Digest, Digest>,
    p: &ImagePlan,
    info: &delta::labels::DeltaInfo,
    planned: &mut HashSet<Digest>,
    new_layers: &mut Vec<(Digest, StagedLayer)>,
) -> Result<ToCommit> {
    // Ours names the target's tags; balenaEngine's target takes the tags the delta was loaded under.
    let tags = match info.kind {
        delta::labels::Kind::Bedelta => info.target_tags.clone(),
        delta::labels::Kind::Rdiff => p.tags.clone(),
    };
    if store.metadata().images.contains_key(&info.target_id()) {
        // Nothing to rebuild (the base need not even be here): only the tags change.
        let diff_ids = diff_ids_of(&info.target_config)?;
        return Ok(ToCommit { config: info.target_config.clone(), diff_ids, tags, delta_base: None });
    }
    let delta_base = Some(info.base.clone());
    let mut dirs = Vec::new();
    for path in &p.layer_paths {
        let dir = match collected.blobs.get(&collected.resolve(path)?) {
            Some(Blob::Staged(s)) => s.dir.clone(),
            Some(Blob::Known(d)) => store.layer_dir(known.get(d).ok_or_else(|| Error::Corrupt(format!("layer {d} vanished")))?),
            None => return Err(Error::bad_archive(format!("layer {path:?} is missing from the archive"))),
        };
        dirs.push(dir);
    }
    let rebuilt = delta::rebuild::rebuild(store, staging, info, &dirs)?;
    for (chain, s) in rebuilt.layers {
        if planned.insert(chain.clone()) {
            new_layers.push((chain, s));
        }
    }
    Ok(ToCommit { config: rebuilt.config, diff_ids: rebuilt.diff_ids, tags, delta_base })
}

/// Checks an image's layers against its config; returns its ID and DiffIDs.
fn verify(p: &ImagePlan, c: &Collected) -> Result<(Digest, Vec<Digest>)> {
    let id = Digest::of_bytes(&p.config);
    let diff_ids = diff_ids_of(&p.config)?;
    if diff_ids.len() != p.layer_paths.len() {
        return Err(Error::bad_archive(format!(
            "image {id}: config lists {} layers, manifest {}",
            diff_ids.len(),
            p.layer_paths.len()
        )));
    }
    for (i, (path, expected)) in p.layer_paths.iter().zip(&diff_ids).enumerate() {
        let key = c.resolve(path)?;
        let blob = c.blobs.get(&key).ok_or_else(|| Error::bad_archive(format!("layer {path:?} is missing from the archive")))?;
        if blob.diff_id() != expected {
            return Err(Error::DigestMismatch {
                what: format!("layer {i} ({path}) of image {id}"),
                expected: expected.to_string(),
                actual: blob.diff_id().to_string(),
            });
        }
    }
    Ok((id, diff_ids))
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
        meta.images.insert(id.clone(), ImageRecord { diff_ids: img.diff_ids, size, last_tag_time: now.clone() });
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

