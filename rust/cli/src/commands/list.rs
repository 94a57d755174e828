use std::path::Path;

use engine::reference;
use engine::store::Access;
use serde_json::json;

use crate::args::{ListArgs, ListFormat};
use crate::human;

pub fn run(root: &Path, a: &ListArgs) -> anyhow::Result<()> {
    let store = super::open(root, Access::Read)?;
    let images = engine::images::list(&store)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut rows = Vec::new();
    for img in &images {
        let id = if a.no_trunc { img.id.to_string() } else { img.id.short().to_owned() };
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
    match a.format {
        ListFormat::Json => {
            for (repo, tag, id, img) in &rows {
                let line = json!({
                    "Containers": "N/A",
                    "CreatedAt": img.created.clone().unwrap_or_default(),
                    "CreatedSince": human::age(img.created.as_deref(), now),
                    "Digest": "<none>",
                    "ID": id,
                    "Repository": repo,
                    "SharedSize": "N/A",
                    "Size": human::size(img.size),
                    "Tag": tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human::size(img.size),
                });
                println!("{line}");
            }
        }
        ListFormat::Table => {
            let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(10);
            let wt = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(3);
            let wi = if a.no_trunc { 71 } else { 12 };
            println!("{:<w$}   {:<wt$}   {:<wi$}   {:<18}   SIZE", "REPOSITORY", "TAG", "IMAGE ID", "CREATED");
            for (repo, tag, id, img) in &rows {
                let age = human::age(img.created.as_deref(), now);
                println!("{repo:<w$}   {tag:<wt$}   {id:<wi$}   {age:<18}   {}", human::size(img.size));
            }
        }
    }
    Ok(())
}
