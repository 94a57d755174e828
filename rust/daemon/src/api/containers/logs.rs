//! GET `/containers/{id}/logs?follow=&stdout=&stderr=&since=&until=&timestamps=&tail=`: the json-file log
//! in docker's multiplexed stream (8-byte header per frame); `follow` ends when the container stops.

use std::io::Write;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Mgr;
use crate::api::error::{ApiError, ApiResult};
use crate::api::params::Params;
use crate::api::stream::body_channel;
use crate::containers::deps::{read_logs, LogConfig, LogDriver, LogQuery};
use crate::logs::READ_NOT_SUPPORTED;
use engine::time;
use axum::Extension;

pub const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

fn time_param(p: &Params, key: &str) -> ApiResult<Option<i64>> {
    match p.get(key) {
        None | Some("0") => Ok(None),
        Some(v) => time::parse_timestamp(v)
            .map(|t| Some(t as i64))
            .ok_or_else(|| ApiError::bad_request(format!("invalid value for \"{key}\": {v:?}"))),
    }
}

/// The query of `logs` (and of `attach?logs=1`).
pub fn query(p: &Params, follow: bool) -> ApiResult<LogQuery> {
    let tail = match p.get("tail") {
        None | Some("all") => None,
        Some(t) => {
            Some(t.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid value for \"tail\": {t:?}")))?)
                .filter(|t| *t >= 0)
                .map(|t| t as usize)
        }
    };
    Ok(LogQuery {
        follow,
        stdout: p.flag("stdout"),
        stderr: p.flag("stderr"),
        since: time_param(p, "since")?,
        until: time_param(p, "until")?,
        tail,
        timestamps: p.flag("timestamps"),
    })
}

pub async fn logs(Extension(mgr): Mgr, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let ctr = mgr.get(&id)?;
    let q = query(&p, p.flag("follow"))?;
    if !q.stdout && !q.stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let rec = ctr.record();
    let driver =
        LogConfig::from_host_config(&rec.host_config["LogConfig"]).map(|c| c.driver).unwrap_or(LogDriver::JsonFile);
    if !driver.can_read() {
        return Err(ApiError::new(axum::http::StatusCode::NOT_IMPLEMENTED, READ_NOT_SUPPORTED));
    }
    let (mut w, body) = body_channel();
    let (follow, timestamps) = (q.follow, q.timestamps);
    let (dir, id) = (ctr.dir.clone(), ctr.id.clone());
    let (c2, m2) = (ctr.clone(), mgr.clone());
    tokio::task::spawn_blocking(move || {
        let stop = move || !c2.is_active() || m2.is_shutting_down();
        for line in read_logs(&dir, &id, q, stop) {
            let line = match line {
                Ok(l) => l,
                Err(e) => return w.fail(format!("reading logs: {e}")),
            };
            let f = line.frame(timestamps, true);
            if w.write_all(&f).is_err() || (follow && w.flush().is_err()) {
                return;
            }
        }
        let _ = w.flush();
    });
    Ok(([(header::CONTENT_TYPE, MULTIPLEXED)], body).into_response())
}
