//! GET `/distribution/{name}/json`: the registry's descriptor of a reference and its platforms, without
//! pulling anything.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use distribution::Reference;
use tokio_util::sync::CancellationToken;

use super::error::ApiResult;
use super::registry_auth::credentials;
use super::{ApiError, Json};
use crate::state::Daemon;

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/distribution/{*rest}", get(inspect))
}

async fn inspect(State(d): State<Arc<Daemon>>, Path(rest): Path<String>, headers: HeaderMap) -> ApiResult<Json> {
    let name = rest.strip_suffix("/json").filter(|n| !n.is_empty()).ok_or_else(ApiError::page_not_found)?;
    let reference = Reference::parse(name)?;
    let creds = credentials(&headers)?;
    let cancel = CancellationToken::new();
    let info = distribution::remote::inspect(&d.registries, &reference, &creds, &cancel).await?;
    Ok(Json(serde_json::to_value(info).map_err(|e| ApiError::internal(e.to_string()))?))
}
