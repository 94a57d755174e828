//! Runs a [`Plan`] in the cloned child. Async-signal-safe: no allocation, no locks, no panics on
//! input (paths are checked by the parent); fixed stack buffers for the few paths built here.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::plan::{ExecStep, Plan, Step};
use crate::syscall::{Errno, SysResult, Syscall};

const PATH_BUF: usize = 4096;

/// Why the child stopped: the index of the failing step, its errno, and for the exec step the index
/// of the candidate path the error is about (-1: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub step: usize,
    pub errno: Errno,
    pub detail: i32,
}

impl Failure {
    pub const LEN: usize = 12;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&(self.step as u32).to_ne_bytes());
        out[4..8].copy_from_slice(&(self.errno as i32).to_ne_bytes());
        out[8..].copy_from_slice(&self.detail.to_ne_bytes());
        out
    }

    pub fn decode(b: &[u8; Self::LEN]) -> Self {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Failure {
            step: u32::from_ne_bytes(word(0)) as usize,
            errno: Errno::from_raw(i32::from_ne_bytes(word(4))),
            detail: i32::from_ne_bytes(word(8)),
        }
    }
}

/// Executes the steps in order. With the real kernel it returns only on failure (the last step
/// execs); a fake's exec always fails, so the run ends there.
pub(crate) fn run<S: Syscall>(sys: &S, plan: &Plan) -> Failure {
    for (i, step) in plan.steps.iter().enumerate() {
        let result = match step {
            Step::Exec(e) => {
                let (errno, detail) = exec(sys, e);
                return Failure { step: i, errno, detail };
            }
            other => execute(sys, plan, other),
        };
        if let Err(errno) = result {
            return Failure { step: i, errno, detail: -1 };
        }
    }
    Failure { step: plan.steps.len(), errno: Errno::EINVAL, detail: -1 }
}

fn execute<S: Syscall>(sys: &S, plan: &Plan, step: &Step) -> SysResult {
    match step {
        Step::ResetSignals => sys.reset_signals(),
        Step::Setsid => sys.setsid(),
        Step::Stdio(fds) => stdio(sys, fds),
        Step::JoinCgroup { fd, .. } => sys.write_all(*fd, b"0"),
        Step::Unshare { flags, .. } => sys.unshare(*flags),
        Step::ResetOomScore => sys.write_file(c"/proc/self/oom_score_adj", b"0"),
        Step::Umask(mask) => {
            sys.umask(*mask);
            Ok(())
        }
        Step::Mount(m) => sys.mount(m.source.as_deref(), &m.target, m.fstype.as_deref(), m.flags, m.data.as_deref()),
        Step::Chdir(p) => sys.chdir(p),
        Step::CloneTree { slot, path, optional } => {
            let fd = match sys.open_tree(path) {
                Err(Errno::ENOSYS) if *optional => -1,
                other => other?,
            };
            if let Some(cell) = plan.slots.get(*slot) {
                cell.set(fd);
            }
            Ok(())
        }
        Step::PivotRoot => sys.pivot_root(c".", c"."),
        Step::DetachOldRoot => sys.umount2(c".", libc::MNT_DETACH),
        Step::MkdirAll(p) => mkdir_all(sys, p),
        Step::MountPointFile(p) => mount_point_file(sys, p),
        Step::Attach { slot, target, readonly, keep_flags } => match plan.slots.get(*slot).map_or(-1, |c| c.get()) {
            -1 => Ok(()),
            fd => {
                sys.move_mount(fd, target)?;
                sys.close(fd);
                if *readonly {
                    readonly_bind(sys, target, *keep_flags)?;
                }
                Ok(())
            }
        },
        Step::Mknod { path, mode, dev } => exist_ok(sys.mknod(path, *mode, *dev)),
        Step::Symlink { target, link } => exist_ok(sys.symlink(target, link)),
        Step::MaskPath(p) => match sys.mount(Some(c"/dev/null"), p, None, libc::MS_BIND, None) {
            Err(Errno::ENOENT) => Ok(()),
            Err(Errno::ENOTDIR) => sys.mount(Some(c"tmpfs"), p, Some(c"tmpfs"), libc::MS_RDONLY, None),
            other => other,
        },
        Step::ReadonlyPath(p) => match sys.mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                let flags = libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC;
                sys.mount(None, p, None, flags, None)
            }
        },
        Step::Sethostname(h) => sys.sethostname(h.to_bytes()),
        Step::LoopbackUp => sys.loopback_up(),
        Step::Setrlimit(r) => sys.setrlimit(r.kind.resource(), r.soft, r.hard),
        Step::DropBounding { keep, last_cap } => {
            for cap in 0..=*last_cap {
                if cap < 64 && keep & (1u64 << cap) == 0 {
                    sys.capbset_drop(cap)?;
                }
            }
            Ok(())
        }
        Step::KeepCaps(keep) => sys.set_keepcaps(*keep),
        Step::Setgroups(gids) => sys.setgroups(gids),
        Step::Setgid(gid) => sys.setgid(*gid),
        Step::Setuid(uid) => sys.setuid(*uid),
        Step::Capset { effective, permitted, inheritable } => sys.capset(*effective, *permitted, *inheritable),
        Step::NoNewPrivs => sys.set_no_new_privs(),
        Step::CloseFds { keep } => {
            if *keep > 3 {
                sys.close_range(3, keep - 1)?;
            }
            sys.close_range(keep + 1, RawFd::MAX)
        }
        Step::Exec(_) => Err(Errno::EINVAL),
    }
}

/// Read-only, recursively where the kernel can (5.12+), else the top mount keeping `keep_flags`.
fn readonly_bind<S: Syscall>(sys: &S, target: &CStr, keep_flags: libc::c_ulong) -> SysResult {
    match sys.mount_setattr_rdonly(target) {
        Err(Errno::ENOSYS) => {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep_flags;
            sys.mount(None, target, None, flags, None)
        }
        other => other,
    }
}

fn exist_ok(r: SysResult) -> SysResult {
    match r {
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    }
}

/// Installs `fds` as 0, 1, 2 through close-on-exec copies above 2, so that a source already at 0..2
/// neither gets clobbered nor keeps its close-on-exec flag.
fn stdio<S: Syscall>(sys: &S, fds: &[i32; 3]) -> SysResult {
    let mut tmp = [-1; 3];
    for (t, fd) in tmp.iter_mut().zip(fds) {
        *t = sys.dup_cloexec(*fd, 3)?;
    }
    for (target, t) in tmp.iter().enumerate() {
        sys.dup2(*t, target as i32)?;
    }
    for t in tmp {
        sys.close(t);
    }
    Ok(())
}

/// The `PATH` search, like `execvp`: missing candidates are skipped, a permission error is kept
/// in case no later candidate works. A candidate that exists but fails with ENOENT (missing
/// interpreter or loader) ends the search.
fn exec<S: Syscall>(sys: &S, e: &ExecStep) -> (Errno, i32) {
    let mut denied = -1;
    for (i, path) in e.candidates.iter().enumerate() {
        let err = sys.execve(path, &e.argv, &e.envp);
        match err {
            Errno::ENOENT if sys.exists(path) => return (err, i as i32),
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => {
                if denied < 0 {
                    denied = i as i32;
                }
            }
            _ => return (err, i as i32),
        }
    }
    if denied >= 0 {
        (Errno::EACCES, denied)
    } else {
        (Errno::ENOENT, -1)
    }
}

/// Symlinks followed while creating a mount point before giving up with ELOOP.
const MAX_LINKS: u32 = 8;

/// `mkdir -p`, mode 0755 (the umask is 0 during setup). Runs after `pivot_root`, so symlinks
/// resolve inside the container; a dangling one has its target created, like docker does.
fn mkdir_all<S: Syscall>(sys: &S, path: &CStr) -> SysResult {
    mkdir_all_at(sys, path, 0)
}

fn mkdir_all_at<S: Syscall>(sys: &S, path: &CStr, depth: u32) -> SysResult {
    if sys.exists(path) {
        return Ok(());
    }
    let bytes = path.to_bytes();
    if bytes.len() >= PATH_BUF {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut buf = [0u8; PATH_BUF];
    buf[..bytes.len()].copy_from_slice(bytes);
    for end in 1..=bytes.len() {
        if end < bytes.len() && bytes[end] != b'/' {
            continue;
        }
        buf[end] = 0;
        let prefix = CStr::from_bytes_until_nul(&buf[..=end]).map_err(|_| Errno::EINVAL)?;
        match sys.mkdir(prefix, 0o755) {
            Ok(()) => {}
            // Something is there; if it leads nowhere it is a dangling symlink.
            Err(Errno::EEXIST) if !sys.exists(prefix) => create_link_target(sys, prefix, depth + 1)?,
            Err(e) if !sys.exists(prefix) => return Err(e),
            Err(_) => {}
        }
        if end < bytes.len() {
            buf[end] = b'/';
        }
    }
    Ok(())
}

/// Creates the directory a dangling symlink points at.
fn create_link_target<S: Syscall>(sys: &S, link: &CStr, depth: u32) -> SysResult {
    let mut target = [0u8; PATH_BUF];
    let path = link_target(sys, link, depth, &mut target)?;
    mkdir_all_at(sys, path, depth)
}

/// `link`'s target as a path (relative targets joined to the link's directory) in `out`.
fn link_target<'a, S: Syscall>(sys: &S, link: &CStr, depth: u32, out: &'a mut [u8; PATH_BUF]) -> SysResult<&'a CStr> {
    if depth > MAX_LINKS {
        return Err(Errno::ELOOP);
    }
    let mut target = [0u8; PATH_BUF];
    let n = sys.readlink(link, &mut target)?;
    let target = &target[..n];
    let link = link.to_bytes();
    let dir = if target.first() == Some(&b'/') {
        &[][..]
    } else {
        &link[..link.iter().rposition(|b| *b == b'/').unwrap_or(0)]
    };
    let len = dir.len() + usize::from(!dir.is_empty()) + target.len();
    if len >= PATH_BUF || (dir.is_empty() && target.first() != Some(&b'/')) {
        return Err(Errno::ENAMETOOLONG);
    }
    out[..dir.len()].copy_from_slice(dir);
    let mut at = dir.len();
    if !dir.is_empty() {
        out[at] = b'/';
        at += 1;
    }
    out[at..at + target.len()].copy_from_slice(target);
    out[len] = 0;
    CStr::from_bytes_until_nul(&out[..=len]).map_err(|_| Errno::EINVAL)
}

fn mount_point_file<S: Syscall>(sys: &S, path: &CStr) -> SysResult {
    if sys.exists(path) {
        return Ok(());
    }
    if let Some(parent) = parent_of(path, &mut [0u8; PATH_BUF]) {
        mkdir_all(sys, parent)?;
    }
    match sys.create_file(path, 0o644) {
        // A dangling symlink (an image's /etc/resolv.conf -> ../run/...): create its directory.
        Err(Errno::ENOENT) => {
            let mut target = [0u8; PATH_BUF];
            let target = link_target(sys, path, 1, &mut target).map_err(|_| Errno::ENOENT)?;
            if let Some(dir) = parent_of(target, &mut [0u8; PATH_BUF]) {
                mkdir_all_at(sys, dir, 1)?;
            }
            sys.create_file(path, 0o644)
        }
        other => other,
    }
}

/// The directory part of an absolute or relative path (`None` for `/x` or `x`).
fn parent_of<'a>(path: &CStr, buf: &'a mut [u8; PATH_BUF]) -> Option<&'a CStr> {
    let bytes = path.to_bytes();
    let slash = bytes.iter().rposition(|b| *b == b'/').filter(|i| *i > 0 && *i < PATH_BUF)?;
    buf[..slash].copy_from_slice(&bytes[..slash]);
    buf[slash] = 0;
    CStr::from_bytes_until_nul(&buf[..=slash]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::FakeSyscall;

    #[test]
    fn failure_round_trips() {
        let f = Failure { step: 7, errno: Errno::EACCES, detail: -1 };
        assert_eq!(Failure::decode(&f.encode()), f);
    }

    #[test]
    fn mkdir_all_creates_missing_prefixes() {
        let sys = FakeSyscall::new();
        sys.missing("/a/b").missing("/a/b/c");
        mkdir_all(&sys, c"/a/b/c").unwrap();
        assert_eq!(sys.calls(), ["mkdir /a 755", "mkdir /a/b 755", "mkdir /a/b/c 755"]);
    }

    #[test]
    fn mkdir_all_creates_the_target_of_a_dangling_symlink() {
        let sys = FakeSyscall::new();
        sys.missing("/escape/inner").dangling("/escape", "/tmp/x");
        mkdir_all(&sys, c"/escape/inner").unwrap();
        assert_eq!(
            sys.calls(),
            ["mkdir /escape 755", "readlink /escape", "mkdir /tmp 755", "mkdir /tmp/x 755", "mkdir /escape/inner 755"]
        );
    }

    #[test]
    fn symlink_loops_end_with_eloop() {
        let sys = FakeSyscall::new();
        sys.missing("/a/b").dangling("/a", "/a/b");
        assert_eq!(mkdir_all(&sys, c"/a/b"), Err(Errno::ELOOP));
    }

    #[test]
    fn file_mount_point_through_a_relative_dangling_symlink() {
        let sys = FakeSyscall::new();
        sys.dangling("/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf");
        sys.missing("/etc/../run/systemd/resolve");
        mount_point_file(&sys, c"/etc/resolv.conf").unwrap();
        assert_eq!(
            sys.calls(),
            [
                "create_file /etc/resolv.conf 644",
                "readlink /etc/resolv.conf",
                "mkdir /etc 755",
                "mkdir /etc/.. 755",
                "mkdir /etc/../run 755",
                "mkdir /etc/../run/systemd 755",
                "mkdir /etc/../run/systemd/resolve 755",
                "create_file /etc/resolv.conf 644",
            ]
        );
    }

    #[test]
    fn mount_point_file_creates_parents() {
        let sys = FakeSyscall::new();
        sys.missing("/etc").missing("/etc/hosts");
        mount_point_file(&sys, c"/etc/hosts").unwrap();
        assert_eq!(sys.calls(), ["mkdir /etc 755", "create_file /etc/hosts 644"]);
    }
}
