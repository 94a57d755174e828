//! `X-Registry-Auth`, as the docker CLI, dockerode and the balena supervisor send it, read once into typed
//! credentials.

use axum::http::HeaderMap;
use distribution::auth::Credentials;

use super::error::ApiError;

pub fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    match headers.get("x-registry-auth").map(|v| v.to_str()) {
        None => Ok(Credentials::default()),
        Some(Ok(v)) => Ok(Credentials::from_x_registry_auth(v)?),
        Some(Err(_)) => Err(ApiError::bad_request("X-Registry-Auth: not ASCII")),
    }
}
