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
}

impl Metadata {
    pub fn read(root: &Path) -> Result<Self> {
        let path = root.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let m: Metadata = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
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

    pub fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.tags.iter().filter(|(_, v)| *v == id).map(|(k, _)| k.clone()).collect()
    }
}
