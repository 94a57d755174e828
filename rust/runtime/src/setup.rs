//! Assembles the child's [`Plan`] from the spec, in the order the kernel needs.

use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::cgroups::{CgroupVersion, SysfsCgroup};
use crate::error::{Error, Result};
use crate::plan::{cstr, mount_step, Plan, Step};
use crate::spec::ContainerSpec;
use crate::{capabilities, devices, exec, mounts, namespaces, rlimits, rootfs, user};

/// Facts from the daemon side the plan needs.
#[derive(Debug)]
pub(crate) struct Host {
    /// Descriptors for the container's 0, 1, 2.
    pub stdio: [RawFd; 3],
    /// The write end of the report pipe (close-on-exec), kept open until the exec.
    pub report_fd: RawFd,
    /// Open `cgroup.procs` files to join.
    pub cgroup_procs: Vec<(RawFd, PathBuf)>,
    pub cgroup_version: CgroupVersion,
    pub sysfs_cgroup: SysfsCgroup,
    pub last_cap: u8,
    /// Longest overlay option string the kernel takes.
    pub option_limit: usize,
}

/// Container IDs name directories: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 bytes.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    let ok = id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("container id {id:?} must match [A-Za-z0-9][A-Za-z0-9_.-]*")))
    }
}

pub(crate) fn build(spec: &ContainerSpec, host: &Host) -> Result<Plan> {
    let process = &spec.process;
    let cwd =
        if process.cwd.trim_matches('/').is_empty() { "/".to_string() } else { mounts::clean_dest(&process.cwd)? };
    let cap_mask =
        capabilities::mask(&process.capabilities, host.last_cap).map_err(|e| Error::invalid(e.to_string()))?;
    for r in &process.rlimits {
        if r.soft > r.hard {
            return Err(Error::invalid(format!("{}: soft limit {} above hard limit {}", r.kind, r.soft, r.hard)));
        }
    }
    let exec = exec::step(process)?;
    let mut plan = Plan::default();

    // Process state first: signals, session, stdio, cgroups (before anything is allocated).
    plan.push(Step::ResetSignals);
    plan.push(Step::Setsid);
    plan.push(Step::Stdio(host.stdio));
    for (fd, path) in &host.cgroup_procs {
        plan.push(Step::JoinCgroup { fd: *fd, path: path.clone() });
    }
    plan.push(Step::ResetOomScore);
    plan.steps.extend(namespaces::cgroup_ns(host.cgroup_version));
    plan.push(Step::CloseFds { keep: host.report_fd });
    plan.push(Step::Umask(0));

    // Mounts: host side, pivot and drop the host, then the container's.
    plan.push(mount_step(None, "/", None, libc::MS_REC | libc::MS_SLAVE, None)?);
    let entries = mounts::entries(spec, &host.sysfs_cgroup)?;
    let (opens, container_mounts) = mounts::render(&entries, &mut plan)?;
    plan.steps.extend(opens);
    plan.steps.extend(rootfs::overlay(&spec.rootfs, host.option_limit)?);
    plan.steps.extend(rootfs::pivot(&spec.rootfs)?);
    plan.steps.extend(rootfs::detach_old_root()?);
    plan.steps.extend(container_mounts);
    plan.steps.extend(devices::steps()?);
    plan.steps.extend(rootfs::masks()?);
    plan.push(Step::MkdirAll(cstr(&cwd)?));
    if spec.rootfs.readonly {
        plan.push(rootfs::readonly_root()?);
    }

    // Namespaced settings, limits, then privileges last.
    plan.steps.extend(namespaces::uts_and_net(spec)?);
    for r in rlimits::effective(&process.rlimits) {
        plan.push(Step::Setrlimit(r));
    }
    plan.push(Step::Chdir(cstr(&cwd)?));
    plan.steps.extend(capabilities::before_user(cap_mask, host.last_cap));
    plan.steps.extend(user::steps(&process.user));
    plan.push(capabilities::after_user(cap_mask));
    if process.no_new_privileges {
        plan.push(Step::NoNewPrivs);
    }
    plan.push(Step::Umask(0o022));
    plan.push(Step::Exec(exec));
    Ok(plan)
}
