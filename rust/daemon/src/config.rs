//! Command-line flags, named as dockerd's so unit files and habits carry over.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub const DEFAULT_HOST: &str = "unix:///var/run/balena-engine.sock";
pub const DEFAULT_EXEC_ROOT: &str = "/var/run/balena-engine";
pub const DEFAULT_PIDFILE: &str = "/var/run/balena-engine.pid";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "balena-engined", version, about = "balena engine daemon: serves the Docker Engine API")]
pub struct Config {
    /// Socket to listen on (repeatable): unix:///PATH, fd:// (all sockets systemd passed) or fd://N, and
    /// tcp://HOST:PORT only when given explicitly: it is unauthenticated root access for anyone who reaches it
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,
    /// Root of the persistent state (the image store)
    #[arg(long, value_name = "DIR", default_value = engine::store::DEFAULT_ROOT)]
    pub data_root: PathBuf,
    /// Root of the runtime state (created at start)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_EXEC_ROOT)]
    pub exec_root: PathBuf,
    /// File to write the daemon's PID to ("" for none)
    #[arg(short = 'p', long, value_name = "FILE", default_value = DEFAULT_PIDFILE)]
    pub pidfile: PathBuf,
    /// Logging level
    #[arg(short = 'l', long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Group owning the unix socket(s), by name or number (default: the daemon's group)
    #[arg(short = 'G', long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Registry reached over plain HTTP or TLS without verification (repeatable; loopback is by default)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Registry mirror, tried before the registry (repeatable): URL for Docker Hub, DOMAIN=URL for any registry
    #[arg(long = "registry-mirror", value_name = "[DOMAIN=]URL")]
    pub registry_mirrors: Vec<String>,
    /// Per-registry CA and client certificates: DIR/<host[:port]>/{ca.crt,client.cert,client.key}
    #[arg(long, value_name = "DIR", default_value = distribution::config::DEFAULT_CERTS_DIR)]
    pub registry_certs_dir: PathBuf,
    /// Layers downloaded at once per pull
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_concurrent_downloads: usize,
    /// Attempts per download before a pull fails (0: retry for ever, waiting out network outages)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_download_attempts: u32,
    /// Longest wait between download attempts, in seconds (the wait doubles from 1 s, and resets on progress)
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub max_download_backoff: f64,
    /// Seconds without a byte after which a download is dropped and resumed where it stopped
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub download_stall_timeout: f64,
}

impl Config {
    /// The registry client's settings from the flags.
    pub fn registry(&self) -> Result<distribution::RegistryConfig, distribution::Error> {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.clamp(0.01, 86_400.0));
        let mut c = distribution::RegistryConfig {
            insecure: self.insecure_registries.clone(),
            certs_dir: self.registry_certs_dir.clone(),
            max_concurrent_downloads: self.max_concurrent_downloads,
            max_attempts: (self.max_download_attempts > 0).then_some(self.max_download_attempts),
            max_backoff: secs(self.max_download_backoff),
            stall_timeout: secs(self.download_stall_timeout),
            ..Default::default()
        };
        c.initial_backoff = c.initial_backoff.min(c.max_backoff);
        for m in &self.registry_mirrors {
            c.add_mirror(m)?;
        }
        Ok(c)
    }

    /// The `-H` values, or the default socket when none was given.
    pub fn hosts(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            vec![DEFAULT_HOST.to_owned()]
        } else {
            self.hosts.clone()
        }
    }
}
