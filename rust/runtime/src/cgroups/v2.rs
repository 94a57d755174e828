//! cgroup v2: one directory in the unified hierarchy, controllers enabled down the path.

use std::fs;
use std::path::{Path, PathBuf};

use super::{cpu_shares_to_weight, create_dir, needed, write};
use crate::error::{Error, Result};
use crate::spec::Resources;

const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

pub(super) fn create(root: &Path, rel: &Path, res: &Resources) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for component in rel.components() {
        enable_controllers(&dir, res)?;
        dir.push(component);
        create_dir(&dir)?;
    }
    if let Err(e) = limit(&dir, res) {
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// Enables the controllers in `dir`'s `cgroup.subtree_control` so its children get them.
fn enable_controllers(dir: &Path, res: &Resources) -> Result<()> {
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
    let available = read("cgroup.controllers");
    let enabled = read("cgroup.subtree_control");
    for c in CONTROLLERS {
        if enabled.split_whitespace().any(|e| e == c) {
            continue;
        }
        let result = if available.split_whitespace().any(|a| a == c) {
            write(dir, "cgroup.subtree_control", &format!("+{c}"))
        } else {
            Err(Error::invalid(format!("cgroup v2 controller {c} is not available in {}", dir.display())))
        };
        // Controllers nobody asked for are a bonus (memory gives the OOM counter).
        if needed(c, res) {
            result?;
        }
    }
    Ok(())
}

fn limit(dir: &Path, res: &Resources) -> Result<()> {
    if let Some(bytes) = res.memory_limit {
        write(dir, "memory.max", &bytes.to_string())?;
        if dir.join("memory.swap.max").exists() {
            write(dir, "memory.swap.max", "0")?;
        }
    }
    if let Some(pids) = res.pids_limit {
        write(dir, "pids.max", &if pids > 0 { pids.to_string() } else { "max".into() })?;
    }
    if let Some(shares) = res.cpu_shares {
        write(dir, "cpu.weight", &cpu_shares_to_weight(shares).to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        fs::write(p.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(p.join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir_all(p.join("be/c1")).unwrap();
        fs::write(p.join("be/cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(p.join("be/cgroup.subtree_control"), "memory pids\n").unwrap();
        for f in ["memory.max", "memory.swap.max", "pids.max", "cpu.weight"] {
            fs::write(p.join("be/c1").join(f), "").unwrap();
        }
        root
    }

    #[test]
    fn enables_controllers_and_writes_limits() {
        let root = fake_root();
        let res = Resources { memory_limit: Some(1 << 24), pids_limit: Some(20), cpu_shares: Some(1024) };
        let dir = create(root.path(), Path::new("be/c1"), &res).unwrap();
        let read = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(dir, root.path().join("be/c1"));
        // Root: the last controller written wins in a plain file; `be` only lacked cpu.
        assert_eq!(read("cgroup.subtree_control"), "+cpu");
        assert_eq!(read("be/cgroup.subtree_control"), "+cpu");
        assert_eq!(read("be/c1/memory.max"), "16777216");
        assert_eq!(read("be/c1/memory.swap.max"), "0");
        assert_eq!(read("be/c1/pids.max"), "20");
        assert_eq!(read("be/c1/cpu.weight"), "39");
    }

    #[test]
    fn unavailable_controller_fails_only_when_needed() {
        let root = fake_root();
        fs::write(root.path().join("be/cgroup.controllers"), "memory pids\n").unwrap();
        assert!(create(root.path(), Path::new("be/c1"), &Resources::default()).is_ok());
        let res = Resources { cpu_shares: Some(100), ..Default::default() };
        let err = create(root.path(), Path::new("be/c1"), &res).unwrap_err();
        assert!(err.to_string().contains("controller cpu is not available"), "{err}");
    }
}
