//! `/_ping`, `/version`, `/info`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::error::ApiResult;
use super::version::{API_VERSION, MIN_API_VERSION};
use super::Json;
use crate::state::Daemon;
use crate::{cgroups, sysinfo};
use engine::time;
use runtime::CgroupFeature;

pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The storage driver's name: layers are overlayfs lower dirs.
pub const DRIVER: &str = "overlay";

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/_ping", get(ping)).route("/version", get(version)).route("/info", get(info))
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
    let cg = cgroups::detect();
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
        // What the kernel's cgroups offer, as dockerd reports it (whether or not the engine uses it).
        "MemoryLimit": cg.has(CgroupFeature::Memory),
        "SwapLimit": cg.has(CgroupFeature::Swap),
        "CpuCfsPeriod": cg.cpu_cfs,
        "CpuCfsQuota": cg.cpu_cfs,
        "CPUShares": cg.has(CgroupFeature::CpuShares),
        "CPUSet": cg.cpuset,
        "PidsLimit": cg.has(CgroupFeature::Pids),
        "OomKillDisable": cg.oom_kill_disable,
        "IPv4Forwarding": host.ipv4_forwarding,
        "Debug": log::max_level() >= log::LevelFilter::Debug,
        "NFd": open_fds(),
        "NGoroutines": 0,
        "SystemTime": time::now_rfc3339_nanos(),
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
        "RegistryConfig": registry_config(d.registries.config()),
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
        "Warnings": cgroups::info_warnings(&cg),
    });
    Ok(Json(info))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// `RegistryConfig` of `/info`, as dockerd shows its registry settings (`docker info` prints them).
fn registry_config(c: &distribution::RegistryConfig) -> serde_json::Value {
    let mut cidrs = Vec::new();
    if c.insecure_loopback {
        cidrs.extend(["127.0.0.0/8", "::1/128"]);
    }
    let hub_mirrors = c.mirrors.get(distribution::reference::DOCKER_HUB).cloned().unwrap_or_default();
    let entry = |name: &str, mirrors: Vec<String>, secure: bool| {
        let official = name == distribution::reference::DOCKER_HUB;
        json!({"Name": name, "Mirrors": mirrors, "Secure": secure, "Official": official})
    };
    let mut index = serde_json::Map::new();
    index.insert(
        distribution::reference::DOCKER_HUB.into(),
        entry(distribution::reference::DOCKER_HUB, hub_mirrors.clone(), true),
    );
    for (domain, mirrors) in c.mirrors.iter().filter(|(d, _)| d.as_str() != distribution::reference::DOCKER_HUB) {
        index.insert(domain.clone(), entry(domain, mirrors.clone(), !c.insecure.contains(domain)));
    }
    for host in &c.insecure {
        if !index.contains_key(host) {
            index.insert(host.clone(), entry(host, Vec::new(), false));
        }
    }
    json!({"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
           "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": hub_mirrors})
}
