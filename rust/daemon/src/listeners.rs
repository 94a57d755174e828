//! Binding the `-H` addresses: unix sockets (stale file removed, mode 0660, optional group), sockets passed
//! by systemd, and TCP when asked for explicitly. Binding happens before the async runtime starts (the umask
//! trick below is process-wide).

use std::fs;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};

use crate::hosts::Host;

pub enum Bound {
    /// `path` is the socket file we created and remove at exit (`None` for a socket systemd passed).
    Unix { listener: UnixListener, path: Option<PathBuf> },
    Tcp(TcpListener),
}

impl Bound {
    pub fn describe(&self) -> String {
        match self {
            Bound::Unix { path: Some(p), .. } => p.display().to_string(),
            Bound::Unix { listener, .. } => match listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf)) {
                Some(p) => format!("{} (fd {})", p.display(), listener.as_raw_fd()),
                None => format!("fd {}", listener.as_raw_fd()),
            },
            Bound::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "tcp".into()),
        }
    }
}

/// Binds every host; on failure, removes the socket files it had created.
pub fn bind_all(hosts: &[Host], activated: Vec<(RawFd, OwnedFd)>, gid: Option<u32>) -> Result<Vec<Bound>, String> {
    let mut out = Vec::new();
    let res = bind_into(&mut out, hosts, activated, gid);
    if res.is_err() {
        for b in &out {
            if let Bound::Unix { path: Some(p), .. } = b {
                let _ = fs::remove_file(p);
            }
        }
    }
    res.map(|()| out)
}

fn bind_into(out: &mut Vec<Bound>, hosts: &[Host], activated: Vec<(RawFd, OwnedFd)>, gid: Option<u32>) -> Result<(), String> {
    let mut activated: Vec<Option<(RawFd, OwnedFd)>> = activated.into_iter().map(Some).collect();
    for host in hosts {
        match host {
            Host::Unix(path) => out.push(Bound::Unix { listener: bind_unix(path, gid)?, path: Some(path.clone()) }),
            Host::Tcp(addr) => {
                let l = TcpListener::bind(addr).map_err(|e| format!("listening on tcp://{addr}: {e}"))?;
                log::warn!("API listening on tcp://{addr} without TLS or authentication: anyone who can reach it has root on this machine");
                out.push(Bound::Tcp(l));
            }
            Host::Fd(which) => {
                let picked: Vec<(RawFd, OwnedFd)> = activated
                    .iter_mut()
                    .filter(|s| which.is_none() || s.as_ref().map(|(n, _)| *n) == *which)
                    .filter_map(Option::take)
                    .collect();
                if picked.is_empty() {
                    return Err(match which {
                        None => "-H fd:// given but systemd passed no socket (LISTEN_FDS/LISTEN_PID unset or not for this process)".into(),
                        Some(n) => format!("-H fd://{n}: systemd passed no socket with that number"),
                    });
                }
                for (n, fd) in picked {
                    out.push(from_fd(n, fd)?);
                }
            }
        }
    }
    out.iter().try_for_each(set_nonblocking)
}

fn set_nonblocking(b: &Bound) -> Result<(), String> {
    match b {
        Bound::Unix { listener, .. } => listener.set_nonblocking(true),
        Bound::Tcp(l) => l.set_nonblocking(true),
    }
    .map_err(|e| format!("configuring {}: {e}", b.describe()))
}

fn from_fd(n: RawFd, fd: OwnedFd) -> Result<Bound, String> {
    let addr: SockaddrStorage = getsockname(fd.as_raw_fd()).map_err(|e| format!("fd://{n}: not a socket ({e})"))?;
    match addr.family() {
        Some(AddressFamily::Unix) => Ok(Bound::Unix { listener: UnixListener::from(fd), path: None }),
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            log::warn!("fd://{n} is a TCP socket: the API has no TLS or authentication");
            Ok(Bound::Tcp(TcpListener::from(fd)))
        }
        other => Err(format!("fd://{n}: unsupported socket family {other:?}")),
    }
}

/// Creates the socket with mode 0660: a live daemon's socket is refused, a stale one removed.
fn bind_unix(path: &Path, gid: Option<u32>) -> Result<UnixListener, String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(format!("{} is in use: another daemon is listening on it", path.display()));
            }
            fs::remove_file(path).map_err(|e| format!("removing stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => return Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // SAFETY: umask only swaps the process's file-creation mask; no other thread exists yet.
    let old = unsafe { libc::umask(0o117) };
    let res = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = res.map_err(|e| format!("listening on {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660)).map_err(|e| format!("chmod {}: {e}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(listener)
}

/// `--group`: a group name or number.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("--group {group}: no such group")),
        Err(e) => Err(format!("--group {group}: {e}")),
    }
}
