//! `volume create / ls / rm / prune` (inspect is in `inspect`).

use std::io::{self, BufRead, Write};

use serde_json::{json, Map, Value};

use super::Failures;
use crate::args::{VolumeCreateArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs};
use crate::client::{seg, Client, Req};
use crate::format::{self, Format};
use crate::{human, opts};

fn string_map(items: &[String], parse: impl Fn(&str) -> Result<(String, String), String>) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for i in items {
        let (k, v) = parse(i).map_err(anyhow::Error::msg)?;
        m.insert(k, Value::String(v));
    }
    Ok(m)
}

/// POST `/volumes/create`; prints the volume's name.
pub async fn create(c: &Client, a: &VolumeCreateArgs) -> anyhow::Result<()> {
    let name = a.volume.clone().or_else(|| a.name.clone()).unwrap_or_default();
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": string_map(&a.opts, |o| opts::parse_key_value("--opt", o))?,
        "Labels": string_map(&a.labels, opts::parse_label)?,
    });
    let v = c.json(Req::post("/volumes/create").json(&body)).await?;
    println!("{}", v["Name"].as_str().unwrap_or_default());
    Ok(())
}

fn labels_text(v: &Value) -> String {
    v.as_object().map(|o| o.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")).unwrap_or_default()
}

/// GET `/volumes`.
pub async fn list(c: &Client, a: &VolumeLsArgs) -> anyhow::Result<()> {
    let v = c.json(Req::get("/volumes").filters(&a.filters)?).await?;
    let mut vols = v["Volumes"].as_array().cloned().unwrap_or_default();
    vols.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    if a.quiet {
        for x in &vols {
            println!("{}", x["Name"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match &a.format {
        Format::Table => {
            let rows: Vec<Vec<String>> = vols
                .iter()
                .map(|x| vec![x["Driver"].as_str().unwrap_or_default().to_owned(), x["Name"].as_str().unwrap_or_default().to_owned()])
                .collect();
            format::table(&["DRIVER", "VOLUME NAME"], &rows)?;
        }
        f => {
            let rows: Vec<Value> = vols
                .iter()
                .map(|x| {
                    let size = x["UsageData"]["Size"].as_i64().filter(|s| *s >= 0).map_or("N/A".to_owned(), |s| human::size(s as u64));
                    json!({
                        "Availability": "N/A", "Driver": x["Driver"], "Group": "N/A", "Labels": labels_text(&x["Labels"]),
                        "Links": "N/A", "Mountpoint": x["Mountpoint"], "Name": x["Name"], "Scope": x["Scope"],
                        "Size": size, "Status": "N/A",
                    })
                })
                .collect();
            format::lines(f, &rows)?;
        }
    }
    Ok(())
}

/// DELETE `/volumes/{name}` for each; prints the names removed.
pub async fn remove(c: &Client, a: &VolumeRmArgs) -> anyhow::Result<()> {
    let mut failures = Failures::default();
    for name in &a.volumes {
        let res = c.done(Req::delete(format!("/volumes/{}", seg(name))).flag("force", a.force)).await;
        if failures.record(res).is_some() {
            println!("{name}");
        }
    }
    failures.finish()
}

/// POST `/volumes/prune`, after asking (unless `-f`).
pub async fn prune(c: &Client, a: &VolumePruneArgs) -> anyhow::Result<()> {
    if !a.force {
        let what = if a.all { "all local volumes" } else { "anonymous local volumes" };
        eprint!("WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        io::stderr().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let mut filters = a.filters.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let v = c.json(Req::post("/volumes/prune").filters(&filters)?).await?;
    let deleted = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for d in &deleted {
            println!("{}", d.as_str().unwrap_or_default());
        }
        println!();
    }
    println!("Total reclaimed space: {}", human::size(v["SpaceReclaimed"].as_u64().unwrap_or(0)));
    Ok(())
}
