use std::path::Path;

use anyhow::bail;
use engine::reference;
use engine::store::Access;
use serde_json::{json, Value};

use crate::args::ListArgs;
use crate::format::{self, Format};
use crate::human;

/// One image as `image ls` shows it, from the store or from the daemon.
pub struct ImageRow {
    /// `sha256:…`
    pub id: String,
    /// Normalised tags (`app:1`); none for a dangling image.
    pub tags: Vec<String>,
    /// Seconds since the epoch.
    pub created: Option<i64>,
    pub size: u64,
    /// Containers using it, when known.
    pub containers: Option<i64>,
}

pub fn run(root: &Path, a: &ListArgs) -> anyhow::Result<()> {
    if !a.filters.is_empty() {
        bail!("--filter needs the daemon; with --data-root, list everything and filter the output");
    }
    let store = super::open(root, Access::Read)?;
    let images = engine::images::list(&store)?;
    let rows = images
        .iter()
        .map(|img| ImageRow {
            id: img.id.to_string(),
            tags: img.tags.clone(),
            created: img.created.as_deref().and_then(human::parse_rfc3339),
            size: img.size,
            containers: None,
        })
        .collect();
    print(rows, a)
}

/// docker's `image ls`: a table, IDs (`-q`), one JSON object per line, or a template per line.
pub fn print(images: Vec<ImageRow>, a: &ListArgs) -> anyhow::Result<()> {
    let now = human::now();
    let short = |id: &str| id.strip_prefix("sha256:").unwrap_or(id).chars().take(12).collect::<String>();
    let mut rows = Vec::new();
    for img in &images {
        let id = if a.no_trunc { img.id.clone() } else { short(&img.id) };
        let tags: Vec<(String, String)> = if img.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.tags.iter().map(|t| reference::split(t)).map(|(r, t)| (r.to_owned(), t.to_owned())).collect()
        };
        for (repo, tag) in tags {
            rows.push((repo, tag, id.clone(), img));
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for (_, _, id, _) in &rows {
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    let age = |img: &ImageRow| match img.created {
        Some(t) if t > 0 => format!("{} ago", human::duration(now - t)),
        _ => "N/A".to_owned(),
    };
    match &a.format {
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(repo, tag, id, img)| vec![repo.clone(), tag.clone(), id.clone(), age(img), human::size(img.size)])
                .collect();
            format::table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &table)?;
        }
        f => {
            let objects: Vec<Value> = rows
                .iter()
                .map(|(repo, tag, id, img)| {
                    json!({
                        "Containers": img.containers.filter(|c| *c >= 0).map_or("N/A".to_owned(), |c| c.to_string()),
                        "CreatedAt": img.created.map(human::created_at).unwrap_or_default(),
                        "CreatedSince": age(img),
                        "Digest": "<none>",
                        "ID": id,
                        "Repository": repo,
                        "SharedSize": "N/A",
                        "Size": human::size(img.size),
                        "Tag": tag,
                        "UniqueSize": "N/A",
                        "VirtualSize": human::size(img.size),
                    })
                })
                .collect();
            format::lines(f, &objects)?;
        }
    }
    Ok(())
}
