//! How a pull reaches the store. It downloads and unpacks into staging without holding the writer (other
//! writers, e.g. a tag or another pull's commit, go on meanwhile) and takes the writer only to commit.

use std::sync::Mutex;

use engine::store::Store;

use crate::error::{Error, Result};

pub trait StoreAccess: Sync {
    /// Runs `f` on the writable store; other writers wait.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> engine::error::Result<T>) -> Result<T>;
    /// Runs `f` on a read-only view of the committed state.
    fn read<T>(&self, f: impl FnOnce(&Store) -> engine::error::Result<T>) -> Result<T>;
    /// Removes what no image or lease references any more (after a lease is released), if no writer is busy.
    fn collect_garbage(&self);
}

/// A store owned by one process (the CLI's direct mode).
impl StoreAccess for Mutex<Store> {
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> engine::error::Result<T>) -> Result<T> {
        let mut s = self.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s).map_err(Error::from)
    }
    fn read<T>(&self, f: impl FnOnce(&Store) -> engine::error::Result<T>) -> Result<T> {
        let s = self.lock().unwrap_or_else(|e| e.into_inner());
        f(&s).map_err(Error::from)
    }
    fn collect_garbage(&self) {
        if let Err(e) = self.lock().unwrap_or_else(|e| e.into_inner()).collect_garbage() {
            log::warn!("collecting unreferenced layers: {e}");
        }
    }
}
