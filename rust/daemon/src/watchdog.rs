//! systemd's service watchdog (`WatchdogSec=` in the unit). systemd passes `WATCHDOG_USEC` (and
//! `WATCHDOG_PID`, the main PID) and, once the service is ready, expects `WATCHDOG=1` within every such
//! interval; when one is missing it sends `WatchdogSignal=` (SIGTERM in balena-engine.service: a graceful
//! stop) and `Restart=` brings the engine back.
//!
//! A ping here is a claim of health, not of life: `WATCHDOG=1` is sent only right after an in-process
//! health check passed, the same checks `balena-engine-healthcheck` makes from outside, through the same
//! paths a client takes:
//! - `GET /_ping` on the daemon's own socket, through the real listener and HTTP stack, answers 200 `OK`;
//! - the image store opens for reading (lock, `metadata.json`), as every image request does.
//!
//! Timing: systemd arms the watchdog when READY=1 arrives (Type=notify: the service enters start-post;
//! before READY no ping is demanded, and none is sent: the task starts after READY=1). A check is due every
//! WATCHDOG_USEC/2; it may take up to WATCHDOG_USEC/4. A failed check is retried every WATCHDOG_USEC/16,
//! so one slow moment (an SD card stalling, a burst of load) costs nothing: only a daemon that stays
//! unhealthy for about half the interval misses its deadline. During stop systemd no longer enforces the
//! watchdog, and the task ends when shutdown begins.
//!
//! Without `WATCHDOG_USEC` (WatchdogSec unset or 0), or with a `WATCHDOG_PID` that is not this process, there
//! is no watchdog and nothing is sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::listeners::Bound;
use crate::notify;
use crate::state::Daemon;

/// The request `balena-engine-healthcheck` sends, but for the user agent.
const PING: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: balena-engine\r\nUser-Agent: balena-engined-watchdog\r\nConnection: close\r\n\r\n";
/// A `/_ping` answer is a few hundred bytes.
const MAX_ANSWER: u64 = 16 * 1024;

/// Where the in-process check reaches the daemon's API, as a client would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// The watchdog, if systemd asked for one.
pub struct Watchdog {
    enabled: Option<(Duration, Option<Probe>)>,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC`/`WATCHDOG_PID` and picks the socket to probe among `bound` (a unix socket
    /// with a path first, TCP otherwise). Call before the listeners are handed to the server.
    pub fn from_env(bound: &[Bound]) -> Watchdog {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let Some(interval) = interval(usec.as_deref(), pid.as_deref(), std::process::id()) else {
            if usec.is_some() {
                log::info!("WATCHDOG_USEC={} is not for this process or not valid: no watchdog", usec.unwrap_or_default());
            }
            return Watchdog { enabled: None };
        };
        Watchdog { enabled: Some((interval, probe(bound))) }
    }

    /// Starts feeding the watchdog. Call once the daemon serves and READY=1 was sent. Does nothing when
    /// there is no watchdog.
    pub fn start(self, daemon: Arc<Daemon>) {
        let Some((interval, probe)) = self.enabled else { return };
        match &probe {
            Some(p) => log::info!(
                "systemd watchdog: WatchdogSec={interval:?}; WATCHDOG=1 every {:?} while GET /_ping on {} and the store answer",
                interval / 2,
                describe(p)
            ),
            None => log::warn!("systemd watchdog: no socket the daemon can reach itself through: only the store is checked"),
        }
        tokio::spawn(feed(Timing::for_interval(interval), probe, daemon));
    }
}

/// `sd_watchdog_enabled(3)`: `WATCHDOG_USEC` set and positive, and `WATCHDOG_PID`, when set, names us.
pub fn interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// The socket to probe: a unix socket with a path (ours, or systemd's when activated), else TCP (a wildcard
/// address is reached on loopback).
pub fn probe(bound: &[Bound]) -> Option<Probe> {
    let unix = bound.iter().find_map(|b| match b {
        Bound::Unix { path: Some(p), .. } => Some(p.clone()),
        Bound::Unix { listener, path: None } => listener.local_addr().ok()?.as_pathname().map(Path::to_path_buf),
        Bound::Tcp(_) => None,
    });
    if let Some(p) = unix {
        return Some(Probe::Unix(p));
    }
    bound.iter().find_map(|b| match b {
        Bound::Tcp(l) => {
            let mut addr = l.local_addr().ok()?;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            Some(Probe::Tcp(addr))
        }
        Bound::Unix { .. } => None,
    })
}

fn describe(p: &Probe) -> String {
    match p {
        Probe::Unix(path) => path.display().to_string(),
        Probe::Tcp(a) => format!("tcp://{a}"),
    }
}

/// When checks run, derived from WATCHDOG_USEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between a passed check and the next one.
    pub every: Duration,
    /// The longest one check may take.
    pub check_timeout: Duration,
    /// Between a failed check and the next try.
    pub retry: Duration,
}

impl Timing {
    pub fn for_interval(interval: Duration) -> Timing {
        let floor = Duration::from_millis(1);
        Timing { every: (interval / 2).max(floor), check_timeout: (interval / 4).max(floor), retry: (interval / 16).max(floor) }
    }
}

async fn feed(timing: Timing, probe: Option<Probe>, daemon: Arc<Daemon>) {
    let mut shutdown = daemon.shutdown_signal();
    // The store check runs on a blocking thread that cannot be cancelled; never stack a second one on a
    // stuck first.
    let store_busy = Arc::new(AtomicBool::new(false));
    let mut due = Instant::now() + timing.every;
    let mut failing: Option<(Instant, Instant)> = None; // (since, last logged)
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let res = match tokio::time::timeout(timing.check_timeout, check(probe.as_ref(), &daemon, &store_busy)).await {
            Ok(r) => r,
            Err(_) => Err(format!("the health check took more than {:?}", timing.check_timeout)),
        };
        if *shutdown.borrow() {
            return;
        }
        let now = Instant::now();
        match res {
            Ok(()) => {
                notify::watchdog();
                if let Some((since, _)) = failing.take() {
                    log::info!("health check passes again after {:?}: feeding the systemd watchdog", now - since);
                    notify::status("Processing requests");
                }
                due = now + timing.every;
            }
            Err(e) => {
                match &mut failing {
                    None => {
                        log::warn!("health check failed, not feeding the systemd watchdog: {e}");
                        notify::status(&format!("Unhealthy: {e}"));
                        failing = Some((now, now));
                    }
                    Some((since, logged)) if now - *logged >= timing.every => {
                        log::warn!("health check still failing after {:?}: {e}", now - *since);
                        *logged = now;
                    }
                    Some(_) => {}
                }
                due = now + timing.retry;
            }
        }
    }
}

/// The in-process health check: the API answers through the real listener, and the store opens.
pub async fn check(probe: Option<&Probe>, daemon: &Arc<Daemon>, store_busy: &Arc<AtomicBool>) -> Result<(), String> {
    if let Some(p) = probe {
        ping(p).await.map_err(|e| format!("GET /_ping on {}: {e}", describe(p)))?;
    }
    if store_busy.swap(true, Ordering::AcqRel) {
        return Err("the image store has not answered the previous check yet".into());
    }
    let (busy, d) = (store_busy.clone(), daemon.clone());
    let res = tokio::task::spawn_blocking(move || {
        let res = d.with_reader(|store| Ok(store.metadata().images.len()));
        // Cleared here, whatever becomes of the waiting side (a timeout drops it).
        busy.store(false, Ordering::Release);
        res
    })
    .await
    .map_err(|e| format!("image store check: {e}"))?;
    res.map(|_| ()).map_err(|e| format!("image store: {}", e.message))
}

async fn ping(p: &Probe) -> Result<(), String> {
    match p {
        Probe::Unix(path) => exchange(tokio::net::UnixStream::connect(path).await.map_err(|e| format!("connect: {e}"))?).await,
        Probe::Tcp(addr) => exchange(tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?).await,
    }
}

async fn exchange(mut s: impl AsyncRead + AsyncWrite + Unpin) -> Result<(), String> {
    s.write_all(PING).await.map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::with_capacity(512);
    // `Connection: close`: the server ends the answer by closing.
    (&mut s).take(MAX_ANSWER + 1).read_to_end(&mut raw).await.map_err(|e| format!("reading: {e}"))?;
    judge(&raw)
}

/// 200 with the body `OK` (the daemon's server frames it with Content-Length).
pub fn judge(raw: &[u8]) -> Result<(), String> {
    if raw.len() as u64 > MAX_ANSWER {
        return Err(format!("more than {MAX_ANSWER} bytes"));
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no complete answer")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).unwrap_or_default();
    if code != "200" {
        return Err(format!("answered {status:?}"));
    }
    let mut body = &raw[end + 4..];
    let length = lines.filter_map(|l| l.split_once(':')).find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"));
    if let Some((_, v)) = length {
        let n: usize = v.trim().parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
        body = body.get(..n).ok_or("answer cut short")?;
    }
    match body {
        b"OK" => Ok(()),
        other => Err(format!("answered {:?} instead of \"OK\"", String::from_utf8_lossy(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_as_sd_watchdog_enabled() {
        assert_eq!(interval(Some("200000"), None, 42), Some(Duration::from_millis(200)));
        assert_eq!(interval(Some("180000000"), Some("42"), 42), Some(Duration::from_secs(180)));
        assert_eq!(interval(Some("180000000"), Some("43"), 42), None, "another process's watchdog");
        assert_eq!(interval(Some("0"), None, 42), None, "WatchdogSec=0");
        assert_eq!(interval(Some("x"), None, 42), None);
        assert_eq!(interval(None, Some("42"), 42), None);
    }

    #[test]
    fn timing_leaves_room_for_retries() {
        let t = Timing::for_interval(Duration::from_secs(180));
        assert_eq!(t, Timing { every: Duration::from_secs(90), check_timeout: Duration::from_secs(45), retry: Duration::from_millis(11250) });
        // A check that passed at t=0 is followed by one at W/2; failing, it is retried until the deadline W.
        assert!(t.every + t.check_timeout < Duration::from_secs(180));
    }

    #[test]
    fn probes_unix_first_and_tcp_wildcards_on_loopback() {
        let dir = std::env::temp_dir().join(format!("watchdog-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let bound = vec![Bound::Tcp(tcp), Bound::Unix { listener: unix, path: None }];
        assert_eq!(probe(&bound), Some(Probe::Unix(path.clone())), "a passed unix socket is found by its address");
        let tcp_only: Vec<Bound> = bound.into_iter().filter(|b| matches!(b, Bound::Tcp(_))).collect();
        assert_eq!(probe(&tcp_only), Some(Probe::Tcp(([127, 0, 0, 1], port).into())));
        assert_eq!(probe(&[]), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn judges_answers() {
        assert!(judge(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK").is_ok());
        assert!(judge(b"HTTP/1.1 200 OK\r\n\r\nOK").is_ok());
        assert!(judge(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\nOK").is_err());
        assert!(judge(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nNO").is_err());
        assert!(judge(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nOK").is_err());
        assert!(judge(b"").is_err());
    }
}
