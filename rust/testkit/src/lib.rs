//! What the integration tests of several crates need alike: knowing whether they run as root, Debian's
//! static busybox for container images (installed through the project's own apt helper when missing), and
//! deterministic incompressible bytes for layer contents; for registry pull and push tests, a real registry
//! ([`registry`]), a fault-injecting HTTP proxy to put in front of it ([`fault_proxy`]) and a tiny HTTP
//! client ([`http`]).

pub mod archive;
pub mod fault_proxy;
pub mod http;
pub mod registry;
pub mod tmpfs;

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

/// Deterministic, incompressible bytes (xorshift64*): layer contents that compress to nothing and differ by seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
