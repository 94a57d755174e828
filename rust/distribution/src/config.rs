//! Registry settings: insecure registries, mirrors, per-registry certificates, retry policy and timeouts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API};

pub const DEFAULT_CERTS_DIR: &str = "/etc/balena-engine/certs.d";

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]` reached over plain HTTP or TLS without verification (docker's `--insecure-registry`).
    pub insecure: Vec<String>,
    /// Loopback registries (127.0.0.0/8, ::1, localhost) are insecure unless they have certificates in
    /// `certs_dir`, as moby treats 127.0.0.0/8.
    pub insecure_loopback: bool,
    /// Registry domain (`docker.io`, `ghcr.io`, `host:port`) → mirror base URLs, tried first, in order.
    pub mirrors: HashMap<String, Vec<String>>,
    /// docker's layout: `<certs_dir>/<host[:port]>/{ca.crt,*.crt,client.cert,client.key}`.
    pub certs_dir: PathBuf,
    /// First back-off after a failure; doubled per failure up to `max_backoff`, reset on progress.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// `None`: retry for ever (a device waits out an outage); the pull can be cancelled.
    pub max_attempts: Option<u32>,
    /// A blob read that delivers nothing for this long is a stall: the connection is dropped and resumed.
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            insecure_loopback: true,
            mirrors: HashMap::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: None,
            stall_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            max_concurrent_downloads: 3,
        }
    }
}

/// One place a registry's API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host:port` (no trailing slash).
    pub base: String,
    /// `host[:port]`: the key for certificates.
    pub host: String,
    /// TLS without certificate verification.
    pub skip_verify: bool,
    pub mirror: bool,
}

impl RegistryConfig {
    /// Layers downloaded at once, within what a small device can take (1 to 8).
    pub fn download_workers(&self) -> usize {
        self.max_concurrent_downloads.clamp(1, 8)
    }

    /// Adds a mirror from docker's `registry-mirrors` form (`URL`, for Docker Hub) or ours (`DOMAIN=URL`).
    pub fn add_mirror(&mut self, spec: &str) -> Result<()> {
        let (domain, url) = match spec.split_once('=') {
            Some((d, u)) => (d.to_owned(), u),
            None => (DOCKER_HUB.to_owned(), spec),
        };
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(Error::Config(format!("registry mirror {spec:?}: expected [DOMAIN=]http(s)://host[:port]")));
        }
        self.mirrors.entry(domain).or_default().push(url.to_owned());
        Ok(())
    }

    fn has_certs(&self, host: &str) -> bool {
        self.certs_dir.join(host).is_dir()
    }

    pub fn is_insecure(&self, host: &str) -> bool {
        if self.has_certs(host) {
            return false;
        }
        self.insecure.iter().any(|h| h == host) || (self.insecure_loopback && is_loopback(host))
    }

    /// Where to reach `domain`, in the order to try: its mirrors, then itself (https, and for an insecure
    /// registry https without verification, then plain http).
    pub fn endpoints(&self, domain: &str, api_host: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for m in self.mirrors.get(domain).into_iter().flatten() {
            let host = m.split_once("://").map_or(m.as_str(), |(_, h)| h).split('/').next().unwrap_or("").to_owned();
            out.push(Endpoint { base: m.clone(), skip_verify: self.is_insecure(&host), host, mirror: true });
        }
        let host = if domain == DOCKER_HUB { DOCKER_HUB_API } else { api_host }.to_owned();
        let insecure = self.is_insecure(&host);
        out.push(Endpoint {
            base: format!("https://{host}"),
            host: host.clone(),
            skip_verify: insecure,
            mirror: false,
        });
        if insecure {
            out.push(Endpoint { base: format!("http://{host}"), host, skip_verify: false, mirror: false });
        }
        out
    }
}

fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
    };
    h == "localhost" || h == "::1" || h.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure_by_default() {
        let c = RegistryConfig { certs_dir: PathBuf::from("/nonexistent"), ..Default::default() };
        assert!(c.is_insecure("127.0.0.1:5000") && c.is_insecure("localhost:5000") && c.is_insecure("[::1]:5000"));
        assert!(!c.is_insecure("registry.example:5000") && !c.is_insecure("10.0.0.1:5000"));
        let e = c.endpoints("127.0.0.1:5000", "127.0.0.1:5000");
        assert_eq!(
            e.iter().map(|e| e.base.as_str()).collect::<Vec<_>>(),
            ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]
        );
        assert!(e[0].skip_verify);
    }

    #[test]
    fn mirrors_first_for_any_registry() {
        let mut c = RegistryConfig { certs_dir: PathBuf::from("/nonexistent"), ..Default::default() };
        c.add_mirror("http://127.0.0.1:6000").unwrap();
        c.add_mirror("ghcr.io=https://mirror.example").unwrap();
        assert!(c.add_mirror("ftp://x").is_err());
        let hub = c.endpoints("docker.io", "registry-1.docker.io");
        assert_eq!(hub[0].base, "http://127.0.0.1:6000");
        assert!(hub[0].mirror);
        assert_eq!(hub[1].base, "https://registry-1.docker.io");
        assert_eq!(c.endpoints("ghcr.io", "ghcr.io")[0].base, "https://mirror.example");
    }
}
