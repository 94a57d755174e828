//! systemd socket activation, as `sd_listen_fds(3)`: the sockets are fds 3 .. 3+LISTEN_FDS, and are ours only
//! when LISTEN_PID is our PID (a LISTEN_FDS inherited from a parent that forgot to clear it is ignored, and so
//! is one without LISTEN_PID). The variables are removed once read so children do not inherit them.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub const FIRST_FD: RawFd = 3;

/// Takes the passed sockets (fd number, fd). Call once, before any thread starts.
pub fn take() -> Vec<(RawFd, OwnedFd)> {
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.trim().parse::<RawFd>().ok()).unwrap_or(0);
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !pid_ok || count <= 0 {
        return Vec::new();
    }
    (FIRST_FD..FIRST_FD + count)
        .filter(|&fd| {
            // SAFETY: fcntl on a descriptor number only inspects or flags it.
            let ok = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
            if ok {
                // SAFETY: as above; the listeners must not leak into children.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            ok
        })
        // SAFETY: systemd handed these descriptors to this process; nothing else owns them.
        .map(|fd| (fd, unsafe { OwnedFd::from_raw_fd(fd) }))
        .collect()
}
