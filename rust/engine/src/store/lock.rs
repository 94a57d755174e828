//! The data-root lock: one writer, or any number of readers.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::Access;
use crate::error::{Error, IoContext, Result};

pub struct RootLock {
    _flock: Flock<File>,
}

impl RootLock {
    pub fn acquire(root: &Path, access: Access) -> Result<RootLock> {
        let path = root.join("lock");
        let file = match access {
            Access::Write => OpenOptions::new().create(true).truncate(false).write(true).open(&path),
            Access::Read => File::open(&path),
        }
        .ctx(|| format!("opening {} (is {} a data root?)", path.display(), root.display()))?;
        let arg = match access {
            Access::Write => FlockArg::LockExclusiveNonblock,
            Access::Read => FlockArg::LockSharedNonblock,
        };
        match Flock::lock(file, arg) {
            Ok(flock) => Ok(RootLock { _flock: flock }),
            Err((_, Errno::EWOULDBLOCK)) => Err(Error::Locked { path: root.to_path_buf() }),
            Err((_, e)) => Err(e).ctx(|| format!("locking {}", path.display())),
        }
    }
}
