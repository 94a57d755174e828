//! Leases: layers kept for something other than an image (containerd's name for it). A container's root file
//! system stacks its image's layers; once `rmi -f` has removed the image, the stopped container must still
//! start, so the daemon leases the layers when it creates the container and releases them when it removes it.
//!
//! `leases/<name>` lists chain IDs (hex, one per line), written atomically. Garbage collection keeps every
//! layer a lease names. Taking a lease needs no writer: the caller resolves the image and leases its layers
//! while it holds the store open (a reader's shared `gc.lock` keeps collection from running in between).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::atomic::{fsync_dir, write_atomic};
use super::Store;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

const DIR: &str = "leases";

/// Leases named so belong to an operation of the process that holds the writer lock (a pull): one left by a
/// process that died is released when the next writer opens the store.
pub const TRANSIENT_PREFIX: &str = "transient-";

/// At writer open: releases the transient leases a dead process left.
pub(super) fn release_transient(root: &Path) -> Result<()> {
    let dir = root.join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with(TRANSIENT_PREFIX) {
            fs::remove_file(entry.path()).ctx(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn path(root: &Path, name: &str) -> Result<PathBuf> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::Unsupported(format!(
            "lease name {name:?}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'"
        )));
    }
    Ok(root.join(DIR).join(name))
}

/// Keeps the layers `chains` (every chain ID of an image, for its whole stack) until [`remove`]; replaces a
/// lease of that name.
pub fn add(store: &Store, name: &str, chains: &[Digest]) -> Result<()> {
    let file = path(store.root(), name)?;
    let dir = store.root().join(DIR);
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let text: String = chains.iter().map(|c| format!("{}\n", c.hex())).collect();
    write_atomic(&file, text.as_bytes())
}

pub fn exists(store: &Store, name: &str) -> bool {
    path(store.root(), name).is_ok_and(|p| p.exists())
}

/// Releases a lease (absent: nothing to do). What it kept goes at the next collection.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let file = path(store.root(), name)?;
    match fs::remove_file(&file) {
        Ok(()) => fsync_dir(&store.root().join(DIR)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("removing {}", file.display())),
    }
}

/// The chain IDs (hex) every lease names; `.name.new` files of an interrupted write are not leases.
pub(super) fn leased_chains(root: &Path) -> Result<HashSet<String>> {
    let dir = root.join(DIR);
    let mut out = HashSet::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let text = fs::read_to_string(entry.path()).ctx(|| format!("reading {}", entry.path().display()))?;
        out.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Access;

    #[test]
    fn leased_layers_survive_collection_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let store = Store::open(&root, Access::Write).unwrap();
        let (a, b, c) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"), Digest::of_bytes(b"c"));
        for d in [&a, &b, &c] {
            fs::create_dir_all(store.layer_dir(d).join("diff")).unwrap();
        }
        store.add_lease("ctr1", &[a.clone(), b.clone()]).unwrap();
        // A half-written lease (a crash before the rename) keeps nothing.
        fs::write(root.join("leases/.ctr2.new"), format!("{}\n", c.hex())).unwrap();
        store.collect_garbage().unwrap();
        assert!(store.layer_dir(&a).exists() && store.layer_dir(&b).exists());
        assert!(!store.layer_dir(&c).exists(), "no image, no lease: collected");

        // Replacing the lease keeps only what the new one names.
        store.add_lease("ctr1", std::slice::from_ref(&b)).unwrap();
        store.collect_garbage().unwrap();
        assert!(!store.layer_dir(&a).exists() && store.layer_dir(&b).exists());

        store.remove_lease("ctr1").unwrap();
        store.remove_lease("ctr1").unwrap();
        store.collect_garbage().unwrap();
        assert!(!store.layer_dir(&b).exists());
    }

    #[test]
    fn a_reader_can_lease_and_blocks_collection_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let writer = Store::open(&root, Access::Write).unwrap();
        let a = Digest::of_bytes(b"a");
        fs::create_dir_all(writer.layer_dir(&a)).unwrap();
        let reader = Store::open(&root, Access::Read).unwrap();
        // While the reader is open the writer does not delete (it could be leasing right now).
        writer.collect_garbage().unwrap();
        assert!(writer.layer_dir(&a).exists());
        reader.add_lease("c", std::slice::from_ref(&a)).unwrap();
        drop(reader);
        writer.collect_garbage().unwrap();
        assert!(writer.layer_dir(&a).exists());
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Access::Write).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(store.add_lease(bad, &[]).is_err(), "{bad:?}");
            assert!(store.remove_lease(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transient_leases_of_a_dead_process_go_at_the_next_writer_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let a = Digest::of_bytes(b"a");
        {
            let store = Store::open(&root, Access::Write).unwrap();
            fs::create_dir_all(store.layer_dir(&a).join("diff")).unwrap();
            store.add_lease(&format!("{TRANSIENT_PREFIX}pull-1"), std::slice::from_ref(&a)).unwrap();
            store.add_lease("ctr", &[]).unwrap();
            store.collect_garbage().unwrap();
            assert!(store.layer_dir(&a).exists(), "kept while the pull runs");
        }
        // The process died without releasing it: the next writer does.
        let store = Store::open(&root, Access::Write).unwrap();
        assert!(!store.layer_dir(&a).exists());
        assert!(store.has_lease("ctr") && !store.has_lease(&format!("{TRANSIENT_PREFIX}pull-1")));
    }
}
