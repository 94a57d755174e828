//! Platforms (`linux/arm64`, `linux/arm/v7`) and the choice of one manifest from a manifest list, with the
//! fallbacks docker applies: arm64 takes `v8` or no variant; an ARM v8 CPU in 32-bit mode runs v7, v6 and
//! v5 images, in that order of preference; a v7 CPU v6 and v5.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(default, rename = "os.version", skip_serializing_if = "String::is_empty")]
    pub os_version: String,
}

impl Platform {
    /// `os/arch[/variant]` (`--platform`, the API's `platform=`); architecture aliases are normalised.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Config(format!("invalid platform {s:?}: expected os/arch[/variant]")));
        }
        let (arch, variant) = normalize_arch(parts[1], parts.get(2).copied().unwrap_or(""));
        Ok(Platform { os: parts[0].to_ascii_lowercase(), architecture: arch, variant, os_version: String::new() })
    }

    /// The platform this engine runs on.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64".to_owned(), String::new()),
            "aarch64" => ("arm64".to_owned(), "v8".to_owned()),
            "arm" => ("arm".to_owned(), host_arm_variant()),
            other => normalize_arch(other, ""),
        };
        Platform { os: "linux".into(), architecture: arch, variant, os_version: String::new() }
    }

    /// Variants this platform accepts, best first.
    fn acceptable_variants(&self) -> Vec<&str> {
        match (self.architecture.as_str(), self.variant.as_str()) {
            ("arm64", _) => vec!["v8", ""],
            ("arm", "v8") => vec!["v8", "v7", "v6", "v5", ""],
            ("arm", "v7") | ("arm", "") => vec!["v7", "v6", "v5", ""],
            ("arm", "v6") => vec!["v6", "v5", ""],
            (_, v) => vec![v, ""],
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant),
        "aarch64" | "arm64" => {
            ("arm64".into(), if variant == "8" || variant.is_empty() { "v8".into() } else { variant })
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => ("arm".into(), if variant.is_empty() { "v7".into() } else { variant }),
        "i386" | "i686" | "386" => ("386".into(), variant),
        _ => (arch, variant),
    }
}

/// `CPU architecture: 7` in /proc/cpuinfo → v7 (a Pi 1/Zero says 6; a Pi 3 in 32-bit mode says 8).
fn host_arm_variant() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let arch = info.lines().find_map(|l| {
        l.strip_prefix("CPU architecture").map(|r| r.trim_start_matches([':', ' ', '\t']).trim().to_owned())
    });
    match arch.as_deref() {
        Some("8") | Some("AArch64") => "v8".into(),
        Some("6") | Some("6TEJ") => "v6".into(),
        Some("5") | Some("5TE") | Some("5TEJ") => "v5".into(),
        _ => "v7".into(),
    }
}

/// Picks the entry for `want` among `(platform, item)` pairs; entries without a platform never match, nor
/// do attestation manifests (`unknown/unknown`).
pub fn select<'a, T>(entries: &'a [(Option<Platform>, T)], want: &Platform) -> Option<&'a T> {
    let candidates: Vec<(&Platform, &T)> = entries
        .iter()
        .filter_map(|(p, t)| p.as_ref().map(|p| (p, t)))
        .filter(|(p, _)| p.os.eq_ignore_ascii_case(&want.os))
        .collect();
    for v in want.acceptable_variants() {
        let hit = candidates.iter().find(|(p, _)| {
            let (arch, variant) = normalize_arch(&p.architecture, &p.variant);
            let variant = if p.variant.is_empty() && arch != "arm64" { String::new() } else { variant };
            arch == want.architecture && variant == v
        });
        if let Some((_, t)) = hit {
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Platform> {
        Some(Platform::parse(s).unwrap())
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(Platform::parse("linux/aarch64").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/armhf").unwrap().to_string(), "linux/arm/v7");
        assert_eq!(Platform::parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        assert!(Platform::parse("linux").is_err() && Platform::parse("linux//v7").is_err());
    }

    #[test]
    fn fallbacks() {
        let list = vec![
            (p("linux/amd64"), "amd64"),
            (p("linux/arm/v6"), "v6"),
            (p("linux/arm/v7"), "v7"),
            (p("unknown/unknown"), "att"),
        ];
        assert_eq!(select(&list, &Platform::parse("linux/amd64").unwrap()), Some(&"amd64"));
        assert_eq!(select(&list, &Platform::parse("linux/arm/v8").unwrap()), Some(&"v7"));
        assert_eq!(select(&list, &Platform::parse("linux/arm/v7").unwrap()), Some(&"v7"));
        assert_eq!(select(&list, &Platform::parse("linux/arm/v6").unwrap()), Some(&"v6"));
        assert_eq!(select(&list, &Platform::parse("linux/arm64").unwrap()), None);
        let arm64 = vec![(p("linux/arm64"), "plain"), (None, "none")];
        assert_eq!(select(&arm64, &Platform::parse("linux/arm64/v8").unwrap()), Some(&"plain"));
        let arm64_v8 = vec![(Some(Platform { variant: "v8".into(), ..Platform::parse("linux/arm64").unwrap() }), "v8")];
        assert_eq!(select(&arm64_v8, &Platform::parse("linux/arm64").unwrap()), Some(&"v8"));
        let only_plain_arm = vec![(
            Some(Platform {
                architecture: "arm".into(),
                os: "linux".into(),
                variant: String::new(),
                os_version: String::new(),
            }),
            "arm",
        )];
        assert_eq!(select(&only_plain_arm, &Platform::parse("linux/arm/v7").unwrap()), Some(&"arm"));
    }
}
