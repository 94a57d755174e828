//! `/volumes…`: `docker volume create / ls / inspect / rm / prune`.
//!
//! The store ([`VolumeStore`]) reaches the handlers as a request extension, set in `server::serve` next to
//! `Daemon::with_volumes`; who uses a volume comes from the store's users hook (the container manager's).
//!
//! - POST `/volumes/create` `{Name, Driver, DriverOpts, Labels}` → 201 and the volume; no name: an anonymous
//!   volume (64-hex name, docker's `com.docker.volume.anonymous` label). An existing name returns it as is.
//! - GET `/volumes?filters=` → `{"Volumes": […], "Warnings": []}`; filters `name` (substring), `label`
//!   (`key` or `key=value`), `driver`, `dangling` (no container uses it).
//! - GET `/volumes/{name}`; DELETE `/volumes/{name}?force=` → 204 (`force`: a missing volume is not an
//!   error; a volume in use is refused with 409 regardless, as dockerd does).
//! - POST `/volumes/prune?filters=` → `{"VolumesDeleted": […], "SpaceReclaimed": n}`: unused volumes; from
//!   API 1.42 only anonymous ones unless `all=true` (what `docker volume prune -a` sends); `label`, `label!`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::filters::Filters;
use super::json_body::JsonBody;
use super::params::Params;
use super::version::ApiVersion;
use super::Json;
use crate::events::Event;
use crate::state::{blocking, Daemon};
use crate::volumes::{VolumeError, VolumeInfo, VolumeStore};

type Store = Option<Extension<Arc<VolumeStore>>>;

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/volumes", get(list))
        // "create" and "prune" are valid volume names too: GET and DELETE on them are about those volumes.
        .route("/volumes/create", post(create).get(inspect_literal).delete(remove_literal))
        .route("/volumes/prune", post(prune).get(inspect_literal).delete(remove_literal))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.to_string())
    }
}

fn store(s: Store) -> ApiResult<Arc<VolumeStore>> {
    s.map(|Extension(s)| s).ok_or_else(|| ApiError::internal("volumes are not available (no volume store)"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateRequest {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Driver")]
    driver: Option<String>,
    #[serde(rename = "DriverOpts")]
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

async fn create(s: Store, JsonBody(req): JsonBody<CreateRequest>) -> ApiResult<Response> {
    let s = store(s)?;
    let name = req.name.filter(|n| !n.is_empty());
    if let Some(opts) = req.driver_opts.filter(|o| !o.is_empty()) {
        let keys: Vec<&str> = opts.keys().map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "create {}: the local driver here takes no options (got {})",
            name.as_deref().unwrap_or(""),
            keys.join(", ")
        )));
    }
    let driver = req.driver.unwrap_or_default();
    let labels = req.labels.unwrap_or_default();
    let v = blocking(move || Ok(s.create(name.as_deref(), labels, &driver)?)).await?;
    let body = format!("{}\n", serde_json::to_string(&v).unwrap_or_default());
    Ok((StatusCode::CREATED, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn matches(f: &Filters, v: &VolumeInfo, users: &dyn Fn(&str) -> Vec<String>) -> ApiResult<bool> {
    let labels: serde_json::Map<String, Value> = v.labels.iter().map(|(k, x)| (k.clone(), json!(x))).collect();
    if !f.get("name").iter().all(|n| v.name.contains(n.as_str())) {
        return Ok(false);
    }
    if f.has("driver") && !f.get("driver").iter().any(|d| d == &v.driver) {
        return Ok(false);
    }
    if !f.labels_match(&labels) {
        return Ok(false);
    }
    if let Some(dangling) = f.bool("dangling")? {
        if users(&v.name).is_empty() != dangling {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(s: Store, p: Params) -> ApiResult<Json> {
    let s = store(s)?;
    let f = p.filters(&["name", "label", "driver", "dangling"])?;
    let vols = blocking(move || {
        let mut out = Vec::new();
        for v in s.list() {
            if matches(&f, &v, &|n| s.users(n))? {
                out.push(v);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({ "Volumes": vols, "Warnings": [] })))
}

async fn get_one(s: Store, name: String) -> ApiResult<Json> {
    let s = store(s)?;
    let v = blocking(move || Ok(s.get(&name)?)).await?;
    Ok(Json(json!(v)))
}

async fn inspect(s: Store, Path(name): Path<String>) -> ApiResult<Json> {
    get_one(s, name).await
}

async fn inspect_literal(s: Store, uri: axum::http::Uri) -> ApiResult<Json> {
    let name = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    get_one(s, name).await
}

async fn remove_one(s: Store, name: String, p: Params) -> ApiResult<Response> {
    let s = store(s)?;
    let force = p.flag("force");
    blocking(move || {
        let users = s.users(&name);
        if !users.is_empty() {
            return Err(VolumeError::InUse(name, users).into());
        }
        match s.remove(&name, false) {
            Err(VolumeError::NotFound(_)) if force => Ok(()),
            r => Ok(r?),
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove(s: Store, Path(name): Path<String>, p: Params) -> ApiResult<Response> {
    remove_one(s, name, p).await
}

async fn remove_literal(s: Store, uri: axum::http::Uri, p: Params) -> ApiResult<Response> {
    let name = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    remove_one(s, name, p).await
}

async fn prune(State(d): State<Arc<Daemon>>, s: Store, Extension(ver): Extension<ApiVersion>, p: Params) -> ApiResult<Json> {
    let s = store(s)?;
    let f = p.filters(&["label", "label!", "all"])?;
    // Before API 1.42 prune took every unused volume; since, only anonymous ones unless `all`.
    let all = f.bool("all")?.unwrap_or(!ver.at_least(1, 42));
    let (deleted, reclaimed) = blocking(move || {
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for v in s.list() {
            if !all && !v.is_anonymous() {
                continue;
            }
            let labels: serde_json::Map<String, Value> = v.labels.iter().map(|(k, x)| (k.clone(), json!(x))).collect();
            if !f.labels_match(&labels) {
                continue;
            }
            let excluded = f.get("label!").iter().any(|want| match want.split_once('=') {
                Some((k, x)) => v.labels.get(k).is_some_and(|have| have == x),
                None => v.labels.contains_key(want.as_str()),
            });
            if excluded || !s.users(&v.name).is_empty() {
                continue;
            }
            let size = s.size(&v.name);
            match s.remove(&v.name, false) {
                Ok(()) => {
                    reclaimed += size;
                    deleted.push(v.name);
                }
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => log::warn!("pruning volume {}: {e}", v.name),
            }
        }
        Ok((deleted, reclaimed))
    })
    .await?;
    let attributes = BTreeMap::from([("reclaimed".to_owned(), reclaimed.to_string())]);
    d.events.publish(Event::new("volume", "prune", "", attributes));
    Ok(Json(json!({ "VolumesDeleted": deleted, "SpaceReclaimed": reclaimed })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use engine::store::{Access, Store as ImageStore};
    use tower::Service;

    struct Env {
        _dir: tempfile::TempDir,
        app: Router,
        vols: Arc<VolumeStore>,
        daemon: Arc<Daemon>,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::open(dir.path(), Access::Write).unwrap();
        let vols = Arc::new(VolumeStore::open(dir.path()).unwrap());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let daemon = Arc::new(Daemon::new(images, dir.path().join("exec"), rx).with_volumes(vols.clone()));
        vols.publish_events_to(Arc::downgrade(&daemon));
        let app = crate::api::app(daemon.clone()).layer(Extension(vols.clone()));
        Env { _dir: dir, app, vols, daemon }
    }

    async fn call(app: &mut Router, method: &str, uri: &str, body: &str) -> (u16, Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_owned())).unwrap();
        let resp = app.call(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, v)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn in_use_volumes_are_refused_and_not_dangling() {
        let mut e = env();
        let (st, v) = call(&mut e.app, "POST", "/v1.45/volumes/create", r#"{"Name":"db","Labels":{"a":"1"}}"#).await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["Name"], "db");
        call(&mut e.app, "POST", "/volumes/create", r#"{"Name":"free"}"#).await;
        e.vols.set_users(Arc::new(|n: &str| if n == "db" { vec!["c0ffee".into(), "beef".into()] } else { vec![] }));

        let (st, v) = call(&mut e.app, "DELETE", "/volumes/db", "").await;
        assert_eq!((st, v["message"].as_str().unwrap()), (409, "remove db: volume is in use - [c0ffee beef]"));
        let (st, _) = call(&mut e.app, "DELETE", "/volumes/db?force=1", "").await;
        assert_eq!(st, 409);

        let dangling = r#"/volumes?filters={"dangling":["true"]}"#.replace('{', "%7B").replace('}', "%7D").replace('"', "%22");
        let (_, v) = call(&mut e.app, "GET", &dangling, "").await;
        let names: Vec<&str> = v["Volumes"].as_array().unwrap().iter().map(|x| x["Name"].as_str().unwrap()).collect();
        assert_eq!(names, ["free"]);
        let used = dangling.replace("true", "false");
        let (_, v) = call(&mut e.app, "GET", &used, "").await;
        assert_eq!(v["Volumes"][0]["Name"], "db");
        assert_eq!(v["Volumes"].as_array().unwrap().len(), 1);

        // Prune -a spares the volume in use.
        let all = r#"/volumes/prune?filters={"all":["true"]}"#.replace('{', "%7B").replace('}', "%7D").replace('"', "%22");
        let (st, v) = call(&mut e.app, "POST", &all, "").await;
        assert_eq!(st, 200);
        assert_eq!(v["VolumesDeleted"], json!(["free"]));
        assert!(e.vols.get("db").is_ok());

        // /system/df counts the users.
        let (_, v) = call(&mut e.app, "GET", "/system/df?type=volume", "").await;
        assert_eq!(v["Volumes"][0]["UsageData"]["RefCount"], 2);

        // Events: create (twice), destroy, prune.
        let (past, _) = e.daemon.events.subscribe();
        let seen: Vec<(String, String)> = past.iter().map(|ev| (ev.action.clone(), ev.actor.id.clone())).collect();
        assert_eq!(
            seen,
            [("create".into(), "db".into()), ("create".into(), "free".into()), ("destroy".into(), "free".into()), ("prune".into(), String::new())]
        );
        assert_eq!(past[0].kind, "volume");
        assert_eq!(past[0].actor.attributes["driver"], "local");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bad_requests() {
        let mut e = env();
        let (st, v) = call(&mut e.app, "POST", "/volumes/create", r#"{"Name":"a"}"#).await;
        assert_eq!(st, 400, "{v}");
        let (st, v) = call(&mut e.app, "POST", "/volumes/create", r#"{"Name":"x1","DriverOpts":{"type":"tmpfs"}}"#).await;
        assert_eq!((st, v["message"].as_str().unwrap()), (400, "create x1: the local driver here takes no options (got type)"));
        let (st, _) = call(&mut e.app, "POST", "/volumes/create", r#"{"Name":"x1","Driver":"nfs"}"#).await;
        assert_eq!(st, 404);
        let (st, v) = call(&mut e.app, "GET", "/volumes/nope", "").await;
        assert_eq!((st, v["message"].as_str().unwrap()), (404, "get nope: no such volume"));
        let (st, _) = call(&mut e.app, "DELETE", "/volumes/nope", "").await;
        assert_eq!(st, 404);
        let (st, _) = call(&mut e.app, "DELETE", "/volumes/nope?force=true", "").await;
        assert_eq!(st, 204);
        let (st, v) = call(&mut e.app, "GET", "/volumes?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D", "").await;
        assert_eq!((st, v["message"].as_str().unwrap()), (400, "invalid filter 'colour'"));
        // Volumes named like the verbs.
        let (st, _) = call(&mut e.app, "POST", "/volumes/create", r#"{"Name":"prune"}"#).await;
        assert_eq!(st, 201);
        let (st, v) = call(&mut e.app, "GET", "/volumes/prune", "").await;
        assert_eq!((st, v["Name"].as_str()), (200, Some("prune")));
        let (st, _) = call(&mut e.app, "DELETE", "/volumes/prune", "").await;
        assert_eq!(st, 204);
        // An anonymous volume and the version-dependent prune.
        let (st, v) = call(&mut e.app, "POST", "/volumes/create", "{}").await;
        assert_eq!(st, 201);
        assert_eq!(v["Labels"], json!({"com.docker.volume.anonymous": ""}));
        call(&mut e.app, "POST", "/volumes/create", r#"{"Name":"named"}"#).await;
        let (_, v) = call(&mut e.app, "POST", "/v1.45/volumes/prune", "").await;
        assert_eq!(v["VolumesDeleted"].as_array().unwrap().len(), 1);
        assert!(e.vols.get("named").is_ok());
        let (_, v) = call(&mut e.app, "POST", "/v1.41/volumes/prune", "").await;
        assert_eq!(v["VolumesDeleted"], json!(["named"]));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_a_store_volumes_answer_500() {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::open(dir.path(), Access::Write).unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let mut app = crate::api::app(Arc::new(Daemon::new(images, dir.path().join("exec"), rx)));
        let (st, v) = call(&mut app, "GET", "/volumes", "").await;
        assert_eq!((st, v["message"].as_str().unwrap()), (500, "volumes are not available (no volume store)"));
    }
}
