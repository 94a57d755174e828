//! Capability names to kernel bit masks (parsed with the `caps` crate, applied raw in the child).

use std::str::FromStr;
use std::sync::OnceLock;

use caps::Capability;

use crate::plan::Step;

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

/// The highest capability number the running kernel knows.
pub(crate) fn last_cap() -> u8 {
    static LAST: OnceLock<u8> = OnceLock::new();
    *LAST.get_or_init(|| caps::runtime::thread_all_supported().iter().map(|c| c.index()).max().unwrap_or(40))
}

/// `CAP_CHOWN` / `chown` / `cap_chown` names to a mask; capabilities above `last_cap` are dropped
/// from the mask (the kernel does not have them).
pub(crate) fn mask(names: &[String], last_cap: u8) -> Result<u64, UnknownCapability> {
    let mut mask = 0u64;
    for name in names {
        let cap = Capability::from_str(&caps::to_canonical(name)).map_err(|_| UnknownCapability(name.clone()))?;
        if cap.index() <= last_cap {
            mask |= cap.bitmask();
        }
    }
    Ok(mask)
}

/// Before the user switch: shrink the bounding set, and keep the permitted set across `setuid`.
pub(crate) fn before_user(mask: u64, last_cap: u8) -> Vec<Step> {
    vec![Step::DropBounding { keep: mask, last_cap }, Step::KeepCaps(true)]
}

/// After the user switch: permitted and effective are the list, inheritable is empty (docker
/// since CVE-2022-24769); exec then gives root the bounding set and other users nothing.
pub(crate) fn after_user(mask: u64) -> Step {
    Step::Capset { effective: mask, permitted: mask, inheritable: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_mask() {
        let names: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        // What `docker run` shows as CapEff for root.
        assert_eq!(mask(&names, 40).unwrap(), 0x00000000a80425fb);
    }

    #[test]
    fn accepts_short_names_and_rejects_unknown() {
        assert_eq!(mask(&["chown".into(), "Cap_Kill".into()], 40).unwrap(), 1 | 1 << 5);
        assert_eq!(mask(&["CAP_BOGUS".into()], 40), Err(UnknownCapability("CAP_BOGUS".into())));
        // Capabilities newer than the kernel are ignored.
        assert_eq!(mask(&["CAP_CHECKPOINT_RESTORE".into()], 37).unwrap(), 0);
    }
}
