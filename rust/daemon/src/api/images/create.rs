//! POST `/images/create?fromImage=&tag=&platform=`: a pull, answered with docker's JSON progress stream
//! (per layer `Pulling fs layer`, `Waiting`, `Downloading`, `Verifying Checksum`, `Download complete`,
//! `Extracting`, `Pull complete`, `Already exists`, then `Digest:` and `Status:`). An error after the stream
//! started is in-band, as dockerd sends it; closing the connection cancels the pull.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use distribution::platform::Platform;
use distribution::pull::{pull, PullRequest};
use distribution::Reference;
use tokio_util::sync::CancellationToken;

use super::progress::JsonProgress;
use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::registry_auth::credentials;
use crate::api::stream::streamed;
use crate::state::Daemon;

pub async fn create(
    axum::extract::State(d): axum::extract::State<Arc<Daemon>>,
    p: Params,
    headers: HeaderMap,
) -> Response {
    let res = (|| {
        if p.get("fromSrc").is_some() {
            return Err(ApiError::bad_request(
                "importing a root file system (fromSrc) is not supported: use image load",
            ));
        }
        let from = p.get("fromImage").ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
        let reference = Reference::parse(from)?.with_tag_param(p.get("tag").unwrap_or(""))?;
        let platform = p.get("platform").map(Platform::parse).transpose()?;
        Ok(PullRequest { reference, platform, creds: credentials(&headers)? })
    })();
    let req = match res {
        Ok(r) => r,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    streamed(move |msgs| {
        let cancel = CancellationToken::new();
        msgs.cancel_when_closed(cancel.clone());
        super::progress::cancel_on_shutdown(&d, cancel.clone());
        let rt = tokio::runtime::Handle::current();
        let res = pull(&rt, &d.registries, d.as_ref(), &req, &JsonProgress(msgs), &cancel);
        cancel.cancel(); // ends the watcher task
        let pulled = res.map_err(|e| {
            log::info!("pull of {} failed: {e}", req.reference);
            match e {
                // As dockerd: not a 401, which would make the docker CLI prompt for a login.
                distribution::Error::Unauthorized(m) => ApiError::not_found(format!(
                    "pull access denied for {}, repository does not exist or may require 'docker login': {m}",
                    req.reference.familiar_repository()
                )),
                e => ApiError::from(e),
            }
        })?;
        let name = pulled.tag.clone().unwrap_or_else(|| pulled.repo_digest.clone());
        d.events.image("pull", &name, &name);
        Ok(())
    })
    .await
}
