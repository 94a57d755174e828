//! `/images/…`. Image names may contain slashes (`/images/localhost/app:1/json`), so, as in dockerd's
//! router, everything after `/images/` is captured and the operation is read off its end.

pub mod create;
pub mod delta;
pub mod inspect;
pub mod list;
pub mod load;
pub mod progress;
pub mod push;
pub mod remove;
pub mod save;
pub mod summary;
pub mod tag;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::error::ApiError;
use super::params::Params;
use super::version::ApiVersion;
use crate::state::Daemon;

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/images/json", get(list::list))
        .route("/images/load", axum::routing::post(load::load))
        .route("/images/get", get(save::save_many))
        .route("/images/delta", axum::routing::post(delta::delta))
        .route("/images/create", axum::routing::post(create::create))
        .route("/images/{*rest}", get(get_named).post(post_named).delete(remove::remove))
}

/// GET `/images/{name}/json` and `/images/{name}/get`.
async fn get_named(
    State(d): State<Arc<Daemon>>,
    Extension(v): Extension<ApiVersion>,
    Path(rest): Path<String>,
) -> Response {
    if let Some(name) = rest.strip_suffix("/json").filter(|n| !n.is_empty()) {
        return inspect::inspect(d, v, name.to_owned()).await.into_response();
    }
    if let Some(name) = rest.strip_suffix("/get").filter(|n| !n.is_empty()) {
        return save::save(d, vec![name.to_owned()]).await;
    }
    ApiError::page_not_found().into_response()
}

/// POST `/images/{name}/tag` and `/images/{name}/push`.
async fn post_named(State(d): State<Arc<Daemon>>, Path(rest): Path<String>, p: Params, headers: HeaderMap) -> Response {
    if let Some(name) = rest.strip_suffix("/push").filter(|n| !n.is_empty()) {
        return push::push_image(d, name.to_owned(), p, headers).await;
    }
    match rest.strip_suffix("/tag").filter(|n| !n.is_empty()) {
        Some(name) => tag::tag(d, name.to_owned(), p).await.into_response(),
        None => ApiError::page_not_found().into_response(),
    }
}
