//! `POST /containers/create`: docker's `ContainerConfig` + `HostConfig` + `NetworkingConfig`, checked and
//! merged with the image's config into a [`Record`]. What the engine cannot do is refused with a 400 that
//! names the field and its flag; it is never silently ignored. Unknown fields are ignored, as dockerd does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::deps::{LogConfig, VolumeError, VolumeStore};
use super::record::{MountPoint, Record, State};
use crate::api::error::ApiError;
use crate::restart::RestartPolicy;
use engine::time;

/// What create needs from the image.
pub struct ImageInfo {
    pub id: String,
    /// The image config's `config` (Env, Cmd, Entrypoint, WorkingDir, User, Labels, Volumes, …).
    pub config: Value,
    /// Layer dirs, top first.
    pub lower_dirs: Vec<PathBuf>,
}

/// Every capability name docker knows (without `CAP_`).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// null, false, 0, "", [] and {} are what the docker CLI sends for options not given.
fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Fields refused when set, with the flag a user typed.
const HOST_UNSUPPORTED: &[(&str, &str)] = &[
    ("Privileged", "--privileged"),
    ("PortBindings", "-p/--publish (there is no bridge network yet: use --network host)"),
    ("PublishAllPorts", "-P/--publish-all"),
    ("Devices", "--device"),
    ("DeviceCgroupRules", "--device-cgroup-rule"),
    ("DeviceRequests", "--gpus"),
    ("Init", "--init"),
    ("Links", "--link"),
    ("VolumesFrom", "--volumes-from"),
    ("Sysctls", "--sysctl"),
    ("CgroupParent", "--cgroup-parent"),
    ("Cgroup", "--cgroup"),
    ("PidMode", "--pid"),
    ("UTSMode", "--uts"),
    ("UsernsMode", "--userns"),
    ("OomScoreAdj", "--oom-score-adj"),
    ("OomKillDisable", "--oom-kill-disable"),
    ("MemoryReservation", "--memory-reservation"),
    ("KernelMemory", "--kernel-memory"),
    ("KernelMemoryTCP", "--kernel-memory-tcp"),
    ("NanoCpus", "--cpus"),
    ("CpuPeriod", "--cpu-period"),
    ("CpuQuota", "--cpu-quota"),
    ("CpuRealtimePeriod", "--cpu-rt-period"),
    ("CpuRealtimeRuntime", "--cpu-rt-runtime"),
    ("CpusetCpus", "--cpuset-cpus"),
    ("CpusetMems", "--cpuset-mems"),
    ("CpuCount", "--cpu-count"),
    ("CpuPercent", "--cpu-percent"),
    ("BlkioWeight", "--blkio-weight"),
    ("BlkioWeightDevice", "--blkio-weight-device"),
    ("BlkioDeviceReadBps", "--device-read-bps"),
    ("BlkioDeviceWriteBps", "--device-write-bps"),
    ("BlkioDeviceReadIOps", "--device-read-iops"),
    ("BlkioDeviceWriteIOps", "--device-write-iops"),
    ("IOMaximumBandwidth", "--io-maxbandwidth"),
    ("IOMaximumIOps", "--io-maxiops"),
    ("StorageOpt", "--storage-opt"),
    ("MaskedPaths", "MaskedPaths"),
    ("ReadonlyPaths", "ReadonlyPaths"),
    ("Annotations", "--annotation"),
];

const CONFIG_UNSUPPORTED: &[(&str, &str)] = &[
    ("OpenStdin", "-i/--interactive (stdin is not supported yet)"),
    ("AttachStdin", "-i/--interactive (stdin is not supported yet)"),
    ("StdinOnce", "-i/--interactive (stdin is not supported yet)"),
    ("Domainname", "--domainname"),
    ("MacAddress", "--mac-address"),
];

fn unsupported(field: &str, flag: &str) -> ApiError {
    bad(format!("{field} ({flag}) is not supported by this engine"))
}

/// A string-or-list field (`Cmd`, `Entrypoint`): `None` when absent or null.
fn str_list(v: &Value, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(vec![s.clone()])),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{field}: expected strings"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(bad(format!("{field}: expected a string or a list of strings"))),
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    Ok(str_list(v, field)?.unwrap_or_default())
}

fn string_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Null => Ok((k.clone(), String::new())),
                _ => Err(bad(format!("{field}: values must be strings"))),
            })
            .collect(),
        _ => Err(bad(format!("{field}: expected an object"))),
    }
}

fn int(v: &Value, field: &str) -> Result<i64, ApiError> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_i64().ok_or_else(|| bad(format!("{field}: expected an integer"))),
        _ => Err(bad(format!("{field}: expected an integer"))),
    }
}

/// A normalised capability name (`CAP_NET_ADMIN`), or `ALL`.
pub fn normalize_cap(c: &str) -> Result<String, ApiError> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let short = up.strip_prefix("CAP_").unwrap_or(&up);
    if ALL_CAPABILITIES.contains(&short) {
        Ok(format!("CAP_{short}"))
    } else {
        Err(bad(format!("unknown capability: \"{c}\"")))
    }
}

/// docker's `RAMInBytes`: `64m`, `1g`, `512k`, `1024` (binary units, optional `b`).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// `Tmpfs` options (`size=64m,mode=1777,noexec`): size and mode; the runtime always mounts
/// nosuid,nodev,noexec, so options asking otherwise are refused.
fn tmpfs_options(dest: &str, opts: &str) -> Result<(Option<u64>, Option<u32>), ApiError> {
    let (mut size, mut mode) = (None, None);
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if let Some(v) = o.strip_prefix("size=") {
            size = Some(parse_size(v).ok_or_else(|| bad(format!("invalid tmpfs size {v:?} for {dest}")))?);
        } else if let Some(v) = o.strip_prefix("mode=") {
            mode = Some(u32::from_str_radix(v, 8).map_err(|_| bad(format!("invalid tmpfs mode {v:?} for {dest}")))?);
        } else if !matches!(o, "rw" | "noexec" | "nosuid" | "nodev" | "rprivate" | "private") {
            return Err(bad(format!(
                "tmpfs option {o:?} ({dest}) is not supported (size=, mode=, rw, noexec, nosuid, nodev)"
            )));
        }
    }
    Ok((size, mode))
}

fn clean_dest(dest: &str) -> Result<String, ApiError> {
    if !dest.starts_with('/') {
        return Err(bad(format!("invalid mount config: mount path must be absolute: {dest}")));
    }
    let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(bad(format!("invalid mount config: mount path must not contain '..': {dest}")));
    }
    if parts.is_empty() {
        return Err(bad("invalid mount config: destination can't be '/'"));
    }
    Ok(format!("/{}", parts.join("/")))
}

pub fn volume_error(e: VolumeError) -> ApiError {
    let status = axum::http::StatusCode::from_u16(e.status()).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, e.to_string())
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    super::fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Mounts<'a> {
    out: Vec<MountPoint>,
    volumes: &'a VolumeStore,
}

impl Mounts<'_> {
    fn push(&mut self, m: MountPoint) -> Result<(), ApiError> {
        if self.out.iter().any(|x| x.destination == m.destination) {
            return Err(bad(format!("Duplicate mount point: {}", m.destination)));
        }
        self.out.push(m);
        Ok(())
    }

    fn volume(
        &mut self,
        name: Option<&str>,
        dest: String,
        readonly: bool,
        mode: String,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let anonymous = name.is_none();
        let info = match name {
            Some(n) => self.volumes.get_or_create(n, labels),
            None => self.volumes.create(None, labels, "local"),
        }
        .map_err(volume_error)?;
        let name = info.name;
        let source = self.volumes.path(&name);
        self.push(MountPoint {
            kind: "volume".into(),
            name,
            source,
            destination: dest,
            readonly,
            mode,
            create_source: false,
            anonymous,
            tmpfs_size: None,
            tmpfs_mode: None,
        })
    }

    fn bind(&mut self, source: &str, dest: String, readonly: bool, mode: String, create: bool) -> Result<(), ApiError> {
        let src = PathBuf::from(source);
        if !src.is_absolute() {
            return Err(bad(format!(
                "invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute"
            )));
        }
        if !create && !src.exists() {
            return Err(bad(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {source}"
            )));
        }
        self.push(MountPoint {
            kind: "bind".into(),
            name: String::new(),
            source: src,
            destination: dest,
            readonly,
            mode,
            create_source: create,
            anonymous: false,
            tmpfs_size: None,
            tmpfs_mode: None,
        })
    }

    fn tmpfs(&mut self, dest: String, size: Option<u64>, mode: Option<u32>) -> Result<(), ApiError> {
        self.push(MountPoint {
            kind: "tmpfs".into(),
            name: String::new(),
            source: PathBuf::new(),
            destination: dest,
            readonly: false,
            mode: String::new(),
            create_source: false,
            anonymous: false,
            tmpfs_size: size,
            tmpfs_mode: mode,
        })
    }
}

/// `Binds`: `name:/dst[:opts]` (named volume) or `/src:/dst[:opts]` (bind, created when missing).
fn parse_bind(m: &mut Mounts, spec: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(bad(format!("invalid volume specification: '{spec}'"))),
    };
    if src.is_empty() {
        return Err(bad(format!("invalid volume specification: '{spec}'")));
    }
    let dest = clean_dest(dst).map_err(|e| bad(format!("invalid volume specification: '{spec}': {}", e.message)))?;
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabelling: nothing to do without SELinux, as dockerd on such hosts.
            "z" | "Z" | "private" | "rprivate" => {}
            "nocopy" if !src.starts_with('/') => {}
            other => {
                return Err(bad(format!("invalid volume specification: '{spec}': option {other:?} is not supported")))
            }
        }
    }
    if src.starts_with('/') {
        m.bind(src, dest, readonly, opts.to_owned(), true)
    } else {
        m.volume(Some(src), dest, readonly, opts.to_owned(), BTreeMap::new())
    }
}

/// One of `Mounts` (`--mount`).
fn parse_mount(m: &mut Mounts, v: &Value) -> Result<(), ApiError> {
    let ty = v["Type"].as_str().unwrap_or("");
    let target = v["Target"].as_str().unwrap_or("");
    if target.is_empty() {
        return Err(bad("invalid mount config: Target must not be empty"));
    }
    let dest = clean_dest(target)?;
    let readonly = v["ReadOnly"].as_bool().unwrap_or(false);
    let source = v["Source"].as_str().unwrap_or("");
    let check_keys = |key: &str, allowed: &[&str]| -> Result<(), ApiError> {
        if let Some(o) = v[key].as_object() {
            for (k, val) in o {
                if !allowed.contains(&k.as_str()) && !is_default(val) {
                    return Err(bad(format!("invalid mount config for type \"{ty}\": {key}.{k} is not supported")));
                }
            }
        }
        Ok(())
    };
    match ty {
        "bind" => {
            check_keys("BindOptions", &["CreateMountpoint"])?;
            if let Some(p) =
                v["BindOptions"]["Propagation"].as_str().filter(|p| !matches!(*p, "" | "rprivate" | "private"))
            {
                return Err(bad(format!("invalid mount config for type \"bind\": propagation {p:?} is not supported")));
            }
            if !is_default(&v["VolumeOptions"]) || !is_default(&v["TmpfsOptions"]) {
                return Err(bad("invalid mount config for type \"bind\": only BindOptions apply"));
            }
            let create = v["BindOptions"]["CreateMountpoint"].as_bool().unwrap_or(false);
            m.bind(source, dest, readonly, if readonly { "ro" } else { "" }.into(), create)
        }
        "volume" => {
            check_keys("VolumeOptions", &["NoCopy", "Labels", "DriverConfig"])?;
            if let Some(d) = v["VolumeOptions"]["DriverConfig"]["Name"].as_str().filter(|d| !matches!(*d, "" | "local"))
            {
                return Err(bad(format!(
                    "invalid mount config for type \"volume\": volume driver {d:?} is not supported"
                )));
            }
            if !is_default(&v["BindOptions"]) || !is_default(&v["TmpfsOptions"]) {
                return Err(bad("invalid mount config for type \"volume\": only VolumeOptions apply"));
            }
            let labels = string_map(&v["VolumeOptions"]["Labels"], "VolumeOptions.Labels")?;
            let name = (!source.is_empty()).then_some(source);
            let nocopy = v["VolumeOptions"]["NoCopy"].as_bool().unwrap_or(false);
            m.volume(name, dest, readonly, if nocopy { "nocopy" } else { "" }.into(), labels)
        }
        "tmpfs" => {
            if !source.is_empty() {
                return Err(bad("invalid mount config for type \"tmpfs\": Source must not be specified"));
            }
            check_keys("TmpfsOptions", &["SizeBytes", "Mode"])?;
            if readonly {
                return Err(bad("invalid mount config for type \"tmpfs\": read-only tmpfs is not supported"));
            }
            let size = v["TmpfsOptions"]["SizeBytes"].as_u64().filter(|s| *s > 0);
            let mode = v["TmpfsOptions"]["Mode"].as_u64().filter(|s| *s > 0).map(|m| m as u32 & 0o7777);
            m.tmpfs(dest, size, mode)
        }
        other => Err(bad(format!("invalid mount config: mount type {other:?} is not supported (bind, volume, tmpfs)"))),
    }
}

/// The effective network mode: `default` and `bridge`-less defaults become `none` until bridge networking
/// exists.
fn network_mode(host: &Map<String, Value>, config: &Map<String, Value>) -> Result<&'static str, ApiError> {
    let mode = host.get("NetworkMode").and_then(Value::as_str).unwrap_or("");
    let m = match mode {
        "" | "default" | "none" => "none",
        "host" => "host",
        "bridge" => return Err(bad(
            "network mode \"bridge\" is not supported yet: use --network host or --network none (the default is none)",
        )),
        other => {
            return Err(bad(format!(
                "network mode {other:?} is not supported: use --network host or --network none (the default is none)"
            )))
        }
    };
    if config.get("NetworkDisabled").and_then(Value::as_bool) == Some(true) && m == "host" {
        return Err(bad("conflicting options: NetworkDisabled and --network host"));
    }
    Ok(m)
}

/// Everything checked before the image is looked up: refused fields, and values that must parse.
pub fn validate(body: &Value) -> Result<(), ApiError> {
    let Some(config) = body.as_object() else { return Err(bad("invalid JSON: expected an object")) };
    let empty = Map::new();
    let host = body.get("HostConfig").and_then(Value::as_object).unwrap_or(&empty);
    if config.get("Tty").and_then(Value::as_bool) == Some(true) {
        return Err(bad("TTY is not supported (-t/--tty): run without -t"));
    }
    for (field, flag) in CONFIG_UNSUPPORTED {
        if config.get(*field).is_some_and(|v| !is_default(v)) {
            return Err(unsupported(field, flag));
        }
    }
    if let Some(h) = config.get("Healthcheck").filter(|h| !is_default(h)) {
        let test = strings(&h["Test"], "Healthcheck.Test")?;
        if !(test.is_empty() || test == ["NONE"]) {
            return Err(unsupported("Healthcheck", "--health-cmd"));
        }
    }
    for (field, flag) in HOST_UNSUPPORTED {
        if host.get(*field).is_some_and(|v| !is_default(v)) {
            return Err(unsupported(field, flag));
        }
    }
    let allowed_str = |field: &str, ok: &[&str], flag: &str| -> Result<(), ApiError> {
        match host.get(field).and_then(Value::as_str) {
            Some(v) if !ok.contains(&v) => {
                Err(bad(format!("{field} {v:?} ({flag}) is not supported (allowed: {ok:?})")))
            }
            _ => Ok(()),
        }
    };
    allowed_str("IpcMode", &["", "private"], "--ipc")?;
    allowed_str("CgroupnsMode", &["", "private"], "--cgroupns")?;
    allowed_str("Isolation", &["", "default"], "--isolation")?;
    allowed_str("Runtime", &["", "runc"], "--runtime")?;
    allowed_str("VolumeDriver", &["", "local"], "--volume-driver")?;
    match host.get("MemorySwappiness") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(-1) => {}
        Some(_) => return Err(unsupported("MemorySwappiness", "--memory-swappiness")),
    }
    let shm = int(host.get("ShmSize").unwrap_or(&Value::Null), "ShmSize")?;
    if shm != 0 && shm != 64 << 20 {
        return Err(bad("ShmSize (--shm-size) is not supported: /dev/shm is 64 MiB"));
    }
    let memory = int(host.get("Memory").unwrap_or(&Value::Null), "Memory")?;
    if memory != 0 && memory < 6 << 20 {
        return Err(bad("Minimum memory limit allowed is 6MB"));
    }
    let swap = int(host.get("MemorySwap").unwrap_or(&Value::Null), "MemorySwap")?;
    if swap != 0 && swap != memory {
        return Err(bad("MemorySwap (--memory-swap) is not supported: containers get no swap"));
    }
    if memory == 0 && swap != 0 {
        return Err(bad("You should always set the Memory limit when using Memoryswap limit, see usage"));
    }
    for so in strings(host.get("SecurityOpt").unwrap_or(&Value::Null), "SecurityOpt")? {
        if !matches!(
            so.as_str(),
            "no-new-privileges"
                | "no-new-privileges:true"
                | "no-new-privileges=true"
                | "no-new-privileges:false"
                | "no-new-privileges=false"
        ) {
            return Err(bad(format!("SecurityOpt {so:?} (--security-opt) is not supported (only no-new-privileges)")));
        }
    }
    let _ = network_mode(host, config)?;
    if let Some(eps) = body.get("NetworkingConfig").and_then(|n| n.get("EndpointsConfig")).and_then(Value::as_object) {
        for (net, ep) in eps {
            if let Some(o) = ep.as_object() {
                if let Some((k, _)) = o.iter().find(|(_, v)| !is_default(v)) {
                    return Err(bad(format!(
                        "endpoint settings ({net}: {k}) are not supported: there are no networks yet"
                    )));
                }
            }
        }
    }
    let policy = RestartPolicy::from_host_config(host.get("RestartPolicy").unwrap_or(&Value::Null)).map_err(bad)?;
    if host.get("AutoRemove").and_then(Value::as_bool) == Some(true) && policy != RestartPolicy::No {
        return Err(bad("can't create 'AutoRemove' container with restart policy"));
    }
    LogConfig::from_host_config(host.get("LogConfig").unwrap_or(&Value::Null)).map_err(bad)?;
    for c in strings(host.get("CapAdd").unwrap_or(&Value::Null), "CapAdd")?
        .iter()
        .chain(strings(host.get("CapDrop").unwrap_or(&Value::Null), "CapDrop")?.iter())
    {
        normalize_cap(c)?;
    }
    if let Some(ul) = host.get("Ulimits").and_then(Value::as_array) {
        for u in ul {
            let name = u["Name"].as_str().unwrap_or("");
            name.parse::<runtime::RlimitKind>().map_err(|_| bad(format!("invalid ulimit type: {name}")))?;
            let (soft, hard) = (int(&u["Soft"], "Ulimits.Soft")?, int(&u["Hard"], "Ulimits.Hard")?);
            let as_u = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
            if as_u(soft) > as_u(hard) {
                return Err(bad(format!(
                    "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
                )));
            }
        }
    }
    if let Some(sig) = config.get("StopSignal").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        super::parse_signal(sig).map_err(bad)?;
    }
    for e in strings(config.get("Env").unwrap_or(&Value::Null), "Env")? {
        if !e.contains('=') || e.starts_with('=') {
            return Err(bad(format!("invalid environment variable: {e}")));
        }
    }
    let _ = string_map(config.get("Labels").unwrap_or(&Value::Null), "Labels")?;
    if config.get("Image").and_then(Value::as_str).unwrap_or("").is_empty() {
        return Err(bad("No image was specified"));
    }
    Ok(())
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// docker's merge of the user's config with the image's.
fn merge_env(user: Vec<String>, image: Vec<String>) -> Vec<String> {
    if user.is_empty() {
        return image;
    }
    let mut out = user;
    for ie in image {
        if !out.iter().any(|u| env_key(u) == env_key(&ie)) {
            out.push(ie);
        }
    }
    out
}

/// Builds the record of a new container (its ID already chosen) from a validated request.
pub fn build(id: &str, name: &str, body: &Value, image: &ImageInfo, volumes: &VolumeStore) -> Result<Record, ApiError> {
    let empty = Map::new();
    let config = body.as_object().unwrap_or(&empty);
    let host = body.get("HostConfig").and_then(Value::as_object).unwrap_or(&empty);
    let img = &image.config;
    let get = |k: &str| config.get(k).unwrap_or(&Value::Null);

    // Entrypoint and Cmd: a user Entrypoint drops the image's Cmd unless a Cmd is given.
    let user_entry = str_list(get("Entrypoint"), "Entrypoint")?;
    let user_cmd = str_list(get("Cmd"), "Cmd")?.filter(|c| !c.is_empty());
    let (mut entrypoint, cmd) = if user_entry.as_ref().is_some_and(|e| !e.is_empty()) {
        (user_entry, user_cmd)
    } else {
        let cmd = user_cmd.or(str_list(&img["Cmd"], "image Cmd")?);
        let entry = match user_entry {
            None => str_list(&img["Entrypoint"], "image Entrypoint")?,
            Some(e) => Some(e),
        };
        (entry, cmd)
    };
    if entrypoint.as_ref().is_some_and(|e| e.len() == 1 && e[0].is_empty()) {
        entrypoint = None;
    }
    let mut argv: Vec<String> = entrypoint.clone().unwrap_or_default();
    argv.extend(cmd.clone().unwrap_or_default());
    if argv.is_empty() || argv[0].is_empty() {
        return Err(bad("no command specified"));
    }

    let net = network_mode(host, config)?;
    let mut hostname = get("Hostname").as_str().unwrap_or("").to_owned();
    if net == "host" {
        if !hostname.is_empty() {
            return Err(bad("conflicting options: hostname and the network mode"));
        }
        hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    }
    if hostname.is_empty() {
        hostname = id[..12].to_owned();
    }

    let env = merge_env(strings(get("Env"), "Env")?, strings(&img["Env"], "image Env")?);
    let user = match get("User").as_str().filter(|u| !u.is_empty()) {
        Some(u) => u.to_owned(),
        None => img["User"].as_str().unwrap_or("").to_owned(),
    };
    let working_dir = match get("WorkingDir").as_str().filter(|w| !w.is_empty()) {
        Some(w) => w.to_owned(),
        None => img["WorkingDir"].as_str().unwrap_or("").to_owned(),
    };
    if !working_dir.is_empty() && !working_dir.starts_with('/') {
        return Err(bad(format!("the working directory '{working_dir}' is invalid, it needs to be an absolute path")));
    }
    let group_add = strings(host.get("GroupAdd").unwrap_or(&Value::Null), "GroupAdd")?;
    // Checked now so a bad user fails the create, as a missing user fails docker's start.
    super::users::resolve(&image.lower_dirs, &user, &group_add).map_err(bad)?;
    let mut labels = string_map(&img["Labels"], "image Labels")?;
    labels.extend(string_map(get("Labels"), "Labels")?);
    let stop_signal = match get("StopSignal").as_str().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.to_owned()),
        None => img["StopSignal"].as_str().filter(|s| !s.is_empty()).map(str::to_owned),
    };
    if let Some(s) = &stop_signal {
        super::parse_signal(s).map_err(bad)?;
    }
    let mut exposed = img["ExposedPorts"].as_object().cloned().unwrap_or_default();
    exposed.extend(get("ExposedPorts").as_object().cloned().unwrap_or_default());
    let mut volumes_decl = img["Volumes"].as_object().cloned().unwrap_or_default();
    volumes_decl.extend(get("Volumes").as_object().cloned().unwrap_or_default());

    // Mounts: binds, --mount, --tmpfs, then anonymous volumes for declared paths nothing covers.
    let mut m = Mounts { out: Vec::new(), volumes };
    for b in strings(host.get("Binds").unwrap_or(&Value::Null), "Binds")? {
        parse_bind(&mut m, &b)?;
    }
    if let Some(list) = host.get("Mounts").and_then(Value::as_array) {
        for v in list {
            parse_mount(&mut m, v)?;
        }
    }
    for (dest, opts) in string_map(host.get("Tmpfs").unwrap_or(&Value::Null), "Tmpfs")? {
        let d = clean_dest(&dest)?;
        let (size, mode) = tmpfs_options(&d, &opts)?;
        m.tmpfs(d, size, mode)?;
    }
    for path in volumes_decl.keys() {
        if path.contains(':') {
            return Err(bad(format!("invalid volume specification: '{path}'")));
        }
        let d = clean_dest(path)?;
        if !m.out.iter().any(|x| x.destination == d) {
            m.volume(None, d, false, String::new(), BTreeMap::new())?;
        }
    }

    let policy = RestartPolicy::from_host_config(host.get("RestartPolicy").unwrap_or(&Value::Null)).map_err(bad)?;
    let log = host.get("LogConfig").cloned().unwrap_or(Value::Null);
    let log_type = match log["Type"].as_str().unwrap_or("") {
        "" => "json-file".to_owned(),
        t => t.to_owned(),
    };
    let mut host_config = Value::Object(host.clone());
    host_config["NetworkMode"] = json!(net);
    host_config["RestartPolicy"] = policy.to_host_config();
    host_config["LogConfig"] =
        json!({"Type": log_type, "Config": log["Config"].as_object().cloned().unwrap_or_default()});
    host_config["CapAdd"] = json!(strings(host.get("CapAdd").unwrap_or(&Value::Null), "CapAdd")?);
    host_config["CapDrop"] = json!(strings(host.get("CapDrop").unwrap_or(&Value::Null), "CapDrop")?);
    if host_config["CapAdd"] == json!([]) {
        host_config["CapAdd"] = Value::Null;
    }
    if host_config["CapDrop"] == json!([]) {
        host_config["CapDrop"] = Value::Null;
    }

    let mut cfg = json!({
        "Hostname": hostname,
        "Domainname": "",
        "User": user,
        "AttachStdin": false,
        "AttachStdout": get("AttachStdout").as_bool().unwrap_or(false),
        "AttachStderr": get("AttachStderr").as_bool().unwrap_or(false),
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": env,
        "Cmd": cmd,
        "Image": get("Image").as_str().unwrap_or(""),
        "Volumes": if volumes_decl.is_empty() { Value::Null } else { Value::Object(volumes_decl) },
        "WorkingDir": working_dir,
        "Entrypoint": entrypoint,
        "OnBuild": get("OnBuild").clone(),
        "Labels": labels,
    });
    if !exposed.is_empty() {
        cfg["ExposedPorts"] = Value::Object(exposed);
    }
    if let Some(s) = stop_signal {
        cfg["StopSignal"] = json!(s);
    }
    if let Some(t) = get("StopTimeout").as_i64() {
        cfg["StopTimeout"] = json!(t);
    }
    if get("NetworkDisabled").as_bool() == Some(true) {
        cfg["NetworkDisabled"] = json!(true);
    }
    Ok(Record {
        id: id.to_owned(),
        name: format!("/{}", name.trim_start_matches('/')),
        created: time::now_rfc3339_nanos(),
        image: image.id.clone(),
        image_name: get("Image").as_str().unwrap_or("").to_owned(),
        path: argv[0].clone(),
        args: argv[1..].to_vec(),
        config: cfg,
        host_config,
        lower_dirs: image.lower_dirs.clone(),
        mounts: m.out,
        state: State::default(),
        restart_count: 0,
        consecutive_failures: 0,
        manually_stopped: false,
        stopped_by_shutdown: false,
        has_been_started: false,
    })
}

/// A fresh container ID (64 hex digits) that does not start like a number only (docker avoids IDs that
/// look like decimal numbers, which shorten ambiguously).
pub fn new_id(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let id = random_hex();
        if id[..12].bytes().all(|b| b.is_ascii_digit()) || taken(&id) {
            continue;
        }
        return id;
    }
}

/// Destinations listed for `ps`'s `Mounts` column and the volume filter.
pub fn mount_names(mounts: &[MountPoint]) -> BTreeSet<String> {
    mounts.iter().map(|m| if m.kind == "volume" { m.name.clone() } else { m.source.display().to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(cfg: Value) -> ImageInfo {
        ImageInfo { id: "sha256:abc".into(), config: cfg, lower_dirs: vec![] }
    }

    fn build_ok(body: Value, img: Value) -> Record {
        validate(&body).unwrap();
        let t = tempfile::tempdir().unwrap();
        let vs = VolumeStore::open(t.path()).unwrap();
        build(&"ab".repeat(32), "x", &body, &image(img), &vs).unwrap()
    }

    #[test]
    fn merges_entrypoint_and_cmd_like_docker() {
        let img =
            json!({"Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/app"});
        let r = build_ok(json!({"Image": "i"}), img.clone());
        assert_eq!((r.path.as_str(), r.args.clone()), ("/entry", vec!["serve".to_owned()]));
        let r = build_ok(json!({"Image": "i", "Cmd": ["x"]}), img.clone());
        assert_eq!((r.path.as_str(), r.args.clone()), ("/entry", vec!["x".to_owned()]));
        // A user entrypoint drops the image's Cmd.
        let r = build_ok(json!({"Image": "i", "Entrypoint": ["sh"]}), img.clone());
        assert_eq!((r.path.as_str(), r.args.len()), ("sh", 0));
        let r = build_ok(json!({"Image": "i", "Entrypoint": [""], "Cmd": ["ls", "-l"]}), img.clone());
        assert_eq!((r.path.as_str(), r.args.clone()), ("ls", vec!["-l".to_owned()]));
        assert_eq!(r.config["Entrypoint"], Value::Null);
        let r = build_ok(json!({"Image": "i", "Env": ["A=2", "B=3"]}), img);
        assert_eq!(r.config["Env"], json!(["A=2", "B=3", "PATH=/bin"]));
        assert_eq!(r.config["WorkingDir"], "/app");
        assert_eq!(r.config["Hostname"], "abababababab");
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let e = |b: Value| validate(&b).unwrap_err().message;
        assert_eq!(e(json!({"Image": "i", "Tty": true})), "TTY is not supported (-t/--tty): run without -t");
        assert!(e(json!({"Image": "i", "HostConfig": {"Privileged": true}})).contains("--privileged"));
        assert!(e(json!({"Image": "i", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "80"}]}}}))
            .contains("-p/--publish"));
        assert!(e(json!({"Image": "i", "HostConfig": {"NetworkMode": "bridge"}})).contains("bridge"));
        assert!(e(json!({"Image": "i", "HostConfig": {"CapAdd": ["BOGUS"]}})).contains("unknown capability"));
        assert!(e(json!({"Image": "i", "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}}))
            .contains("soft limit"));
        assert!(e(json!({"Image": "i", "HostConfig": {"AutoRemove": true, "RestartPolicy": {"Name": "always"}}}))
            .contains("AutoRemove"));
        assert!(e(json!({"Image": "i", "Healthcheck": {"Test": ["CMD", "true"]}})).contains("--health-cmd"));
        // What the CLI sends by default passes.
        validate(&json!({"Image": "i", "Healthcheck": null, "HostConfig": {"ConsoleSize": [0, 0], "MemorySwappiness": -1,
            "NetworkMode": "default", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "LogConfig": {"Type": "", "Config": {}}}})).unwrap();
    }

    #[test]
    fn parses_mounts() {
        let t = tempfile::tempdir().unwrap();
        let vs = VolumeStore::open(t.path()).unwrap();
        let host = t.path().join("h").display().to_string();
        let body = json!({"Image": "i", "HostConfig": {
            "Binds": ["data:/data", format!("{host}:/h:ro")],
            "Tmpfs": {"/scratch": "size=1m,mode=1777"},
            "Mounts": [{"Type": "tmpfs", "Target": "/m", "TmpfsOptions": {"SizeBytes": 4096}}]}});
        validate(&body).unwrap();
        let r =
            build(&"cd".repeat(32), "x", &body, &image(json!({"Cmd": ["sh"], "Volumes": {"/anon": {}}})), &vs).unwrap();
        let kinds: Vec<(&str, &str, bool)> =
            r.mounts.iter().map(|m| (m.kind.as_str(), m.destination.as_str(), m.readonly)).collect();
        assert_eq!(
            kinds,
            [
                ("volume", "/data", false),
                ("bind", "/h", true),
                ("tmpfs", "/m", false),
                ("tmpfs", "/scratch", false),
                ("volume", "/anon", false)
            ]
        );
        assert_eq!(r.mounts[3].tmpfs_size, Some(1 << 20));
        assert_eq!(r.mounts[3].tmpfs_mode, Some(0o1777));
        assert!(r.mounts[4].anonymous);
        let dup = json!({"Image": "i", "HostConfig": {"Binds": ["a1:/d", "b1:/d"]}});
        assert!(build(&"ef".repeat(32), "y", &dup, &image(json!({"Cmd": ["sh"]})), &vs)
            .unwrap_err()
            .message
            .contains("Duplicate mount point"));
        let missing = json!({"Image": "i", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/does/not/exist", "Target": "/x"}]}});
        assert!(build(&"ef".repeat(32), "y", &missing, &image(json!({"Cmd": ["sh"]})), &vs)
            .unwrap_err()
            .message
            .contains("bind source path does not exist"));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
    }
}
