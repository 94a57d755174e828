//! docker's JSON for containers: `ContainerJSON` (inspect) and the summary `/containers/json` lists.

use std::path::Path;

use serde_json::{json, Value};

use super::deps;
use super::record::{MountPoint, Record};
use engine::time;

fn secs(rfc: &str) -> Option<i64> {
    time::parse_rfc3339(rfc).filter(|s| *s > 0)
}

use time::human_duration;

/// docker's `State.String()`: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created", …
pub fn status_text(rec: &Record) -> String {
    let now = time::now().0;
    let s = &rec.state;
    if s.status == "removing" {
        return "Removal In Progress".into();
    }
    if s.restarting {
        let ago = secs(&s.finished_at).map_or(0, |f| now - f);
        return format!("Restarting ({}) {} ago", s.exit_code, human_duration(ago));
    }
    if s.running {
        let up = secs(&s.started_at).map_or(0, |t| now - t);
        return format!("Up {}", human_duration(up));
    }
    if s.dead {
        return "Dead".into();
    }
    match secs(&s.finished_at) {
        None if !rec.has_been_started => "Created".into(),
        None => String::new(),
        Some(f) => format!("Exited ({}) {} ago", s.exit_code, human_duration(now - f)),
    }
}

/// The command as `ps` shows it.
pub fn command(rec: &Record) -> String {
    let mut parts = vec![rec.path.clone()];
    parts.extend(rec.args.iter().cloned());
    parts.join(" ")
}

fn mount_json(m: &MountPoint) -> Value {
    let mut v = json!({
        "Type": m.kind,
        "Source": m.source.display().to_string(),
        "Destination": m.destination,
        "Mode": m.mode,
        "RW": !m.readonly,
        "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
    });
    if m.kind == "volume" {
        v["Name"] = json!(m.name);
        v["Driver"] = json!("local");
        v["Propagation"] = json!("");
    }
    if m.kind == "tmpfs" {
        v["Source"] = json!("");
    }
    v
}

fn networks(rec: &Record) -> Value {
    let mode = rec.host_config["NetworkMode"].as_str().unwrap_or("none").to_owned();
    json!({ mode: {
        "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null,
        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
    }})
}

/// One row of `GET /containers/json`.
pub fn summary(rec: &Record) -> Value {
    json!({
        "Id": rec.id,
        "Names": [rec.name],
        "Image": rec.image_name,
        "ImageID": rec.image,
        "Command": command(rec),
        "Created": secs(&rec.created).unwrap_or(0),
        "Ports": [],
        "Labels": rec.labels(),
        "State": rec.state.status,
        "Status": status_text(rec),
        "HostConfig": {"NetworkMode": rec.host_config["NetworkMode"]},
        "NetworkSettings": {"Networks": networks(rec)},
        "Mounts": rec.mounts.iter().map(mount_json).collect::<Vec<_>>(),
    })
}

/// `GET /containers/{id}/json`.
pub fn inspect(dir: &Path, rec: &Record) -> Value {
    let s = &rec.state;
    let rootfs = dir.join("rootfs");
    let lower: Vec<String> = rec.lower_dirs.iter().map(|p| p.display().to_string()).collect();
    let log_path = match rec.host_config["LogConfig"]["Type"].as_str() {
        Some("json-file") | None => deps::log_path(dir, &rec.id).display().to_string(),
        _ => String::new(),
    };
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": rec.args,
        "State": {
            "Status": s.status,
            "Running": s.running,
            "Paused": false,
            "Restarting": s.restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": rec.image,
        "ResolvConfPath": dir.join("resolv.conf").display().to_string(),
        "HostnamePath": dir.join("hostname").display().to_string(),
        "HostsPath": dir.join("hosts").display().to_string(),
        "LogPath": log_path,
        "Name": rec.name,
        "RestartCount": rec.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": rec.host_config,
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": lower.join(":"),
            "UpperDir": rootfs.join("upper").display().to_string(),
            "WorkDir": rootfs.join("work").display().to_string(),
            "MergedDir": rootfs.join("merged").display().to_string(),
        }},
        "Mounts": rec.mounts.iter().map(mount_json).collect::<Vec<_>>(),
        "Config": rec.config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": false,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks(rec),
        },
    })
}

/// Bytes of the files under `dir` (the writable layer's size), without following symlinks.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}
