//! Which cgroup features the runtime's limits need are missing on this host, why, and the fix.
//!
//! The daemon reads it at start (one warning per missing feature, `/info`'s flags and warnings); a
//! container whose cgroup cannot be made gets the same explanation instead of a failed write's errno.
//! Everything is read under a cgroup root and from a `/proc/cgroups` given as paths, so that fake
//! hierarchies in temporary directories can stand in for the kernel's.

use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{detect_version, CgroupVersion, CGROUP_ROOT};
use crate::spec::Resources;

/// The kernel's controllers: `#subsys_name hierarchy num_cgroups enabled`.
pub const PROC_CGROUPS: &str = "/proc/cgroups";

/// What a container's limits (or docker's device rules) need from the cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupFeature {
    /// `--memory`: the memory controller.
    Memory,
    /// No swap beyond `--memory`: `memory.swap.max` (v2), `memory.memsw.limit_in_bytes` (v1).
    Swap,
    /// `--cpu-shares`: the cpu controller's `cpu.weight` (v2) or `cpu.shares` (v1).
    CpuShares,
    /// `--pids-limit`: the pids controller.
    Pids,
    /// docker's device rules on v1 (`devices.allow`); v2 has an eBPF program instead, always there.
    Devices,
}

impl CgroupFeature {
    pub const ALL: [CgroupFeature; 5] = [Self::Memory, Self::Swap, Self::CpuShares, Self::Pids, Self::Devices];

    /// The cgroup controller it needs.
    pub fn controller(self) -> &'static str {
        match self {
            Self::Memory | Self::Swap => "memory",
            Self::CpuShares => "cpu",
            Self::Pids => "pids",
            Self::Devices => "devices",
        }
    }

    /// The kernel options it needs.
    fn kernel_config(self, version: CgroupVersion) -> &'static str {
        match (self, version) {
            (Self::Memory, CgroupVersion::V1) => "CONFIG_MEMCG (and CONFIG_MEMCG_V1 since Linux 6.11)",
            (Self::Memory, CgroupVersion::V2) => "CONFIG_MEMCG",
            (Self::Swap, _) => "CONFIG_MEMCG and CONFIG_SWAP (and CONFIG_MEMCG_SWAP before Linux 6.1)",
            (Self::CpuShares, _) => "CONFIG_CGROUP_SCHED and CONFIG_FAIR_GROUP_SCHED",
            (Self::Pids, _) => "CONFIG_CGROUP_PIDS",
            (Self::Devices, _) => "CONFIG_CGROUP_DEVICE",
        }
    }

    /// The limits of `res` that need it.
    fn asked_by(self, res: &Resources) -> bool {
        match self {
            Self::Memory => res.memory_limit.is_some(),
            Self::CpuShares => res.cpu_shares.is_some(),
            Self::Pids => res.pids_limit.is_some(),
            // Applied when the host has them, skipped otherwise (the daemon warns at start).
            Self::Swap | Self::Devices => false,
        }
    }
}

impl fmt::Display for CgroupFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory limit",
            Self::Swap => "swap limit",
            Self::CpuShares => "cpu shares",
            Self::Pids => "pids limit",
            Self::Devices => "device access rules (devices cgroup)",
        })
    }
}

/// Why a feature is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingReason {
    /// Not in `/proc/cgroups`: the kernel was built without the controller.
    NotInKernel,
    /// `/proc/cgroups` lists it disabled: `cgroup_disable=` on the kernel command line, which the
    /// Raspberry Pi kernels imply for memory unless told `cgroup_enable=memory cgroup_memory=1`.
    Disabled,
    /// v1: no hierarchy of the controller at this path.
    NotMounted(PathBuf),
    /// v2: the controller is attached to a v1 hierarchy, so the unified one cannot have it.
    BoundToV1,
    /// v2: not in this `cgroup.controllers`, for a reason `/proc/cgroups` does not tell.
    NotAvailable(PathBuf),
    /// v2: the controller cannot be enabled in this `cgroup.subtree_control` on the way to the
    /// engine's cgroups.
    CannotEnable { file: PathBuf, why: String },
    /// The controller is there but not this control file: a kernel option is missing.
    NoControlFile(PathBuf),
}

/// A feature the host lacks, worded for the operator: what, why, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingFeature {
    pub feature: CgroupFeature,
    pub version: CgroupVersion,
    pub reason: MissingReason,
}

impl fmt::Display for MissingFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.feature.controller();
        let config = self.feature.kernel_config(self.version);
        write!(f, "no {} support: ", self.feature)?;
        match &self.reason {
            MissingReason::NotInKernel => {
                write!(f, "the kernel has no {c} cgroup controller; build it with {config}")
            }
            MissingReason::Disabled if c == "memory" => write!(
                f,
                "the memory cgroup controller is disabled on the kernel command line; add \
                 `cgroup_enable=memory cgroup_memory=1` to it (cmdline.txt on a Raspberry Pi; elsewhere remove \
                 `cgroup_disable=memory`) and reboot"
            ),
            MissingReason::Disabled => write!(
                f,
                "the {c} cgroup controller is disabled on the kernel command line; remove `cgroup_disable={c}` \
                 from it (cmdline.txt on a Raspberry Pi) and reboot"
            ),
            MissingReason::NotMounted(dir) => write!(
                f,
                "the {c} cgroup v1 hierarchy is not mounted at {}; mount it there \
                 (`mount -t cgroup -o {c} cgroup {0}`; systemd does at boot)",
                dir.display()
            ),
            MissingReason::BoundToV1 => write!(
                f,
                "the {c} controller is bound to a cgroup v1 hierarchy, so cgroup v2 cannot use it; unmount that \
                 hierarchy, or add `cgroup_no_v1={c}` to the kernel command line and reboot"
            ),
            MissingReason::NotAvailable(file) => write!(
                f,
                "{c} is not in {}; the kernel needs {config} and no `cgroup_disable={c}` on its command line",
                file.display()
            ),
            MissingReason::CannotEnable { file, why } => write!(
                f,
                "the {c} controller cannot be enabled in {} ({why}); run the engine in the host's cgroup \
                 namespace with /sys/fs/cgroup writable",
                file.display()
            ),
            MissingReason::NoControlFile(file) if self.feature == CgroupFeature::Swap => write!(
                f,
                "{} is missing; the kernel needs {config} and swap accounting on (`swapaccount=1` on its command \
                 line, cmdline.txt on a Raspberry Pi)",
                file.display()
            ),
            MissingReason::NoControlFile(file) => {
                write!(f, "{} is missing; build the kernel with {config}", file.display())
            }
        }
    }
}

/// What the host's cgroups offer the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSupport {
    pub version: CgroupVersion,
    /// The features the runtime uses that the host lacks, in [`CgroupFeature::ALL`] order.
    pub missing: Vec<MissingFeature>,
    /// CFS quota and period (`cpu.max`; v1 `cpu.cfs_quota_us`, `cpu.cfs_period_us`): reported, not used yet.
    pub cpu_cfs: bool,
    /// The cpuset controller: reported, not used yet.
    pub cpuset: bool,
    /// v1's `memory.oom_control` (v2 has none): reported, not used.
    pub oom_kill_disable: bool,
}

impl CgroupSupport {
    /// The host's cgroups at [`CGROUP_ROOT`], for containers under `parent` (e.g. `balena-engine`).
    pub fn detect(parent: &str) -> Self {
        Self::detect_in(Path::new(CGROUP_ROOT), Path::new(PROC_CGROUPS), parent)
    }

    /// As [`detect`](Self::detect), with the hierarchy at `root` and the kernel's list at `proc_cgroups`
    /// (unreadable: the reasons are less precise).
    pub fn detect_in(root: &Path, proc_cgroups: &Path, parent: &str) -> Self {
        let kernel = fs::read_to_string(proc_cgroups).ok().map(|t| parse_proc_cgroups(&t));
        match detect_version(root) {
            CgroupVersion::V1 => v1(root, kernel.as_ref()),
            CgroupVersion::V2 => v2(root, kernel.as_ref(), parent),
        }
    }

    pub fn has(&self, feature: CgroupFeature) -> bool {
        self.missing(feature).is_none()
    }

    pub fn missing(&self, feature: CgroupFeature) -> Option<&MissingFeature> {
        self.missing.iter().find(|m| m.feature == feature)
    }

    /// The first feature a limit of `res` needs that the host lacks.
    pub fn missing_for(&self, res: &Resources) -> Option<&MissingFeature> {
        self.missing.iter().find(|m| m.feature.asked_by(res))
    }
}

/// One line of `/proc/cgroups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subsys {
    /// 0: not bound to a v1 hierarchy (on v2, or unused).
    hierarchy: u32,
    enabled: bool,
}

fn parse_proc_cgroups(text: &str) -> HashMap<String, Subsys> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, hierarchy, _num_cgroups, enabled] = f[..] else { continue };
        let (Ok(hierarchy), Ok(enabled)) = (hierarchy.parse(), enabled.parse::<u8>()) else { continue };
        out.insert(name.to_string(), Subsys { hierarchy, enabled: enabled != 0 });
    }
    out
}

type Kernel = HashMap<String, Subsys>;

/// The one feature each check yields, in [`CgroupFeature::ALL`] order.
fn collect(version: CgroupVersion, checks: [(CgroupFeature, Result<(), MissingReason>); 5]) -> Vec<MissingFeature> {
    checks
        .into_iter()
        .filter_map(|(feature, r)| r.err().map(|reason| MissingFeature { feature, version, reason }))
        .collect()
}

fn file_in(dir: &Path, name: &str) -> Result<(), MissingReason> {
    let path = dir.join(name);
    if path.exists() {
        Ok(())
    } else {
        Err(MissingReason::NoControlFile(path))
    }
}

fn v1(root: &Path, kernel: Option<&Kernel>) -> CgroupSupport {
    // Where the runtime looks for each hierarchy (`<root>/<controller>`, symlinks such as cpu -> cpu,cpuacct followed).
    let hierarchy = |c: &str| -> Result<PathBuf, MissingReason> {
        let dir = root.join(c);
        if dir.join("cgroup.procs").exists() {
            return Ok(dir);
        }
        Err(match kernel.map(|k| k.get(c)) {
            Some(None) => MissingReason::NotInKernel,
            Some(Some(s)) if !s.enabled => MissingReason::Disabled,
            _ => MissingReason::NotMounted(dir),
        })
    };
    let memory = hierarchy("memory");
    let cpu = hierarchy("cpu");
    let has = |dir: &Result<PathBuf, MissingReason>, file: &str| dir.as_ref().is_ok_and(|d| d.join(file).exists());
    let checks = [
        (CgroupFeature::Memory, memory.as_ref().map(|_| ()).map_err(Clone::clone)),
        (CgroupFeature::Swap, memory.clone().and_then(|d| file_in(&d, "memory.memsw.limit_in_bytes"))),
        (CgroupFeature::CpuShares, cpu.clone().and_then(|d| file_in(&d, "cpu.shares"))),
        (CgroupFeature::Pids, hierarchy("pids").map(|_| ())),
        (CgroupFeature::Devices, hierarchy("devices").map(|_| ())),
    ];
    CgroupSupport {
        version: CgroupVersion::V1,
        missing: collect(CgroupVersion::V1, checks),
        cpu_cfs: has(&cpu, "cpu.cfs_quota_us") && has(&cpu, "cpu.cfs_period_us"),
        cpuset: hierarchy("cpuset").is_ok(),
        oom_kill_disable: has(&memory, "memory.oom_control"),
    }
}

fn words(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

fn v2(root: &Path, kernel: Option<&Kernel>, parent: &str) -> CgroupSupport {
    let controllers_file = root.join("cgroup.controllers");
    let available = words(&controllers_file);
    // The directories whose `cgroup.subtree_control` the runtime writes: the root and the parent's
    // components (those not made yet will be, empty, so enabling works there).
    let mut chain = vec![root.to_path_buf()];
    for component in Path::new(parent).components() {
        if let Component::Normal(name) = component {
            let next = chain[chain.len() - 1].join(name);
            chain.push(next);
        }
    }
    chain.retain(|d| d.is_dir());
    let controller = |c: &str| -> Result<(), MissingReason> {
        if !available.iter().any(|a| a == c) {
            return Err(match kernel.and_then(|k| k.get(c)) {
                Some(s) if !s.enabled => MissingReason::Disabled,
                Some(s) if s.hierarchy != 0 => MissingReason::BoundToV1,
                _ => MissingReason::NotAvailable(controllers_file.clone()),
            });
        }
        chain.iter().try_for_each(|dir| can_enable(dir, c))
    };
    let memory = controller("memory");
    let cpu = controller("cpu");
    let probe = |c: &str, file: &str| probe_file(root, &chain, c, file);
    let checks = [
        (CgroupFeature::Memory, memory.clone()),
        (CgroupFeature::Swap, memory.and_then(|()| probe("memory", "memory.swap.max"))),
        (CgroupFeature::CpuShares, cpu.clone().and_then(|()| probe("cpu", "cpu.weight"))),
        (CgroupFeature::Pids, controller("pids")),
        (CgroupFeature::Devices, Ok(())),
    ];
    CgroupSupport {
        version: CgroupVersion::V2,
        missing: collect(CgroupVersion::V2, checks),
        cpu_cfs: cpu.and_then(|()| probe("cpu", "cpu.max")).is_ok(),
        cpuset: available.iter().any(|a| a == "cpuset"),
        oom_kill_disable: false,
    }
}

/// Whether the runtime can write `+c` to `dir`'s `cgroup.subtree_control` (or need not).
fn can_enable(dir: &Path, c: &str) -> Result<(), MissingReason> {
    let file = dir.join("cgroup.subtree_control");
    if words(&file).iter().any(|e| e == c) {
        return Ok(());
    }
    if let Err(e) = writable(&file) {
        return Err(MissingReason::CannotEnable { file, why: format!("not writable: {e}") });
    }
    // Only the real root (the one without `cgroup.type`) may both hold processes and hand controllers
    // down; a cgroup namespace's root with processes in it may not ("no internal processes").
    let has_processes = !fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().trim().is_empty();
    if dir.join("cgroup.type").exists() && has_processes {
        return Err(MissingReason::CannotEnable {
            file,
            why: "that cgroup has processes of its own: is the engine in a cgroup namespace?".into(),
        });
    }
    Ok(())
}

fn writable(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: access(2) reads the NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `file` exists in a cgroup that has controller `c` (the root has few control files): the engine's
/// own cgroups first, then the root's children. None found: assumed there.
fn probe_file(root: &Path, chain: &[PathBuf], c: &str, file: &str) -> Result<(), MissingReason> {
    let children = fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir());
    let mut children: Vec<PathBuf> = children.collect();
    children.sort();
    let candidates = chain.iter().skip(1).rev().cloned().chain(children);
    for dir in candidates {
        if words(&dir.join("cgroup.controllers")).iter().any(|e| e == c) {
            return file_in(&dir, file);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_ALL: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
        cpuset\t3\t1\t1\ncpu\t1\t3\t1\ncpuacct\t2\t1\t1\nmemory\t4\t44\t1\ndevices\t5\t3\t1\npids\t8\t3\t1\n";

    fn touch(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A v1 root with the given hierarchies and their control files, and a `/proc/cgroups`.
    fn v1_root(hierarchies: &[&str], proc: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        let files: &[(&str, &[&str])] = &[
            ("memory", &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control"]),
            ("cpu", &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"]),
            ("cpuset", &["cpuset.cpus"]),
            ("pids", &["pids.max"]),
            ("devices", &["devices.allow"]),
        ];
        for (c, names) in files.iter().filter(|(c, _)| hierarchies.contains(c)) {
            touch(&root.join(c).join("cgroup.procs"), "1\n");
            for n in *names {
                touch(&root.join(c).join(n), "");
            }
        }
        fs::create_dir_all(&root).unwrap();
        touch(&dir.path().join("cgroups"), proc);
        (dir, root)
    }

    fn detect(dir: &tempfile::TempDir, root: &Path) -> CgroupSupport {
        CgroupSupport::detect_in(root, &dir.path().join("cgroups"), "balena-engine")
    }

    fn features(s: &CgroupSupport) -> Vec<CgroupFeature> {
        s.missing.iter().map(|m| m.feature).collect()
    }

    #[test]
    fn parses_proc_cgroups() {
        let k = parse_proc_cgroups("#subsys_name hierarchy num_cgroups enabled\nmemory 0 1 0\npids 8 3 1\nbad line\n");
        assert_eq!(k["memory"], Subsys { hierarchy: 0, enabled: false });
        assert_eq!(k["pids"], Subsys { hierarchy: 8, enabled: true });
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn v1_with_everything_misses_nothing() {
        let (dir, root) = v1_root(&["memory", "cpu", "cpuset", "pids", "devices"], PROC_ALL);
        let s = detect(&dir, &root);
        assert_eq!((s.version, s.missing.clone()), (CgroupVersion::V1, vec![]));
        assert!(s.cpu_cfs && s.cpuset && s.oom_kill_disable);
    }

    #[test]
    fn v1_memory_disabled_on_the_command_line_names_the_pi_fix() {
        let proc = PROC_ALL.replace("memory\t4\t44\t1", "memory\t0\t1\t0");
        let (dir, root) = v1_root(&["cpu", "pids", "devices"], &proc);
        let s = detect(&dir, &root);
        assert_eq!(features(&s), [CgroupFeature::Memory, CgroupFeature::Swap]);
        assert_eq!(s.missing[0].reason, MissingReason::Disabled);
        let text = s.missing[0].to_string();
        assert!(text.starts_with("no memory limit support: the memory cgroup controller is disabled"), "{text}");
        assert!(text.contains("`cgroup_enable=memory cgroup_memory=1`") && text.contains("cmdline.txt"), "{text}");
        assert!(!s.oom_kill_disable && s.cpu_cfs);
        // A limit that needs it is refused with that explanation; one that does not is not.
        let memory = Resources { memory_limit: Some(1 << 24), ..Default::default() };
        assert_eq!(s.missing_for(&memory), Some(&s.missing[0]));
        assert_eq!(s.missing_for(&Resources { pids_limit: Some(5), ..Default::default() }), None);
    }

    #[test]
    fn v1_reasons_not_built_not_mounted_no_control_file() {
        let proc = PROC_ALL.replace("pids\t8\t3\t1\n", "");
        let (dir, root) = v1_root(&["memory", "cpu"], &proc);
        fs::remove_file(root.join("memory/memory.memsw.limit_in_bytes")).unwrap();
        fs::remove_file(root.join("cpu/cpu.shares")).unwrap();
        let s = detect(&dir, &root);
        let reasons: Vec<_> = s.missing.iter().map(|m| (m.feature, m.reason.clone())).collect();
        assert_eq!(
            reasons,
            [
                (CgroupFeature::Swap, MissingReason::NoControlFile(root.join("memory/memory.memsw.limit_in_bytes"))),
                (CgroupFeature::CpuShares, MissingReason::NoControlFile(root.join("cpu/cpu.shares"))),
                (CgroupFeature::Pids, MissingReason::NotInKernel),
                (CgroupFeature::Devices, MissingReason::NotMounted(root.join("devices"))),
            ]
        );
        assert!(s.missing[0].to_string().contains("swapaccount=1"), "{}", s.missing[0]);
        assert!(s.missing[1].to_string().contains("CONFIG_FAIR_GROUP_SCHED"), "{}", s.missing[1]);
        assert!(s.missing[2].to_string().contains("build it with CONFIG_CGROUP_PIDS"), "{}", s.missing[2]);
        assert!(s.missing[3].to_string().contains("-o devices cgroup"), "{}", s.missing[3]);
        assert!(!s.cpuset);
    }

    #[test]
    fn v1_without_proc_cgroups_says_not_mounted() {
        let (dir, root) = v1_root(&["memory", "cpu", "devices"], "");
        fs::remove_file(dir.path().join("cgroups")).unwrap();
        let s = detect(&dir, &root);
        assert_eq!(
            s.missing(CgroupFeature::Pids).map(|m| &m.reason),
            Some(&MissingReason::NotMounted(root.join("pids")))
        );
    }

    /// A v2 root offering `controllers`, with the engine's parent and a systemd-like child that have
    /// memory, cpu and pids enabled and their control files.
    fn v2_root(controllers: &str, proc: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        touch(&root.join("cgroup.controllers"), controllers);
        touch(&root.join("cgroup.subtree_control"), "");
        touch(&root.join("cgroup.procs"), "1\n");
        for child in ["balena-engine", "system.slice"] {
            let d = root.join(child);
            touch(&d.join("cgroup.type"), "domain\n");
            touch(&d.join("cgroup.controllers"), controllers);
            touch(&d.join("cgroup.subtree_control"), "");
            touch(&d.join("cgroup.procs"), "");
            for f in ["memory.max", "memory.swap.max", "cpu.weight", "cpu.max", "pids.max"] {
                touch(&d.join(f), "");
            }
        }
        touch(&dir.path().join("cgroups"), proc);
        (dir, root)
    }

    const PROC_V2: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
        cpuset\t0\t1\t1\ncpu\t0\t3\t1\nmemory\t0\t44\t1\ndevices\t0\t3\t1\npids\t0\t3\t1\n";

    #[test]
    fn v2_with_everything_misses_nothing() {
        let (dir, root) = v2_root("cpuset cpu io memory pids\n", PROC_V2);
        let s = detect(&dir, &root);
        assert_eq!((s.version, s.missing.clone()), (CgroupVersion::V2, vec![]));
        assert!(s.cpu_cfs && s.cpuset && !s.oom_kill_disable);
    }

    #[test]
    fn v2_memory_disabled_on_the_command_line_names_the_pi_fix() {
        let (dir, root) = v2_root("cpuset cpu io pids\n", &PROC_V2.replace("memory\t0\t44\t1", "memory\t0\t1\t0"));
        let s = detect(&dir, &root);
        assert_eq!(features(&s), [CgroupFeature::Memory, CgroupFeature::Swap]);
        assert_eq!(s.missing[0].reason, MissingReason::Disabled);
        assert!(s.missing[0].to_string().contains("add `cgroup_enable=memory cgroup_memory=1`"), "{}", s.missing[0]);
        let err = crate::error::Error::from(s.missing[0].clone()).to_string();
        assert!(err.starts_with("cannot apply the container's limits: no memory limit support: "), "{err}");
    }

    #[test]
    fn v2_controller_missing_for_other_reasons() {
        let proc = PROC_V2.replace("memory\t0\t44\t1", "memory\t4\t1\t1").replace("pids\t0\t3\t1\n", "");
        let (dir, root) = v2_root("cpu\n", &proc);
        let s = detect(&dir, &root);
        assert_eq!(s.missing(CgroupFeature::Memory).map(|m| &m.reason), Some(&MissingReason::BoundToV1));
        let pids = s.missing(CgroupFeature::Pids).unwrap();
        assert_eq!(pids.reason, MissingReason::NotAvailable(root.join("cgroup.controllers")));
        assert!(pids.to_string().contains("CONFIG_CGROUP_PIDS"), "{pids}");
        assert!(!s.cpuset);
    }

    #[test]
    fn v2_controller_that_cannot_be_enabled_in_a_namespace_root_with_processes() {
        let (dir, root) = v2_root("cpu memory pids\n", PROC_V2);
        // A cgroup namespace's root: a non-root cgroup (it has cgroup.type) with processes of its own.
        touch(&root.join("cgroup.type"), "domain\n");
        touch(&root.join("cgroup.subtree_control"), "pids\n");
        let s = detect(&dir, &root);
        assert_eq!(features(&s), [CgroupFeature::Memory, CgroupFeature::Swap, CgroupFeature::CpuShares]);
        let file = root.join("cgroup.subtree_control");
        assert!(matches!(&s.missing[0].reason, MissingReason::CannotEnable { file: f, .. } if *f == file));
        assert!(s.missing[0].to_string().contains("has processes of its own"), "{}", s.missing[0]);
        // Already enabled there, or no processes: fine.
        touch(&root.join("cgroup.subtree_control"), "cpu memory pids\n");
        assert_eq!(detect(&dir, &root).missing, vec![]);
        touch(&root.join("cgroup.subtree_control"), "");
        touch(&root.join("cgroup.procs"), "");
        assert_eq!(detect(&dir, &root).missing, vec![]);
    }

    #[test]
    fn v2_control_files_are_probed_below_the_root() {
        let (dir, root) = v2_root("cpu memory pids\n", PROC_V2);
        for child in ["balena-engine", "system.slice"] {
            fs::remove_file(root.join(child).join("memory.swap.max")).unwrap();
        }
        fs::remove_file(root.join("balena-engine/cpu.max")).unwrap();
        let s = detect(&dir, &root);
        let swap = s.missing(CgroupFeature::Swap).unwrap();
        // The engine's own cgroup is asked first.
        assert_eq!(swap.reason, MissingReason::NoControlFile(root.join("balena-engine/memory.swap.max")));
        assert!(swap.to_string().contains("CONFIG_SWAP"), "{swap}");
        assert_eq!(features(&s), [CgroupFeature::Swap]);
        assert!(!s.cpu_cfs);
        // Without a cgroup that has the controller, the files are assumed there.
        fs::remove_dir_all(root.join("balena-engine")).unwrap();
        fs::remove_dir_all(root.join("system.slice")).unwrap();
        let s = detect(&dir, &root);
        assert_eq!(s.missing, vec![]);
        assert!(s.cpu_cfs);
    }
}
