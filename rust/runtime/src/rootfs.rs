//! The root filesystem: overlay of the image layers and the container's writable layer,
//! `pivot_root` into it, docker's masked and read-only paths, `--read-only`.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::plan::{cpath, cstr, mount_step, Step};
use crate::spec::Rootfs;

/// Hidden from the container: `/dev/null` over files, a read-only tmpfs over directories.
pub(crate) const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub(crate) const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Checks the paths and creates `upper/`, `work/`, `merged/` when missing.
pub(crate) fn prepare(rootfs: &Rootfs) -> Result<()> {
    if rootfs.lower_dirs.is_empty() {
        return Err(Error::invalid("rootfs needs at least one lower dir"));
    }
    for dir in rootfs.lower_dirs.iter().chain([&rootfs.container_dir]) {
        overlay_safe(dir)?;
    }
    for dir in &rootfs.lower_dirs {
        if !dir.is_dir() {
            return Err(Error::invalid(format!("lower dir {} is not a directory", dir.display())));
        }
    }
    for dir in [rootfs.upper_dir(), rootfs.work_dir(), rootfs.merged_dir()] {
        fs::create_dir_all(&dir).map_err(|e| Error::io_path("create", &dir, e))?;
    }
    Ok(())
}

/// Absolute, and free of the characters overlayfs uses as separators.
fn overlay_safe(dir: &Path) -> Result<()> {
    let bytes = dir.as_os_str().as_bytes();
    if !dir.is_absolute() || bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\' | 0)) {
        return Err(Error::invalid(format!("rootfs path {:?} must be absolute, without `,` `:` `\\`", dir.display())));
    }
    Ok(())
}

/// The overlay's mount options, fitting in one page (the kernel's limit): with absolute lower dirs
/// when they fit, else relative to their common ancestor, which the child then `chdir`s into.
pub(crate) fn overlay_options(rootfs: &Rootfs, limit: usize) -> Result<(Option<PathBuf>, String)> {
    let options = |lowers: Vec<String>| {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            rootfs.upper_dir().display(),
            rootfs.work_dir().display()
        )
    };
    let absolute = options(rootfs.lower_dirs.iter().map(|d| d.display().to_string()).collect());
    if absolute.len() < limit {
        return Ok((None, absolute));
    }
    let mut common = rootfs.lower_dirs[0].clone();
    while !rootfs.lower_dirs.iter().all(|d| d.starts_with(&common) && d != &common) {
        if !common.pop() {
            break;
        }
    }
    let relative: Vec<String> = rootfs
        .lower_dirs
        .iter()
        .filter_map(|d| d.strip_prefix(&common).ok())
        .map(|d| d.display().to_string())
        .collect();
    let options = options(relative);
    if options.len() < limit && common.parent().is_some() {
        Ok((Some(common), options))
    } else {
        Err(Error::invalid(format!(
            "too many layers: overlay options of {} bytes exceed the kernel's {limit}",
            options.len()
        )))
    }
}

/// Before the pivot: mount the overlay on `merged/`.
pub(crate) fn overlay(rootfs: &Rootfs, limit: usize) -> Result<Vec<Step>> {
    let (chdir, options) = overlay_options(rootfs, limit)?;
    let mut out = Vec::new();
    if let Some(dir) = chdir {
        out.push(Step::Chdir(cpath(&dir)?));
    }
    let merged = rootfs.merged_dir();
    let merged = merged.to_str().ok_or_else(|| Error::invalid("container dir must be UTF-8"))?;
    out.push(mount_step(Some("overlay"), merged, Some("overlay"), 0, Some(&options))?);
    Ok(out)
}

/// `pivot_root(".", ".")` from `merged/`: no directory is needed in the image for the old root.
pub(crate) fn pivot(rootfs: &Rootfs) -> Result<Vec<Step>> {
    Ok(vec![Step::Chdir(cpath(&rootfs.merged_dir())?), Step::PivotRoot])
}

/// Right after the pivot: nothing of the host stays reachable (bind sources are detached clones).
pub(crate) fn detach_old_root() -> Result<Vec<Step>> {
    Ok(vec![Step::DetachOldRoot, Step::Chdir(cstr("/")?)])
}

pub(crate) fn masks() -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for p in MASKED_PATHS {
        out.push(Step::MaskPath(cstr(p)?));
    }
    for p in READONLY_PATHS {
        out.push(Step::ReadonlyPath(cstr(p)?));
    }
    Ok(out)
}

/// `--read-only`: the root mount itself becomes read-only (what is mounted on it is unaffected).
pub(crate) fn readonly_root() -> Result<Step> {
    mount_step(None, "/", None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(lowers: Vec<PathBuf>) -> Rootfs {
        Rootfs { lower_dirs: lowers, container_dir: "/var/lib/be/containers/c1".into(), readonly: false }
    }

    #[test]
    fn options_use_absolute_paths_when_they_fit() {
        let r = rootfs(vec!["/l/a/diff".into(), "/l/b/diff".into()]);
        let (dir, opts) = overlay_options(&r, 4095).unwrap();
        assert_eq!(dir, None);
        assert_eq!(
            opts,
            "lowerdir=/l/a/diff:/l/b/diff,upperdir=/var/lib/be/containers/c1/upper,workdir=/var/lib/be/containers/c1/work"
        );
    }

    #[test]
    fn many_layers_use_paths_relative_to_their_common_parent() {
        let layers: Vec<PathBuf> =
            (0..50).map(|i| PathBuf::from(format!("/var/lib/balena-engine/layers/{i:064x}/diff"))).collect();
        let (dir, opts) = overlay_options(&rootfs(layers.clone()), 4095).unwrap();
        assert_eq!(dir, Some(PathBuf::from("/var/lib/balena-engine/layers")));
        assert!(opts.starts_with(&format!("lowerdir={:064x}/diff:", 0)), "{opts}");
        assert!(opts.len() < 4095);
        let many: Vec<PathBuf> = (0..200).map(|i| PathBuf::from(format!("/l/{i:064x}/diff"))).collect();
        assert!(overlay_options(&rootfs(many), 4095).is_err());
    }

    #[test]
    fn refuses_separator_characters() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("a:b");
        fs::create_dir(&bad).unwrap();
        let r = Rootfs { lower_dirs: vec![bad], container_dir: dir.path().join("c"), readonly: false };
        assert!(prepare(&r).is_err());
    }
}
