//! What the engine reads from an image config: its layers' DiffIDs.

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The config's `rootfs.diff_ids`, bottom layer first.
pub fn diff_ids_of(config: &[u8]) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let cfg: Config = serde_json::from_slice(config).map_err(|e| Error::bad_archive(format!("image config: {e}")))?;
    cfg.rootfs.diff_ids.iter().map(|d| d.parse()).collect()
}
