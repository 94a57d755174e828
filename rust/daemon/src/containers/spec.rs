//! A container's record to the runtime's [`ContainerSpec`], with docker's defaults: `PATH` when the image
//! has none, `HOSTNAME`, `HOME` from the image's passwd, working dir `/`, core dumps off unless
//! `--ulimit core=…`, the default capabilities ± CapAdd/CapDrop; and the `/etc` files it binds.

use std::fs;
use std::path::Path;

use runtime::{ContainerSpec, EtcFiles, Mount, Network, Resources, Rlimit, Rootfs, DEFAULT_CAPABILITIES, DEFAULT_PATH};
use serde_json::Value;

use super::create::normalize_cap;
use super::record::Record;
use super::users;

/// The cgroup parent of every container (`/sys/fs/cgroup/<controller>/balena-engine/<id>`).
pub const CGROUP_PARENT: &str = "balena-engine";

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// docker's `TweakCapabilities`.
pub fn capabilities(cap_add: &[String], cap_drop: &[String]) -> Result<Vec<String>, String> {
    let norm = |l: &[String]| l.iter().map(|c| normalize_cap(c).map_err(|e| e.message)).collect::<Result<Vec<_>, _>>();
    let (add, drop) = (norm(cap_add)?, norm(cap_drop)?);
    let all: Vec<String> = super::create::ALL_CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect();
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        all.into_iter().filter(|c| !drop.contains(c)).collect()
    } else if drop.iter().any(|c| c == "ALL") {
        add
    } else {
        let mut v: Vec<String> =
            DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).filter(|c| !drop.contains(c)).collect();
        v.extend(add);
        v
    };
    caps.sort();
    caps.dedup();
    Ok(caps)
}

/// The environment the process gets: `PATH` (docker's default unless set), `HOSTNAME`, then the config's,
/// then `HOME` when unset.
pub fn environment(config_env: &[String], hostname: &str, home: &str) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    for e in config_env {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match env.iter_mut().find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key) {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

fn hosts_file(hostname: &str, network: Network, extra: &[String]) -> String {
    let mut s = match network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n\
             ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            .to_owned(),
    };
    if network == Network::None && !hostname.is_empty() {
        s.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for e in extra {
        // "name:ip" (docker's ExtraHosts; the IP may be IPv6 with colons).
        if let Some((name, ip)) = e.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    s
}

fn resolv_conf(host_cfg: &Value, network: Network) -> String {
    let dns = strs(&host_cfg["Dns"]);
    let search = strs(&host_cfg["DnsSearch"]);
    let options = strs(&host_cfg["DnsOptions"]);
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if dns.is_empty() && search.is_empty() && options.is_empty() {
        if network == Network::Host {
            return host;
        }
        // As docker for a container off the host's network: drop local resolvers it could not reach.
        let kept: Vec<&str> = host
            .lines()
            .filter(|l| {
                let ns = l.trim().strip_prefix("nameserver").map(str::trim);
                !ns.is_some_and(|ip| ip.starts_with("127.") || ip == "::1")
            })
            .collect();
        return kept.join("\n") + "\n";
    }
    let mut out = String::new();
    let host_ns: Vec<&str> = host.lines().filter(|l| l.trim_start().starts_with("nameserver")).collect();
    if dns.is_empty() {
        host_ns.iter().for_each(|l| out.push_str(&format!("{l}\n")));
    }
    for d in &dns {
        out.push_str(&format!("nameserver {d}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

pub fn network_of(rec: &Record) -> Network {
    if rec.host_config["NetworkMode"] == "host" {
        Network::Host
    } else {
        Network::None
    }
}

/// Writes `hostname`, `hosts` and `resolv.conf` into the container's directory.
pub fn write_etc_files(dir: &Path, rec: &Record) -> Result<EtcFiles, String> {
    let hostname = rec.config["Hostname"].as_str().unwrap_or("");
    let network = network_of(rec);
    let w = |name: &str, data: String| {
        let p = dir.join(name);
        fs::write(&p, data).map(|()| p.clone()).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    Ok(EtcFiles {
        hostname: Some(w("hostname", format!("{hostname}\n"))?),
        hosts: Some(w("hosts", hosts_file(hostname, network, &strs(&rec.host_config["ExtraHosts"])))?),
        resolv_conf: Some(w("resolv.conf", resolv_conf(&rec.host_config, network))?),
    })
}

/// The spec to start `rec`, whose files live in `dir`.
pub fn build(dir: &Path, rec: &Record) -> Result<ContainerSpec, String> {
    for l in &rec.lower_dirs {
        if !l.is_dir() {
            return Err(format!("layer {} of image {} is missing (was the image removed?)", l.display(), rec.image));
        }
    }
    let hc = &rec.host_config;
    let cfg = &rec.config;
    let rootfs = Rootfs {
        lower_dirs: rec.lower_dirs.clone(),
        container_dir: dir.join("rootfs"),
        readonly: hc["ReadonlyRootfs"].as_bool().unwrap_or(false),
    };
    let mut argv = vec![rec.path.clone()];
    argv.extend(rec.args.iter().cloned());
    let mut spec = ContainerSpec::new(rec.id.clone(), rootfs, argv);
    spec.cgroup_parent = CGROUP_PARENT.into();
    let hostname = cfg["Hostname"].as_str().unwrap_or("").to_owned();
    spec.hostname = hostname.clone();
    spec.network = network_of(rec);
    let user = users::resolve(&rec.lower_dirs, cfg["User"].as_str().unwrap_or(""), &strs(&hc["GroupAdd"]))?;
    spec.process.env = environment(&strs(&cfg["Env"]), &hostname, &user.home);
    spec.process.user = user.user;
    spec.process.cwd = match cfg["WorkingDir"].as_str() {
        Some(w) if !w.is_empty() => w.to_owned(),
        _ => "/".into(),
    };
    spec.process.capabilities = capabilities(&strs(&hc["CapAdd"]), &strs(&hc["CapDrop"]))?;
    spec.process.no_new_privileges = strs(&hc["SecurityOpt"])
        .iter()
        .any(|s| matches!(s.as_str(), "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"));
    let mut rlimits = Vec::new();
    for u in hc["Ulimits"].as_array().into_iter().flatten() {
        let kind = u["Name"].as_str().unwrap_or("").parse().map_err(|e: runtime::UnknownRlimit| e.to_string())?;
        let lim = |v: &Value| v.as_i64().map_or(0, |x| if x < 0 { u64::MAX } else { x as u64 });
        rlimits.push(Rlimit { kind, soft: lim(&u["Soft"]), hard: lim(&u["Hard"]) });
    }
    spec.process.rlimits = rlimits;
    let positive = |v: &Value| v.as_i64().filter(|x| *x > 0);
    spec.resources = Resources {
        memory_limit: positive(&hc["Memory"]).map(|m| m as u64),
        pids_limit: positive(&hc["PidsLimit"]),
        cpu_shares: positive(&hc["CpuShares"]).map(|s| (s as u64).clamp(2, 262_144)),
    };
    for m in &rec.mounts {
        spec.mounts.push(match m.kind.as_str() {
            "tmpfs" => Mount::Tmpfs { destination: m.destination.clone(), size: m.tmpfs_size, mode: m.tmpfs_mode },
            _ => Mount::Bind { source: m.source.clone(), destination: m.destination.clone(), readonly: m.readonly },
        });
    }
    spec.etc_files = write_etc_files(dir, rec)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_like_docker() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(capabilities(&[], &s(&["ALL"])).unwrap().is_empty());
        assert_eq!(capabilities(&s(&["net_admin"]), &s(&["ALL"])).unwrap(), ["CAP_NET_ADMIN"]);
        let d = capabilities(&[], &s(&["CHOWN"])).unwrap();
        assert_eq!(d.len(), DEFAULT_CAPABILITIES.len() - 1);
        assert!(!d.contains(&"CAP_CHOWN".to_owned()));
        assert_eq!(capabilities(&s(&["ALL"]), &s(&["SYS_ADMIN"])).unwrap().len(), 40);
        assert!(capabilities(&s(&["BOGUS"]), &[]).is_err());
    }

    #[test]
    fn environment_like_docker() {
        let env = environment(&["PATH=/bin".into(), "A=1".into()], "box", "/root");
        assert_eq!(env, ["PATH=/bin", "HOSTNAME=box", "A=1", "HOME=/root"]);
        let env = environment(&["HOME=/x".into()], "box", "/root");
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=box".into(), "HOME=/x".into()]);
    }
}
