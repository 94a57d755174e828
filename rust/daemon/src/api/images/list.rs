//! GET `/images/json`: docker's ImageSummary list, filtered by dangling, reference, label, before, since.

use std::sync::Arc;

use axum::extract::State;
use axum::Extension;
use engine::store::Store;
use engine::{images, reference};
use serde_json::Value;

use super::summary::{self, ImageRow};
use crate::api::error::ApiResult;
use crate::api::filters::{glob, Filters};
use crate::api::params::Params;
use crate::api::version::ApiVersion;
use crate::api::Json;
use crate::state::Daemon;

pub const FILTERS: [&str; 5] = ["dangling", "reference", "label", "before", "since"];

pub async fn list(State(d): State<Arc<Daemon>>, Extension(v): Extension<ApiVersion>, p: Params) -> ApiResult<Json> {
    let f = p.filters(&FILTERS)?;
    let rows = d.read(move |s| filtered(s, &f)).await?;
    Ok(Json(Value::Array(rows.iter().map(|r| summary::summary(r, v, -1, -1)).collect())))
}

/// Does `pattern` match a tag ("app:1") as docker's FamiliarMatch does: the whole reference, or its name?
fn reference_matches(pattern: &str, tag: &str) -> bool {
    glob(pattern, tag) || glob(pattern, reference::split(tag).0)
}

fn created_of(store: &Store, rows: &[ImageRow], key: &str, f: &Filters) -> ApiResult<Option<i64>> {
    let Some(name) = f.get(key).first() else { return Ok(None) };
    let id = images::resolve(store, name)?;
    Ok(rows.iter().find(|r| r.id == id).map(|r| r.created))
}

fn filtered(store: &Store, f: &Filters) -> ApiResult<Vec<ImageRow>> {
    let dangling = f.bool("dangling")?;
    let rows = summary::rows(store)?;
    let before = created_of(store, &rows, "before", f)?;
    let since = created_of(store, &rows, "since", f)?;
    let patterns = f.get("reference");
    let mut out = Vec::new();
    for mut r in rows {
        if dangling.is_some_and(|want| want != r.tags.is_empty()) || !f.labels_match(&r.labels) {
            continue;
        }
        if before.is_some_and(|t| r.created >= t) || since.is_some_and(|t| r.created <= t) {
            continue;
        }
        if !patterns.is_empty() {
            // As dockerd: only the matching tags are listed, and an image with none is left out.
            r.tags.retain(|t| patterns.iter().any(|p| reference_matches(p, t)));
            if r.tags.is_empty() {
                continue;
            }
        }
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::reference_matches;

    #[test]
    fn matches_references_like_docker() {
        assert!(reference_matches("app", "app:1"));
        assert!(reference_matches("app:1", "app:1"));
        assert!(reference_matches("app:*", "app:1"));
        assert!(!reference_matches("app:2", "app:1"));
        assert!(reference_matches("localhost/*", "localhost/app:1"));
    }
}
