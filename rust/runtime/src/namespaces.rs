//! Namespaces: the `clone` flags, and what is set up inside the new UTS, network and cgroup ones.

use crate::cgroups::CgroupVersion;
use crate::error::{Error, Result};
use crate::plan::{cstr, Step};
use crate::spec::{ContainerSpec, Network};

/// mount, pid, uts, ipc, and net unless the host's network is shared.
pub(crate) fn clone_flags(network: Network) -> libc::c_int {
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    match network {
        Network::Host => flags,
        Network::None => flags | libc::CLONE_NEWNET,
    }
}

/// On v2 the container gets its own cgroup namespace (docker's default there), entered after
/// joining the cgroup so that the cgroup is its root.
pub(crate) fn cgroup_ns(version: CgroupVersion) -> Option<Step> {
    (version == CgroupVersion::V2).then_some(Step::Unshare { flags: libc::CLONE_NEWCGROUP, what: "cgroup" })
}

/// The hostname, and `lo` up in a new network namespace.
pub(crate) fn uts_and_net(spec: &ContainerSpec) -> Result<Vec<Step>> {
    let hostname = spec.effective_hostname();
    if hostname.is_empty() || hostname.len() > 64 {
        return Err(Error::invalid(format!("hostname {hostname:?} must have 1 to 64 bytes")));
    }
    let mut out = vec![Step::Sethostname(cstr(hostname)?)];
    if spec.network == Network::None {
        out.push(Step::LoopbackUp);
    }
    Ok(out)
}
