//! The Docker Engine API. Each part of the daemon is a module with `fn routes() -> Router<Arc<Daemon>>`,
//! merged in [`router`]; containers (`containers.rs`) and volumes (`volumes.rs`) plug in the same way.
//! Whatever no module serves answers docker's 404 `{"message":"page not found"}`.

pub mod auth;
pub mod containers;
pub mod disk_usage;
pub mod distribution;
pub mod error;
pub mod events;
pub mod filters;
pub mod images;
pub mod json_body;
pub mod params;
pub mod registry_auth;
pub mod stream;
pub mod system;
pub mod version;
pub mod volumes;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tower::Layer;

use crate::state::Daemon;
pub use error::ApiError;

/// A JSON response (200).
pub struct Json(pub Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], format!("{}\n", self.0)).into_response()
    }
}

/// 201 with no body (tag), as dockerd answers.
pub fn created() -> Response {
    StatusCode::CREATED.into_response()
}

async fn page_not_found() -> ApiError {
    ApiError::page_not_found()
}

/// The routes of every part of the daemon.
pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(auth::routes())
        .merge(images::routes())
        .merge(distribution::routes())
        .merge(disk_usage::routes())
        .merge(events::routes())
        .merge(volumes::routes())
        .merge(containers::routes())
        .fallback(page_not_found)
        .method_not_allowed_fallback(page_not_found)
        .with_state(d)
}

/// The service to serve: API versioning in front of the router (it rewrites `/vX.Y/…` paths, so it must run
/// before routing, hence around the router rather than as one of its layers).
pub fn app(d: Arc<Daemon>) -> Router {
    let versioned = axum::middleware::from_fn(version::middleware).layer(router(d));
    Router::new().fallback_service(versioned)
}
