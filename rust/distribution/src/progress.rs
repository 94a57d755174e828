//! What a pull or push reports as it goes, in docker's vocabulary: the daemon turns it into docker's JSON
//! progress stream, the CLI's direct mode into lines or bars.

pub trait Progress: Send + Sync {
    /// A line about the whole operation (`id` = `None`) or about one layer (its short digest).
    fn status(&self, id: Option<&str>, status: &str);
    /// Bytes done of a layer (`Downloading`, `Extracting`, `Pushing`); `total` 0 when unknown.
    fn progress(&self, id: &str, status: &str, current: u64, total: u64);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn status(&self, _: Option<&str>, _: &str) {}
    fn progress(&self, _: &str, _: &str, _: u64, _: u64) {}
}

/// Writes one line per status (not per progress tick) to stderr: the CLI's direct mode, logs.
pub struct Lines;

impl Progress for Lines {
    fn status(&self, id: Option<&str>, status: &str) {
        match id {
            Some(id) => eprintln!("{id}: {status}"),
            None => eprintln!("{status}"),
        }
    }
    fn progress(&self, _: &str, _: &str, _: u64, _: u64) {}
}

/// Docker's short form of a digest (12 hex digits) used as the progress id of a layer.
pub fn short_id(d: &engine::digest::Digest) -> String {
    d.short().to_owned()
}
