//! Process creation and life: `clone` into new namespaces, the setup report over a pipe, wait,
//! kill, cleanup.
//!
//! The daemon is multi-threaded, so the child (a copy of one thread) runs only the prepared
//! [`Plan`] with async-signal-safe calls, then execs. It reports a failing step on a close-on-exec
//! pipe; end-of-file without a report means the exec succeeded.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::Signal;

use crate::cgroups::{Cgroup, CGROUP_ROOT};
use crate::child::{self, Failure};
use crate::error::{Error, Result};
use crate::plan::{Plan, Step};
use crate::setup::{self, Host};
use crate::spec::ContainerSpec;
use crate::syscall::linux::LinuxSyscall;
use crate::syscall::Errno;
use crate::{capabilities, exec, namespaces, rootfs};

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal number (docker's convention).
    pub code: i32,
    pub signal: Option<i32>,
    /// The OOM killer killed a process of the container (any, like docker's `OOMKilled`).
    pub oom_killed: bool,
}

/// A running (or exited, not yet cleaned up) container. `Send + Sync`: one thread may block in
/// [`wait`](Container::wait) while another calls [`kill`](Container::kill).
///
/// Dropping it does what [`cleanup`](Container::cleanup) does, ignoring errors.
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: i32,
    status: Mutex<Option<ExitStatus>>,
    cgroup: Mutex<Option<Cgroup>>,
}

/// Creates the container and starts its process; returns once the process has been executed.
///
/// A failure leaves nothing behind (cgroup removed, process reaped). When the exec itself fails
/// the error is [`Error::Exec`] worded like docker, and [`Error::exit_code`] is 127 or 126.
pub fn start(spec: &ContainerSpec) -> Result<Container> {
    start_in(spec, Path::new(CGROUP_ROOT))
}

/// [`start`] with the cgroup hierarchies under `cgroup_root`.
pub(crate) fn start_in(spec: &ContainerSpec, cgroup_root: &Path) -> Result<Container> {
    setup::validate_id(&spec.id)?;
    rootfs::prepare(&spec.rootfs)?;
    let cgroup = Cgroup::create(cgroup_root, &spec.cgroup_parent, &spec.id, &spec.resources)?;
    match spawn(spec, &cgroup) {
        Ok(pid) => {
            Ok(Container { id: spec.id.clone(), pid, status: Mutex::new(None), cgroup: Mutex::new(Some(cgroup)) })
        }
        Err(e) => {
            let _ = cgroup.remove();
            Err(e)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cvt(ret: libc::c_int, op: &'static str) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::Sys { op, source: Errno::last() })
    } else {
        Ok(ret)
    }
}

/// A close-on-exec copy of `fd` numbered 3 or more, so the child's dup2 onto 0..2 cannot hit it.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) }, "fcntl")?;
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn open(path: &Path, flags: libc::c_int) -> Result<OwnedFd> {
    let c = crate::plan::cpath(path)?;
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io_path("open", path, std::io::Error::last_os_error()));
    }
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, "pipe2")?;
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn spawn(spec: &ContainerSpec, cgroup: &Cgroup) -> Result<i32> {
    let needs_null = [spec.stdio.stdin, spec.stdio.stdout, spec.stdio.stderr].iter().any(Option::is_none);
    let null = if needs_null { Some(open(Path::new("/dev/null"), libc::O_RDWR)?) } else { None };
    let null_fd = null.as_ref().map_or(-1, |f| f.as_raw_fd());
    let procs: Vec<(OwnedFd, PathBuf)> =
        cgroup.procs_files().into_iter().map(|p| Ok((open(&p, libc::O_WRONLY)?, p))).collect::<Result<_>>()?;
    let (report_r, report_w) = pipe()?;
    let host = Host {
        report_fd: report_w.as_raw_fd(),
        stdio: [
            spec.stdio.stdin.unwrap_or(null_fd),
            spec.stdio.stdout.unwrap_or(null_fd),
            spec.stdio.stderr.unwrap_or(null_fd),
        ],
        cgroup_procs: procs.iter().map(|(fd, p)| (fd.as_raw_fd(), p.clone())).collect(),
        cgroup_version: cgroup.version(),
        sysfs_cgroup: cgroup.sysfs(),
        last_cap: capabilities::last_cap(),
        option_limit: (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize) - 1,
    };
    let plan = setup::build(spec, &host)?;
    let flags = namespaces::clone_flags(spec.network) | libc::SIGCHLD;

    // Block signals around clone so no handler of the daemon's runs in the child before it resets them.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // Fork-like clone (no new stack): the child continues here on a copy of this thread's stack.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        child_main(&plan, report_w.as_raw_fd());
    }
    let clone_err = Errno::last();
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if ret < 0 {
        return Err(Error::Sys { op: "clone", source: clone_err });
    }
    let pid = ret as i32;
    drop(report_w);
    drop(procs);
    drop(null);
    match read_report(report_r) {
        Ok(None) => Ok(pid),
        Ok(Some(failure)) => {
            reap(pid);
            Err(explain(&plan, failure))
        }
        Err(e) => {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            Err(e)
        }
    }
}

/// The child: run the plan; on failure report it and exit. Never returns into the caller's code.
fn child_main(plan: &Plan, report_fd: RawFd) -> ! {
    struct ExitOnUnwind;
    impl Drop for ExitOnUnwind {
        fn drop(&mut self) {
            unsafe { libc::_exit(125) }
        }
    }
    let _guard = ExitOnUnwind;
    let failure = child::run(&LinuxSyscall, plan);
    let bytes = failure.encode();
    unsafe {
        libc::write(report_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(1)
    }
}

fn read_report(fd: OwnedFd) -> Result<Option<Failure>> {
    let mut file = File::from(fd);
    let mut buf = [0u8; Failure::LEN];
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read setup report", e)),
        }
    }
    match got {
        0 => Ok(None),
        Failure::LEN => Ok(Some(Failure::decode(&buf))),
        _ => Err(Error::io("read setup report", std::io::ErrorKind::UnexpectedEof.into())),
    }
}

fn reap(pid: i32) -> Option<libc::c_int> {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            return None;
        }
    }
}

fn explain(plan: &Plan, f: Failure) -> Error {
    match plan.steps.get(f.step) {
        Some(Step::Exec(e)) => Error::Exec(exec::error(e, f.errno, f.detail)),
        Some(step) => {
            let is_mount = matches!(step, Step::Mount(_) | Step::Attach { .. });
            let hint = match f.errno {
                // move_mount says EINVAL where mount says ENOTDIR.
                Errno::ENOTDIR | Errno::EINVAL if is_mount => {
                    " (are you trying to mount a directory onto a file, or the reverse?)"
                }
                Errno::ENOSYS if matches!(step, Step::CloneTree { .. }) => " (bind mounts need Linux 5.2 or later)",
                _ => "",
            };
            Error::Setup { step: step.to_string(), errno: f.errno, hint }
        }
        None => Error::Setup { step: format!("step {}", f.step), errno: f.errno, hint: "" },
    }
}

#[cfg(test)]
pub(crate) fn explain_for_tests(plan: &Plan, f: Failure) -> Error {
    explain(plan, f)
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The process's PID in the daemon's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the process. From outside its namespace SIGKILL always works; other
    /// signals reach PID 1 only if it handles them (as with docker without `--init`).
    pub fn kill(&self, signal: Signal) -> Result<()> {
        let status = lock(&self.status);
        if status.is_some() {
            return Err(Error::NotRunning);
        }
        // Not reaped while we hold the lock: the PID cannot have been reused.
        cvt(unsafe { libc::kill(self.pid, signal as libc::c_int) }, "kill").map(|_| ())
    }

    /// Blocks until the process exits (at once if it has); callable from several threads.
    pub fn wait(&self) -> Result<ExitStatus> {
        loop {
            if let Some(s) = *lock(&self.status) {
                return Ok(s);
            }
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r =
                unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    // Another waiter reaped it: the status is stored.
                    Errno::ECHILD if lock(&self.status).is_some() => continue,
                    e => return Err(Error::Sys { op: "waitid", source: e }),
                }
            }
            self.reap_locked(0)?;
        }
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.reap_locked(libc::WNOHANG)
    }

    fn reap_locked(&self, flags: libc::c_int) -> Result<Option<ExitStatus>> {
        let mut status = lock(&self.status);
        if status.is_some() {
            return Ok(*status);
        }
        let mut raw = 0;
        let r = loop {
            let r = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if !(r < 0 && Errno::last() == Errno::EINTR) {
                break r;
            }
        };
        cvt(r, "waitpid")?;
        if r == 0 {
            return Ok(None);
        }
        let oom_killed = lock(&self.cgroup).as_ref().is_some_and(|c| c.oom_kills() > 0);
        let (code, signal) = if libc::WIFSIGNALED(raw) {
            let sig = libc::WTERMSIG(raw);
            (128 + sig, Some(sig))
        } else {
            (libc::WEXITSTATUS(raw), None)
        };
        *status = Some(ExitStatus { code, signal, oom_killed });
        Ok(*status)
    }

    /// Kills the process if it still runs, waits for it and removes the cgroup. The rootfs was
    /// mounted in the container's mount namespace only, so it is gone with the process; the
    /// writable layer in `container_dir` is kept.
    pub fn cleanup(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if lock(&self.status).is_none() {
            let _ = self.kill(Signal::SIGKILL);
            self.wait()?;
        }
        let cgroup = lock(&self.cgroup).take();
        match cgroup {
            Some(c) => c.remove(),
            None => Ok(()),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
