//! What is kept of a container on disk: `DATA/containers/<id>/config.v2.json`, replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory) at every change of its state, so a crash leaves the
//! previous or the next version.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use engine::time;

pub const FILE: &str = "config.v2.json";
/// Go's zero time, as docker reports times that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// created, running, restarting, exited, removing, dead.
    pub status: String,
    pub running: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: "created".into(),
            running: false,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
        }
    }
}

/// A resolved mount: what inspect's `Mounts` shows and what the runtime gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountPoint {
    /// bind, volume, tmpfs.
    pub kind: String,
    /// Volume name (volumes only).
    pub name: String,
    /// Host path (binds and volumes).
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
    /// Mode as given (`ro`, `z`, …) for inspect.
    pub mode: String,
    /// Binds given as `-v /src:/dst` (docker creates a missing source); `--mount` binds must exist.
    pub create_source: bool,
    /// Anonymous volume (removed with `docker rm -v`).
    pub anonymous: bool,
    pub tmpfs_size: Option<u64>,
    pub tmpfs_mode: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: String,
    /// With docker's leading slash.
    pub name: String,
    pub created: String,
    /// Image ID (`sha256:…`).
    pub image: String,
    /// The image as the user named it (`Config.Image`).
    pub image_name: String,
    pub path: String,
    pub args: Vec<String>,
    /// docker's container `Config`, merged with the image's.
    pub config: Value,
    /// docker's `HostConfig`, as accepted.
    pub host_config: Value,
    /// Layer dirs, top first.
    pub lower_dirs: Vec<PathBuf>,
    pub mounts: Vec<MountPoint>,
    pub state: State,
    pub restart_count: u32,
    /// Back-off exponent of the restart policy.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The last stop came from the user (`docker stop`/`kill`): the restart policy leaves it stopped.
    pub manually_stopped: bool,
    /// Stopped by the daemon's shutdown while running: counts as running for the policy at next boot.
    pub stopped_by_shutdown: bool,
    pub has_been_started: bool,
}

impl Record {
    pub fn load(dir: &Path) -> Result<Record, String> {
        let p = dir.join(FILE);
        let bytes = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let bytes = serde_json::to_vec(self).map_err(|e| format!("encoding container state: {e}"))?;
        engine::store::write_atomic(&dir.join(FILE), &bytes).map_err(|e| e.to_string())
    }

    /// The name without its leading slash.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    pub fn labels(&self) -> serde_json::Map<String, Value> {
        self.config["Labels"].as_object().cloned().unwrap_or_default()
    }

    pub fn auto_remove(&self) -> bool {
        self.host_config["AutoRemove"].as_bool().unwrap_or(false)
    }

    pub fn set_running(&mut self, pid: i32) {
        self.state = State {
            status: "running".into(),
            running: true,
            pid,
            started_at: time::now_rfc3339_nanos(),
            finished_at: self.state.finished_at.clone(),
            ..State::default()
        };
        self.has_been_started = true;
        self.stopped_by_shutdown = false;
    }

    /// After an exit: `restarting` when the policy starts it again.
    pub fn set_exited(&mut self, code: i32, oom: bool, restarting: bool) {
        let s = &mut self.state;
        s.status = if restarting { "restarting" } else { "exited" }.into();
        s.running = restarting;
        s.restarting = restarting;
        s.pid = 0;
        s.exit_code = code;
        s.oom_killed = oom;
        s.finished_at = time::now_rfc3339_nanos();
    }

    /// A start that failed: docker keeps the status (`created` for a container that never ran) with the
    /// error and 127/126/128.
    pub fn set_start_error(&mut self, code: i32, error: String) {
        let s = &mut self.state;
        if s.status != "created" {
            s.status = "exited".into();
        }
        s.running = false;
        s.restarting = false;
        s.pid = 0;
        s.exit_code = code;
        s.error = error;
        if self.has_been_started {
            s.finished_at = time::now_rfc3339_nanos();
        }
    }
}
