//! Data-root locks. `lock` admits one writer at a time (load, tag, rm). Readers (ls, inspect, save) never
//! wait for writers: metadata is replaced atomically, so they read a consistent snapshot. What a reader uses
//! must not be deleted under it, so readers hold `gc.lock` shared, and a writer deletes unreferenced layers
//! and blobs only when it gets `gc.lock` exclusively (otherwise the next writer collects them).

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, IoContext, Result};

const WRITER: &str = "lock";
const GC: &str = "gc.lock";

pub struct Held {
    _flock: Flock<File>,
}

fn open(root: &Path, name: &str, create: bool) -> Result<File> {
    let path = root.join(name);
    OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .open(&path)
        .ctx(|| format!("opening {} (is {} a data root?)", path.display(), root.display()))
}

fn lock(file: File, arg: FlockArg, root: &Path, name: &str) -> Result<Option<Held>> {
    match Flock::lock(file, arg) {
        Ok(flock) => Ok(Some(Held { _flock: flock })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).ctx(|| format!("locking {}", root.join(name).display())),
    }
}

/// The single-writer lock; fails at once when another writer holds it.
pub fn writer(root: &Path) -> Result<Held> {
    open(root, GC, true)?;
    lock(open(root, WRITER, true)?, FlockArg::LockExclusiveNonblock, root, WRITER)?
        .ok_or_else(|| Error::Locked { path: root.to_path_buf() })
}

/// A reader's hold on what it reads; waits only while a writer is deleting. `None` for a data root that
/// was never created.
pub fn reader(root: &Path) -> Result<Option<Held>> {
    if !root.join(GC).exists() {
        return Ok(None);
    }
    lock(open(root, GC, false)?, FlockArg::LockShared, root, GC)
}

/// The right to delete, if no reader is active.
pub fn try_collect(root: &Path) -> Result<Option<Held>> {
    lock(open(root, GC, true)?, FlockArg::LockExclusiveNonblock, root, GC)
}
