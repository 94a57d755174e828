//! GET `/events?since=&until=&filters=`: kept events from `since`, then live ones until `until` (or until the
//! client leaves, or the daemon stops), one JSON object per line.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use super::error::{ApiError, ApiResult};
use super::filters::Filters;
use super::params::Params;
use super::stream::body_from;
use crate::events::Event;
use crate::state::Daemon;
use engine::time;

/// docker's event filters; kinds of object are matched by ID or name.
const FILTERS: [&str; 14] =
    ["config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"];
const OBJECT_KINDS: [&str; 9] = ["config", "container", "daemon", "network", "node", "plugin", "secret", "service", "volume"];

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/events", get(events))
}

fn time_param(p: &Params, key: &str) -> ApiResult<Option<i128>> {
    p.get(key)
        .map(|v| time::parse_timestamp(v).ok_or_else(|| ApiError::bad_request(format!("invalid {key} value {v:?}"))))
        .transpose()
}

fn any(f: &Filters, key: &str, pred: impl Fn(&str) -> bool) -> bool {
    let vals = f.get(key);
    vals.is_empty() || vals.iter().any(|v| pred(v))
}

fn image_matches(e: &Event, want: &str) -> bool {
    let normalized = engine::reference::normalize(want).ok();
    let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
    let names = [attr("name"), attr("image")];
    (e.kind == "image" && (e.actor.id == want || e.actor.id.strip_prefix("sha256:").is_some_and(|h| h.starts_with(want))))
        || names.iter().flatten().any(|n| *n == want || Some(*n) == normalized.as_deref())
}

pub fn matches(f: &Filters, e: &Event) -> bool {
    any(f, "type", |t| t == e.kind)
        && any(f, "event", |a| e.action == a || e.action.strip_prefix(a).is_some_and(|r| r.starts_with(':')))
        && any(f, "scope", |s| s == e.scope)
        && any(f, "image", |i| image_matches(e, i))
        && f.get("label").iter().all(|l| match l.split_once('=') {
            Some((k, v)) => e.actor.attributes.get(k).is_some_and(|x| x == v),
            None => e.actor.attributes.contains_key(l.as_str()),
        })
        && OBJECT_KINDS.iter().all(|kind| {
            any(f, kind, |v| e.kind == *kind && (e.actor.id.starts_with(v) || e.actor.attributes.get("name").is_some_and(|n| n == v)))
        })
}

fn line(e: &Event) -> Bytes {
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    Bytes::from(s)
}

async fn events(State(d): State<Arc<Daemon>>, p: Params) -> ApiResult<Response> {
    let f = p.filters(&FILTERS)?;
    let since = time_param(&p, "since")?;
    let until = time_param(&p, "until")?;
    let (past, mut live) = d.events.subscribe();
    let (now_s, now_n) = time::now();
    let now = i128::from(now_s) * 1_000_000_000 + i128::from(now_n);
    let in_window = move |e: &Event| since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u);
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(64);
    let mut shutdown = d.shutdown_signal();
    tokio::spawn(async move {
        if *shutdown.borrow_and_update() {
            return;
        }
        if since.is_some() {
            for e in past.iter().filter(|e| in_window(e) && matches(&f, e)) {
                if tx.send(Ok(line(e))).await.is_err() {
                    return;
                }
            }
        }
        let wait = match until {
            Some(u) if u <= now => return,
            Some(u) => Some(Duration::from_nanos(u64::try_from(u - now).unwrap_or(u64::MAX))),
            None => None,
        };
        let deadline = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(100 * 365 * 86_400)));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(e) if in_window(&e) && matches(&f, &e) => {
                        if tx.send(Ok(line(&e))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => log::warn!("events client fell behind: {n} events dropped"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = &mut deadline, if wait.is_some() => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body_from(rx)).into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn filters_events_like_docker() {
        let tag = Event::new("image", "tag", "sha256:abcdef", BTreeMap::from([("name".into(), "app:2".into())]));
        let f = |j: &str| Filters::parse(Some(j)).unwrap();
        assert!(matches(&f(r#"{"type":{"image":true}}"#), &tag));
        assert!(!matches(&f(r#"{"type":["container"]}"#), &tag));
        assert!(matches(&f(r#"{"event":["tag","load"]}"#), &tag));
        assert!(!matches(&f(r#"{"event":["delete"]}"#), &tag));
        assert!(matches(&f(r#"{"image":["app:2"]}"#), &tag));
        assert!(matches(&f(r#"{"image":["abcd"]}"#), &tag));
        assert!(!matches(&f(r#"{"image":["other"]}"#), &tag));
        assert!(!matches(&f(r#"{"container":["x"]}"#), &tag));
    }
}
