//! `/_ping`, `/version`, `/info`, `/system/df`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::error::ApiResult;
use super::images::summary;
use super::params::Params;
use super::version::{ApiVersion, API_VERSION, MIN_API_VERSION};
use super::Json;
use crate::state::Daemon;
use crate::{sysinfo, timefmt};

pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The storage driver's name: layers are overlayfs lower dirs.
pub const DRIVER: &str = "overlay";

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/_ping", get(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/system/df", get(disk_usage))
}

/// GET and HEAD. The docker CLI negotiates its API version from `API-Version` here.
async fn ping() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::HeaderName::from_static("docker-experimental"), "false"),
            (header::HeaderName::from_static("builder-version"), "1"),
            (header::HeaderName::from_static("swarm"), "inactive"),
        ],
        "OK",
    )
        .into_response()
}

async fn version() -> Json {
    let host = sysinfo::host();
    let details = json!({
        "ApiVersion": API_VERSION.to_string(),
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "Arch": sysinfo::goarch(),
        "Os": "linux",
        "KernelVersion": host.kernel,
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": "",
        "BuildTime": "",
        "RustVersion": env!("BALENA_RUSTC_VERSION"),
    });
    Json(json!({
        "Platform": {"Name": "balenaEngine (Rust)"},
        "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
        "Version": ENGINE_VERSION,
        "ApiVersion": API_VERSION.to_string(),
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": sysinfo::goarch(),
        "KernelVersion": host.kernel,
        "BuildTime": "",
    }))
}

async fn info(State(d): State<Arc<Daemon>>) -> ApiResult<Json> {
    let images = d.read(|s| Ok(s.metadata().images.len())).await?;
    let host = sysinfo::host();
    let c = d.containers.counts();
    let root = d.data_root.display().to_string();
    let info = json!({
        "ID": "",
        "Containers": c.total,
        "ContainersRunning": c.running,
        "ContainersPaused": c.paused,
        "ContainersStopped": c.stopped,
        "Images": images,
        "Driver": DRIVER,
        "DriverStatus": [["Backing Filesystem", sysinfo::backing_fs(&d.data_root)], ["Supports d_type", "true"]],
        "Plugins": {"Volume": [], "Network": [], "Authorization": null, "Log": []},
        "MemoryLimit": host.memory_limit,
        "SwapLimit": host.memory_limit,
        "CpuCfsPeriod": host.cgroup_version == "2",
        "CpuCfsQuota": host.cgroup_version == "2",
        "CPUShares": host.cgroup_version == "2",
        "CPUSet": host.cgroup_version == "2",
        "PidsLimit": host.cgroup_version == "2",
        "OomKillDisable": false,
        "IPv4Forwarding": host.ipv4_forwarding,
        "Debug": log::max_level() >= log::LevelFilter::Debug,
        "NFd": open_fds(),
        "NGoroutines": 0,
        "SystemTime": timefmt::now_rfc3339_nanos(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": host.cgroup_version,
        "NEventsListener": d.events.listeners(),
        "KernelVersion": host.kernel,
        "OperatingSystem": host.os,
        "OSVersion": host.os_version,
        "OSType": "linux",
        "Architecture": host.machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": null,
        "DockerRootDir": root,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": host.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": "", "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": d.containers.security_options(),
        "Warnings": [],
    });
    Ok(Json(info))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// `docker system df`: images from the store; containers and volumes from their parts (empty for now).
/// `type=` (API 1.42) limits the answer to some of image, container, volume, build-cache.
async fn disk_usage(State(d): State<Arc<Daemon>>, Extension(v): Extension<ApiVersion>, p: Params) -> ApiResult<Json> {
    let types = p.all("type");
    for t in &types {
        if !["image", "container", "volume", "build-cache"].contains(t) {
            return Err(super::error::ApiError::bad_request(format!("invalid type: {t}")));
        }
    }
    let want = |t: &str| types.is_empty() || types.contains(&t);
    let mut out = serde_json::Map::new();
    if want("image") {
        let (layers_size, images) = d.read(move |s| image_usage(s, v)).await?;
        let in_use = d.containers.image_use();
        let images: Vec<Value> = images
            .into_iter()
            .map(|mut img| {
                let n = img["Id"].as_str().and_then(|id| in_use.get(id)).map_or(0, |u| u.total);
                img["Containers"] = json!(n);
                img
            })
            .collect();
        out.insert("LayersSize".into(), json!(layers_size));
        out.insert("Images".into(), json!(images));
    }
    if want("container") {
        out.insert("Containers".into(), json!(d.containers.disk_usage()));
    }
    if want("volume") {
        out.insert("Volumes".into(), json!(d.volumes.disk_usage()));
    }
    if want("build-cache") {
        out.insert("BuildCache".into(), json!([]));
    }
    Ok(Json(Value::Object(out)))
}

/// Bytes of all distinct layers, and each image with its `SharedSize` (bytes of its layers other images use).
fn image_usage(store: &engine::store::Store, v: ApiVersion) -> ApiResult<(u64, Vec<Value>)> {
    let rows = summary::rows(store)?;
    let users = summary::layer_users(&rows);
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut images = Vec::new();
    for r in &rows {
        let mut shared = 0;
        for (c, size) in &r.layers {
            if users.get(c).copied().unwrap_or(0) > 1 {
                shared += size;
            }
            if seen.insert(c.clone()) {
                total += size;
            }
        }
        images.push(summary::summary(r, v, shared as i64, 0));
    }
    Ok((total, images))
}
