//! POST `/images/{name}/push?tag=`: pushes the named image (every tag of the repository when `tag` is
//! empty, as dockerd does), with docker's JSON progress stream; errors after the start are in-band.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use distribution::push::{push, PushRequest};
use distribution::Reference;
use tokio_util::sync::CancellationToken;

use super::progress::JsonProgress;
use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::registry_auth::credentials;
use crate::api::stream::streamed;
use crate::state::Daemon;

pub async fn push_image(d: Arc<Daemon>, name: String, p: Params, headers: HeaderMap) -> Response {
    let creds = match credentials(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let tag = p.get("tag").unwrap_or("").to_owned();
    let base = match Reference::parse(&name) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let refs: Vec<Reference> = if !tag.is_empty() {
        match base.clone().with_tag_param(&tag) {
            Ok(r) => vec![r],
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else if name.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        vec![base.clone()]
    } else {
        // Every local tag of the repository.
        let repo = base.familiar_repository();
        let tags = d
            .read(move |s| {
                Ok(s.metadata()
                    .tags
                    .keys()
                    .filter(|t| engine::reference::split(t).0 == repo)
                    .cloned()
                    .collect::<Vec<_>>())
            })
            .await;
        match tags {
            Ok(t) if t.is_empty() => return ApiError::no_such_image(&name).into_response(),
            Ok(t) => t.iter().filter_map(|t| Reference::parse(t).ok()).collect(),
            Err(e) => return e.into_response(),
        }
    };
    streamed(move |msgs| {
        let cancel = CancellationToken::new();
        msgs.cancel_when_closed(cancel.clone());
        super::progress::cancel_on_shutdown(&d, cancel.clone());
        let rt = tokio::runtime::Handle::current();
        let mut res = Ok(());
        for reference in refs {
            let req = PushRequest { reference, creds: creds.clone() };
            match push(&rt, &d.registries, d.as_ref(), &req, &JsonProgress(msgs), &cancel) {
                Ok(p) => d.events.image("push", &req.reference.to_string(), &p.tag),
                Err(e) => {
                    log::info!("push of {} failed: {e}", req.reference);
                    res = Err(ApiError::from(e));
                    break;
                }
            }
        }
        cancel.cancel();
        res
    })
    .await
}
