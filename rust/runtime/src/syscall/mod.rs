//! The kernel calls container setup makes, behind a trait: [`linux::LinuxSyscall`] makes them,
//! [`fake::FakeSyscall`] records them so tests can check the sequence without root.
//!
//! The real implementation runs in the cloned child of a possibly multi-threaded daemon: every
//! method must be async-signal-safe (no allocation, no locks, raw syscalls for the set*id family,
//! whose glibc wrappers signal threads that do not exist in the child).

use std::ffi::{c_char, CStr, CString};
use std::os::fd::RawFd;

pub use nix::errno::Errno;

pub mod fake;
pub mod linux;

pub type SysResult<T = ()> = Result<T, Errno>;

/// A NULL-terminated `char *[]` (argv, envp) that owns its strings.
#[derive(Debug)]
pub struct CArray {
    items: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CArray {
    pub fn new(items: Vec<CString>) -> Self {
        // Moving a CString does not move its heap buffer: the pointers stay valid.
        let mut ptrs: Vec<*const c_char> = items.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CArray { items, ptrs }
    }
    pub fn items(&self) -> &[CString] {
        &self.items
    }
    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

pub trait Syscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> SysResult;
    fn umount2(&self, target: &CStr, flags: libc::c_int) -> SysResult;
    /// `mount_setattr(target, AT_RECURSIVE, MOUNT_ATTR_RDONLY)`: the mount and all below it
    /// read-only (ENOSYS before Linux 5.12).
    fn mount_setattr_rdonly(&self, target: &CStr) -> SysResult;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult;
    fn chdir(&self, path: &CStr) -> SysResult;
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult;
    /// Creates an empty file unless one exists.
    fn create_file(&self, path: &CStr, mode: u32) -> SysResult;
    /// `access(path, F_OK)`.
    fn exists(&self, path: &CStr) -> bool;
    /// A symlink's target into `buf`; returns its length (EINVAL: not a symlink).
    fn readlink(&self, path: &CStr, buf: &mut [u8]) -> SysResult<usize>;
    /// `open_tree(path, OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached, private copy of the mounts at
    /// `path`, to attach later with [`move_mount`](Syscall::move_mount) (Linux 5.2+).
    fn open_tree(&self, path: &CStr) -> SysResult<RawFd>;
    /// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`.
    fn move_mount(&self, fd: RawFd, target: &CStr) -> SysResult;
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> SysResult;
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult;
    fn sethostname(&self, name: &[u8]) -> SysResult;
    fn unshare(&self, flags: libc::c_int) -> SysResult;
    fn setsid(&self) -> SysResult;
    fn write_all(&self, fd: RawFd, data: &[u8]) -> SysResult;
    /// Opens an existing file write-only and writes `data` to it (procfs knobs of this process).
    fn write_file(&self, path: &CStr, data: &[u8]) -> SysResult;
    /// `fcntl(fd, F_DUPFD_CLOEXEC, min)`.
    fn dup_cloexec(&self, fd: RawFd, min: RawFd) -> SysResult<RawFd>;
    /// `dup2`: the new descriptor is not close-on-exec.
    fn dup2(&self, fd: RawFd, target: RawFd) -> SysResult;
    fn close(&self, fd: RawFd);
    /// Closes the descriptors `first..=last`.
    fn close_range(&self, first: RawFd, last: RawFd) -> SysResult;
    /// Default disposition for every signal, empty signal mask.
    fn reset_signals(&self) -> SysResult;
    fn umask(&self, mask: u32);
    fn setrlimit(&self, resource: libc::c_int, soft: u64, hard: u64) -> SysResult;
    /// Brings `lo` up in the current network namespace.
    fn loopback_up(&self) -> SysResult;
    /// `prctl(PR_CAPBSET_DROP, cap)`.
    fn capbset_drop(&self, cap: u8) -> SysResult;
    /// `prctl(PR_SET_KEEPCAPS, keep)`.
    fn set_keepcaps(&self, keep: bool) -> SysResult;
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult;
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    fn set_no_new_privs(&self) -> SysResult;
    fn setgroups(&self, gids: &[u32]) -> SysResult;
    fn setgid(&self, gid: u32) -> SysResult;
    fn setuid(&self, uid: u32) -> SysResult;
    /// Returns only on failure.
    fn execve(&self, path: &CStr, argv: &CArray, envp: &CArray) -> Errno;
}
