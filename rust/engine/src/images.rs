//! Image operations on the store: resolve a reference, list, inspect, tag, remove.

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference;
use crate::store::{LayerFiles, Store};
use crate::time::now_rfc3339;

/// Finds an image by tag, digest reference (`repo@sha256:…`, as pulled or pushed), full ID, or unique ID
/// prefix (with or without `sha256:`).
pub fn resolve(store: &Store, input: &str) -> Result<Digest> {
    let meta = store.metadata();
    if input.contains('@') {
        let (repo, digest) = reference::digest_ref(input)?.ok_or_else(|| Error::BadReference(input.to_owned()))?;
        let wanted = reference::repo_digest(&repo, &digest);
        return meta
            .images
            .iter()
            .find(|(_, r)| r.repo_digests.contains(&wanted))
            .map(|(id, _)| id.clone())
            .ok_or_else(|| Error::ImageNotFound(input.to_owned()));
    }
    if let Ok(tag) = reference::normalize(input) {
        if let Some(id) = meta.tags.get(&tag) {
            return Ok(id.clone());
        }
    }
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hex = hex.to_ascii_lowercase();
        let mut hits = meta.images.keys().filter(|id| id.hex().starts_with(&hex));
        if let Some(first) = hits.next() {
            if hits.next().is_some() {
                return Err(Error::Conflict(format!("{input} matches more than one image")));
            }
            return Ok(first.clone());
        }
    }
    Err(Error::ImageNotFound(input.to_owned()))
}

pub struct ImageSummary {
    pub id: Digest,
    /// Normalised tags; empty for a dangling image.
    pub tags: Vec<String>,
    /// Creation time from the image config (RFC 3339), if it has one.
    pub created: Option<String>,
    pub size: u64,
}

fn config_json(store: &Store, id: &Digest) -> Result<Value> {
    let bytes = store.get_blob(id)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("config of {id}: {e}")))
}

pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let meta = store.metadata();
    let mut out = Vec::new();
    for (id, rec) in &meta.images {
        let cfg = config_json(store, id)?;
        out.push(ImageSummary {
            id: id.clone(),
            tags: meta.tags_of(id),
            created: cfg["created"].as_str().map(str::to_owned),
            size: rec.size,
        });
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// A JSON document shaped like `docker image inspect`'s.
pub fn inspect(store: &Store, id: &Digest) -> Result<Value> {
    let meta = store.metadata();
    let rec = meta.images.get(id).ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
    let cfg = config_json(store, id)?;
    let chains = rec.chain_ids();
    let dirs: Vec<String> =
        chains.iter().rev().map(|c| LayerFiles::diff_dir(&store.layer_dir(c)).display().to_string()).collect();
    Ok(json!({
        "Id": id.to_string(),
        "RepoTags": meta.tags_of(id),
        "RepoDigests": rec.repo_digests,
        "Parent": "",
        "Comment": cfg["comment"].as_str().unwrap_or(""),
        "Created": cfg["created"].as_str().unwrap_or(""),
        "DockerVersion": cfg["docker_version"].as_str().unwrap_or(""),
        "Author": cfg["author"].as_str().unwrap_or(""),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": cfg["architecture"].as_str().unwrap_or(""),
        "Variant": cfg.get("variant").cloned().unwrap_or(Value::Null),
        "Os": cfg["os"].as_str().unwrap_or(""),
        "Size": rec.size,
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": dirs.join(":")}},
        "RootFS": {"Type": "layers", "Layers": rec.diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": rec.last_tag_time},
    }))
}

/// `image tag SRC DST`.
pub fn tag(store: &mut Store, source: &str, target: &str) -> Result<()> {
    let id = resolve(store, source)?;
    let target = reference::normalize(target)?;
    let mut meta = store.metadata().clone();
    meta.tags.insert(target, id.clone());
    if let Some(rec) = meta.images.get_mut(&id) {
        rec.last_tag_time = now_rfc3339();
    }
    store.commit(meta)
}

#[derive(Debug, PartialEq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// `image rm`: a tag reference removes that tag, and the image with its last tag. An ID removes the image;
/// with several tags that needs `force`, as docker does.
pub fn remove(store: &mut Store, input: &str, force: bool) -> Result<Vec<Removed>> {
    let id = resolve(store, input)?;
    let mut meta = store.metadata().clone();
    let by_tag = reference::normalize(input).ok().filter(|t| meta.tags.get(t) == Some(&id));
    let by_digest = reference::digest_ref(input).ok().flatten().map(|(r, d)| reference::repo_digest(&r, &d));
    let mut out = Vec::new();
    let by_digest_taken = by_tag.is_none() && by_digest.is_some();
    match (by_tag, by_digest) {
        (Some(t), _) => {
            meta.tags.remove(&t);
            out.push(Removed::Untagged(t));
        }
        (None, Some(rd)) => {
            // As docker: removing `repo@digest` untags it; the image goes with its last reference.
            if let Some(rec) = meta.images.get_mut(&id) {
                rec.repo_digests.retain(|r| r != &rd);
            }
            out.push(Removed::Untagged(rd));
        }
        (None, None) => {
            let tags = meta.tags_of(&id);
            if tags.len() > 1 && !force {
                return Err(Error::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    id.short()
                )));
            }
            for t in tags {
                meta.tags.remove(&t);
                out.push(Removed::Untagged(t));
            }
        }
    }
    // Digest references alone keep an image only while one of them is what is being removed.
    let removing_digest = by_digest_taken;
    let digests_left = meta.images.get(&id).map(|r| r.repo_digests.clone()).unwrap_or_default();
    if meta.tags_of(&id).is_empty() && (!removing_digest || digests_left.is_empty()) {
        if !removing_digest {
            out.extend(digests_left.into_iter().map(Removed::Untagged));
        }
        meta.images.remove(&id);
        out.push(Removed::Deleted(id));
    }
    store.commit(meta)?;
    Ok(out)
}
