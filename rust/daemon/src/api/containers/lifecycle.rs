//! POST `/containers/{id}/start|stop|kill|restart|wait`, DELETE `/containers/{id}`, POST
//! `/containers/prune`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde_json::{json, Value};

use super::Mgr;
use crate::api::error::{ApiError, ApiResult};
use crate::api::params::Params;
use crate::api::Json;
use crate::containers::{parse_signal, Manager, WaitState};
use crate::state::{blocking, Daemon};
use engine::time;
use axum::Extension;

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

fn timeout(p: &Params) -> ApiResult<Option<i64>> {
    p.get("t")
        .or(p.get("timeout"))
        .map(|t| t.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid value for t: {t}"))))
        .transpose()
}

pub async fn start(Extension(mgr): Mgr, Path(id): Path<String>) -> ApiResult<Response> {
    let ctr = mgr.get(&id)?;
    let started = blocking(move || mgr.start(&ctr)).await?;
    Ok(if started { no_content() } else { not_modified() })
}

pub async fn stop(Extension(mgr): Mgr, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let t = timeout(&p)?;
    let sig = p.get("signal").map(parse_signal).transpose().map_err(ApiError::bad_request)?;
    let ctr = mgr.get(&id)?;
    let stopped = blocking(move || mgr.stop(&ctr, t, sig)).await?;
    Ok(if stopped { no_content() } else { not_modified() })
}

pub async fn kill(Extension(mgr): Mgr, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let sig = parse_signal(p.get("signal").unwrap_or("SIGKILL")).map_err(ApiError::bad_request)?;
    let ctr = mgr.get(&id)?;
    blocking(move || mgr.kill(&ctr, sig)).await?;
    Ok(no_content())
}

pub async fn restart(Extension(mgr): Mgr, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let t = timeout(&p)?;
    let ctr = mgr.get(&id)?;
    blocking(move || mgr.restart(&ctr, t)).await?;
    Ok(no_content())
}

pub async fn remove(Extension(mgr): Mgr, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    if p.flag("link") {
        return Err(ApiError::bad_request("links are not supported"));
    }
    let (force, volumes) = (p.flag("force"), p.flag("v"));
    let ctr = mgr.get(&id)?;
    blocking(move || mgr.remove(&ctr, force, volumes)).await?;
    Ok(no_content())
}

/// POST `/containers/{id}/wait?condition=`: the headers go out at once (the docker CLI waits for them
/// before it starts the container), the body `{"StatusCode": n, "Error": null}` when the condition is met.
pub async fn wait(
    State(d): State<Arc<Daemon>>,
    Extension(mgr): Mgr,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let condition = p.get("condition").unwrap_or("not-running").to_owned();
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!("invalid condition: \"{condition}\"")));
    }
    let ctr = mgr.get(&id)?;
    let mut rx = ctr.wait_state();
    let first: WaitState = *rx.borrow_and_update();
    let mut shutdown = d.shutdown_signal();
    drop(ctr);
    let done = move |s: &WaitState| match condition.as_str() {
        "removed" => s.removed,
        "next-exit" => s.exits > first.exits || s.removed,
        _ => !first.running || s.exits > first.exits || s.removed,
    };
    let body = stream::once(async move {
        let res = loop {
            let s = *rx.borrow_and_update();
            if done(&s) {
                break json!({"StatusCode": s.code, "Error": null});
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() {
                    break json!({"StatusCode": s.code, "Error": null});
                },
                _ = shutdown.wait_for(|s| *s) => {
                    break json!({"StatusCode": -1, "Error": {"Message": "the daemon is shutting down"}});
                }
            }
        };
        Ok::<_, std::io::Error>(Bytes::from(format!("{res}\n")))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

fn keep_for_filters(f: &crate::api::filters::Filters, rec: &crate::containers::record::Record) -> ApiResult<bool> {
    let labels = rec.labels();
    if !f.labels_match(&labels) {
        return Ok(true);
    }
    for l in f.get("label!") {
        let hit = match l.split_once('=') {
            Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
            None => labels.contains_key(l.as_str()),
        };
        if hit {
            return Ok(true);
        }
    }
    if let Some(u) = f.get("until").first() {
        let until =
            time::parse_timestamp(u).ok_or_else(|| ApiError::bad_request(format!("invalid until value {u:?}")))?;
        let created = time::parse_rfc3339(&rec.created).unwrap_or(0);
        if i128::from(created) * 1_000_000_000 >= until {
            return Ok(true);
        }
    }
    Ok(false)
}

pub async fn prune(Extension(mgr): Mgr, p: Params) -> ApiResult<Json> {
    let f = p.filters(&["label", "label!", "until"])?;
    let removed = blocking(move || {
        let mut err = None;
        let out = prune_with(&mgr, |rec| match keep_for_filters(&f, rec) {
            Ok(k) => k,
            Err(e) => {
                err = Some(e);
                true
            }
        });
        err.map_or(Ok(out), Err)
    })
    .await?;
    let ids: Vec<&String> = removed.iter().map(|(id, _)| id).collect();
    let space: u64 = removed.iter().map(|(_, s)| s).sum();
    Ok(Json(
        json!({"ContainersDeleted": if ids.is_empty() { Value::Null } else { json!(ids) }, "SpaceReclaimed": space}),
    ))
}

fn prune_with(mgr: &Arc<Manager>, keep: impl FnMut(&crate::containers::record::Record) -> bool) -> Vec<(String, u64)> {
    let keep = std::sync::Mutex::new(keep);
    mgr.prune(|r| (keep.lock().unwrap_or_else(|e| e.into_inner()))(r))
}
