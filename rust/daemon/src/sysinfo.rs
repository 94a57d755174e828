//! Facts about the host for `/info` and `/version`, read from the kernel at each request (cheap).

use std::fs;

pub struct Host {
    pub ncpu: i64,
    pub mem_total: u64,
    pub kernel: String,
    /// `uname -m`: x86_64, aarch64, armv7l…
    pub machine: String,
    pub os: String,
    pub os_version: String,
    pub hostname: String,
    pub cgroup_version: &'static str,
    pub ipv4_forwarding: bool,
}

/// Go's GOARCH names, which the API reports in `/version`.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn os_release() -> (String, String) {
    let text = fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let pretty = field("PRETTY_NAME");
    (if pretty.is_empty() { "Linux".into() } else { pretty }, field("VERSION_ID"))
}

fn mem_total() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn host() -> Host {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
    };
    let (os, os_version) = os_release();
    let v2 = runtime::detect_version(std::path::Path::new(runtime::CGROUP_ROOT)) == runtime::CgroupVersion::V2;
    // SAFETY: sysconf only reads a system setting.
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    Host {
        ncpu: i64::from(ncpu.max(1) as i32),
        mem_total: mem_total(),
        kernel: field(|u| u.release()),
        machine: field(|u| u.machine()),
        os,
        os_version,
        hostname: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        cgroup_version: if v2 { "2" } else { "1" },
        ipv4_forwarding: fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1"),
    }
}

/// The filesystem under a directory, named as dockerd's `Backing Filesystem`.
pub fn backing_fs(dir: &std::path::Path) -> String {
    let Ok(st) = nix::sys::statfs::statfs(dir) else { return "unknown".into() };
    let magic = st.filesystem_type().0 as u64;
    match magic {
        0xEF53 => "extfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x6969 => "nfs".into(),
        other => format!("0x{other:x}"),
    }
}
