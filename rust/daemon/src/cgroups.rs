//! What the host's cgroups give containers, told to the operator: one warning line per missing feature at
//! start (what, why, the fix), and `/info`'s flags and `Warnings`, the latter in dockerd's words.

use runtime::{CgroupFeature, CgroupSupport};

use crate::containers::spec::CGROUP_PARENT;

/// Read at each call: a few small files of `/sys/fs/cgroup` and `/proc/cgroups`.
pub fn detect() -> CgroupSupport {
    CgroupSupport::detect(CGROUP_PARENT)
}

/// One warning per missing feature, naming the fix (e.g. the Raspberry Pi's `cgroup_enable=memory`).
pub fn log_missing(support: &CgroupSupport) {
    for missing in &support.missing {
        log::warn!("{missing}");
    }
}

/// dockerd's `/info` warning for a feature (moby daemon/info_unix.go); dockerd has none for pids (it only
/// logs "Unable to find pids controller") nor for devices (it refuses to start without them on v1).
fn warning(feature: CgroupFeature) -> &'static str {
    match feature {
        CgroupFeature::Memory => "WARNING: No memory limit support",
        CgroupFeature::Swap => "WARNING: No swap limit support",
        CgroupFeature::CpuShares => "WARNING: No cpu shares support",
        CgroupFeature::Pids => "WARNING: No pids limit support",
        CgroupFeature::Devices => "WARNING: No devices cgroup support: containers' device rules are not enforced",
    }
}

/// `Warnings` of `/info`: only for what the engine offers (`--memory`, `--cpu-shares`, `--pids-limit`, no
/// swap beyond `--memory`, docker's device rules); the limits it refuses (`--cpus`, `--cpuset-cpus`,
/// `--oom-kill-disable`) get no warning whatever the kernel has.
pub fn info_warnings(support: &CgroupSupport) -> Vec<&'static str> {
    support.missing.iter().map(|m| warning(m.feature)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{CgroupVersion, MissingFeature, MissingReason};

    #[test]
    fn warnings_are_dockerds_in_feature_order() {
        let missing = |feature| MissingFeature { feature, version: CgroupVersion::V2, reason: MissingReason::Disabled };
        let support = CgroupSupport {
            version: CgroupVersion::V2,
            missing: vec![missing(CgroupFeature::Memory), missing(CgroupFeature::Swap), missing(CgroupFeature::Pids)],
            cpu_cfs: false,
            cpuset: false,
            oom_kill_disable: false,
        };
        assert_eq!(
            info_warnings(&support),
            ["WARNING: No memory limit support", "WARNING: No swap limit support", "WARNING: No pids limit support"]
        );
        let all = CgroupSupport { missing: vec![], ..support };
        assert!(info_warnings(&all).is_empty());
    }
}
