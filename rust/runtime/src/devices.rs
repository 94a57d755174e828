//! `/dev`: the device nodes and symlinks every container gets, and the v1 device whitelist.

use crate::error::Result;
use crate::plan::{cstr, Step};

/// `(path, major, minor)`: character devices, mode 0666, root-owned.
const DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// `(target, link)`.
const SYMLINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

/// Docker's default device cgroup rules: create any node, use only the harmless ones.
pub(crate) const V1_ALLOWED_DEVICES: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// Steps run after `pivot_root`, once `/dev` is the container's tmpfs.
pub(crate) fn steps() -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for (path, major, minor) in DEVICES {
        out.push(Step::Mknod { path: cstr(path)?, mode: libc::S_IFCHR | 0o666, dev: libc::makedev(major, minor) });
    }
    for (target, link) in SYMLINKS {
        out.push(Step::Symlink { target: cstr(target)?, link: cstr(link)? });
    }
    Ok(out)
}
