//! Typed errors; [`Error::exit_code`] gives the code docker records for a container that failed to start.

use std::path::Path;

use crate::syscall::Errno;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A kernel call made by the daemon side (clone, pipe, wait, kill).
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: Errno,
    },
    /// A setup step in the container's process failed before the exec.
    #[error("container setup failed: {step}: {errno}{hint}")]
    Setup { step: String, errno: Errno, hint: &'static str },
    #[error("unable to start container process: {0}")]
    Exec(#[from] ExecError),
    #[error("container process has already exited")]
    NotRunning,
    /// A limit needs a cgroup feature the host lacks: which, why, and the fix.
    #[error("cannot apply the container's limits: {0}")]
    Cgroup(#[from] crate::cgroups::MissingFeature),
}

/// The user process could not be executed, worded like docker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    /// e.g. `exec: "foo": executable file not found in $PATH`.
    pub message: String,
    pub errno: Errno,
    /// 127 not found, 126 not executable, 128 anything else (docker's codes).
    pub exit_code: i32,
}

impl Error {
    /// The exit code docker gives a container whose start failed: 127, 126 or 128.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec(e) => e.exit_code,
            _ => 128,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn io_path(what: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Io { context: format!("{what} {}", path.display()), source }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidSpec(msg.into())
    }
}
