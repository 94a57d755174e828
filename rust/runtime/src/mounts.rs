//! The container's mounts: docker's defaults (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys,
//! /sys/fs/cgroup), the caller's binds and tmpfs, the `/etc` files; sorted parents first.
//!
//! They are mounted after `pivot_root` and after the old root is gone, so targets resolve inside
//! the container whatever symlinks the image has (`..` stops at its `/`). Bind sources are cloned
//! with `open_tree` before the pivot and attached with `move_mount` (Linux 5.2+).

use std::path::{Path, PathBuf};

use crate::cgroups::SysfsCgroup;
use crate::error::{Error, Result};
use crate::plan::{cpath, cstr, mount_step, Plan, Step};
use crate::spec::{ContainerSpec, Mount};

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Fs { dest: String, source: &'static str, fstype: &'static str, flags: libc::c_ulong, data: String },
    Bind { dest: String, source: PathBuf, is_dir: bool, readonly: bool, keep_flags: libc::c_ulong },
    CgroupV1 { dest: String, controllers: Vec<(String, PathBuf)> },
}

impl Entry {
    fn dest(&self) -> &str {
        match self {
            Entry::Fs { dest, .. } | Entry::Bind { dest, .. } | Entry::CgroupV1 { dest, .. } => dest,
        }
    }
}

fn fs(dest: &str, source: &'static str, fstype: &'static str, flags: libc::c_ulong, data: &str) -> Entry {
    Entry::Fs { dest: dest.into(), source, fstype, flags, data: data.into() }
}

fn defaults(cgroup: &SysfsCgroup) -> Vec<Entry> {
    let cgroup = match cgroup {
        SysfsCgroup::V2 => {
            fs("/sys/fs/cgroup", "cgroup", "cgroup2", NOSUID | NOEXEC | NODEV | libc::MS_RELATIME | libc::MS_RDONLY, "")
        }
        SysfsCgroup::V1(controllers) => {
            Entry::CgroupV1 { dest: "/sys/fs/cgroup".into(), controllers: controllers.clone() }
        }
    };
    vec![
        fs("/proc", "proc", "proc", NOSUID | NOEXEC | NODEV, ""),
        fs("/dev", "tmpfs", "tmpfs", NOSUID | libc::MS_STRICTATIME, "mode=755,size=65536k"),
        fs("/dev/pts", "devpts", "devpts", NOSUID | NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        fs("/sys", "sysfs", "sysfs", NOSUID | NOEXEC | NODEV | libc::MS_RDONLY, ""),
        cgroup,
        fs("/dev/mqueue", "mqueue", "mqueue", NOSUID | NOEXEC | NODEV, ""),
        fs("/dev/shm", "shm", "tmpfs", NOSUID | NOEXEC | NODEV, "mode=1777,size=65536k"),
    ]
}

/// An absolute container path, normalised: no `.`, `..`, empty components or trailing `/`.
pub(crate) fn clean_dest(dest: &str) -> Result<String> {
    if !dest.starts_with('/') {
        return Err(Error::invalid(format!("container path {dest:?} must be absolute")));
    }
    let mut out = String::new();
    for part in dest.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(Error::invalid(format!("container path {dest:?} must not contain `..`")));
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() || out.len() >= 4000 || out.contains('\0') {
        return Err(Error::invalid(format!("invalid container path {dest:?}")));
    }
    Ok(out)
}

/// The mount flags of `path`'s filesystem that a read-only remount of a bind must keep.
fn locked_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = cpath(path) else { return 0 };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [(libc::ST_NOSUID, NOSUID), (libc::ST_NODEV, NODEV), (libc::ST_NOEXEC, NOEXEC)] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    flags
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Result<Entry> {
    let meta = std::fs::metadata(source).map_err(|e| Error::io_path("bind mount source", source, e))?;
    if !source.is_absolute() {
        return Err(Error::invalid(format!("bind mount source {} must be absolute", source.display())));
    }
    Ok(Entry::Bind {
        dest: clean_dest(dest)?,
        source: source.to_path_buf(),
        is_dir: meta.is_dir(),
        readonly,
        keep_flags: locked_flags(source),
    })
}

fn user_entries(spec: &ContainerSpec) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for m in &spec.mounts {
        let entry = match m {
            Mount::Bind { source, destination, readonly } => bind(destination, source, *readonly)?,
            Mount::Tmpfs { destination, size, mode } => {
                let mut data = vec![];
                if let Some(size) = size {
                    data.push(format!("size={size}"));
                }
                if let Some(mode) = mode {
                    data.push(format!("mode={mode:o}"));
                }
                let dest = clean_dest(destination)?;
                Entry::Fs {
                    dest,
                    source: "tmpfs",
                    fstype: "tmpfs",
                    flags: NOSUID | NODEV | NOEXEC,
                    data: data.join(","),
                }
            }
        };
        if entry.dest() == "/proc" || entry.dest().starts_with("/proc/") {
            return Err(Error::invalid(format!("cannot mount on {}: it is inside /proc", entry.dest())));
        }
        out.push(entry);
    }
    let etc = &spec.etc_files;
    for (dest, file) in
        [("/etc/hostname", &etc.hostname), ("/etc/hosts", &etc.hosts), ("/etc/resolv.conf", &etc.resolv_conf)]
    {
        if let Some(file) = file {
            out.push(bind(dest, file, spec.rootfs.readonly)?);
        }
    }
    Ok(out)
}

/// Defaults not replaced by a caller's mount on the same destination, then the caller's; stable
/// sort by depth so parents are mounted before what goes inside them.
pub(crate) fn entries(spec: &ContainerSpec, cgroup: &SysfsCgroup) -> Result<Vec<Entry>> {
    let user = user_entries(spec)?;
    let mut all: Vec<Entry> =
        defaults(cgroup).into_iter().filter(|d| !user.iter().any(|u| u.dest() == d.dest())).collect();
    all.extend(user);
    all.sort_by_key(|e| e.dest().matches('/').count());
    Ok(all)
}

/// Steps for the entries: the clones of bind sources (before the pivot) and the mounts (after).
pub(crate) fn render(entries: &[Entry], plan: &mut Plan) -> Result<(Vec<Step>, Vec<Step>)> {
    let (mut opens, mut mounts) = (Vec::new(), Vec::new());
    for entry in entries {
        match entry {
            Entry::Fs { dest, source, fstype, flags, data } => {
                mounts.push(Step::MkdirAll(cstr(dest)?));
                let data = (!data.is_empty()).then_some(data.as_str());
                mounts.push(mount_step(Some(source), dest, Some(fstype), *flags, data)?);
            }
            Entry::Bind { dest, source, is_dir, readonly, keep_flags } => {
                let target = cstr(dest)?;
                let slot = plan.new_slot();
                opens.push(Step::CloneTree { slot, path: cpath(source)?, optional: false });
                mounts.push(if *is_dir {
                    Step::MkdirAll(target.clone())
                } else {
                    Step::MountPointFile(target.clone())
                });
                // The clone is private already: no propagation to or from the host.
                mounts.push(Step::Attach { slot, target, readonly: *readonly, keep_flags: *keep_flags });
            }
            Entry::CgroupV1 { dest, controllers } => {
                let locked = NOSUID | NODEV | NOEXEC;
                mounts.push(Step::MkdirAll(cstr(dest)?));
                mounts.push(mount_step(Some("tmpfs"), dest, Some("tmpfs"), locked, Some("mode=755"))?);
                for (name, dir) in controllers {
                    let sub = format!("{dest}/{name}");
                    let slot = plan.new_slot();
                    // Without open_tree the directory stays empty rather than failing the start.
                    opens.push(Step::CloneTree { slot, path: cpath(dir)?, optional: true });
                    mounts.push(Step::MkdirAll(cstr(&sub)?));
                    mounts.push(Step::Attach { slot, target: cstr(&sub)?, readonly: true, keep_flags: locked });
                }
                let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked;
                mounts.push(mount_step(None, dest, None, ro, None)?);
            }
        }
    }
    Ok((opens, mounts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Rootfs;

    fn spec(mounts: Vec<Mount>) -> ContainerSpec {
        let rootfs = Rootfs { lower_dirs: vec!["/l".into()], container_dir: "/c".into(), readonly: false };
        let mut s = ContainerSpec::new("c1", rootfs, vec!["true".into()]);
        s.mounts = mounts;
        s
    }

    #[test]
    fn cleans_destinations() {
        assert_eq!(clean_dest("/a//b/./c/").unwrap(), "/a/b/c");
        assert!(clean_dest("a/b").is_err());
        assert!(clean_dest("/a/../b").is_err());
        assert!(clean_dest("/").is_err());
    }

    #[test]
    fn user_mounts_replace_defaults_and_sort_by_depth() {
        let shm = Mount::Tmpfs { destination: "/dev/shm".into(), size: Some(1 << 20), mode: None };
        let deep = Mount::Tmpfs { destination: "/a/b/c".into(), size: None, mode: Some(0o1777) };
        let top = Mount::Tmpfs { destination: "/a".into(), size: None, mode: None };
        let all = entries(&spec(vec![deep, shm, top]), &SysfsCgroup::V2).unwrap();
        let dests: Vec<&str> = all.iter().map(Entry::dest).collect();
        assert_eq!(
            dests,
            ["/proc", "/dev", "/sys", "/a", "/dev/pts", "/dev/mqueue", "/dev/shm", "/sys/fs/cgroup", "/a/b/c"]
        );
        let shm = all.iter().find(|e| e.dest() == "/dev/shm").unwrap();
        assert!(matches!(shm, Entry::Fs { data, .. } if data == "size=1048576"));
    }

    #[test]
    fn refuses_mounts_in_proc_and_missing_sources() {
        let m = Mount::Tmpfs { destination: "/proc/x".into(), size: None, mode: None };
        assert!(entries(&spec(vec![m]), &SysfsCgroup::V2).is_err());
        let m = Mount::Bind { source: "/nonexistent/x".into(), destination: "/x".into(), readonly: false };
        let err = entries(&spec(vec![m]), &SysfsCgroup::V2).unwrap_err();
        assert!(err.to_string().contains("bind mount source /nonexistent/x"), "{err}");
    }
}
