//! cgroups v1 and v2, detected at run time: create `<root>/<parent>/<id>`, write the limits and the device
//! rules (v1 `devices.allow`, v2 an eBPF program), tell whether the OOM killer struck, remove it. What the
//! host lacks, and why, is [`availability`]'s.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::devices::ALLOWED_DEVICES;
use crate::error::{Error, Result};
use crate::spec::Resources;

mod availability;
mod bpf;
mod device_filter;
mod v1;
mod v2;

pub use availability::{CgroupFeature, CgroupSupport, MissingFeature, MissingReason, PROC_CGROUPS};

/// Where the cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// v2 when `root` is a unified hierarchy (has `cgroup.controllers`), else v1 (including the hybrid
/// layout, whose v2 hierarchy at `unified/` has no controllers).
pub fn detect_version(root: &Path) -> CgroupVersion {
    if root.join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// runc's conversion of cpu shares (2..=262144) to a v2 `cpu.weight` (1..=10000).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// What the container sees at `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SysfsCgroup {
    /// A read-only tmpfs with each controller's container cgroup bound read-only: `(name, host dir)`.
    V1(Vec<(String, PathBuf)>),
    /// A read-only `cgroup2` mount in the container's cgroup namespace.
    V2,
}

/// One container's cgroup: a directory per v1 controller, or one v2 directory.
#[derive(Debug)]
pub(crate) struct Cgroup {
    version: CgroupVersion,
    /// `(controller, dir)`; a single `("", dir)` on v2.
    dirs: Vec<(String, PathBuf)>,
}

impl Cgroup {
    /// Creates (or reuses) `<root>/<parent>/<id>` and writes the limits.
    pub fn create(root: &Path, parent: &str, id: &str, res: &Resources) -> Result<Self> {
        Self::create_in(root, Path::new(PROC_CGROUPS), parent, id, res)
    }

    /// [`create`](Self::create) with the kernel's list of controllers at `proc_cgroups`: when a limit needs
    /// a controller the host lacks, the error says which, why and the fix rather than a write's errno.
    fn create_in(root: &Path, proc_cgroups: &Path, parent: &str, id: &str, res: &Resources) -> Result<Self> {
        let rel = relative_path(parent, id)?;
        let version = detect_version(root);
        let explain = |e: Error| match CgroupSupport::detect_in(root, proc_cgroups, parent).missing_for(res) {
            Some(missing) => Error::Cgroup(missing.clone()),
            None => e,
        };
        let dirs = match version {
            CgroupVersion::V1 => v1::create(root, &rel, res).map_err(explain)?,
            CgroupVersion::V2 => {
                let dir = v2::create(root, &rel, res).map_err(explain)?;
                // cgroup v2 has no devices.allow: the same rules as v1, as an eBPF program. No filter, no container.
                if let Err(e) = bpf::attach_device_program(&dir, &device_filter::program(&ALLOWED_DEVICES)) {
                    let _ = fs::remove_dir(&dir);
                    return Err(e);
                }
                vec![(String::new(), dir)]
            }
        };
        Ok(Cgroup { version, dirs })
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The `cgroup.procs` files the container's process joins.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    pub fn sysfs(&self) -> SysfsCgroup {
        match self.version {
            CgroupVersion::V1 => SysfsCgroup::V1(self.dirs.clone()),
            CgroupVersion::V2 => SysfsCgroup::V2,
        }
    }

    /// How many processes the OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            CgroupVersion::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| c == "memory")
                .and_then(|(_, d)| read_key(&d.join("memory.oom_control"), "oom_kill"))
                .unwrap_or(0),
            CgroupVersion::V2 => {
                self.dirs.first().and_then(|(_, d)| read_key(&d.join("memory.events"), "oom_kill")).unwrap_or(0)
            }
        }
    }

    /// Removes the directories, waiting a little for exiting tasks to leave them.
    pub fn remove(&self) -> Result<()> {
        for (_, dir) in self.dirs.iter().rev() {
            remove_dir(dir)?;
        }
        Ok(())
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_micros(500);
    for _ in 0..12 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Tasks of a process that just exited can take a moment to leave the cgroup.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(Error::io_path("remove cgroup", dir, e)),
        }
    }
    fs::remove_dir(dir).map_err(|e| Error::io_path("remove cgroup", dir, e))
}

/// `parent/id`, refusing anything that could leave the hierarchy.
fn relative_path(parent: &str, id: &str) -> Result<PathBuf> {
    let rel = Path::new(parent.trim_start_matches('/')).join(id);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(rel)
    } else {
        Err(Error::invalid(format!("cgroup path {:?} must be relative, without `..`", rel.display())))
    }
}

/// Writes a control file (which must exist: cgroupfs creates them).
fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| Error::io(format!("write {value:?} to {}", path.display()), e))
}

/// The value of `key` in a flat keyed file (`memory.events`, `memory.oom_control`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Whether a limit asks for this controller.
fn needed(controller: &str, res: &Resources) -> bool {
    match controller {
        "memory" => res.memory_limit.is_some(),
        "pids" => res.pids_limit.is_some(),
        "cpu" => res.cpu_shares.is_some(),
        _ => false,
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(Error::io_path("create cgroup", dir, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_like_runc() {
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(0), 1);
        assert_eq!(cpu_shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn detects_version_from_root() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("memory")).unwrap();
        fs::create_dir(dir.path().join("unified")).unwrap();
        fs::write(dir.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(detect_version(dir.path()), CgroupVersion::V1);
        fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert_eq!(detect_version(dir.path()), CgroupVersion::V2);
    }

    #[test]
    fn refuses_escaping_paths() {
        assert!(relative_path("../x", "c").is_err());
        assert!(relative_path("a", "..").is_err());
        assert_eq!(relative_path("/balena-engine", "c").unwrap(), PathBuf::from("balena-engine/c"));
    }

    #[test]
    fn a_limit_on_a_missing_controller_names_it_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let (root, proc) = (dir.path().join("cgroup"), dir.path().join("cgroups"));
        fs::create_dir_all(root.join("be")).unwrap();
        fs::write(root.join("cgroup.controllers"), "cpu pids\n").unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fs::write(&proc, "#subsys_name hierarchy num_cgroups enabled\ncpu 0 1 1\nmemory 0 1 0\npids 0 1 1\n").unwrap();
        let res = Resources { memory_limit: Some(16 << 20), ..Default::default() };
        let err = Cgroup::create_in(&root, &proc, "be", "c1", &res).unwrap_err();
        assert!(matches!(&err, Error::Cgroup(m) if m.reason == MissingReason::Disabled), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("no memory limit support") && text.contains("cgroup_enable=memory cgroup_memory=1"),
            "{text}"
        );
        assert!(!root.join("be/c1").exists());
    }

    #[test]
    fn reads_keyed_counters() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.events");
        fs::write(&f, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\noom_group_kill 0\n").unwrap();
        assert_eq!(read_key(&f, "oom_kill"), Some(2));
        assert_eq!(read_key(&f, "oom"), Some(1));
        assert_eq!(read_key(&f, "missing"), None);
    }
}
