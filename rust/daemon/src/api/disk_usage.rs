//! `/system/df` (`docker system df`): images from the store; containers and volumes from their parts
//! (empty until those land). `type=` (API 1.42) limits the answer to some of image, container, volume,
//! build-cache.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use engine::store::Store;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::images::summary;
use super::params::Params;
use super::version::ApiVersion;
use super::Json;
use crate::state::Daemon;

const TYPES: [&str; 4] = ["image", "container", "volume", "build-cache"];

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/system/df", get(disk_usage))
}

async fn disk_usage(State(d): State<Arc<Daemon>>, Extension(v): Extension<ApiVersion>, p: Params) -> ApiResult<Json> {
    let types = p.all("type");
    for t in &types {
        if !TYPES.contains(t) {
            return Err(ApiError::bad_request(format!("invalid type: {t}")));
        }
    }
    let want = |t: &str| types.is_empty() || types.contains(&t);
    let mut out = serde_json::Map::new();
    if want("image") {
        let (layers_size, images) = d.read(move |s| image_usage(s, v)).await?;
        let in_use = d.containers.image_use();
        let images: Vec<Value> = images
            .into_iter()
            .map(|mut img| {
                let n = img["Id"].as_str().and_then(|id| in_use.get(id)).map_or(0, |u| u.total);
                img["Containers"] = json!(n);
                img
            })
            .collect();
        out.insert("LayersSize".into(), json!(layers_size));
        out.insert("Images".into(), json!(images));
    }
    if want("container") {
        out.insert("Containers".into(), json!(d.containers.disk_usage()));
    }
    if want("volume") {
        out.insert("Volumes".into(), json!(d.volumes.disk_usage()));
    }
    if want("build-cache") {
        out.insert("BuildCache".into(), json!([]));
    }
    Ok(Json(Value::Object(out)))
}

/// Bytes of all distinct layers, and each image with its `SharedSize` (bytes of its layers other images use).
fn image_usage(store: &Store, v: ApiVersion) -> ApiResult<(u64, Vec<Value>)> {
    let rows = summary::rows(store)?;
    let users = summary::layer_users(&rows);
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut images = Vec::new();
    for r in &rows {
        let mut shared = 0;
        for (c, size) in &r.layers {
            if users.get(c).copied().unwrap_or(0) > 1 {
                shared += size;
            }
            if seen.insert(c.clone()) {
                total += size;
            }
        }
        images.push(summary::summary(r, v, shared as i64, 0));
    }
    Ok((total, images))
}
