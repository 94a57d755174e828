//! What the integration tests of several crates need alike: knowing whether they run as root, and Debian's
//! static busybox for container images (installed through the project's own apt helper when missing).

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when the tests can use the kernel for real (root); otherwise prints why `what` is skipped.
pub fn root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: {what} need root");
    }
    root
}

/// `/bin/busybox` from Debian's busybox-static, installed with `scripts/lib/apt.sh` if missing.
pub fn busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    if !path.exists() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new("bash")
            .args(["-c", "source scripts/lib/apt.sh && ensure_pkgs busybox-static"])
            .current_dir(repo)
            .status()
            .expect("run apt");
        assert!(status.success(), "installing busybox-static failed");
    }
    path
}
