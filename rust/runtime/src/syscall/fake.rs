//! A [`Syscall`] that records calls as text lines and fails the ones a test asks it to.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::RawFd;

use super::{CArray, Errno, SysResult, Syscall};

/// Every path exists unless marked [`missing`](FakeSyscall::missing) or
/// [`dangling`](FakeSyscall::dangling); descriptors count from 100.
#[derive(Debug)]
pub struct FakeSyscall {
    calls: RefCell<Vec<String>>,
    failures: RefCell<Vec<(String, Errno)>>,
    missing: RefCell<HashSet<String>>,
    links: RefCell<HashMap<String, String>>,
    made_dirs: RefCell<HashSet<String>>,
    next_fd: Cell<RawFd>,
}

impl Default for FakeSyscall {
    fn default() -> Self {
        FakeSyscall {
            calls: RefCell::default(),
            failures: RefCell::default(),
            missing: RefCell::default(),
            links: RefCell::default(),
            made_dirs: RefCell::default(),
            next_fd: Cell::new(100),
        }
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn opt(c: Option<&CStr>) -> String {
    c.map_or_else(|| "-".to_string(), s)
}

/// `MS_*` flags as `bind|rec|ro`, `0` for none.
pub fn mount_flags(flags: libc::c_ulong) -> String {
    const NAMES: [(libc::c_ulong, &str); 13] = [
        (libc::MS_RDONLY, "ro"),
        (libc::MS_NOSUID, "nosuid"),
        (libc::MS_NODEV, "nodev"),
        (libc::MS_NOEXEC, "noexec"),
        (libc::MS_REMOUNT, "remount"),
        (libc::MS_BIND, "bind"),
        (libc::MS_REC, "rec"),
        (libc::MS_PRIVATE, "private"),
        (libc::MS_SLAVE, "slave"),
        (libc::MS_SHARED, "shared"),
        (libc::MS_STRICTATIME, "strictatime"),
        (libc::MS_RELATIME, "relatime"),
        (libc::MS_NOATIME, "noatime"),
    ];
    let names: Vec<&str> = NAMES.iter().filter(|(f, _)| flags & f != 0).map(|(_, n)| *n).collect();
    if names.is_empty() {
        "0".into()
    } else {
        names.join("|")
    }
}

impl FakeSyscall {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls whose line starts with `prefix` fail with `errno`.
    pub fn fail(&self, prefix: &str, errno: Errno) -> &Self {
        self.failures.borrow_mut().push((prefix.to_string(), errno));
        self
    }

    /// `path` does not exist until created.
    pub fn missing(&self, path: &str) -> &Self {
        self.missing.borrow_mut().insert(path.to_string());
        self
    }

    /// `path` is a symlink to `target`, which does not exist until created: `exists` is false,
    /// `mkdir` says EEXIST, `create_file` says ENOENT.
    pub fn dangling(&self, path: &str, target: &str) -> &Self {
        self.links.borrow_mut().insert(path.to_string(), target.to_string());
        self.missing.borrow_mut().insert(path.to_string());
        self.missing.borrow_mut().insert(target.to_string());
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> SysResult {
        let failure = self.failures.borrow().iter().find(|(p, _)| line.starts_with(p.as_str())).map(|(_, e)| *e);
        self.calls.borrow_mut().push(line);
        failure.map_or(Ok(()), Err)
    }

    fn fd(&self) -> RawFd {
        let fd = self.next_fd.get();
        self.next_fd.set(fd + 1);
        fd
    }

    fn created(&self, path: &CStr) {
        self.missing.borrow_mut().remove(&s(path));
    }
}

impl Syscall for FakeSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> SysResult {
        self.record(format!("mount {} {} {} {} {}", opt(source), s(target), opt(fstype), mount_flags(flags), opt(data)))
    }
    fn mount_setattr_rdonly(&self, target: &CStr) -> SysResult {
        self.record(format!("mount_setattr {} rdonly recursive", s(target)))
    }
    fn umount2(&self, target: &CStr, flags: libc::c_int) -> SysResult {
        let f = if flags == libc::MNT_DETACH { "detach".to_string() } else { flags.to_string() };
        self.record(format!("umount2 {} {f}", s(target)))
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult {
        self.record(format!("pivot_root {} {}", s(new_root), s(put_old)))
    }
    fn chdir(&self, path: &CStr) -> SysResult {
        self.record(format!("chdir {}", s(path)))
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult {
        self.record(format!("mkdir {} {mode:o}", s(path)))?;
        if self.links.borrow().contains_key(&s(path)) {
            return Err(Errno::EEXIST);
        }
        self.made_dirs.borrow_mut().insert(s(path));
        self.created(path);
        Ok(())
    }
    fn create_file(&self, path: &CStr, mode: u32) -> SysResult {
        self.record(format!("create_file {} {mode:o}", s(path)))?;
        if let Some(target) = self.links.borrow().get(&s(path)) {
            // Creating through the link works once the target's directory was made.
            let joined = if target.starts_with('/') {
                target.clone()
            } else {
                let link = s(path);
                format!("{}/{target}", &link[..link.rfind('/').unwrap_or(0)])
            };
            let dir = &joined[..joined.rfind('/').unwrap_or(0)];
            if !self.made_dirs.borrow().contains(dir) {
                return Err(Errno::ENOENT);
            }
        }
        self.created(path);
        Ok(())
    }
    fn exists(&self, path: &CStr) -> bool {
        if let Some(target) = self.links.borrow().get(&s(path)) {
            return !self.missing.borrow().contains(target);
        }
        !self.missing.borrow().contains(&s(path))
    }
    fn readlink(&self, path: &CStr, buf: &mut [u8]) -> SysResult<usize> {
        let links = self.links.borrow();
        let target = links.get(&s(path)).ok_or(Errno::EINVAL)?;
        let n = target.len().min(buf.len());
        buf[..n].copy_from_slice(&target.as_bytes()[..n]);
        drop(links);
        self.record(format!("readlink {}", s(path)))?;
        Ok(n)
    }
    fn open_tree(&self, path: &CStr) -> SysResult<RawFd> {
        let fd = self.fd();
        self.record(format!("open_tree {} = {fd}", s(path))).map(|_| fd)
    }
    fn move_mount(&self, fd: RawFd, target: &CStr) -> SysResult {
        self.record(format!("move_mount {fd} {}", s(target)))
    }
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> SysResult {
        let (major, minor) = (libc::major(dev as libc::dev_t), libc::minor(dev as libc::dev_t));
        self.record(format!("mknod {} {mode:o} {major}:{minor}", s(path)))
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        self.record(format!("symlink {} {}", s(target), s(link)))
    }
    fn sethostname(&self, name: &[u8]) -> SysResult {
        self.record(format!("sethostname {}", String::from_utf8_lossy(name)))
    }
    fn unshare(&self, flags: libc::c_int) -> SysResult {
        self.record(format!("unshare {flags:#x}"))
    }
    fn setsid(&self) -> SysResult {
        self.record("setsid".into())
    }
    fn write_file(&self, path: &CStr, data: &[u8]) -> SysResult {
        self.record(format!("write_file {} {}", path.to_string_lossy(), String::from_utf8_lossy(data)))
    }
    fn write_all(&self, fd: RawFd, data: &[u8]) -> SysResult {
        self.record(format!("write {fd} {}", String::from_utf8_lossy(data)))
    }
    fn dup_cloexec(&self, fd: RawFd, min: RawFd) -> SysResult<RawFd> {
        let new = self.fd();
        self.record(format!("dup_cloexec {fd} {min} = {new}")).map(|_| new)
    }
    fn dup2(&self, fd: RawFd, target: RawFd) -> SysResult {
        self.record(format!("dup2 {fd} {target}"))
    }
    fn close(&self, fd: RawFd) {
        let _ = self.record(format!("close {fd}"));
    }
    fn close_range(&self, first: RawFd, last: RawFd) -> SysResult {
        let last = if last == RawFd::MAX { "max".to_string() } else { last.to_string() };
        self.record(format!("close_range {first} {last}"))
    }
    fn reset_signals(&self) -> SysResult {
        self.record("reset_signals".into())
    }
    fn umask(&self, mask: u32) {
        let _ = self.record(format!("umask {mask:o}"));
    }
    fn setrlimit(&self, resource: libc::c_int, soft: u64, hard: u64) -> SysResult {
        self.record(format!("setrlimit {resource} {soft} {hard}"))
    }
    fn loopback_up(&self) -> SysResult {
        self.record("loopback_up".into())
    }
    fn capbset_drop(&self, cap: u8) -> SysResult {
        self.record(format!("capbset_drop {cap}"))
    }
    fn set_keepcaps(&self, keep: bool) -> SysResult {
        self.record(format!("set_keepcaps {keep}"))
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult {
        self.record(format!("capset {effective:#x} {permitted:#x} {inheritable:#x}"))
    }
    fn set_no_new_privs(&self) -> SysResult {
        self.record("set_no_new_privs".into())
    }
    fn setgroups(&self, gids: &[u32]) -> SysResult {
        self.record(format!("setgroups {gids:?}"))
    }
    fn setgid(&self, gid: u32) -> SysResult {
        self.record(format!("setgid {gid}"))
    }
    fn setuid(&self, uid: u32) -> SysResult {
        self.record(format!("setuid {uid}"))
    }
    fn execve(&self, path: &CStr, argv: &CArray, _envp: &CArray) -> Errno {
        let args: Vec<String> = argv.items().iter().map(|a| s(a)).collect();
        match self.record(format!("execve {} {}", s(path), args.join(" "))) {
            Err(e) => e,
            // A fake cannot replace the process: report "exec format error" so the run ends.
            Ok(()) => Errno::ENOEXEC,
        }
    }
}
