//! What the container manager uses from the log driver ([`crate::logs`]) and the volume store
//! ([`crate::volumes`]), in one place.

pub use crate::logs::{log_path, read_logs, spawn_log_copier_named, LogConfig, LogCopier, LogDriver, LogQuery};
pub use crate::volumes::{VolumeError, VolumeStore};
