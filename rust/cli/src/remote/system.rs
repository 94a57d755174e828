//! `version`, `info`, `system df`, `events`.

use std::fmt;
use std::io::Write;

use serde_json::{json, Value};

use crate::args::{DfArgs, EventsArgs, InfoArgs, VersionArgs};
use crate::client::stream::Lines;
use crate::client::{Client, Req, API_VERSION};
use crate::format::{self, Format};
use crate::{human, opts};

/// Go's name of this machine's architecture, as docker prints it.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Prints a whole document as JSON or through a template.
fn print_doc(f: &Format, doc: &Value) -> anyhow::Result<()> {
    match f {
        Format::Template(t) => println!("{}", format::render(t, doc)?),
        _ => println!("{doc}"),
    }
    Ok(())
}

/// The client's part always; the engine's when it answers (else the connection error, after the client's
/// part, as docker).
pub async fn version(host: &str, a: &VersionArgs) -> anyhow::Result<()> {
    let (maj, min) = API_VERSION;
    let client_doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": format!("{maj}.{min}"),
        "Os": "linux",
        "Arch": goarch(),
    });
    let server = async {
        let c = Client::connect(host).await?;
        let v = c.json(Req::get("/version")).await?;
        anyhow::Ok((c.api_version().to_owned(), v))
    }
    .await;
    if let Some(f) = &a.format {
        let doc = json!({"Client": client_doc, "Server": server.as_ref().ok().map(|(_, v)| v.clone())});
        print_doc(f, &doc)?;
        return server.map(|_| ());
    }
    let mut out = String::new();
    let line = |out: &mut String, indent: usize, key: &str, value: &str| {
        out.push_str(&format!("{:indent$}{:<width$}{value}\n", "", key, width = 20 - indent));
    };
    out.push_str("Client:\n");
    line(&mut out, 1, "Version:", env!("CARGO_PKG_VERSION"));
    let api = match &server {
        Ok((negotiated, _)) if *negotiated != format!("{maj}.{min}") => format!("{negotiated} (downgraded from {maj}.{min})"),
        _ => format!("{maj}.{min}"),
    };
    line(&mut out, 1, "API version:", &api);
    line(&mut out, 1, "OS/Arch:", &format!("linux/{}", goarch()));
    print!("{out}");
    let (_, v) = server?;
    let mut out = String::new();
    let platform = v["Platform"]["Name"].as_str().unwrap_or("");
    out.push_str(&if platform.is_empty() { "\nServer:\n".to_owned() } else { format!("\nServer: {platform}\n") });
    for comp in v["Components"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push_str(&format!(" {}:\n", s(&comp["Name"])));
        line(&mut out, 2, "Version:", &s(&comp["Version"]));
        let d = &comp["Details"];
        if comp["Name"] == "Engine" {
            line(&mut out, 2, "API version:", &format!("{} (minimum version {})", s(&d["ApiVersion"]), s(&d["MinAPIVersion"])));
            if let Some(r) = d["RustVersion"].as_str().filter(|r| !r.is_empty()) {
                line(&mut out, 2, "Rust version:", r);
            }
            line(&mut out, 2, "OS/Arch:", &format!("{}/{}", s(&d["Os"]), s(&d["Arch"])));
            line(&mut out, 2, "Kernel Version:", &s(&d["KernelVersion"]));
            line(&mut out, 2, "Experimental:", &s(&d["Experimental"]));
        } else if let Some(o) = d.as_object() {
            for (k, x) in o {
                line(&mut out, 2, &format!("{k}:"), &s(x));
            }
        }
    }
    print!("{out}");
    Ok(())
}

/// `info`'s text: `Key: value` lines, nested by indentation, as docker prints them.
#[derive(Default)]
struct Text(String);

impl Text {
    fn head(&mut self, indent: usize, key: &str) {
        self.0.push_str(&format!("{:indent$}{key}:\n", ""));
    }
    fn kv(&mut self, indent: usize, key: &str, value: impl fmt::Display) {
        self.0.push_str(&format!("{:indent$}{key}: {value}\n", ""));
    }
    fn line(&mut self, indent: usize, text: &str) {
        self.0.push_str(&format!("{:indent$}{text}\n", ""));
    }
}

pub async fn info(c: &Client, a: &InfoArgs) -> anyhow::Result<()> {
    let v = c.json(Req::get("/info")).await?;
    if let Some(f) = &a.format {
        return print_doc(f, &v);
    }
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut t = Text::default();
    t.head(0, "Client");
    t.kv(1, "Version", env!("CARGO_PKG_VERSION"));
    t.line(0, "");
    t.head(0, "Server");
    t.kv(1, "Containers", s(&v["Containers"]));
    t.kv(2, "Running", s(&v["ContainersRunning"]));
    t.kv(2, "Paused", s(&v["ContainersPaused"]));
    t.kv(2, "Stopped", s(&v["ContainersStopped"]));
    t.kv(1, "Images", s(&v["Images"]));
    t.kv(1, "Server Version", s(&v["ServerVersion"]));
    t.kv(1, "Storage Driver", s(&v["Driver"]));
    for pair in list("DriverStatus") {
        t.kv(2, &s(&pair[0]), s(&pair[1]));
    }
    t.kv(1, "Logging Driver", s(&v["LoggingDriver"]));
    t.kv(1, "Cgroup Driver", s(&v["CgroupDriver"]));
    t.kv(1, "Cgroup Version", s(&v["CgroupVersion"]));
    let security = list("SecurityOptions");
    if !security.is_empty() {
        t.head(1, "Security Options");
        for opt in security {
            // "name=seccomp,profile=builtin" → "seccomp", then "Profile: builtin".
            let text = s(&opt);
            let mut parts = text.split(',');
            let first = parts.next().unwrap_or("");
            t.line(2, first.strip_prefix("name=").unwrap_or(first));
            for (k, x) in parts.filter_map(|p| p.split_once('=')) {
                let mut key = k.to_owned();
                if let Some(c0) = key.get_mut(0..1) {
                    c0.make_ascii_uppercase();
                }
                t.kv(3, &key, x);
            }
        }
    }
    t.kv(1, "Kernel Version", s(&v["KernelVersion"]));
    t.kv(1, "Operating System", s(&v["OperatingSystem"]));
    t.kv(1, "OSType", s(&v["OSType"]));
    t.kv(1, "Architecture", s(&v["Architecture"]));
    t.kv(1, "CPUs", s(&v["NCPU"]));
    t.kv(1, "Total Memory", human::binary_size(v["MemTotal"].as_u64().unwrap_or(0)));
    t.kv(1, "Name", s(&v["Name"]));
    t.kv(1, "Docker Root Dir", s(&v["DockerRootDir"]));
    t.kv(1, "Debug Mode", s(&v["Debug"]));
    t.kv(1, "Experimental", s(&v["ExperimentalBuild"]));
    t.kv(1, "Live Restore Enabled", s(&v["LiveRestoreEnabled"]));
    print!("{}", t.0);
    for w in list("Warnings") {
        eprintln!("{}", s(&w));
    }
    Ok(())
}

/// `system df`: the four kinds of objects, their total and active counts, size and what removing the
/// unused ones would reclaim, computed as docker does.
pub async fn disk_usage(c: &Client, a: &DfArgs) -> anyhow::Result<()> {
    let v = c.json(Req::get("/system/df")).await?;
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let pct = |r: u64, t: u64| (r * 100).checked_div(t).map(|p| format!(" ({p}%)")).unwrap_or_default();

    let images = arr("Images");
    let layers = v["LayersSize"].as_u64().unwrap_or(0);
    let active_images = images.iter().filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0).count();
    let used: u64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .map(|i| i["Size"].as_u64().unwrap_or(0).saturating_sub(i["SharedSize"].as_i64().unwrap_or(0).max(0) as u64))
        .sum();
    let img_reclaim = layers.saturating_sub(used);

    let containers = arr("Containers");
    let running = |c: &Value| c["State"] == "running";
    let ctr_size: u64 = containers.iter().map(|c| c["SizeRw"].as_i64().unwrap_or(0).max(0) as u64).sum();
    let ctr_reclaim: u64 =
        containers.iter().filter(|c| !running(c)).map(|c| c["SizeRw"].as_i64().unwrap_or(0).max(0) as u64).sum();

    let volumes = arr("Volumes");
    let refs = |x: &Value| x["UsageData"]["RefCount"].as_i64().unwrap_or(0);
    let vsize = |x: &Value| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0) as u64;
    let vol_size: u64 = volumes.iter().map(vsize).sum();
    let vol_reclaim: u64 = volumes.iter().filter(|x| refs(x) == 0).map(vsize).sum();

    let rows = [
        ("Images", images.len(), active_images, layers, img_reclaim),
        ("Containers", containers.len(), containers.iter().filter(|c| running(c)).count(), ctr_size, ctr_reclaim),
        ("Local Volumes", volumes.len(), volumes.iter().filter(|x| refs(x) > 0).count(), vol_size, vol_reclaim),
        ("Build Cache", 0, 0, 0, 0),
    ];
    match &a.format {
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(t, n, act, size, rec)| {
                    vec![t.to_string(), n.to_string(), act.to_string(), human::size(*size), format!("{}{}", human::size(*rec), pct(*rec, *size))]
                })
                .collect();
            format::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &table)?;
        }
        f => {
            let objects: Vec<Value> = rows
                .iter()
                .map(|(t, n, act, size, rec)| {
                    json!({"Active": act.to_string(), "Reclaimable": format!("{}{}", human::size(*rec), pct(*rec, *size)),
                           "Size": human::size(*size), "TotalCount": n.to_string(), "Type": t})
                })
                .collect();
            format::lines(f, &objects)?;
        }
    }
    Ok(())
}

/// docker's line for an event: `TIME TYPE ACTION ID (k=v, …)`.
fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"].as_i64().map(i128::from).unwrap_or_else(|| i128::from(e["time"].as_i64().unwrap_or(0)) * 1_000_000_000);
    let attrs: Vec<String> = e["Actor"]["Attributes"]
        .as_object()
        .map(|o| {
            let mut v: Vec<(&String, &Value)> = o.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v.into_iter().map(|(k, x)| format!("{k}={}", s(x))).collect()
        })
        .unwrap_or_default();
    let mut line = format!("{} {} {} {}", human::rfc3339_nanos(nanos), s(&e["Type"]), s(&e["Action"]), s(&e["Actor"]["ID"]));
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

/// GET `/events`: printed as they arrive, until `--until` (or forever).
pub async fn events(c: &Client, a: &EventsArgs) -> anyhow::Result<()> {
    let now = opts::now_nanos();
    let time = |v: &Option<String>| v.as_deref().map(|t| opts::timestamp(t, now)).transpose().map_err(anyhow::Error::msg);
    let req = Req::get("/events").query_opt("since", time(&a.since)?).query_opt("until", time(&a.until)?).filters(&a.filters)?;
    let resp = c.call(req).await?;
    let mut lines = Lines::new(resp.into_body());
    while let Some(line) = lines.next().await? {
        let v: Value = serde_json::from_slice(&line)?;
        let text = match &a.format {
            None | Some(Format::Table) => event_line(&v),
            Some(Format::Json) => v.to_string(),
            Some(Format::Template(t)) => format::render(t, &v)?,
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_like_docker() {
        let e = json!({"Type": "image", "Action": "tag", "Actor": {"ID": "sha256:ab", "Attributes": {"name": "app:2", "b": "1"}},
                       "time": 1714564800, "timeNano": 1714564800000000005i64});
        assert_eq!(event_line(&e), "2024-05-01T12:00:00.000000005Z image tag sha256:ab (b=1, name=app:2)");
    }
}
