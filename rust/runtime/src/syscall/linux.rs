//! The real kernel calls. Async-signal-safe: raw syscalls or thin libc wrappers, no allocation.

use std::ffi::{c_char, c_void, CStr};
use std::os::fd::RawFd;
use std::ptr;

use super::{CArray, Errno, SysResult, Syscall};

#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn check(ret: libc::c_long) -> SysResult {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

#[cfg(any(target_arch = "arm", target_arch = "x86"))]
mod nr {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups32;
    pub const SETGID: libc::c_long = libc::SYS_setgid32;
    pub const SETUID: libc::c_long = libc::SYS_setuid32;
}
#[cfg(not(any(target_arch = "arm", target_arch = "x86")))]
mod nr {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups;
    pub const SETGID: libc::c_long = libc::SYS_setgid;
    pub const SETUID: libc::c_long = libc::SYS_setuid;
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> SysResult {
        let ret = unsafe {
            libc::mount(opt_ptr(source), target.as_ptr(), opt_ptr(fstype), flags, opt_ptr(data) as *const c_void)
        };
        check(ret.into())
    }

    fn umount2(&self, target: &CStr, flags: libc::c_int) -> SysResult {
        check(unsafe { libc::umount2(target.as_ptr(), flags) }.into())
    }

    fn mount_setattr_rdonly(&self, target: &CStr) -> SysResult {
        #[repr(C)]
        struct MountAttr {
            attr_set: u64,
            attr_clr: u64,
            propagation: u64,
            userns_fd: u64,
        }
        const MOUNT_ATTR_RDONLY: u64 = 1;
        let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
        check(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_RECURSIVE as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        })
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult {
        check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
    }

    fn chdir(&self, path: &CStr) -> SysResult {
        check(unsafe { libc::chdir(path.as_ptr()) }.into())
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult {
        check(unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) }.into())
    }

    fn create_file(&self, path: &CStr, mode: u32) -> SysResult {
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, mode) };
        check(fd.into())?;
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn exists(&self, path: &CStr) -> bool {
        unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
    }

    fn readlink(&self, path: &CStr, buf: &mut [u8]) -> SysResult<usize> {
        let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr() as *mut c_char, buf.len()) };
        if n < 0 {
            return Err(Errno::last());
        }
        if n as usize >= buf.len() {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(n as usize)
    }

    fn open_tree(&self, path: &CStr) -> SysResult<RawFd> {
        const OPEN_TREE_CLONE: libc::c_uint = 1;
        let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
        let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
        check(fd).map(|_| fd as RawFd)
    }

    fn move_mount(&self, fd: RawFd, target: &CStr) -> SysResult {
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        })
    }

    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> SysResult {
        check(unsafe { libc::mknod(path.as_ptr(), mode as libc::mode_t, dev as libc::dev_t) }.into())
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }.into())
    }

    fn sethostname(&self, name: &[u8]) -> SysResult {
        check(unsafe { libc::sethostname(name.as_ptr() as *const c_char, name.len()) }.into())
    }

    fn unshare(&self, flags: libc::c_int) -> SysResult {
        check(unsafe { libc::unshare(flags) }.into())
    }

    fn setsid(&self) -> SysResult {
        check(unsafe { libc::setsid() }.into())
    }

    fn write_file(&self, path: &CStr, data: &[u8]) -> SysResult {
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        let r = self.write_all(fd, data);
        unsafe { libc::close(fd) };
        r
    }

    fn write_all(&self, fd: RawFd, mut data: &[u8]) -> SysResult {
        while !data.is_empty() {
            let n = unsafe { libc::write(fd, data.as_ptr() as *const c_void, data.len()) };
            if n < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err(e);
            }
            data = &data[n as usize..];
        }
        Ok(())
    }

    fn dup_cloexec(&self, fd: RawFd, min: RawFd) -> SysResult<RawFd> {
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
        check(new.into()).map(|_| new)
    }

    fn dup2(&self, fd: RawFd, target: RawFd) -> SysResult {
        check(unsafe { libc::dup2(fd, target) }.into())
    }

    fn close(&self, fd: RawFd) {
        unsafe { libc::close(fd) };
    }

    fn close_range(&self, first: RawFd, last: RawFd) -> SysResult {
        let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0) };
        if ret == 0 {
            return Ok(());
        }
        // Kernels before 5.9: close one by one up to the descriptor limit.
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur.min(1 << 20) as RawFd
        } else {
            1024
        };
        for fd in first..=last.min(max) {
            unsafe { libc::close(fd) };
        }
        Ok(())
    }

    fn reset_signals(&self) -> SysResult {
        // Raw rt_sigaction: glibc's wrapper refuses the signals it reserves (32, 33), which the
        // daemon may have inherited as ignored. An all-zero kernel sigaction is SIG_DFL, no flags,
        // empty mask, whatever the architecture's field order.
        let dfl = [0u64; 4];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), ptr::null_mut::<u64>(), 8usize) };
            }
        }
        let empty = 0u64;
        check(unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &empty as *const u64,
                ptr::null_mut::<u64>(),
                8usize,
            )
        })
    }

    fn umask(&self, mask: u32) {
        unsafe { libc::umask(mask as libc::mode_t) };
    }

    fn setrlimit(&self, resource: libc::c_int, soft: u64, hard: u64) -> SysResult {
        let lim = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
        check(unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0 as libc::pid_t,
                resource,
                &lim as *const libc::rlimit64,
                ptr::null_mut::<libc::rlimit64>(),
            )
        })
    }

    fn loopback_up(&self) -> SysResult {
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            check(sock.into())?;
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as c_char;
            }
            let mut ret = libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut ifr);
            if ret == 0 {
                ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                ret = libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &ifr);
            }
            let err = Errno::last();
            libc::close(sock);
            if ret < 0 {
                return Err(err);
            }
        }
        Ok(())
    }

    fn capbset_drop(&self, cap: u8) -> SysResult {
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }.into())
    }

    fn set_keepcaps(&self, keep: bool) -> SysResult {
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, 0, 0, 0) }.into())
    }

    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult {
        let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
        let data = [
            CapData { effective: effective as u32, permitted: permitted as u32, inheritable: inheritable as u32 },
            CapData {
                effective: (effective >> 32) as u32,
                permitted: (permitted >> 32) as u32,
                inheritable: (inheritable >> 32) as u32,
            },
        ];
        check(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) })
    }

    fn set_no_new_privs(&self) -> SysResult {
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) }.into())
    }

    fn setgroups(&self, gids: &[u32]) -> SysResult {
        check(unsafe { libc::syscall(nr::SETGROUPS, gids.len() as libc::c_long, gids.as_ptr()) })
    }

    fn setgid(&self, gid: u32) -> SysResult {
        check(unsafe { libc::syscall(nr::SETGID, gid as libc::c_long) })
    }

    fn setuid(&self, uid: u32) -> SysResult {
        check(unsafe { libc::syscall(nr::SETUID, uid as libc::c_long) })
    }

    fn execve(&self, path: &CStr, argv: &CArray, envp: &CArray) -> Errno {
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        Errno::last()
    }
}
