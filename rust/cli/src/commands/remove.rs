use std::path::Path;

use engine::images::Removed;
use engine::store::Access;

use crate::args::RemoveArgs;

/// Removes each image in turn; reports every failure and fails if any did, as docker does.
pub fn run(root: &Path, a: &RemoveArgs) -> anyhow::Result<()> {
    let mut store = super::open(root, Access::Write)?;
    let mut failed = 0;
    for r in &a.images {
        match engine::images::remove(&mut store, r, a.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removed::Untagged(t) => println!("Untagged: {t}"),
                        Removed::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} images could not be removed", a.images.len());
    }
    Ok(())
}
