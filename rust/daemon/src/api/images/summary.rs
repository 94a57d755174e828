//! One pass over the store for listings (`/images/json`, `/system/df`): each image with what docker's
//! ImageSummary reports.

use std::collections::HashMap;

use engine::digest::Digest;
use engine::store::Store;
use serde_json::{json, Map, Value};

use crate::api::error::ApiError;
use crate::api::version::ApiVersion;
use engine::time;

pub struct ImageRow {
    pub id: Digest,
    /// Normalised tags ("app:1"); empty for a dangling image.
    pub tags: Vec<String>,
    /// `repository@sha256:…` it was pulled or pushed as.
    pub repo_digests: Vec<String>,
    /// Seconds since the epoch, from the config's `created` (0 when it has none).
    pub created: i64,
    pub size: u64,
    pub labels: Map<String, Value>,
    /// ChainIDs with their layer's size, bottom first.
    pub layers: Vec<(Digest, u64)>,
}

pub fn rows(store: &Store) -> Result<Vec<ImageRow>, ApiError> {
    let meta = store.metadata();
    let mut out = Vec::with_capacity(meta.images.len());
    for (id, rec) in &meta.images {
        let cfg: Value = serde_json::from_slice(&store.get_blob(id)?)
            .map_err(|e| ApiError::internal(format!("config of image {id}: {e}")))?;
        let created = cfg["created"].as_str().and_then(time::parse_rfc3339).unwrap_or(0);
        let labels = cfg["config"]["Labels"].as_object().cloned().unwrap_or_default();
        let layers = rec
            .chain_ids()
            .into_iter()
            .map(|c| store.layer_record(&c).map(|r| (c, r.tar_size)))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(ImageRow {
            id: id.clone(),
            tags: meta.tags_of(id),
            repo_digests: rec.repo_digests.clone(),
            created,
            size: rec.size,
            labels,
            layers,
        });
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// ChainID → how many images use that layer.
pub fn layer_users(rows: &[ImageRow]) -> HashMap<&Digest, usize> {
    let mut users = HashMap::new();
    for r in rows {
        for (c, _) in &r.layers {
            *users.entry(c).or_insert(0) += 1;
        }
    }
    users
}

/// docker's ImageSummary. `shared_size` and `containers` are -1 where not computed, as dockerd does.
pub fn summary(row: &ImageRow, version: ApiVersion, shared_size: i64, containers: i64) -> Value {
    let mut v = json!({
        "Id": row.id.to_string(),
        "ParentId": "",
        "RepoTags": row.tags,
        "RepoDigests": row.repo_digests,
        "Created": row.created,
        "Size": row.size,
        "SharedSize": shared_size,
        "Labels": row.labels,
        "Containers": containers,
    });
    if !version.at_least(1, 44) {
        v["VirtualSize"] = json!(row.size);
    }
    v
}
