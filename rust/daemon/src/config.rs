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
}

impl Config {
    /// The `-H` values, or the default socket when none was given.
    pub fn hosts(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            vec![DEFAULT_HOST.to_owned()]
        } else {
            self.hosts.clone()
        }
    }
}
