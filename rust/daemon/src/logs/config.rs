//! `HostConfig.LogConfig`: which driver copies a container's output, and how much of it the json-file driver
//! keeps.
//!
//! Unlike docker's json-file (unbounded unless `max-size` is given), logs here are always bounded: 10 MiB per
//! file and 3 files by default, `max-size`/`max-file` to change it. A device's data partition must not fill
//! up because a service is chatty.

use std::collections::BTreeMap;

use serde_json::Value;

/// Bytes per log file unless `max-size` says otherwise.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// Files kept (the live one and rotated ones) unless `max-file` says otherwise.
pub const DEFAULT_MAX_FILE: u32 = 3;
/// The largest `max-file`: more files than this is a mistake, not a plan.
pub const MAX_MAX_FILE: u32 = 100;
/// dockerd's answer (HTTP 501) to `docker logs` on a container whose driver keeps nothing to read back.
pub const READ_NOT_SUPPORTED: &str = "configured logging driver does not support reading";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogDriver {
    /// docker's json-file: `<dir>/<id>-json.log`, rotated.
    #[default]
    JsonFile,
    /// systemd's journal, through its native socket; not readable back through `docker logs`.
    Journald,
    /// Output discarded.
    None,
}

impl LogDriver {
    /// The name docker uses (`HostConfig.LogConfig.Type`, `/info`'s `LoggingDriver`).
    pub fn name(self) -> &'static str {
        match self {
            LogDriver::JsonFile => "json-file",
            LogDriver::Journald => "journald",
            LogDriver::None => "none",
        }
    }

    /// Whether `docker logs` can read back what this driver wrote; when not, answer 501 with
    /// [`READ_NOT_SUPPORTED`].
    pub fn can_read(self) -> bool {
        self == LogDriver::JsonFile
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub driver: LogDriver,
    /// Bytes per file before it is rotated (json-file).
    pub max_size: u64,
    /// Files kept, the live one included (json-file); 1: the file is emptied when full.
    pub max_file: u32,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { driver: LogDriver::JsonFile, max_size: DEFAULT_MAX_SIZE, max_file: DEFAULT_MAX_FILE }
    }
}

/// Options docker's drivers know but this engine does not implement: refused with a clear message rather
/// than silently ignored.
const UNSUPPORTED: [&str; 7] = ["compress", "labels", "labels-regex", "env", "env-regex", "tag", "mode"];

impl LogConfig {
    /// Reads docker's `HostConfig.LogConfig`: `{"Type": "json-file"|"journald"|"none"|"", "Config":
    /// {"max-size": "10m", "max-file": "3"}}`; null, absent or an empty `Type` is the default (json-file,
    /// bounded). An unknown driver or option is an error (HTTP 400).
    pub fn from_host_config(log_config: &Value) -> Result<LogConfig, String> {
        if log_config.is_null() {
            return Ok(LogConfig::default());
        }
        let obj = log_config.as_object().ok_or("invalid LogConfig: not an object")?;
        let driver = match obj.get("Type") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(format!("invalid LogConfig: Type must be a string, not {other}")),
        };
        let driver = match driver {
            "" | "json-file" => LogDriver::JsonFile,
            "journald" => LogDriver::Journald,
            "none" => LogDriver::None,
            other => return Err(format!("logger: no log driver named '{other}' is registered")),
        };
        let opts: BTreeMap<String, String> = match obj.get("Config") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!("invalid LogConfig: option '{k}' must be a string, not {other}")),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("invalid LogConfig: Config must be an object, not {other}")),
        };
        let mut cfg = LogConfig { driver, ..LogConfig::default() };
        for (key, value) in &opts {
            match (driver, key.as_str()) {
                (LogDriver::JsonFile, "max-size") => cfg.max_size = parse_size(value)?,
                (LogDriver::JsonFile, "max-file") => {
                    let n: i64 = value.trim().parse().map_err(|_| format!("invalid max-file value {value:?}: not a number"))?;
                    if n < 1 {
                        return Err("max-file cannot be less than 1".into());
                    }
                    if n > i64::from(MAX_MAX_FILE) {
                        return Err(format!("max-file cannot be more than {MAX_MAX_FILE}"));
                    }
                    cfg.max_file = n as u32;
                }
                (_, k) if UNSUPPORTED.contains(&k) => {
                    return Err(format!("log opt '{k}' is not supported by this engine's {} log driver", driver.name()))
                }
                (_, k) => return Err(format!("unknown log opt '{k}' for {} log driver", driver.name())),
            }
        }
        Ok(cfg)
    }

    /// Back to docker's `HostConfig.LogConfig` (for inspect): the limits in force are spelled out.
    pub fn to_host_config(&self) -> Value {
        match self.driver {
            LogDriver::JsonFile => serde_json::json!({
                "Type": "json-file",
                "Config": {"max-size": self.max_size.to_string(), "max-file": self.max_file.to_string()},
            }),
            d => serde_json::json!({ "Type": d.name(), "Config": {} }),
        }
    }
}

/// docker's `max-size`: a positive number with an optional unit, decimal as docker's `units.FromHumanSize`
/// ("10m" is 10 000 000 bytes; "10MiB" is 10 485 760): b, k/kb, m/mb, g/gb, t/tb, and kib… for binary.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("invalid max-size value {s:?}: a positive size such as 512k, 10m or 1g");
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = num * mult;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err("max-size must be a positive number".into());
    }
    if bytes > 1e15 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_bounded() {
        for v in [Value::Null, json!({}), json!({"Type": ""}), json!({"Type": "json-file"}), json!({"Type": "json-file", "Config": null})] {
            let c = LogConfig::from_host_config(&v).unwrap();
            assert_eq!(c, LogConfig { driver: LogDriver::JsonFile, max_size: 10 * 1024 * 1024, max_file: 3 }, "{v}");
        }
    }

    #[test]
    fn reads_drivers_and_options() {
        let c = LogConfig::from_host_config(&json!({"Type": "json-file", "Config": {"max-size": "1m", "max-file": "5"}})).unwrap();
        assert_eq!((c.driver, c.max_size, c.max_file), (LogDriver::JsonFile, 1_000_000, 5));
        let c = LogConfig::from_host_config(&json!({"Type": "json-file", "Config": {"max-size": "512k"}})).unwrap();
        assert_eq!((c.max_size, c.max_file), (512_000, 3));
        let c = LogConfig::from_host_config(&json!({"Type": "journald"})).unwrap();
        assert_eq!(c.driver, LogDriver::Journald);
        assert!(!c.driver.can_read());
        let c = LogConfig::from_host_config(&json!({"Type": "none", "Config": {}})).unwrap();
        assert_eq!(c.driver, LogDriver::None);
        assert!(LogDriver::JsonFile.can_read());
        // What inspect shows parses back to the same.
        let c = LogConfig::from_host_config(&json!({"Type": "json-file", "Config": {"max-size": "2m", "max-file": "2"}})).unwrap();
        assert_eq!(LogConfig::from_host_config(&c.to_host_config()).unwrap(), c);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let err = |v: Value| LogConfig::from_host_config(&v).unwrap_err();
        assert_eq!(err(json!({"Type": "syslog"})), "logger: no log driver named 'syslog' is registered");
        assert_eq!(err(json!({"Type": "local"})), "logger: no log driver named 'local' is registered");
        assert_eq!(err(json!({"Type": "json-file", "Config": {"colour": "red"}})), "unknown log opt 'colour' for json-file log driver");
        assert_eq!(err(json!({"Type": "journald", "Config": {"max-size": "1m"}})), "unknown log opt 'max-size' for journald log driver");
        assert_eq!(err(json!({"Type": "none", "Config": {"max-file": "2"}})), "unknown log opt 'max-file' for none log driver");
        assert_eq!(err(json!({"Config": {"compress": "true"}})), "log opt 'compress' is not supported by this engine's json-file log driver");
        assert_eq!(err(json!({"Config": {"max-file": "0"}})), "max-file cannot be less than 1");
        assert_eq!(err(json!({"Config": {"max-file": "1000"}})), "max-file cannot be more than 100");
        assert!(err(json!({"Config": {"max-file": "x"}})).contains("max-file"));
        assert_eq!(err(json!({"Config": {"max-size": "-1"}})), "invalid max-size value \"-1\": a positive size such as 512k, 10m or 1g");
        assert_eq!(err(json!({"Config": {"max-size": "0"}})), "max-size must be a positive number");
        assert_eq!(err(json!({"Config": {"max-size": 10}})), "invalid LogConfig: option 'max-size' must be a string, not 10");
        assert_eq!(err(json!({"Type": 1})), "invalid LogConfig: Type must be a string, not 1");
        assert_eq!(err(json!([])), "invalid LogConfig: not an object");
    }

    #[test]
    fn sizes_like_docker() {
        let cases = [
            ("1", 1),
            ("100b", 100),
            ("10k", 10_000),
            ("10K", 10_000),
            ("10kb", 10_000),
            ("10m", 10_000_000),
            ("10M", 10_000_000),
            ("10 MB", 10_000_000),
            ("1.5m", 1_500_000),
            ("1g", 1_000_000_000),
            ("10MiB", 10_485_760),
            ("4ki", 4096),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for s in ["", "m", "10x", "1e3", "-5m", "10mm", "0.0001"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }
}
