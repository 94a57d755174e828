//! GET `/images/{name}/json`.

use std::sync::Arc;

use engine::images;
use serde_json::json;

use crate::api::error::ApiResult;
use crate::api::version::ApiVersion;
use crate::api::Json;
use crate::state::Daemon;

pub async fn inspect(d: Arc<Daemon>, v: ApiVersion, name: String) -> ApiResult<Json> {
    let mut doc = d
        .read(move |s| {
            let id = images::resolve(s, &name)?;
            Ok(images::inspect(s, &id)?)
        })
        .await?;
    if !v.at_least(1, 44) {
        doc["VirtualSize"] = doc["Size"].clone();
    }
    if doc["Config"].is_null() {
        doc["Config"] = json!({});
    }
    Ok(Json(doc))
}
