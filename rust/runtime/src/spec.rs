//! What the daemon asks for: one container, fully resolved (user IDs, env, final capability list).

use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::capabilities::DEFAULT_CAPABILITIES;
use crate::rlimits::Rlimit;

/// `PATH` used for the executable lookup when the environment has none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container ID: names the cgroup (`<cgroup_parent>/<id>`) and, when `hostname` is empty, gives the
    /// hostname (its first 12 characters, like docker). `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    pub id: String,
    pub rootfs: Rootfs,
    pub process: Process,
    /// Empty: the first 12 characters of `id`.
    pub hostname: String,
    pub network: Network,
    /// Bind mounts and tmpfs, mounted after the default ones, parents before children.
    pub mounts: Vec<Mount>,
    /// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` bound from files the daemon writes.
    pub etc_files: EtcFiles,
    pub resources: Resources,
    /// Relative path of the parent cgroup under each hierarchy root, e.g. `balena-engine`.
    pub cgroup_parent: String,
    pub stdio: Stdio,
}

impl ContainerSpec {
    /// A spec with docker's defaults: default capabilities, no network, cwd `/`, `PATH` set,
    /// cgroup parent `balena-engine`, stdio on `/dev/null`.
    pub fn new(id: impl Into<String>, rootfs: Rootfs, args: Vec<String>) -> Self {
        ContainerSpec {
            id: id.into(),
            rootfs,
            process: Process::new(args),
            hostname: String::new(),
            network: Network::None,
            mounts: Vec::new(),
            etc_files: EtcFiles::default(),
            resources: Resources::default(),
            cgroup_parent: "balena-engine".into(),
            stdio: Stdio::default(),
        }
    }

    /// The hostname the container gets.
    pub fn effective_hostname(&self) -> &str {
        if self.hostname.is_empty() {
            let end = self.id.char_indices().nth(12).map_or(self.id.len(), |(i, _)| i);
            &self.id[..end]
        } else {
            &self.hostname
        }
    }
}

/// The container's root filesystem: an overlay of read-only lower dirs and a per-container
/// writable layer kept in `container_dir` (`upper/`, `work/`, `merged/`, created when missing and
/// kept by [`Container::cleanup`](crate::Container::cleanup), so a restart keeps the changes).
///
/// The overlay is mounted inside the container's mount namespace only: nothing stays mounted on
/// the host, whatever happens to the daemon.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// Image layers, top first (`GraphDriver.Data.LowerDir` order).
    pub lower_dirs: Vec<PathBuf>,
    pub container_dir: PathBuf,
    /// Remount the root read-only once the mount points exist (`--read-only`).
    pub readonly: bool,
}

impl Rootfs {
    pub fn upper_dir(&self) -> PathBuf {
        self.container_dir.join("upper")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.container_dir.join("work")
    }
    pub fn merged_dir(&self) -> PathBuf {
        self.container_dir.join("merged")
    }
}

/// The user process: it is the container's PID 1 (no init shim, like `docker run` without `--init`).
#[derive(Debug, Clone)]
pub struct Process {
    /// `args[0]` is looked up in the container's `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Absolute; created (root-owned, 0755) when missing, like docker's `WorkingDir`.
    pub cwd: String,
    pub user: User,
    /// Set as given; `RLIMIT_CORE` is 0 (soft and hard) unless listed here.
    pub rlimits: Vec<Rlimit>,
    /// The final list (`CAP_CHOWN` or `chown`): bounding, permitted and effective set. Names the
    /// running kernel does not know are ignored, like runc does.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
}

impl Process {
    pub fn new(args: Vec<String>) -> Self {
        Process {
            args,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: "/".into(),
            user: User::default(),
            rlimits: Vec::new(),
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            no_new_privileges: false,
        }
    }
}

/// Numeric IDs, resolved by the caller from the image's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; empty clears the daemon's.
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A new network namespace with only `lo`, up.
    #[default]
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A host file or directory (named volumes are binds too). Recursive, `rprivate`.
    Bind { source: PathBuf, destination: String, readonly: bool },
    /// `nosuid,nodev,noexec` like docker's `--tmpfs`.
    Tmpfs { destination: String, size: Option<u64>, mode: Option<u32> },
}

impl Mount {
    pub fn destination(&self) -> &str {
        match self {
            Mount::Bind { destination, .. } | Mount::Tmpfs { destination, .. } => destination,
        }
    }
}

/// Files bound over `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` (read-only when the rootfs is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Bytes (v1 `memory.limit_in_bytes`; v2 `memory.max`, and `memory.swap.max` 0).
    pub memory_limit: Option<u64>,
    /// Zero or negative: unlimited.
    pub pids_limit: Option<i64>,
    /// Relative weight, 2..=262144 (v1 `cpu.shares`; v2 `cpu.weight`, converted like runc).
    pub cpu_shares: Option<u64>,
}

/// File descriptors the container gets as 0, 1, 2; `None` is `/dev/null`. They must stay open until
/// [`start`](crate::start) returns; create them `O_CLOEXEC` so other children of the daemon do not
/// inherit them (the runtime clears the flag on the container's copies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: Option<RawFd>,
    pub stdout: Option<RawFd>,
    pub stderr: Option<RawFd>,
}
