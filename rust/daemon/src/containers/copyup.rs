//! docker's volume copy-up: the first time an empty volume is mounted over a directory the image has, that
//! directory's content (as the overlay would show it: top layer first, whiteouts and opaque directories
//! respected) is copied into the volume, with owners and modes; the volume's root takes the directory's
//! owner and mode. `nocopy` turns it off.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn opaque(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and buffer.
    let n =
        unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
}

/// The layer dirs (top first) whose `rel` directory shows in the merged view; empty when `rel` is not a
/// directory there.
fn contributing(layers: &[PathBuf], rel: &Path) -> Vec<PathBuf> {
    let comps: Vec<_> = rel.components().collect();
    let mut out = Vec::new();
    for l in layers {
        let mut acc = l.clone();
        let (mut present, mut hides_lower) = (true, false);
        for (i, c) in comps.iter().enumerate() {
            acc.push(c);
            let Ok(m) = fs::symlink_metadata(&acc) else {
                present = false;
                break;
            };
            if is_whiteout(&m) || !m.is_dir() {
                // A file where the top-most layer has `rel`: not a directory in the merged view.
                if !is_whiteout(&m) && i + 1 == comps.len() && out.is_empty() {
                    return Vec::new();
                }
                present = false;
                hides_lower = true;
                break;
            }
            if opaque(&acc) {
                hides_lower = true;
            }
        }
        if present {
            out.push(acc);
        }
        if hides_lower {
            break;
        }
    }
    out
}

fn copy_entry(src: &Path, dst: &Path, m: &fs::Metadata) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if ft.is_file() {
        fs::copy(src, dst)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    } else {
        // Devices, fifos, sockets: not copied (docker's copy skips what it cannot recreate safely).
        return Ok(());
    }
    lchown(dst, m.uid(), m.gid())
}

/// Copies the merged directory `rel` of `dirs` (its contributing layers, top first) into `dst`.
fn copy_dir(dirs: &[PathBuf], dst: &Path) -> io::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, d) in dirs.iter().enumerate() {
        for e in fs::read_dir(d)? {
            let e = e?;
            let name = e.file_name();
            if !seen.insert(name.clone()) {
                continue;
            }
            let m = fs::symlink_metadata(e.path())?;
            if is_whiteout(&m) {
                continue;
            }
            let target = dst.join(&name);
            if m.is_dir() {
                // The directory as lower layers show it too, down to an opaque one or a non-directory.
                let mut sub = vec![e.path()];
                if !opaque(&e.path()) {
                    for lower in &dirs[i + 1..] {
                        match fs::symlink_metadata(lower.join(&name)) {
                            Ok(lm) if lm.is_dir() => {
                                sub.push(lower.join(&name));
                                if opaque(&lower.join(&name)) {
                                    break;
                                }
                            }
                            Ok(_) => break,
                            Err(_) => {}
                        }
                    }
                }
                fs::create_dir(&target)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(m.mode() & 0o7777))?;
                lchown(&target, m.uid(), m.gid())?;
                copy_dir(&sub, &target)?;
            } else {
                copy_entry(&e.path(), &target, &m)?;
            }
        }
    }
    Ok(())
}

/// Copies the image's `dest` into the volume directory `volume` if the volume is empty and the image has
/// that directory. True when something was copied.
pub fn populate(layers: &[PathBuf], dest: &str, volume: &Path) -> io::Result<bool> {
    if fs::read_dir(volume)?.next().is_some() {
        return Ok(false);
    }
    let rel = Path::new(dest.trim_start_matches('/'));
    let dirs = contributing(layers, rel);
    let Some(top) = dirs.first() else { return Ok(false) };
    let m = fs::symlink_metadata(top)?;
    fs::set_permissions(volume, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    lchown(volume, m.uid(), m.gid())?;
    copy_dir(&dirs, volume)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_merged_view() {
        let t = tempfile::tempdir().unwrap();
        let (low, top, vol) = (t.path().join("low"), t.path().join("top"), t.path().join("vol"));
        for (p, c) in [("low/srv/a", "a-low"), ("low/srv/b", "b"), ("low/srv/sub/c", "c"), ("top/srv/a", "a-top")] {
            let f = t.path().join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, c).unwrap();
        }
        std::os::unix::fs::symlink("a", top.join("srv/link")).unwrap();
        fs::create_dir_all(&vol).unwrap();
        assert!(populate(&[top.clone(), low.clone()], "/srv", &vol).unwrap());
        assert_eq!(fs::read_to_string(vol.join("a")).unwrap(), "a-top");
        assert_eq!(fs::read_to_string(vol.join("b")).unwrap(), "b");
        assert_eq!(fs::read_to_string(vol.join("sub/c")).unwrap(), "c");
        assert_eq!(fs::read_link(vol.join("link")).unwrap(), Path::new("a"));
        // Not empty any more: left alone.
        fs::write(vol.join("a"), "changed").unwrap();
        assert!(!populate(&[top.clone(), low.clone()], "/srv", &vol).unwrap());
        // A path the image lacks, or a file: nothing.
        let empty = t.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        assert!(!populate(&[top.clone(), low.clone()], "/nope", &empty).unwrap());
        assert!(!populate(&[top, low], "/srv/a", &empty).unwrap());
    }
}
