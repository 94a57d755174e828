//! POST `/containers/{id}/attach?stream=&stdout=&stderr=&logs=`: the container's output as docker's
//! multiplexed stream, from now (or from the start of the log with `logs=1`) until the run ends. As
//! dockerd: a client that asks to upgrade (`Connection: Upgrade`, `Upgrade: tcp`, what the docker CLI
//! sends) gets `101` and the raw connection; others get a `200` streamed body. Input (stdin) is not
//! supported: containers are created without it.

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::logs::{query, MULTIPLEXED};
use super::Mgr;
use crate::api::error::{ApiError, ApiResult};
use crate::api::params::Params;
use crate::containers::deps::read_logs;
use crate::containers::output::Subscriber;
use axum::Extension;

const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

pub async fn attach(Extension(mgr): Mgr, Path(id): Path<String>, p: Params, mut req: Request) -> ApiResult<Response> {
    let ctr = mgr.get(&id)?;
    let (stdout, stderr) = (p.flag("stdout"), p.flag("stderr"));
    let (stream_live, logs) = (p.flag("stream"), p.flag("logs"));
    // Past output first (logs=1), then live frames; the replay is read before subscribing so nothing is
    // sent twice (output in between the two is lost, as with dockerd's attach).
    let mut replay: Vec<Bytes> = Vec::new();
    if logs && (stdout || stderr) {
        let mut q = query(&p, false)?;
        q.stdout = stdout;
        q.stderr = stderr;
        let ts = q.timestamps;
        let (dir, id) = (ctr.dir.clone(), ctr.id.clone());
        replay = tokio::task::spawn_blocking(move || {
            read_logs(&dir, &id, q, || true).filter_map(Result::ok).map(|l| Bytes::from(l.frame(ts, true))).collect()
        })
        .await
        .map_err(|e| ApiError::internal(format!("reading logs: {e}")))?;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    if stream_live && (stdout || stderr) {
        ctr.subscribe(Subscriber { stdout, stderr, tx });
    } else {
        drop(tx);
    }
    let upgrade = req
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if !upgrade {
        let live = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        let all = futures_util::StreamExt::map(
            futures_util::StreamExt::chain(stream::iter(replay), live),
            Ok::<_, std::io::Error>,
        );
        return Ok(([(header::CONTENT_TYPE, MULTIPLEXED)], Body::from_stream(all)).into_response());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut rx = rx;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                log::debug!("attach: upgrade failed: {e}");
                return;
            }
        };
        let mut io = TokioIo::new(upgraded);
        for b in replay {
            if io.write_all(&b).await.is_err() {
                return;
            }
        }
        while let Some(b) = rx.recv().await {
            if io.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = io.flush().await;
        let _ = io.shutdown().await;
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(RAW_STREAM));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}
