//! `/dev`: the device nodes and symlinks every container gets, and the device rules of its cgroup.

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

/// What a device rule grants; the bits are the kernel's (`BPF_DEVCG_ACC_*`, `m`/`r`/`w` in v1).
pub(crate) const MKNOD: u8 = 1;
pub(crate) const READ: u8 = 2;
pub(crate) const WRITE: u8 = 4;
const RWM: u8 = MKNOD | READ | WRITE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    Char,
    Block,
}

/// One allow rule of the device cgroup: v1 writes it to `devices.allow`, v2 compiles it into an eBPF
/// program (`cgroups::device_filter`). `None` is any major or minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

const fn allow(kind: DeviceKind, major: Option<u32>, minor: Option<u32>, access: u8) -> DeviceRule {
    DeviceRule { kind, major, minor, access }
}

/// Docker's default device rules: create any node, use only the harmless ones (null, zero, full, random,
/// urandom, tty, console, ptmx, the pty slaves, tun). Everything else is denied.
pub(crate) const ALLOWED_DEVICES: [DeviceRule; 12] = [
    allow(DeviceKind::Char, None, None, MKNOD),
    allow(DeviceKind::Block, None, None, MKNOD),
    allow(DeviceKind::Char, Some(1), Some(3), RWM),
    allow(DeviceKind::Char, Some(1), Some(5), RWM),
    allow(DeviceKind::Char, Some(1), Some(7), RWM),
    allow(DeviceKind::Char, Some(1), Some(8), RWM),
    allow(DeviceKind::Char, Some(1), Some(9), RWM),
    allow(DeviceKind::Char, Some(5), Some(0), RWM),
    allow(DeviceKind::Char, Some(5), Some(1), RWM),
    allow(DeviceKind::Char, Some(5), Some(2), RWM),
    allow(DeviceKind::Char, Some(136), None, RWM),
    allow(DeviceKind::Char, Some(10), Some(200), RWM),
];

impl DeviceRule {
    /// The v1 `devices.allow` line: `c 1:3 rwm`, `b *:* m`.
    pub(crate) fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let kind = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let access: String =
            [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')].iter().filter(|(b, _)| self.access & b != 0).map(|(_, c)| *c).collect();
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_are_dockers() {
        let lines: Vec<String> = ALLOWED_DEVICES.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(&lines[..3], ["c *:* m", "b *:* m", "c 1:3 rwm"]);
        assert_eq!(lines[10], "c 136:* rwm");
        assert_eq!(lines[11], "c 10:200 rwm");
    }
}
