//! DELETE `/images/{name}?force=`: `[{"Untagged": …}, {"Deleted": …}]`, with `untag`/`delete` events.
//! An image that containers use is refused (409) when removing would delete it, as dockerd does.

use std::sync::Arc;

use axum::extract::{Path, State};
use engine::digest::Digest;
use engine::images::{self, Removed};
use engine::reference;
use engine::store::Store;
use serde_json::{json, Value};

use crate::api::error::{ApiError, ApiResult};
use crate::api::params::Params;
use crate::api::Json;
use crate::backends::ImageUse;
use crate::state::Daemon;

pub async fn remove(State(d): State<Arc<Daemon>>, Path(name): Path<String>, p: Params) -> ApiResult<Json> {
    let force = p.flag("force");
    let in_use = d.containers.image_use();
    let (id, removed) = d
        .write(move |s| {
            let id = images::resolve(s, &name)?;
            if let Some(u) = in_use.get(&id.to_string()) {
                check_in_use(s, &name, &id, *u, force)?;
            }
            Ok((id.clone(), images::remove(s, &name, force)?))
        })
        .await?;
    let mut out = Vec::new();
    for r in removed {
        match r {
            Removed::Untagged(t) => {
                d.events.image("untag", &id.to_string(), &t);
                out.push(json!({ "Untagged": t }));
            }
            Removed::Deleted(deleted) => {
                d.events.image("delete", &deleted.to_string(), &deleted.to_string());
                out.push(json!({ "Deleted": deleted.to_string() }));
            }
        }
    }
    Ok(Json(Value::Array(out)))
}

/// Refuses to delete an image containers use: never while one runs, without `force` while stopped ones do.
fn check_in_use(store: &Store, name: &str, id: &Digest, u: ImageUse, force: bool) -> ApiResult<()> {
    let tags = store.metadata().tags_of(id);
    let by_tag = reference::normalize(name).ok().is_some_and(|t| tags.contains(&t));
    let deletes = !by_tag || tags.len() <= 1;
    if !deletes || u.total == 0 {
        return Ok(());
    }
    if u.running > 0 {
        return Err(ApiError::conflict(format!(
            "conflict: unable to delete {} (cannot be forced) - image is being used by running container",
            id.short()
        )));
    }
    if !force {
        return Err(ApiError::conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is being used by stopped container",
            id.short()
        )));
    }
    Ok(())
}
