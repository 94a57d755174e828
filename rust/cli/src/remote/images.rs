//! `image load / save / ls / tag / rm / delta` through the daemon.

use std::io::{self, IsTerminal, Write};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::AsyncRead;

use super::Failures;
use crate::args::{DeltaArgs, ListArgs, LoadArgs, RemoveArgs, SaveArgs, TagArgs};
use crate::client::stream::print_messages;
use crate::client::{next_chunk, reader_body, seg, Client, Req};
use crate::commands::list::{self, ImageRow};
use crate::commands::save::PendingFile;
use crate::progress::bar;

/// POST `/images/load`: the archive streams from the file (or stdin) into the request body, never whole in
/// memory; the answer's messages (`Loaded image: …`) are printed as they come.
pub async fn load(c: &Client, a: &LoadArgs) -> anyhow::Result<()> {
    let (input, total): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) = match &a.input {
        Some(p) => {
            let f = tokio::fs::File::open(p).await.with_context(|| format!("opening {}", p.display()))?;
            let len = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), len)
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is a terminal: use -i FILE or redirect");
            }
            (Box::new(tokio::io::stdin()), None)
        }
    };
    let pb = bar(total, a.quiet);
    let progress = pb.clone();
    let body = reader_body(input, move |n| progress.inc(n as u64));
    let req = Req::post("/images/load").query("quiet", "1").stream(body, "application/x-tar");
    let resp = c.call(req).await;
    pb.finish_and_clear();
    print_messages(resp?.into_body()).await?;
    Ok(())
}

/// GET `/images/get`: the archive streams from the daemon into the file (renamed into place once whole)
/// or to stdout.
pub async fn save(c: &Client, a: &SaveArgs) -> anyhow::Result<()> {
    if a.output.is_none() && io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut req = Req::get("/images/get");
    for name in &a.images {
        req = req.query("names", name.as_str());
    }
    let resp = c.call(req).await?;
    let mut body = resp.into_body();
    let pb = bar(None, false);
    match &a.output {
        Some(dest) => {
            let pending = PendingFile::new(dest);
            let f = std::fs::File::create(&pending.tmp).with_context(|| format!("creating {}", pending.tmp.display()))?;
            let mut w = io::BufWriter::with_capacity(256 * 1024, f);
            while let Some(chunk) = next_chunk(&mut body).await.context("receiving the archive")? {
                w.write_all(&chunk).context("writing archive")?;
                pb.inc(chunk.len() as u64);
            }
            let f = w.into_inner().map_err(|e| e.into_error()).context("writing archive")?;
            f.sync_all().context("syncing archive")?;
            pending.commit()?;
        }
        None => {
            let mut out = io::stdout().lock();
            while let Some(chunk) = next_chunk(&mut body).await.context("receiving the archive")? {
                out.write_all(&chunk).context("writing archive")?;
                pb.inc(chunk.len() as u64);
            }
            out.flush().context("writing archive")?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// GET `/images/json`.
pub async fn list(c: &Client, a: &ListArgs) -> anyhow::Result<()> {
    let v = c.json(Req::get("/images/json").filters(&a.filters)?).await?;
    let rows = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| ImageRow {
            id: i["Id"].as_str().unwrap_or_default().to_owned(),
            tags: i["RepoTags"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "<none>:<none>")
                .map(str::to_owned)
                .collect(),
            created: i["Created"].as_i64(),
            size: i["Size"].as_u64().unwrap_or(0),
            containers: i["Containers"].as_i64(),
        })
        .collect();
    list::print(rows, a)
}

/// POST `/images/{source}/tag?repo=&tag=`.
pub async fn tag(c: &Client, a: &TagArgs) -> anyhow::Result<()> {
    let (repo, tag) = engine::reference::split(&a.target);
    let req = Req::post(format!("/images/{}/tag", seg(&a.source)))
        .query("repo", repo)
        .query_opt("tag", (!tag.is_empty()).then_some(tag));
    c.done(req).await?;
    Ok(())
}

/// DELETE `/images/{name}` for each image: `Untagged: …`, `Deleted: …`.
pub async fn remove(c: &Client, a: &RemoveArgs) -> anyhow::Result<()> {
    let mut failures = Failures::default();
    for name in &a.images {
        let res = c.json(Req::delete(format!("/images/{}", seg(name))).flag("force", a.force)).await;
        if let Some(v) = failures.record(res) {
            for item in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(t) = item["Untagged"].as_str() {
                    println!("Untagged: {t}");
                }
                if let Some(d) = item["Deleted"].as_str() {
                    println!("Deleted: {d}");
                }
            }
        }
    }
    failures.finish()
}

/// POST `/images/delta?src=&dest=&t=` (balenaEngine's): the daemon's status lines, as `image delta` prints
/// them without the daemon.
pub async fn delta(c: &Client, a: &DeltaArgs) -> anyhow::Result<()> {
    let req = Req::post("/images/delta")
        .query("src", a.base.as_str())
        .query("dest", a.target.as_str())
        .query_opt("t", a.tag.as_deref());
    let resp = c.call(req).await?;
    print_messages(resp.into_body()).await?;
    Ok(())
}
