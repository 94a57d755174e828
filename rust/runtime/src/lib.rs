//! The balena engine's container runtime: a library the daemon calls to run one container as a
//! child process, without a shim or a re-executed helper binary.
//!
//! [`start`] creates the cgroup (limits; docker's device rules: `devices.allow` on v1, an eBPF device
//! program on v2, so that a container may create but not open a disk's node), clones a child into new mount, PID, UTS, IPC (and network)
//! namespaces, where a prepared list of steps mounts the overlay rootfs, pivots into it, mounts
//! `/proc`, `/dev`, `/sys`, the caller's binds and tmpfs, masks docker's paths, sets hostname,
//! rlimits, user and capabilities, and execs the user process as PID 1. The kernel calls go
//! through the [`syscall::Syscall`] trait so the sequence is testable without root.
//!
//! The calls block (`start` for the few milliseconds of setup; `wait` until the exit): call them
//! from `spawn_blocking` in an async daemon. The container is a child of the calling process: do
//! not reap it elsewhere (`waitpid(-1)`, `SIGCHLD` ignored). The setup runs on a copy of the
//! calling thread's stack and needs about 128 KiB of it.
//!
//! ```no_run
//! use runtime::{start, ContainerSpec, Rootfs};
//! let rootfs = Rootfs { lower_dirs: vec!["/var/lib/balena-engine/layers/abc/diff".into()],
//!                       container_dir: "/var/lib/balena-engine/containers/c1".into(), readonly: false };
//! let container = start(&ContainerSpec::new("c1", rootfs, vec!["true".into()]))?;
//! let status = container.wait()?;
//! container.cleanup()?;
//! # Ok::<(), runtime::Error>(())
//! ```

mod capabilities;
mod cgroups;
mod child;
mod devices;
mod error;
mod exec;
mod mounts;
mod namespaces;
mod plan;
mod process;
mod rlimits;
mod rootfs;
mod setup;
mod spec;
pub mod syscall;
mod user;

pub use capabilities::{UnknownCapability, DEFAULT_CAPABILITIES};
pub use cgroups::{
    cpu_shares_to_weight, detect_version, CgroupFeature, CgroupSupport, CgroupVersion, MissingFeature, MissingReason,
    CGROUP_ROOT, PROC_CGROUPS,
};
pub use error::{Error, ExecError, Result};
pub use nix::sys::signal::Signal;
pub use process::{start, Container, ExitStatus};
pub use rlimits::{Rlimit, RlimitKind, UnknownRlimit};
pub use spec::{ContainerSpec, EtcFiles, Mount, Network, Process, Resources, Rootfs, Stdio, User, DEFAULT_PATH};

#[cfg(test)]
mod tests;
