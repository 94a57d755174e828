use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use engine::archive::SaveRequest;
use engine::reference;
use engine::store::Access;

use crate::args::SaveArgs;
use crate::progress::{bar, ProgressWriter};

/// A file written beside its final path and renamed into place only when complete.
pub struct PendingFile {
    pub tmp: PathBuf,
    pub dest: PathBuf,
}

impl PendingFile {
    pub fn new(dest: &Path) -> PendingFile {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        PendingFile { tmp, dest: dest.to_path_buf() }
    }

    /// Moves the complete file into place.
    pub fn commit(self) -> anyhow::Result<()> {
        fs::rename(&self.tmp, &self.dest).with_context(|| format!("writing {}", self.dest.display()))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

pub fn run(root: &Path, a: &SaveArgs) -> anyhow::Result<()> {
    let store = super::open(root, Access::Read)?;
    let mut requests: Vec<SaveRequest> = Vec::new();
    for r in &a.images {
        let id = engine::images::resolve(&store, r)?;
        // Saved by tag: record that tag; saved by ID: record no tag (as docker does).
        let tag = reference::normalize(r).ok().filter(|t| store.metadata().tags.get(t) == Some(&id));
        match requests.iter_mut().find(|q| q.id == id) {
            Some(q) => q.tags.extend(tag),
            None => requests.push(SaveRequest { id, tags: tag.into_iter().collect() }),
        }
    }
    let total: u64 = requests.iter().filter_map(|q| store.metadata().images.get(&q.id)).map(|r| r.size).sum();
    let pb = bar(Some(total), a.output.is_none() && io::stdout().is_terminal());
    match &a.output {
        Some(dest) => {
            let pending = PendingFile::new(dest);
            let f = File::create(&pending.tmp).with_context(|| format!("creating {}", pending.tmp.display()))?;
            let w = BufWriter::with_capacity(256 * 1024, ProgressWriter { inner: f, bar: pb.clone() });
            let w = engine::archive::save(&store, &requests, w)?;
            let f = w.into_inner().map_err(|e| e.into_error()).context("writing archive")?.inner;
            f.sync_all().context("syncing archive")?;
            pending.commit()?;
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let w = BufWriter::with_capacity(256 * 1024, stdout.lock());
            let mut w = engine::archive::save(&store, &requests, w)?;
            w.flush().context("writing archive")?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}
