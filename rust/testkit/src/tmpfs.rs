//! A small tmpfs for full-disk tests: mounted on a temporary directory, unmounted (lazily) when dropped.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `size` as mount(8) takes it: `3m`, `2500k`.
    pub fn mount(size: &str) -> std::io::Result<Tmpfs> {
        let dir = tempfile::Builder::new().prefix("be-tmpfs-").tempdir()?;
        let path = dir.path().to_path_buf();
        let target = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let opts = CString::new(format!("size={size},mode=0755")).map_err(std::io::Error::other)?;
        // SAFETY: valid NUL-terminated strings; no flags.
        let rc = unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, opts.as_ptr().cast()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.path.as_os_str().as_bytes()) {
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
