//! POST `/containers/create?name=`: 201 `{"Id": …, "Warnings": []}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::images;
use engine::store::LayerFiles;
use serde_json::{json, Value};

use super::Mgr;
use crate::api::error::{ApiError, ApiResult};
use crate::api::json_body::JsonBody;
use crate::api::params::Params;
use crate::containers::create::{validate, ImageInfo};
use crate::state::{blocking, Daemon};
use axum::Extension;

pub async fn create(
    State(d): State<Arc<Daemon>>,
    Extension(mgr): Mgr,
    p: Params,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    validate(&body)?;
    let name = p.get("name").map(str::to_owned);
    let image_name = body["Image"].as_str().unwrap_or("").to_owned();
    // The image's layers are leased under the container's ID while the store is open, so that no `rmi -f`
    // can take them from the container, now or later (engine::store leases).
    let id = mgr.new_id();
    let lease = id.clone();
    let image = d
        .read(move |s| {
            let id = images::resolve(s, &image_name).map_err(|e| match e {
                engine::error::Error::ImageNotFound(_) => ApiError::no_such_image(&image_name),
                other => other.into(),
            })?;
            let cfg: Value = serde_json::from_slice(&s.get_blob(&id)?)
                .map_err(|e| ApiError::internal(format!("config of image {id}: {e}")))?;
            let chains = s.metadata().images[&id].chain_ids();
            s.add_lease(&lease, &chains)?;
            let lower_dirs = chains.iter().rev().map(|c| LayerFiles::diff_dir(&s.layer_dir(c))).collect();
            Ok(ImageInfo { id: id.to_string(), config: cfg.get("config").cloned().unwrap_or(Value::Null), lower_dirs })
        })
        .await?;
    let created = {
        let id = id.clone();
        blocking(move || mgr.create(&id, name.as_deref(), &body, image)).await
    };
    if let Err(e) = created {
        if let Err(le) = d.read(move |s| Ok(s.remove_lease(&id)?)).await {
            log::warn!("container create failed; releasing its lease: {}", le.message);
        }
        return Err(e);
    }
    Ok((StatusCode::CREATED, crate::api::Json(json!({"Id": id, "Warnings": []}))).into_response())
}
