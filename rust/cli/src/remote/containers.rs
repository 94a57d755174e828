//! Containers through the daemon: `run`, `create`, `start`, `stop`, `restart`, `kill`, `wait`, `rm`, `ps`,
//! `logs`. Requests are docker's (Engine API 1.45: `ContainerConfig` with `HostConfig`), so whatever the
//! daemon cannot do comes back as its own message.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Map, Value};
use tokio::signal::unix::{signal, SignalKind};

use super::{Exit, Failures};
use crate::args::{ContainerOpts, ContainersArgs, CreateArgs, KillArgs, LogsArgs, PsArgs, RestartArgs, RmArgs, RunArgs, StopArgs};
use crate::client::stream::{demux_body, demux_reader, raw_body};
use crate::client::{body_json, seg, Client, Req};
use crate::format::{self, Format};
use crate::opts::{self, VolumeSpec};
use crate::{human, render};

/// docker's `ContainerCreateRequest` from the flags. `attach`: the client will read the output (foreground).
pub fn create_body(o: &ContainerOpts, attach: bool, cwd: &Path, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Value> {
    let (image, cmd) = o.image_and_command.split_first().context("no image given")?;
    let msg = anyhow::Error::msg;
    let mut env = Vec::new();
    for e in &o.env {
        env.extend(opts::parse_env(e, &lookup).map_err(msg)?);
    }
    let mut labels = Map::new();
    for l in &o.labels {
        let (k, v) = opts::parse_label(l).map_err(msg)?;
        labels.insert(k, Value::String(v));
    }
    let (mut binds, mut volumes) = (Vec::new(), Map::new());
    for v in &o.volumes {
        match opts::parse_volume(v, cwd).map_err(msg)? {
            VolumeSpec::Bind(b) => binds.push(Value::String(b)),
            VolumeSpec::Anonymous(p) => {
                volumes.insert(p, json!({}));
            }
        }
    }
    let mut tmpfs = Map::new();
    for t in &o.tmpfs {
        let (path, options) = opts::parse_tmpfs(t).map_err(msg)?;
        tmpfs.insert(path, Value::String(options));
    }
    let mut log_opts = Map::new();
    for l in &o.log_opts {
        let (k, v) = opts::parse_key_value("--log-opt", l).map_err(msg)?;
        log_opts.insert(k, Value::String(v));
    }

    let mut host = Map::new();
    let mut set = |k: &str, v: Value| {
        host.insert(k.to_owned(), v);
    };
    if !binds.is_empty() {
        set("Binds", Value::Array(binds));
    }
    if !tmpfs.is_empty() {
        set("Tmpfs", Value::Object(tmpfs));
    }
    if o.read_only {
        set("ReadonlyRootfs", json!(true));
    }
    if let Some(m) = o.memory {
        set("Memory", json!(m));
    }
    if let Some(p) = o.pids_limit {
        set("PidsLimit", json!(p));
    }
    if !o.ulimits.is_empty() {
        set("Ulimits", Value::Array(o.ulimits.iter().map(|u| u.to_json()).collect()));
    }
    if let Some(r) = &o.restart {
        set("RestartPolicy", r.to_json());
    }
    if let Some(n) = &o.network {
        set("NetworkMode", json!(n));
    }
    if !o.cap_add.is_empty() {
        set("CapAdd", json!(o.cap_add));
    }
    if !o.cap_drop.is_empty() {
        set("CapDrop", json!(o.cap_drop));
    }
    if o.rm {
        set("AutoRemove", json!(true));
    }
    if o.log_driver.is_some() || !log_opts.is_empty() {
        set("LogConfig", json!({"Type": o.log_driver.clone().unwrap_or_default(), "Config": log_opts}));
    }

    let mut body = json!({
        "Image": image,
        "Cmd": if cmd.is_empty() { Value::Null } else { json!(cmd) },
        "Env": env,
        "Labels": labels,
        "AttachStdin": false,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "OpenStdin": false,
        "StdinOnce": false,
        "Tty": false,
        "HostConfig": host,
    });
    let mut field = |k: &str, v: Value| {
        body[k] = v;
    };
    if let Some(e) = &o.entrypoint {
        // `--entrypoint ""` clears the image's entrypoint, as docker.
        field("Entrypoint", json!([e]));
    }
    if let Some(w) = &o.workdir {
        field("WorkingDir", json!(w));
    }
    if let Some(u) = &o.user {
        field("User", json!(u));
    }
    if let Some(h) = &o.hostname {
        field("Hostname", json!(h));
    }
    if !volumes.is_empty() {
        field("Volumes", Value::Object(volumes));
    }
    if let Some(s) = &o.stop_signal {
        field("StopSignal", json!(s));
    }
    if let Some(t) = o.stop_timeout {
        field("StopTimeout", json!(t));
    }
    Ok(body)
}

/// POST `/containers/create?name=`: the new container's ID (warnings on stderr).
async fn create_container(c: &Client, o: &ContainerOpts, attach: bool) -> anyhow::Result<String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let body = create_body(o, attach, &cwd, |k| std::env::var(k).ok())?;
    let v = c.json(Req::post("/containers/create").query_opt("name", o.name.as_deref()).json(&body)).await?;
    for w in v["Warnings"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    v["Id"].as_str().map(str::to_owned).context("the daemon's answer to create has no Id")
}

pub async fn create(c: &Client, a: &CreateArgs) -> anyhow::Result<()> {
    let id = create_container(c, &a.opts, false).await?;
    println!("{id}");
    Ok(())
}

/// A failure of `run` before the container ran: docker's exit code 125.
pub fn run_failure(e: anyhow::Error) -> anyhow::Error {
    Exit { code: 125, message: Some(render(&e)) }.into()
}

/// A failed start: 127 when the command was not found, 126 when it could not be executed, else 125 (docker's
/// codes).
fn start_failure(e: anyhow::Error) -> anyhow::Error {
    let text = e.to_string();
    let code = if text.contains("executable file not found") || text.contains("no such file or directory") {
        127
    } else if text.contains("permission denied") || text.contains("is a directory") {
        126
    } else {
        125
    };
    Exit { code, message: Some(render(&e)) }.into()
}

/// `run`: create; then, in the foreground, attach (the upgraded connection carries the multiplexed output),
/// wait, start, copy the output until it ends, and exit with the container's exit code — as the docker CLI
/// does. Signals this process gets go to the container (docker's sig-proxy); a third Ctrl-C detaches.
pub async fn run(c: &Client, a: &RunArgs) -> anyhow::Result<()> {
    let id = create_container(c, &a.opts, !a.detach).await.map_err(run_failure)?;
    let path = |op: &str| format!("/containers/{id}/{op}");
    if a.detach {
        c.done(Req::post(path("start"))).await.map_err(start_failure)?;
        println!("{id}");
        return Ok(());
    }
    // Signals from here on go to the container (caught now, forwarded once it runs).
    let mut signals = Vec::new();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        signals.push((signal(kind).context("installing signal handlers").map_err(run_failure)?, name));
    }
    let attach = Req::post(path("attach")).query("stream", "1").query("stdout", "1").query("stderr", "1");
    let output = c.upgrade(attach).await.map_err(run_failure)?;
    let condition = if a.opts.rm { "removed" } else { "next-exit" };
    let wait = c.call(Req::post(path("wait")).query("condition", condition)).await.map_err(run_failure)?;
    c.done(Req::post(path("start"))).await.map_err(start_failure)?;

    let pump = demux_reader(output);
    tokio::pin!(pump);
    let mut interrupts = 0;
    loop {
        let received = futures_util::future::select_all(signals.iter_mut().map(|(s, name)| {
            let name = *name;
            Box::pin(async move {
                s.recv().await;
                name
            })
        }));
        tokio::select! {
            r = &mut pump => {
                r?;
                break;
            }
            (name, _, _) = received => {
                if name == "SIGINT" {
                    interrupts += 1;
                    if interrupts >= 3 {
                        return Err(Exit {
                            code: 130,
                            message: Some(format!("got 3 interrupts: detached from {}; it may still be running (balena-engine stop {})", &id[..12.min(id.len())], &id[..12.min(id.len())])),
                        }
                        .into());
                    }
                }
                if let Err(e) = c.done(Req::post(path("kill")).query("signal", name)).await {
                    eprintln!("{}", render(&e));
                }
            }
        }
    }
    let v = body_json(wait).await?;
    if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        eprintln!("Error waiting for the container: {m}");
    }
    let code = v["StatusCode"].as_i64().unwrap_or(125);
    if code == 0 {
        return Ok(());
    }
    Err(Exit::silent(if (1..=255).contains(&code) { code as u8 } else { 125 }))
}

/// POSTs `/containers/{name}/{op}` for each container, printing each name that succeeded.
async fn each(c: &Client, names: &[String], op: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<()> {
    let mut failures = Failures::default();
    for n in names {
        let mut req = Req::post(format!("/containers/{}/{op}", seg(n)));
        for (k, v) in query {
            req = req.query_opt(k, v.clone());
        }
        if failures.record(c.done(req).await).is_some() {
            println!("{n}");
        }
    }
    failures.finish()
}

pub async fn start(c: &Client, a: &ContainersArgs) -> anyhow::Result<()> {
    each(c, &a.containers, "start", &[]).await
}

pub async fn stop(c: &Client, a: &StopArgs) -> anyhow::Result<()> {
    each(c, &a.containers, "stop", &[("t", a.time.map(|t| t.to_string())), ("signal", a.signal.clone())]).await
}

pub async fn restart(c: &Client, a: &RestartArgs) -> anyhow::Result<()> {
    each(c, &a.containers, "restart", &[("t", a.time.map(|t| t.to_string()))]).await
}

pub async fn kill(c: &Client, a: &KillArgs) -> anyhow::Result<()> {
    each(c, &a.containers, "kill", &[("signal", Some(a.signal.clone()))]).await
}

/// POST `/containers/{name}/wait` for each: prints the exit codes.
pub async fn wait(c: &Client, a: &ContainersArgs) -> anyhow::Result<()> {
    let mut failures = Failures::default();
    for n in &a.containers {
        let res = c.json(Req::post(format!("/containers/{}/wait", seg(n)))).await;
        if let Some(v) = failures.record(res) {
            if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
                eprintln!("Error waiting for {n}: {m}");
            }
            println!("{}", v["StatusCode"].as_i64().unwrap_or(-1));
        }
    }
    failures.finish()
}

/// DELETE `/containers/{name}?force=&v=` for each.
pub async fn remove(c: &Client, a: &RmArgs) -> anyhow::Result<()> {
    let mut failures = Failures::default();
    for n in &a.containers {
        let req = Req::delete(format!("/containers/{}", seg(n))).flag("force", a.force).flag("v", a.volumes);
        if failures.record(c.done(req).await).is_some() {
            println!("{n}");
        }
    }
    failures.finish()
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:").unwrap_or(id).chars().take(12).collect()
}

/// One row of `ps` as docker's `--format json` has it.
fn ps_row(v: &Value, trunc: bool, now: i64) -> Value {
    let id = v["Id"].as_str().unwrap_or_default();
    let image = v["Image"].as_str().unwrap_or_default();
    let image = if trunc && image.starts_with("sha256:") { short_id(image) } else { image.to_owned() };
    let command = v["Command"].as_str().unwrap_or_default();
    let command = if trunc { ellipsis(command, 20) } else { command.to_owned() };
    let names: Vec<&str> = v["Names"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !n.contains('/'))
        .collect();
    let created = v["Created"].as_i64().unwrap_or(0);
    let mut labels: Vec<String> =
        v["Labels"].as_object().map(|o| o.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default())).collect()).unwrap_or_default();
    labels.sort();
    let mounts = v["Mounts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mount_names: Vec<String> = mounts
        .iter()
        .map(|m| {
            let n = m["Name"].as_str().filter(|n| !n.is_empty()).or(m["Source"].as_str()).unwrap_or_default();
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_owned()
            }
        })
        .filter(|n| !n.is_empty())
        .collect();
    let local_volumes = mounts.iter().filter(|m| m["Driver"] == "local").count();
    let networks: Vec<&String> = v["NetworkSettings"]["Networks"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
    json!({
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": human::created_at(created),
        "ID": if trunc { short_id(id) } else { id.to_owned() },
        "Image": image,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mount_names.join(","),
        "Names": names.join(","),
        "Networks": networks.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        "Ports": "",
        "RunningFor": format!("{} ago", human::duration(now - created)),
        "State": v["State"],
        "Status": v["Status"],
    })
}

/// GET `/containers/json`.
pub async fn list(c: &Client, a: &PsArgs) -> anyhow::Result<()> {
    let limit = if a.latest { Some(1) } else { a.last.filter(|n| *n > 0) };
    let req = Req::get("/containers/json").flag("all", a.all).query_opt("limit", limit.map(|n| n.to_string())).filters(&a.filters)?;
    let v = c.json(req).await?;
    let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if a.quiet {
        for i in items {
            let id = i["Id"].as_str().unwrap_or_default();
            println!("{}", if a.no_trunc { id.to_owned() } else { short_id(id) });
        }
        return Ok(());
    }
    let now = human::now();
    let rows: Vec<Value> = items.iter().map(|i| ps_row(i, !a.no_trunc, now)).collect();
    match &a.format {
        Format::Table => {
            let cell = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"].iter().map(|k| cell(r, k)).collect())
                .collect();
            format::table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &table)?;
        }
        f => format::lines(f, &rows)?,
    }
    Ok(())
}

/// GET `/containers/{name}/logs`: the multiplexed stream split back onto stdout and stderr.
pub async fn logs(c: &Client, a: &LogsArgs) -> anyhow::Result<()> {
    let now = opts::now_nanos();
    let time = |v: &Option<String>| v.as_deref().map(|t| opts::timestamp(t, now)).transpose().map_err(anyhow::Error::msg);
    let req = Req::get(format!("/containers/{}/logs", seg(&a.container)))
        .query("stdout", "1")
        .query("stderr", "1")
        .flag("follow", a.follow)
        .flag("timestamps", a.timestamps)
        .query_opt("tail", a.tail.clone())
        .query_opt("since", time(&a.since)?)
        .query_opt("until", time(&a.until)?);
    let resp = c.call(req).await?;
    let raw = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/vnd.docker.raw-stream"));
    if raw {
        raw_body(resp.into_body()).await
    } else {
        demux_body(resp.into_body()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn body(args: &[&str]) -> Value {
        let mut argv = vec!["balena-engine", "run"];
        argv.extend_from_slice(args);
        let cli = crate::args::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        let crate::args::Command::Run(a) = cli.command else { panic!("not run") };
        let lookup = |k: &str| (k == "FROM_SHELL").then(|| "yes".to_owned());
        create_body(&a.opts, !a.detach, Path::new("/work"), lookup).unwrap()
    }

    #[test]
    fn create_requests_like_docker() {
        let b = body(&[
            "--name", "web", "-e", "A=1", "-e", "FROM_SHELL", "-e", "UNSET", "-v", "data:/data:ro", "-v", "./conf:/conf",
            "-v", "/anon", "--tmpfs", "/run:size=1m", "--read-only", "-m", "16m", "--pids-limit", "-1", "--ulimit",
            "nofile=1024:2048", "--ulimit", "core=-1", "--restart", "on-failure:3", "--network", "host", "--entrypoint",
            "/bin/sh", "-w", "/app", "-u", "1000:1000", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "-l", "tier=web",
            "-l", "flag", "--log-driver", "json-file", "--log-opt", "max-size=1m", "--log-opt", "max-file=2",
            "--hostname", "box", "busybox:test", "-c", "echo hi", "-d",
        ]);
        assert_eq!(b["Image"], "busybox:test");
        assert_eq!(b["Cmd"], json!(["-c", "echo hi", "-d"]), "everything after the image is the command");
        assert_eq!(b["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(b["Env"], json!(["A=1", "FROM_SHELL=yes"]));
        assert_eq!(b["Labels"], json!({"tier": "web", "flag": ""}));
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        assert_eq!((b["WorkingDir"].as_str(), b["User"].as_str(), b["Hostname"].as_str()), (Some("/app"), Some("1000:1000"), Some("box")));
        assert_eq!((b["AttachStdout"].as_bool(), b["Tty"].as_bool()), (Some(true), Some(false)));
        let h = &b["HostConfig"];
        assert_eq!(h["Binds"], json!(["data:/data:ro", "/work/conf:/conf"]));
        assert_eq!(h["Tmpfs"], json!({"/run": "size=1m"}));
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["Memory"], 16 << 20);
        assert_eq!(h["PidsLimit"], -1);
        assert_eq!(h["Ulimits"], json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "core", "Soft": -1, "Hard": -1}]));
        assert_eq!(h["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 3}));
        assert_eq!(h["NetworkMode"], "host");
        assert_eq!((h["CapAdd"].clone(), h["CapDrop"].clone()), (json!(["NET_ADMIN"]), json!(["ALL"])));
        assert_eq!(h["LogConfig"], json!({"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}));
        assert!(h.get("AutoRemove").is_none());

        let b = body(&["-d", "--rm", "--entrypoint", "", "img"]);
        assert_eq!(b["Cmd"], Value::Null);
        assert_eq!(b["Entrypoint"], json!([""]));
        assert_eq!(b["AttachStdout"], false);
        assert_eq!(b["HostConfig"], json!({"AutoRemove": true}));
    }

    #[test]
    fn bad_flags_are_refused_before_anything_is_sent() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["balena-engine", "run"];
            argv.extend_from_slice(args);
            crate::args::Cli::try_parse_from(argv).err().map(|e| e.to_string())
        };
        assert!(parse(&["-m", "lots", "img"]).unwrap().contains("invalid size: 'lots'"));
        assert!(parse(&["--ulimit", "nofile", "img"]).unwrap().contains("invalid ulimit argument"));
        assert!(parse(&["--restart", "always:2", "img"]).unwrap().contains("maximum retry count"));
        assert!(parse(&["--privileged", "img"]).unwrap().contains("--privileged"));
        assert!(parse(&["-it", "img"]).is_some());
        assert!(parse(&["img", "--privileged"]).is_none(), "flags after the image belong to the command");
    }

    #[test]
    fn ps_rows_like_docker() {
        let v = json!({"Id": "0123456789abcdef0123", "Names": ["/web"], "Image": "busybox:test", "Command": "sh -c 'sleep 1000; echo done'",
                       "Created": 100, "Labels": {"b": "2", "a": "1"}, "State": "running", "Status": "Up 3 seconds",
                       "Mounts": [{"Type": "volume", "Name": "data", "Driver": "local"}], "NetworkSettings": {"Networks": {"none": {}}}});
        let r = ps_row(&v, true, 103);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Command"], "\"sh -c 'sleep 1000; …\"");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["RunningFor"], "3 seconds ago");
        assert_eq!((r["Mounts"].as_str(), r["LocalVolumes"].as_str(), r["Networks"].as_str()), (Some("data"), Some("1"), Some("none")));
        let r = ps_row(&v, false, 103);
        assert_eq!(r["ID"], "0123456789abcdef0123");
        assert_eq!(r["Command"], "\"sh -c 'sleep 1000; echo done'\"");
    }
}
