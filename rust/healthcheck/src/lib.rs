//! `balena-engine-healthcheck`: is the engine alive and answering? Two checks, nothing else:
//!
//! - [`process`]: the daemon's process (from its pidfile, or `--pid`) exists, is `balena-engined`, and is
//!   neither a zombie nor stopped (`/proc/PID/stat`);
//! - [`http`]: `GET /_ping` on the engine's unix socket answers `200` with the body `OK`.
//!
//! Made to run often on small devices, under load, on SD cards: std only, one short-lived process, no
//! files written (no logs, no temp files: the only `write(2)` is the request on the socket, and one line
//! on stderr when unhealthy), every wait bounded by a deadline.

pub mod http;
pub mod process;

use std::time::Duration;

/// The socket `balena-engine.socket` listens on.
pub const DEFAULT_SOCKET: &str = "/run/balena-engine.sock";
/// The pidfile `balena-engine.service` has the daemon write.
pub const DEFAULT_PIDFILE: &str = "/run/balena-engine.pid";
/// The daemon's process name (`comm`, at most 15 bytes).
pub const ENGINE_COMM: &str = "balena-engined";
/// Generous on purpose: an idle engine answers in about a millisecond, one on a saturated device in tens;
/// a healthcheck that fails a busy engine is worse than one that is slow to condemn a hung one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
