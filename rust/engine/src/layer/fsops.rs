//! File-system primitives for unpacking beneath a directory without ever following a symlink.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

/// Opens `path` (relative, already normalised) as a directory beneath `root`. Resolution refuses symlinks
/// and anything that leaves `root`, so a crafted entry cannot write through a link the archive planted.
pub fn open_dir_beneath(root: &OwnedFd, path: &[u8]) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let p = if path.is_empty() { OsStr::new(".") } else { OsStr::from_bytes(path) };
    match openat2(root.as_fd(), p, how) {
        // A symlink met as the last component fails with ENOTDIR (O_DIRECTORY on a link not followed); report it
        // like one met earlier in the path (ELOOP), so the caller names the symlink.
        Err(Errno::ENOTDIR) if is_symlink_beneath(root, p) => Err(Errno::ELOOP),
        other => other,
    }
}

fn is_symlink_beneath(root: &OwnedFd, path: &OsStr) -> bool {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // rustix's fstat (statx on 32-bit targets): libc's fails with EOVERFLOW on a link timed past 2038 there.
    openat2(root.as_fd(), path, how)
        .ok()
        .and_then(|fd| rustix::fs::fstat(fd).ok())
        .is_some_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink)
}

/// Like `open_dir_beneath`, creating missing directories (mode 0755, as docker does for implied parents).
pub fn ensure_dir_beneath(root: &OwnedFd, components: &[&[u8]]) -> nix::Result<OwnedFd> {
    let joined = components.join(&b'/');
    match open_dir_beneath(root, &joined) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let mut cur = open_dir_beneath(root, b"")?;
    for c in components {
        let name = OsStr::from_bytes(c);
        match mkdirat(cur.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        cur = open_dir_beneath(&cur, c)?;
    }
    Ok(cur)
}

pub fn set_xattr(fd: &impl AsRawFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in xattr name"))?;
    // SAFETY: valid fd, NUL-terminated name, value pointer/length from a slice.
    let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn makedev(major: u64, minor: u64) -> libc::dev_t {
    libc::makedev(major as libc::c_uint, minor as libc::c_uint)
}
