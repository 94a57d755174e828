//! POST `/auth` (`docker login`): the credentials are checked against the registry, as dockerd does; nothing
//! is stored (clients send `X-Registry-Auth` with each pull and push).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use distribution::auth::Credentials;
use serde_json::json;

use super::error::ApiResult;
use super::Json;
use crate::state::Daemon;

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/auth", post(login))
}

async fn login(State(d): State<Arc<Daemon>>, body: Bytes) -> ApiResult<Json> {
    let creds = Credentials::from_json(&body)?;
    let server = creds.server_address.clone().unwrap_or_default();
    distribution::remote::login(&d.registries, &server, &creds).await?;
    log::info!(
        "login to {} as {} succeeded",
        if server.is_empty() { "docker.io" } else { &server },
        creds.username.as_deref().unwrap_or("")
    );
    Ok(Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})))
}
