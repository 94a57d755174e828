//! `image delta BASE TARGET`: builds a delta image in the store. It is an ordinary image (save it, load it,
//! push it) whose layers each hold one file `delta`: the payload rebuilding one target layer the base lacks.

use std::collections::HashSet;
use std::io::Cursor;

use serde_json::{json, Value};

use super::base_files::BaseIndex;
use super::encode::{encode_layer, EncodeStats};
use super::labels;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images;
use crate::reference;
use crate::store::{ImageRecord, Store};
use crate::time::now_rfc3339;

#[derive(Debug, Clone)]
pub struct DeltaReport {
    pub id: Digest,
    pub base: Digest,
    pub target: Digest,
    /// Uncompressed bytes of the target layers the base lacks.
    pub target_bytes: u64,
    /// Bytes of the payloads.
    pub delta_bytes: u64,
    pub layers: Vec<EncodeStats>,
}

/// The tar of a delta layer: one entry `delta` (mode 0600, root, mtime 0) holding the payload.
fn delta_layer_tar(payload: &[u8]) -> Result<Vec<u8>> {
    let mut h = tar::Header::new_ustar();
    h.set_path("delta").map_err(|e| Error::Corrupt(e.to_string()))?;
    h.set_size(payload.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = Vec::with_capacity(payload.len() + 2048);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    Ok(out)
}

pub fn create(store: &mut Store, base_ref: &str, target_ref: &str, tag: Option<&str>) -> Result<DeltaReport> {
    let base = images::resolve(store, base_ref)?;
    let target = images::resolve(store, target_ref)?;
    let tag = tag.map(reference::normalize).transpose()?;
    let meta = store.metadata().clone();
    let base_chains: HashSet<Digest> = meta.images[&base].chain_ids().into_iter().collect();
    let target_rec = &meta.images[&target];
    let target_config = store.get_blob(&target)?;
    let index = BaseIndex::build(store, &base)?;
    let staging = store.begin_staging()?;
    let mut layers = Vec::new();
    let mut delta_ids = Vec::new();
    let mut staged = Vec::new();
    for (i, chain) in target_rec.chain_ids().iter().enumerate() {
        if base_chains.contains(chain) {
            continue;
        }
        let (payload, stats) = encode_layer(&index, &store.layer_dir(chain), &store.layer_record(chain)?, i as u32)?;
        let s = staging.unpack(Cursor::new(delta_layer_tar(&payload)?), "delta")?;
        delta_ids.push(s.record.diff_id.clone());
        staged.push(s);
        layers.push(stats);
    }
    let target_cfg: Value =
        serde_json::from_slice(&target_config).map_err(|e| Error::Corrupt(format!("config of {target}: {e}")))?;
    let target_tags = meta.tags_of(&target).join(",");
    let config_text =
        String::from_utf8(target_config).map_err(|_| Error::Unsupported("image config that is not UTF-8".into()))?;
    let config = json!({
        "architecture": target_cfg["architecture"],
        "os": target_cfg["os"],
        "created": now_rfc3339(),
        "config": {"Labels": {
            labels::BASE: base.to_string(),
            labels::CONFIG: config_text,
            labels::TAGS: target_tags,
            labels::BASE_TAGS: meta.tags_of(&base).join(","),
            labels::FORMAT: labels::FORMAT_V1,
        }},
        "rootfs": {"type": "layers", "diff_ids": delta_ids.iter().map(Digest::to_string).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).map_err(|e| Error::Corrupt(e.to_string()))?;
    staging.sync()?;
    for (s, chain) in staged.iter().zip(Digest::chain_ids(&delta_ids)) {
        staging.install(s, &chain)?;
    }
    staging.finish_installs()?;
    let id = store.put_blob(&config)?;
    let mut meta = meta;
    let size = staged.iter().map(|s| s.record.tar_size).sum();
    meta.images.insert(
        id.clone(),
        ImageRecord {
            diff_ids: delta_ids,
            size,
            last_tag_time: now_rfc3339(),
            repo_digests: Vec::new(),
            manifests: Vec::new(),
        },
    );
    if let Some(t) = tag {
        meta.tags.insert(t, id.clone());
    }
    store.commit(meta)?;
    Ok(DeltaReport {
        id,
        base,
        target,
        target_bytes: layers.iter().map(|l| l.target_bytes).sum(),
        delta_bytes: layers.iter().map(|l| l.payload_bytes).sum(),
        layers,
    })
}
