//! Option values the way the docker CLI reads them: memory sizes (`16m`), ulimits (`nofile=1024:2048`),
//! restart policies (`on-failure:3`), volumes (`name:/path:ro`), tmpfs mounts, environment and labels, and
//! times (`10m`, `2024-05-01T12:00:00Z`, `1714564800`).

use std::path::Path;

use serde_json::{json, Value};

/// docker's `RAMInBytes`: `1024`, `512k`, `16m`, `1.5g`, `1gb`, `2GiB` (binary units).
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid size: '{s}'");
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

/// Resource limits the kernel (and docker) know.
const ULIMITS: [&str; 15] =
    ["core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    pub fn to_json(&self) -> Value {
        json!({"Name": self.name, "Soft": self.soft, "Hard": self.hard})
    }
}

/// `name=soft[:hard]`; `-1` is unlimited; the hard limit is the soft one when omitted.
pub fn parse_ulimit(s: &str) -> Result<Ulimit, String> {
    let (name, limits) = s.split_once('=').ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    if !ULIMITS.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let num = |v: &str| v.parse::<i64>().map_err(|_| format!("invalid ulimit argument: {s}"));
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(limits)?;
            (v, v)
        }
    };
    let unlimited = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
    if unlimited(soft) > unlimited(hard) {
        return Err(format!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"));
    }
    Ok(Ulimit { name: name.to_owned(), soft, hard })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub name: String,
    pub max_retries: i64,
}

impl RestartPolicy {
    pub fn to_json(&self) -> Value {
        json!({"Name": self.name, "MaximumRetryCount": self.max_retries})
    }
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match s.split_once(':') {
        Some(("", _)) => return Err("invalid restart policy format: no policy provided before colon".into()),
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    if !matches!(name, "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(format!("invalid restart policy '{name}' (no, always, unless-stopped, on-failure[:max-retries])"));
    }
    let max_retries = match count {
        None => 0,
        Some(c) => c.parse::<i64>().map_err(|_| "invalid restart policy format: maximum retry count must be an integer".to_owned())?,
    };
    if max_retries != 0 && name != "on-failure" {
        return Err(format!("maximum retry count cannot be used with restart policy '{name}'"));
    }
    if max_retries < 0 {
        return Err("maximum retry count cannot be negative".into());
    }
    Ok(RestartPolicy { name: name.to_owned(), max_retries })
}

/// What a `-v` argument becomes in the create request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `HostConfig.Binds`: `name:/dst[:opts]` or `/src:/dst[:opts]` (relative sources made absolute).
    Bind(String),
    /// `Config.Volumes`: `-v /dst`, an anonymous volume.
    Anonymous(String),
}

/// `-v`: `name:/path[:ro]`, `/host:/path[:ro]`, `./rel:/path`, or `/path` (anonymous volume).
pub fn parse_volume(spec: &str, cwd: &Path) -> Result<VolumeSpec, String> {
    let bad = |why: &str| format!("invalid volume specification: '{spec}'{why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let absolute = |p: &str| p.starts_with('/');
    match parts.as_slice() {
        [dst] if absolute(dst) => Ok(VolumeSpec::Anonymous((*dst).to_owned())),
        [_] => Err(bad(": the container path must be absolute")),
        [src, dst] | [src, dst, _] => {
            if src.is_empty() || dst.is_empty() {
                return Err(bad(""));
            }
            if !absolute(dst) {
                return Err(bad(": the container path must be absolute"));
            }
            if let [_, _, mode] = parts.as_slice() {
                if mode.is_empty() {
                    return Err(bad(": empty mode"));
                }
            }
            let relative = *src == "." || *src == ".." || src.starts_with("./") || src.starts_with("../");
            if !relative {
                return Ok(VolumeSpec::Bind(spec.to_owned()));
            }
            let abs = clean_path(&cwd.join(src));
            let rest = &spec[src.len()..];
            Ok(VolumeSpec::Bind(format!("{abs}{rest}")))
        }
        _ => Err(bad(": too many colons")),
    }
}

/// `a/./b/../c` → `a/c`, lexically.
fn clean_path(p: &Path) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.to_str().unwrap_or("/").split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// `--tmpfs /path[:opts]` → (path, opts).
pub fn parse_tmpfs(spec: &str) -> Result<(String, String), String> {
    let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !dst.starts_with('/') {
        return Err(format!("invalid tmpfs specification: '{spec}': the container path must be absolute"));
    }
    Ok((dst.to_owned(), opts.to_owned()))
}

/// `-e KEY=VALUE`, or `-e KEY` for this process's value of KEY (left out when it has none, as docker).
pub fn parse_env(spec: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if spec.starts_with('=') || spec.is_empty() {
        return Err(format!("invalid environment variable: {spec}"));
    }
    if spec.contains('=') {
        return Ok(Some(spec.to_owned()));
    }
    Ok(lookup(spec).map(|v| format!("{spec}={v}")))
}

/// `-l key=value` or `-l key` (empty value).
pub fn parse_label(spec: &str) -> Result<(String, String), String> {
    let (k, v) = spec.split_once('=').unwrap_or((spec, ""));
    if k.trim().is_empty() {
        return Err(format!("invalid label '{spec}': empty name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// `--log-opt key=value`.
pub fn parse_key_value(flag: &str, spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("invalid {flag} '{spec}': expected key=value")),
    }
}

/// A Go duration (`1h30m`, `10m`, `1.5s`, `-2m`, `300ms`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += n * unit;
    }
    let v = total as i128;
    Some(if neg { -v } else { v })
}

/// docker's `GetTimestamp`: a duration before `now` (`10m`), an RFC 3339 time (`2024-05-01T12:00:00Z`,
/// without zone as UTC, or a date `2024-05-01`), or seconds since the epoch (`1714564800[.nanos]`), as the
/// `seconds[.nanoseconds]` string the API takes.
pub fn timestamp(value: &str, now_nanos: i128) -> Result<String, String> {
    let bad = || format!("invalid timestamp or duration {value:?} (examples: 10m, 2024-05-01T12:00:00Z, 1714564800)");
    let v = value.trim();
    if let Some(d) = parse_duration(v) {
        let t = now_nanos - d;
        return Ok(format!("{}.{:09}", t.div_euclid(1_000_000_000), t.rem_euclid(1_000_000_000)));
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') && v.matches('.').count() <= 1 && !v.starts_with('.') {
        return Ok(v.to_owned());
    }
    // Dates and times; a missing zone is UTC.
    let with_time = if v.len() == 10 { format!("{v}T00:00:00Z") } else { v.to_owned() };
    let with_secs = if with_time.len() == 16 && with_time.as_bytes().get(10) == Some(&b'T') { format!("{with_time}:00") } else { with_time };
    let has_zone = with_secs.len() > 19 && {
        let tail = &with_secs[19..];
        let tail = tail.strip_prefix('.').map_or(tail, |t| t.trim_start_matches(|c: char| c.is_ascii_digit()));
        !tail.is_empty()
    };
    let full = if has_zone { with_secs } else { format!("{with_secs}Z") };
    let secs = crate::human::parse_rfc3339(&full).ok_or_else(bad)?;
    // Keep the fraction when there is one.
    let frac = full.get(19..).and_then(|t| t.strip_prefix('.')).map(|t| t.chars().take_while(char::is_ascii_digit).collect::<String>());
    match frac.filter(|f| !f.is_empty()) {
        Some(f) => Ok(format!("{secs}.{:0<9}", &f[..f.len().min(9)])),
        None => Ok(secs.to_string()),
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_like_docker() {
        assert_eq!(parse_memory("16m"), Ok(16 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        assert_eq!(parse_memory("2GiB"), Ok(2 << 30));
        assert_eq!(parse_memory("512k"), Ok(512 << 10));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("100 m"), Ok(100 << 20));
        for bad in ["", "m", "-1m", "1x", "1.g", "1..5m", "16mm"] {
            assert_eq!(parse_memory(bad), Err(format!("invalid size: '{bad}'")), "{bad}");
        }
    }

    #[test]
    fn ulimits_like_docker() {
        assert_eq!(parse_ulimit("nofile=1024:2048"), Ok(Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }));
        assert_eq!(parse_ulimit("core=-1"), Ok(Ulimit { name: "core".into(), soft: -1, hard: -1 }));
        assert_eq!(parse_ulimit("nproc=10"), Ok(Ulimit { name: "nproc".into(), soft: 10, hard: 10 }));
        assert_eq!(parse_ulimit("nofile=10:-1").unwrap().hard, -1);
        assert_eq!(parse_ulimit("bogus=1"), Err("invalid ulimit type: bogus".into()));
        assert_eq!(parse_ulimit("nofile"), Err("invalid ulimit argument: nofile".into()));
        assert_eq!(parse_ulimit("nofile=a"), Err("invalid ulimit argument: nofile=a".into()));
        assert!(parse_ulimit("nofile=20:10").unwrap_err().contains("soft limit must be less than or equal"));
        assert_eq!(parse_ulimit("core=0").unwrap().to_json(), json!({"Name": "core", "Soft": 0, "Hard": 0}));
    }

    #[test]
    fn restart_policies_like_docker() {
        assert_eq!(parse_restart("on-failure:3"), Ok(RestartPolicy { name: "on-failure".into(), max_retries: 3 }));
        assert_eq!(parse_restart("on-failure"), Ok(RestartPolicy { name: "on-failure".into(), max_retries: 0 }));
        assert_eq!(parse_restart("always").unwrap().to_json(), json!({"Name": "always", "MaximumRetryCount": 0}));
        assert_eq!(parse_restart("unless-stopped").unwrap().name, "unless-stopped");
        assert_eq!(parse_restart("no").unwrap().name, "no");
        assert!(parse_restart("always:3").unwrap_err().contains("cannot be used with restart policy 'always'"));
        assert!(parse_restart("on-failure:x").unwrap_err().contains("must be an integer"));
        assert!(parse_restart(":3").unwrap_err().contains("no policy provided"));
        assert!(parse_restart("sometimes").unwrap_err().contains("invalid restart policy 'sometimes'"));
    }

    #[test]
    fn volumes_like_docker() {
        let cwd = Path::new("/home/me/app");
        let p = |s: &str| parse_volume(s, cwd);
        assert_eq!(p("data:/var/lib/data"), Ok(VolumeSpec::Bind("data:/var/lib/data".into())));
        assert_eq!(p("data:/var/lib/data:ro"), Ok(VolumeSpec::Bind("data:/var/lib/data:ro".into())));
        assert_eq!(p("/etc/hosts:/h:ro"), Ok(VolumeSpec::Bind("/etc/hosts:/h:ro".into())));
        assert_eq!(p("./conf:/conf"), Ok(VolumeSpec::Bind("/home/me/app/conf:/conf".into())));
        assert_eq!(p("../x:/x:rw"), Ok(VolumeSpec::Bind("/home/me/x:/x:rw".into())));
        assert_eq!(p("/scratch"), Ok(VolumeSpec::Anonymous("/scratch".into())));
        for bad in ["scratch", "data:rel", ":/x", "a:/b:ro:x", "a:/b:", "data:"] {
            assert!(p(bad).unwrap_err().starts_with(&format!("invalid volume specification: '{bad}'")), "{bad}");
        }
    }

    #[test]
    fn tmpfs_env_labels() {
        assert_eq!(parse_tmpfs("/run"), Ok(("/run".into(), String::new())));
        assert_eq!(parse_tmpfs("/run:size=64m,mode=1777"), Ok(("/run".into(), "size=64m,mode=1777".into())));
        assert!(parse_tmpfs("run").is_err());
        let lookup = |k: &str| (k == "SET").then(|| "v".to_owned());
        assert_eq!(parse_env("A=b=c", lookup), Ok(Some("A=b=c".into())));
        assert_eq!(parse_env("A=", lookup), Ok(Some("A=".into())));
        assert_eq!(parse_env("SET", lookup), Ok(Some("SET=v".into())));
        assert_eq!(parse_env("UNSET", lookup), Ok(None));
        assert!(parse_env("=x", lookup).is_err());
        assert_eq!(parse_label("tier=web"), Ok(("tier".into(), "web".into())));
        assert_eq!(parse_label("flag"), Ok(("flag".into(), String::new())));
        assert!(parse_label("=x").is_err());
        assert_eq!(parse_key_value("--log-opt", "max-size=1m"), Ok(("max-size".into(), "1m".into())));
        assert!(parse_key_value("--log-opt", "max-size").is_err());
    }

    #[test]
    fn durations_and_timestamps_like_docker() {
        assert_eq!(parse_duration("10m"), Some(600_000_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("-2s"), Some(-2_000_000_000));
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("2024-05-01"), None);
        let now = 1_714_564_800_500_000_000i128;
        assert_eq!(timestamp("10m", now).unwrap(), "1714564200.500000000");
        assert_eq!(timestamp("1714564800", now).unwrap(), "1714564800");
        assert_eq!(timestamp("1714564800.25", now).unwrap(), "1714564800.25");
        assert_eq!(timestamp("2024-05-01T12:00:00Z", now).unwrap(), "1714564800");
        assert_eq!(timestamp("2024-05-01T12:00:00", now).unwrap(), "1714564800");
        assert_eq!(timestamp("2024-05-01T12:00", now).unwrap(), "1714564800");
        assert_eq!(timestamp("2024-05-01T14:00:00+02:00", now).unwrap(), "1714564800");
        assert_eq!(timestamp("2024-05-01T12:00:00.5Z", now).unwrap(), "1714564800.500000000");
        assert_eq!(timestamp("2024-05-01", now).unwrap(), "1714521600");
        assert!(timestamp("yesterday", now).is_err());
        assert!(timestamp("", now).is_err());
    }
}
