//! GET `/images/get?names=a&names=b` and `/images/{name}/get`: the archive is written by the engine on a
//! blocking thread straight into the response through a bounded channel (no temporary file). Saving uses its
//! own read-only store handle, so it never holds up loads, tags or removals.

use std::io::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use engine::archive::SaveRequest;
use engine::store::Store;
use engine::{images, reference};
use tokio::sync::oneshot;

use crate::api::error::{ApiError, ApiResult};
use crate::api::params::Params;
use crate::api::stream::body_channel;
use crate::state::Daemon;

pub async fn save_many(State(d): State<Arc<Daemon>>, p: Params) -> Response {
    let names = p.all("names").into_iter().filter(|n| !n.is_empty()).map(str::to_owned).collect();
    save(d, names).await
}

/// What to save: an image saved by tag records that tag, saved by ID none (as docker does).
fn requests(store: &Store, names: &[String]) -> ApiResult<Vec<SaveRequest>> {
    let mut out: Vec<SaveRequest> = Vec::new();
    for name in names {
        let id = images::resolve(store, name)?;
        let tag = reference::normalize(name).ok().filter(|t| store.metadata().tags.get(t) == Some(&id));
        match out.iter_mut().find(|q| q.id == id) {
            Some(q) => q.tags.extend(tag.filter(|t| !q.tags.contains(t))),
            None => out.push(SaveRequest { id, tags: tag.into_iter().collect() }),
        }
    }
    Ok(out)
}

pub async fn save(d: Arc<Daemon>, names: Vec<String>) -> Response {
    if names.is_empty() {
        return ApiError::bad_request("no image names given (names=…)").into_response();
    }
    let (mut w, body) = body_channel();
    let (ready_tx, ready_rx) = oneshot::channel::<ApiResult<()>>();
    tokio::task::spawn_blocking(move || {
        let prepared = Store::open(&d.data_root, engine::store::Access::Read)
            .map_err(ApiError::from)
            .and_then(|s| requests(&s, &names).map(|r| (s, r)));
        let (store, reqs) = match prepared {
            Ok(x) => x,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        let res = engine::archive::save(&store, &reqs, &mut w).map(|_| ()).map_err(|e| e.to_string());
        match res.and_then(|()| w.flush().map_err(|e| e.to_string())) {
            Ok(()) => drop(w),
            Err(e) => {
                log::warn!("image save failed mid-stream: {e}");
                w.fail(e);
            }
        }
        drop(store);
        d.collect_garbage();
    });
    match ready_rx.await {
        Ok(Ok(())) => ([(header::CONTENT_TYPE, "application/x-tar")], body).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::internal("image save worker failed").into_response(),
    }
}
