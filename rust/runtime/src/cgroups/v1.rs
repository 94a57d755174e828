//! cgroup v1: one directory per controller hierarchy (`<root>/<controller>/<parent>/<id>`).

use std::fs;
use std::path::{Path, PathBuf};

use super::{needed, write};
use crate::devices::ALLOWED_DEVICES;
use crate::error::{Error, Result};
use crate::spec::Resources;

/// Controllers the container joins; others stay the daemon's.
const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "devices"];

pub(super) fn create(root: &Path, rel: &Path, res: &Resources) -> Result<Vec<(String, PathBuf)>> {
    let mut dirs = Vec::new();
    for name in CONTROLLERS {
        let hierarchy = root.join(name);
        if !hierarchy.join("cgroup.procs").exists() {
            if needed(name, res) {
                let _ = remove(&dirs);
                return Err(Error::invalid(format!(
                    "cgroup v1 controller {name} is not mounted at {}",
                    hierarchy.display()
                )));
            }
            continue;
        }
        let dir = hierarchy.join(rel);
        if let Err(e) = fs::create_dir_all(&dir) {
            let _ = remove(&dirs);
            return Err(Error::io_path("create cgroup", &dir, e));
        }
        dirs.push((name.to_string(), dir));
    }
    if let Err(e) = limit(&dirs, res) {
        let _ = remove(&dirs);
        return Err(e);
    }
    Ok(dirs)
}

fn limit(dirs: &[(String, PathBuf)], res: &Resources) -> Result<()> {
    let dir = |name: &str| dirs.iter().find(|(c, _)| c == name).map(|(_, d)| d.as_path());
    if let (Some(bytes), Some(d)) = (res.memory_limit, dir("memory")) {
        write(d, "memory.limit_in_bytes", &bytes.to_string())?;
        // No swap beyond the limit, as v2's `memory.swap.max` 0 (without swap accounting there is no file).
        if d.join("memory.memsw.limit_in_bytes").exists() {
            write(d, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
        }
    }
    if let (Some(pids), Some(d)) = (res.pids_limit, dir("pids")) {
        write(d, "pids.max", &if pids > 0 { pids.to_string() } else { "max".into() })?;
    }
    if let (Some(shares), Some(d)) = (res.cpu_shares, dir("cpu")) {
        write(d, "cpu.shares", &shares.to_string())?;
    }
    if let Some(d) = dir("devices") {
        write(d, "devices.deny", "a")?;
        for rule in &ALLOWED_DEVICES {
            write(d, "devices.allow", &rule.v1_line())?;
        }
    }
    Ok(())
}

fn remove(dirs: &[(String, PathBuf)]) -> Result<()> {
    for (_, d) in dirs {
        let _ = fs::remove_dir(d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::DeviceRule;

    /// A fake v1 root: hierarchies with `cgroup.procs`, the container's directories pre-made with
    /// the control files the kernel would provide.
    fn fake_root(controllers: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for c in controllers {
            let h = root.path().join(c);
            fs::create_dir_all(h.join("be/c1")).unwrap();
            fs::write(h.join("cgroup.procs"), "").unwrap();
            for f in [
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "pids.max",
                "cpu.shares",
                "devices.deny",
                "devices.allow",
            ] {
                fs::write(h.join("be/c1").join(f), "").unwrap();
            }
        }
        root
    }

    #[test]
    fn writes_limits_per_controller() {
        let root = fake_root(&["memory", "pids", "cpu", "devices"]);
        let res = Resources { memory_limit: Some(16 << 20), pids_limit: Some(-1), cpu_shares: Some(512) };
        let dirs = create(root.path(), Path::new("be/c1"), &res).unwrap();
        assert_eq!(dirs.len(), 4);
        let read = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("memory/be/c1/memory.limit_in_bytes"), "16777216");
        assert_eq!(read("memory/be/c1/memory.memsw.limit_in_bytes"), "16777216");
        assert_eq!(read("pids/be/c1/pids.max"), "max");
        assert_eq!(read("cpu/be/c1/cpu.shares"), "512");
        assert_eq!(read("devices/be/c1/devices.deny"), "a");
        // Each write replaces the fake file: the last rule is what remains.
        assert_eq!(read("devices/be/c1/devices.allow"), ALLOWED_DEVICES.last().map(DeviceRule::v1_line).unwrap());
    }

    #[test]
    fn missing_controller_is_an_error_only_when_needed() {
        let root = fake_root(&["memory", "devices"]);
        let dirs = create(root.path(), Path::new("be/c1"), &Resources::default()).unwrap();
        assert_eq!(dirs.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["memory", "devices"]);
        let res = Resources { pids_limit: Some(10), ..Default::default() };
        let err = create(root.path(), Path::new("be/c1"), &res).unwrap_err();
        assert!(err.to_string().contains("controller pids is not mounted"), "{err}");
    }
}
