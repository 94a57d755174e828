//! Recovery and garbage collection: what no committed image references is removed, so an interrupted
//! load or removal leaves nothing behind once a writer opens the store again.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::Store;
use crate::error::{IoContext, Result};

/// Removes a tree by first renaming it into `tmp/`, so a crash mid-way never leaves a half tree in place.
fn remove_via_tmp(store: &Store, path: &Path) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let grave = store.tmp_dir().join(format!("rm-{name}"));
    fs::rename(path, &grave).ctx(|| format!("removing {}", path.display()))?;
    fs::remove_dir_all(&grave).ctx(|| format!("removing {}", grave.display()))
}

/// At open: empties `tmp/`, then collects garbage.
pub fn recover(store: &Store) -> Result<()> {
    let tmp = store.tmp_dir();
    for entry in fs::read_dir(&tmp).ctx(|| format!("reading {}", tmp.display()))? {
        let p = entry.ctx(|| format!("reading {}", tmp.display()))?.path();
        let res = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        res.ctx(|| format!("removing leftover {}", p.display()))?;
    }
    super::leases::release_transient(store.root())?;
    collect(store)
}

/// Removes layer dirs and blobs that no image in the metadata and no lease references. Skipped while a
/// reader is active (it may be saving one of them, or leasing it); the next writer collects them.
pub fn collect(store: &Store) -> Result<()> {
    let Some(_held) = super::lock::try_collect(store.root())? else {
        return Ok(());
    };
    let meta = store.metadata();
    let mut chains: HashSet<String> =
        meta.images.values().flat_map(|r| r.chain_ids()).map(|d| d.hex().to_owned()).collect();
    chains.extend(super::leases::leased_chains(store.root())?);
    let blobs: HashSet<String> = meta
        .images
        .iter()
        .flat_map(|(id, r)| std::iter::once(id).chain(&r.manifests))
        .map(|d| d.hex().to_owned())
        .collect();
    let layers = store.root().join("layers");
    for entry in fs::read_dir(&layers).ctx(|| format!("reading {}", layers.display()))? {
        let entry = entry.ctx(|| format!("reading {}", layers.display()))?;
        if !chains.contains(entry.file_name().to_string_lossy().as_ref()) {
            remove_via_tmp(store, &entry.path())?;
        }
    }
    let blob_dir = store.root().join("blobs/sha256");
    for entry in fs::read_dir(&blob_dir).ctx(|| format!("reading {}", blob_dir.display()))? {
        let entry = entry.ctx(|| format!("reading {}", blob_dir.display()))?;
        if !blobs.contains(entry.file_name().to_string_lossy().as_ref()) {
            fs::remove_file(entry.path()).ctx(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}
