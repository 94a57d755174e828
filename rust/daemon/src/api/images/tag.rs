//! POST `/images/{name}/tag?repo=&tag=`: 201, and a `tag` event.

use std::sync::Arc;

use axum::response::Response;
use engine::{images, reference};

use crate::api::error::{ApiError, ApiResult};
use crate::api::params::Params;
use crate::state::Daemon;

pub async fn tag(d: Arc<Daemon>, name: String, p: Params) -> ApiResult<Response> {
    let repo =
        p.get("repo").ok_or_else(|| ApiError::bad_request("repository name must have at least one component"))?;
    let target = match p.get("tag") {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    };
    let (id, normalized) = d
        .write(move |s| {
            let id = images::resolve(s, &name)?;
            let normalized = reference::normalize(&target)?;
            images::tag(s, &id.to_string(), &normalized)?;
            Ok((id, normalized))
        })
        .await?;
    d.events.image("tag", &id.to_string(), &normalized);
    Ok(crate::api::created())
}
