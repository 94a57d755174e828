//! The on-disk store under the data root:
//!
//! ```text
//! lock                 flock held by the one writer (see lock.rs)
//! gc.lock              flock held shared by readers, exclusive by a writer while it deletes
//! metadata.json        images and tags (the commit point of every change)
//! blobs/sha256/<hex>   image configs, content-addressed
//! layers/<chain-hex>/  one layer: diff/ (overlay lower dir), tar-split.zst, layer.json
//! leases/<name>        layers kept for a container whose image may be gone (see leases.rs)
//! tmp/                 work in progress; wiped whenever a writer opens the store
//! ```

mod atomic;
mod blobs;
mod gc;
mod layers;
mod leases;
mod lock;
mod metadata;
mod reserve;
mod staging;

use std::path::{Path, PathBuf};

pub use atomic::{fsync_dir, write_atomic};
pub use leases::TRANSIENT_PREFIX as TRANSIENT_LEASE;
pub use layers::{LayerFiles, LayerRecord};
pub use metadata::{BlobSource, ImageRecord, Metadata};
pub use staging::{StagedLayer, Staging};

use crate::digest::Digest;
use crate::error::{IoContext, Result};

pub const DEFAULT_ROOT: &str = "/var/lib/balena-engine";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
}

pub struct Store {
    root: PathBuf,
    access: Access,
    /// `None` only for a reader of a data root that was never created (it reads as empty).
    _lock: Option<lock::Held>,
    meta: Metadata,
}

impl Store {
    /// Opens (creating if needed) the store. A writer takes the writer lock, then removes what an
    /// interrupted operation left behind. A reader sees the committed state as of this call.
    pub fn open(root: &Path, access: Access) -> Result<Store> {
        if access == Access::Write {
            for d in ["blobs/sha256", "layers", "tmp"] {
                std::fs::create_dir_all(root.join(d)).ctx(|| format!("creating {}", root.join(d).display()))?;
            }
        }
        let lock = match access {
            Access::Write => Some(lock::writer(root)?),
            Access::Read => lock::reader(root)?,
        };
        let meta = Metadata::read(root)?;
        let store = Store { root: root.to_path_buf(), access, _lock: lock, meta };
        if access == Access::Write {
            gc::recover(&store)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// Replaces the metadata atomically, then removes layers and blobs nothing references any more.
    pub fn commit(&mut self, mut meta: Metadata) -> Result<()> {
        meta.prune_blob_sources();
        meta.write(&self.root)?;
        self.meta = meta;
        gc::collect(self)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }
}

impl Store {
    /// Keeps the layers `chains` (all chain IDs of a stack) until [`Store::remove_lease`], whatever happens to
    /// the images; works on a reader too (see leases.rs). Replaces a lease of the same name.
    pub fn add_lease(&self, name: &str, chains: &[Digest]) -> Result<()> {
        leases::add(self, name, chains)
    }

    pub fn has_lease(&self, name: &str) -> bool {
        leases::exists(self, name)
    }

    /// Releases a lease; its layers go at the next collection unless an image or another lease keeps them.
    pub fn remove_lease(&self, name: &str) -> Result<()> {
        leases::remove(self, name)
    }

    /// Removes layers and blobs that no committed image references (after a failed operation).
    pub fn collect_garbage(&self) -> Result<()> {
        gc::collect(self)
    }
}
