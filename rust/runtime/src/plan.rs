//! The child's work as data: a list of steps built (and allocated) by the parent before `clone`,
//! executed by [`crate::child`] without allocating. A failing step is reported by index, and the
//! parent words the error from the same list.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::rlimits::Rlimit;
use crate::syscall::fake::mount_flags;
use crate::syscall::CArray;

/// One `mount(2)` call.
#[derive(Debug)]
pub(crate) struct MountCall {
    pub source: Option<CString>,
    pub target: CString,
    pub fstype: Option<CString>,
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
}

/// Executing the user process: `candidates` are tried in order (the `PATH` search).
#[derive(Debug)]
pub(crate) struct ExecStep {
    pub arg0: String,
    /// True when `arg0` has no `/` and was looked up in `PATH`.
    pub searched: bool,
    pub candidates: Vec<CString>,
    pub argv: CArray,
    pub envp: CArray,
}

#[derive(Debug)]
pub(crate) enum Step {
    ResetSignals,
    Setsid,
    /// Descriptors to install as 0, 1, 2.
    Stdio([RawFd; 3]),
    /// Writes `0` (this process) to an open `cgroup.procs`.
    JoinCgroup {
        fd: RawFd,
        path: PathBuf,
    },
    Unshare {
        flags: libc::c_int,
        what: &'static str,
    },
    /// Resets `/proc/self/oom_score_adj` to 0: the container must not inherit the daemon's protection
    /// (the engine's unit sets -900), or the OOM killer would pick system services before applications.
    ResetOomScore,
    Umask(u32),
    Mount(MountCall),
    Chdir(CString),
    /// Clones the mounts at a host path before `pivot_root` (`open_tree`), for a later
    /// [`Step::Attach`]. `optional`: on kernels without `open_tree` the attach is skipped.
    CloneTree {
        slot: usize,
        path: CString,
        optional: bool,
    },
    /// `pivot_root(".", ".")`: the old root ends stacked on `/`; [`Step::DetachOldRoot`] unmounts it
    /// at once (while it is there, `..` from `/` leads into it).
    PivotRoot,
    DetachOldRoot,
    MkdirAll(CString),
    /// An empty file as the mount point of a file bind (parents created).
    MountPointFile(CString),
    /// Attaches a [`Step::CloneTree`] copy at a container path (`move_mount`); `readonly` makes it
    /// read-only, recursively where the kernel can (5.12+), else its top mount keeping `keep_flags`.
    Attach {
        slot: usize,
        target: CString,
        readonly: bool,
        keep_flags: libc::c_ulong,
    },
    Mknod {
        path: CString,
        mode: u32,
        dev: u64,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// `/dev/null` bound over a file, a read-only tmpfs over a directory; absent paths skipped.
    MaskPath(CString),
    /// Bound onto itself and remounted read-only; absent paths skipped.
    ReadonlyPath(CString),
    Sethostname(CString),
    LoopbackUp,
    Setrlimit(Rlimit),
    /// Drops from the bounding set every capability up to `last_cap` not in `keep`.
    DropBounding {
        keep: u64,
        last_cap: u8,
    },
    KeepCaps(bool),
    Setgroups(Vec<u32>),
    Setgid(u32),
    Setuid(u32),
    Capset {
        effective: u64,
        permitted: u64,
        inheritable: u64,
    },
    NoNewPrivs,
    /// Closes every descriptor above 2 but `keep` (the report pipe): what the daemon had open,
    /// including other containers' pipes, must not stay open in this one.
    CloseFds {
        keep: RawFd,
    },
    Exec(ExecStep),
}

fn show(c: &CStr) -> std::borrow::Cow<'_, str> {
    c.to_string_lossy()
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::ResetSignals => write!(f, "reset signals"),
            Step::Setsid => write!(f, "setsid"),
            Step::Stdio(_) => write!(f, "set up stdio"),
            Step::JoinCgroup { path, .. } => write!(f, "join cgroup {}", path.display()),
            Step::Unshare { what, .. } => write!(f, "unshare {what} namespace"),
            Step::ResetOomScore => write!(f, "reset oom_score_adj"),
            Step::Umask(m) => write!(f, "umask {m:o}"),
            Step::Mount(m) => {
                let src = m.source.as_deref().map_or("none".into(), show);
                let fs = m.fstype.as_deref().map_or("".into(), |t| format!(" type {}", show(t)));
                write!(f, "mount {src} on {}{fs} ({})", show(&m.target), mount_flags(m.flags))?;
                if let Some(d) = &m.data {
                    write!(f, " with {}", show(d))?;
                }
                Ok(())
            }
            Step::Chdir(p) => write!(f, "chdir {}", show(p)),
            Step::CloneTree { path, .. } => write!(f, "clone mount source {}", show(path)),
            Step::PivotRoot => write!(f, "pivot_root"),
            Step::DetachOldRoot => write!(f, "unmount old root"),
            Step::MkdirAll(p) => write!(f, "create directory {}", show(p)),
            Step::MountPointFile(p) => write!(f, "create mount point {}", show(p)),
            Step::Attach { target, .. } => write!(f, "bind mount on {}", show(target)),
            Step::Mknod { path, .. } => write!(f, "mknod {}", show(path)),
            Step::Symlink { target, link } => write!(f, "symlink {} -> {}", show(link), show(target)),
            Step::MaskPath(p) => write!(f, "mask {}", show(p)),
            Step::ReadonlyPath(p) => write!(f, "make {} read-only", show(p)),
            Step::Sethostname(h) => write!(f, "sethostname {:?}", show(h)),
            Step::LoopbackUp => write!(f, "bring lo up"),
            Step::Setrlimit(r) => write!(f, "setrlimit {} {}:{}", r.kind, r.soft, r.hard),
            Step::DropBounding { .. } => write!(f, "drop bounding capabilities"),
            Step::KeepCaps(k) => write!(f, "set keepcaps {k}"),
            Step::Setgroups(g) => write!(f, "setgroups {g:?}"),
            Step::Setgid(g) => write!(f, "setgid {g}"),
            Step::Setuid(u) => write!(f, "setuid {u}"),
            Step::Capset { .. } => write!(f, "set capabilities"),
            Step::NoNewPrivs => write!(f, "set no_new_privs"),
            Step::CloseFds { .. } => write!(f, "close inherited descriptors"),
            Step::Exec(e) => write!(f, "exec {:?}", e.arg0),
        }
    }
}

/// The steps, and the descriptor slots [`Step::CloneTree`] fills in the child.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub slots: Vec<Cell<RawFd>>,
}

impl Plan {
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    pub fn new_slot(&mut self) -> usize {
        self.slots.push(Cell::new(-1));
        self.slots.len() - 1
    }
}

/// A [`Step::Mount`].
pub(crate) fn mount_step(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<Step> {
    Ok(Step::Mount(MountCall {
        source: source.map(cstr).transpose()?,
        target: cstr(target)?,
        fstype: fstype.map(cstr).transpose()?,
        flags,
        data: data.map(cstr).transpose()?,
    }))
}

/// A C string, refusing interior NULs.
pub(crate) fn cstr(s: impl AsRef<[u8]>) -> Result<CString> {
    let bytes = s.as_ref();
    CString::new(bytes).map_err(|_| Error::invalid(format!("{:?} contains a NUL byte", String::from_utf8_lossy(bytes))))
}

/// A path as a C string.
pub(crate) fn cpath(p: &std::path::Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    cstr(p.as_os_str().as_bytes())
}
