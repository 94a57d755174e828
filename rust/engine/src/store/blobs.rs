//! Content-addressed blobs (image configs): written once under their sha256, read back verified.

use std::fs;
use std::io::Write;

use super::atomic::fsync_dir;
use super::Store;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

impl Store {
    /// Stores `data` under its digest (no-op when present) and returns the digest. Durable on return.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of_bytes(data);
        let path = self.blob_path(&digest);
        if path.exists() {
            return Ok(digest);
        }
        let tmp = self.tmp_dir().join(format!("blob-{}", digest.hex()));
        let res = (|| {
            let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            f.write_all(data).ctx(|| format!("writing {}", tmp.display()))?;
            f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
            fs::rename(&tmp, &path).ctx(|| format!("storing blob {digest}"))?;
            fsync_dir(&self.root.join("blobs/sha256"))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map(|_| digest)
    }

    /// Reads a blob and checks its digest.
    pub fn get_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let data = fs::read(&path).ctx(|| format!("reading blob {digest}"))?;
        let actual = Digest::of_bytes(&data);
        if &actual != digest {
            return Err(Error::Corrupt(format!("blob {digest} has digest {actual}")));
        }
        Ok(data)
    }
}
