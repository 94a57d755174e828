//! Container logs: what a container writes to stdout and stderr, copied by the daemon to a logging driver,
//! and read back for `docker logs`.
//!
//! - [`config`] — `HostConfig.LogConfig` (drivers json-file, journald, none; json-file is always bounded:
//!   10 MiB × 3 files unless `max-size`/`max-file` say otherwise)
//! - [`copier`] — reads a container's two pipes and cuts lines (at newlines, and every 16 KiB for longer
//!   lines, as docker), so memory stays bounded whatever the container writes
//! - [`json_file`] — docker's json-file format (`{"log":…,"stream":…,"time":…}` lines in `<id>-json.log`),
//!   rotation (`.1`, `.2`, oldest dropped), and a full disk (lines dropped and counted, never a blocked
//!   container)
//! - [`journald`] — systemd's journal through its native socket (write only: `docker logs` answers 501)
//! - [`reader`] — `docker logs`: across rotated files, `tail` read backwards, `since`/`until`, `follow`
//!   through rotations

pub mod config;
pub mod copier;
pub mod journald;
pub mod json_file;
pub mod reader;

use std::path::{Path, PathBuf};

pub use config::{LogConfig, LogDriver, READ_NOT_SUPPORTED};
pub use copier::{spawn_log_copier, spawn_log_copier_named, CopyStats, LogCopier};
pub use reader::{read_logs, LogLine, LogQuery, LogReader};

/// `LogLine::stream` of standard output.
pub const STDOUT: u8 = 1;
/// `LogLine::stream` of standard error.
pub const STDERR: u8 = 2;

/// The live json-file log of a container: `<dir>/<id>-json.log`.
pub fn log_path(dir: &Path, container_id: &str) -> PathBuf {
    dir.join(format!("{container_id}-json.log"))
}

/// A rotated json-file log: `<dir>/<id>-json.log.<n>` (`n` ≥ 1; higher is older).
pub fn rotated_path(dir: &Path, container_id: &str, n: u32) -> PathBuf {
    dir.join(format!("{container_id}-json.log.{n}"))
}
