//! The store's index of images and tags: one small JSON file replaced atomically. Its rename is the commit
//! point of every change, so a crash leaves the previous or the next state, never a half image.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

pub const FILE: &str = "metadata.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// DiffIDs of the image's layers, bottom first (also in its config; kept here for fast reference counting).
    pub diff_ids: Vec<Digest>,
    /// Bytes of the uncompressed layer tars.
    pub size: u64,
    /// RFC 3339 time the image was loaded or last tagged.
    pub last_tag_time: String,
    /// `repository@sha256:…` references it was pulled or pushed as (docker's `RepoDigests`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// Registry manifests kept byte for byte (in `blobs/`), so a push of a pulled image keeps its digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Digest>,
}

impl ImageRecord {
    pub fn chain_ids(&self) -> Vec<Digest> {
        Digest::chain_ids(&self.diff_ids)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    pub version: u32,
    /// Image ID (config digest) → record.
    pub images: BTreeMap<Digest, ImageRecord>,
    /// Normalised reference ("name:tag") → image ID.
    pub tags: BTreeMap<String, Digest>,
    /// DiffID → the compressed blobs known to hold that layer in registries (a push mounts or skips them
    /// instead of uploading a recompressed copy under another digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blob_sources: BTreeMap<Digest, Vec<BlobSource>>,
}

/// A layer's compressed form as a registry holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobSource {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Registry host (`host[:port]`) and repository path where the blob was seen.
    pub registry: String,
    pub repository: String,
}

/// Sources kept per DiffID (most recent last).
const MAX_SOURCES: usize = 8;

impl Metadata {
    pub fn read(root: &Path) -> Result<Self> {
        let path = root.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let m: Metadata =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata { version: 1, ..Default::default() }),
            Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }

    pub fn write(&self, root: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Corrupt(format!("encoding metadata: {e}")))?;
        write_atomic(&root.join(FILE), &bytes)
    }

    /// Records where a layer's compressed blob lives (replacing an older record of the same blob and place).
    pub fn add_blob_source(&mut self, diff_id: &Digest, src: BlobSource) {
        let list = self.blob_sources.entry(diff_id.clone()).or_default();
        list.retain(|s| !(s.digest == src.digest && s.registry == src.registry && s.repository == src.repository));
        list.push(src);
        if list.len() > MAX_SOURCES {
            list.remove(0);
        }
    }

    /// Forgets blob sources of layers no image has any more.
    pub fn prune_blob_sources(&mut self) {
        let used: std::collections::HashSet<&Digest> = self.images.values().flat_map(|r| &r.diff_ids).collect();
        let stale: Vec<Digest> = self.blob_sources.keys().filter(|d| !used.contains(d)).cloned().collect();
        for d in stale {
            self.blob_sources.remove(&d);
        }
    }

    /// DiffID → the ChainID of a stored layer with that content (any one of them).
    pub fn chains_by_diff_id(&self) -> std::collections::HashMap<Digest, Digest> {
        self.images.values().flat_map(|r| r.diff_ids.iter().cloned().zip(r.chain_ids())).collect()
    }

    pub fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.tags.iter().filter(|(_, v)| *v == id).map(|(k, _)| k.clone()).collect()
    }
}
