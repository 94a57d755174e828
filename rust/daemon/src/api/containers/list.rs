//! GET `/containers/json?all=&limit=&size=&filters=` and GET `/containers/{id}/json?size=`.

use std::sync::Arc;

use axum::extract::{Path, State};
use engine::{images, reference};
use serde_json::Value;

use super::Mgr;
use crate::api::error::{ApiError, ApiResult};
use crate::api::filters::Filters;
use crate::api::params::Params;
use crate::api::Json;
use crate::containers::record::Record;
use crate::containers::view;
use crate::state::{blocking, Daemon};
use axum::Extension;

const FILTERS: [&str; 11] =
    ["id", "name", "label", "status", "ancestor", "exited", "before", "since", "volume", "network", "health"];
const STATUSES: [&str; 7] = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

/// docker matches `name` as a regular expression against "/name"; anchors and plain text cover its use.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    let candidates = [name, name.trim_start_matches('/')];
    candidates.iter().any(|n| match (start, end) {
        (true, true) => *n == p,
        (true, false) => n.starts_with(p),
        (false, true) => n.ends_with(p),
        (false, false) => n.contains(p),
    })
}

struct Query {
    f: Filters,
    ancestors: Vec<String>,
    before: Option<String>,
    since: Option<String>,
}

fn matches(q: &Query, rec: &Record) -> bool {
    let f = &q.f;
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
        let vals = f.get(key);
        vals.is_empty() || vals.iter().any(|v| pred(v))
    };
    any("id", &|v| rec.id.starts_with(v))
        && any("name", &|v| name_matches(v, &rec.name))
        && f.labels_match(&rec.labels())
        && any("status", &|v| rec.state.status == v)
        && any("exited", &|v| rec.has_been_started && !rec.state.running && v.parse() == Ok(rec.state.exit_code))
        && (q.f.get("ancestor").is_empty()
            || q.ancestors.contains(&rec.image)
            || f.get("ancestor").iter().any(|a| {
                *a == rec.image_name || reference::normalize(a).ok() == reference::normalize(&rec.image_name).ok()
            }))
        && any("volume", &|v| {
            rec.mounts.iter().any(|m| m.name == v || m.destination == v || m.source.to_string_lossy() == v)
        })
        && any("network", &|v| rec.host_config["NetworkMode"] == v)
        && f.get("health").iter().all(|h| h == "none")
}

pub async fn list(State(d): State<Arc<Daemon>>, Extension(mgr): Mgr, p: Params) -> ApiResult<Json> {
    let f = p.filters(&FILTERS)?;
    for s in f.get("status") {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter 'status={s}'")));
        }
    }
    for e in f.get("exited") {
        e.parse::<i32>().map_err(|_| ApiError::bad_request(format!("invalid filter 'exited={e}'")))?;
    }
    let wanted = f.get("ancestor").to_vec();
    let ancestors = if wanted.is_empty() {
        Vec::new()
    } else {
        d.read(move |s| Ok(wanted.iter().filter_map(|a| images::resolve(s, a).ok()).map(|id| id.to_string()).collect()))
            .await?
    };
    let all = p.flag("all");
    let size = p.flag("size");
    let limit = p.get("limit").and_then(|l| l.parse::<i64>().ok()).filter(|l| *l > 0);
    let q = Query { before: f.get("before").first().cloned(), since: f.get("since").first().cloned(), f, ancestors };
    let rows = blocking(move || {
        let ctrs = mgr.list();
        let created_of = |key: &Option<String>| -> ApiResult<Option<String>> {
            match key {
                None => Ok(None),
                Some(k) => Ok(Some(mgr.get(k)?.record().created)),
            }
        };
        let before = created_of(&q.before)?;
        let since = created_of(&q.since)?;
        let mut out = Vec::new();
        for c in ctrs {
            let rec = c.record();
            // Without `all`, only running ones; with filters on status, what they say.
            let listed = all
                || rec.state.running
                || !q.f.get("status").is_empty()
                || limit.is_some()
                || before.is_some()
                || since.is_some();
            if !listed || !matches(&q, &rec) {
                continue;
            }
            if before.as_ref().is_some_and(|b| rec.created >= *b) || since.as_ref().is_some_and(|s| rec.created <= *s) {
                continue;
            }
            let mut v = view::summary(&rec);
            if size {
                let s = view::dir_size(&c.dir.join("rootfs/upper"));
                v["SizeRw"] = s.into();
                v["SizeRootFs"] = s.into();
            }
            out.push(v);
            if limit.is_some_and(|l| out.len() as i64 >= l) {
                break;
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(Value::Array(rows)))
}

pub async fn inspect(Extension(mgr): Mgr, Path(id): Path<String>, p: Params) -> ApiResult<Json> {
    let ctr = mgr.get(&id)?;
    let size = p.flag("size");
    blocking(move || {
        let rec = ctr.record();
        let mut v = view::inspect(&ctr.dir, &rec);
        if size {
            let s = view::dir_size(&ctr.dir.join("rootfs/upper"));
            v["SizeRw"] = s.into();
            v["SizeRootFs"] = s.into();
        }
        Ok(Json(v))
    })
    .await
}
