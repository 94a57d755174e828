//! What the host's cgroups lack, as `/info` and the daemon's log tell it: dockerd's warnings, flags that
//! agree with them, and a warning line with the fix for each at start.

mod common;

use std::fs;
use std::path::Path;

use common::Daemon;

/// `/info` flag, its warning, and the start-up log line's beginning.
const FEATURES: [(&str, &str, &str); 4] = [
    ("MemoryLimit", "WARNING: No memory limit support", "no memory limit support: "),
    ("SwapLimit", "WARNING: No swap limit support", "no swap limit support: "),
    ("CPUShares", "WARNING: No cpu shares support", "no cpu shares support: "),
    ("PidsLimit", "WARNING: No pids limit support", "no pids limit support: "),
];

/// Whether the host has the controller where the runtime looks for it (the test runs as root in the host's
/// cgroup namespace, so it can always be enabled there).
fn host_has(controller: &str) -> bool {
    let root = Path::new("/sys/fs/cgroup");
    match fs::read_to_string(root.join("cgroup.controllers")) {
        Ok(v2) => v2.split_whitespace().any(|c| c == controller),
        Err(_) => root.join(controller).join("cgroup.procs").exists(),
    }
}

#[test]
fn info_warnings_agree_with_the_flags_and_the_host() {
    let d = Daemon::start();
    let info = d.http("GET", "/info").json();
    let warnings: Vec<&str> = info["Warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("Warnings is not an array: {info}"))
        .iter()
        .map(|w| w.as_str().unwrap_or_else(|| panic!("a warning is not a string: {info}")))
        .collect();
    let log = d.log_text();
    for (flag, warning, line) in FEATURES {
        let has = info[flag].as_bool().unwrap_or_else(|| panic!("{flag} is not a boolean: {info}"));
        assert_eq!(warnings.contains(&warning), !has, "{flag} {has} but Warnings {warnings:?}");
        // Each missing feature is logged once at start, with its fix after the `;`.
        let logged = log.lines().filter(|l| l.contains("level=warning") && l.contains(line)).collect::<Vec<_>>();
        assert_eq!(logged.len(), usize::from(!has), "{flag}: {logged:?}\n{log}");
        assert!(logged.iter().all(|l| l.contains("; ")), "{logged:?}");
    }
    assert_eq!(info["CpuCfsPeriod"], info["CpuCfsQuota"]);
    for flag in ["CPUSet", "OomKillDisable"] {
        assert!(info[flag].is_boolean(), "{flag}: {info}");
    }
    // Where the host has the controllers, none of their warnings.
    for (flag, controller) in [("MemoryLimit", "memory"), ("CPUShares", "cpu"), ("PidsLimit", "pids")] {
        if host_has(controller) {
            assert_eq!(info[flag], true, "{controller} is there: {info}");
        }
    }
    // Warnings only for what the engine offers: never for the limits it refuses.
    for refused in ["WARNING: No cpu cfs quota support", "WARNING: No cpuset support", "WARNING: No oom kill disable"] {
        assert!(!warnings.iter().any(|w| w.starts_with(refused)), "{warnings:?}");
    }
}
