//! Typed errors of the engine library. Every variant renders as one line that names the problem.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {err}")]
    Io {
        context: String,
        /// Rendered in the message; deliberately not a `source()` so error chains print it once.
        err: io::Error,
    },
    #[error("invalid archive: {0}")]
    BadArchive(String),
    #[error("invalid layer {layer}: entry {entry:?}: {reason}")]
    BadLayerEntry { layer: String, entry: String, reason: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    BadDigest(String),
    #[error("invalid reference {0:?}")]
    BadReference(String),
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error("delta base image {0} is not in the store: load the image the delta was made from first")]
    MissingBase(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("data root {path} is in use by another balena-engine process")]
    Locked { path: PathBuf },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    pub fn bad_archive(msg: impl Into<String>) -> Self {
        Error::BadArchive(msg.into())
    }
}

/// Adds a human-readable context to I/O results: `file.read(..).ctx(|| format!("reading {p}"))`.
pub trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|err| Error::Io { context: f(), err })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|errno| Error::Io { context: f(), err: io::Error::from(errno) })
    }
}
