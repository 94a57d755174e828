//! systemd's service watchdog as the daemon sees it: the test binds the notify socket systemd would, sets
//! WATCHDOG_USEC=200000 (WatchdogSec=200ms) and reads the datagrams. WATCHDOG=1 comes only after READY=1,
//! about every 100 ms while the daemon is healthy; never while it is stopped (SIGSTOP) or unhealthy (its
//! socket file gone, its store unreadable); never after STOPPING=1; and not at all without a watchdog.
//! Finally the test plays systemd's part: a missed deadline gets WatchdogSignal=SIGTERM, and the daemon
//! stops gracefully.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;

const WATCHDOG_USEC: &str = "200000";
const INTERVAL: Duration = Duration::from_millis(200);

/// The notify socket, with the time each message arrived.
struct Systemd {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Systemd {
    fn bind(dir: &std::path::Path) -> Systemd {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Systemd { sock, path }
    }

    /// The next message, or None after `timeout`.
    fn recv(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.sock.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(_) => None,
        }
    }

    /// Every message arriving within `window`.
    fn collect(&self, window: Duration) -> Vec<(Instant, String)> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// Waits for a message with the line `line`; returns it and everything before it.
    fn wait_for(&self, line: &str, timeout: Duration) -> (Instant, Vec<String>) {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = end.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no {line} within {timeout:?}; got {seen:?}"));
            let (at, msg) = self.recv(left).unwrap_or_else(|| panic!("no {line} within {timeout:?}; got {seen:?}"));
            let found = msg.lines().any(|l| l == line);
            seen.push(msg);
            if found {
                return (at, seen);
            }
        }
    }
}

fn pings(msgs: &[(Instant, String)]) -> Vec<Instant> {
    msgs.iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect()
}

fn max_gap(times: &[Instant]) -> Duration {
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// A daemon under a notify socket, with `env` (WATCHDOG_*) set; waits for READY=1 and checks that no
/// WATCHDOG=1 came before it.
fn start(env: &[(&str, &str)]) -> (Daemon, Systemd) {
    let dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::bind(dir.path());
    let root = dir.path().join("root");
    let notify = systemd.path.clone();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let d = Daemon::spawn_in(dir, root, |c| {
        c.env("NOTIFY_SOCKET", &notify).env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
        for (k, v) in env {
            c.env(k, v);
        }
    });
    let (_, before) = systemd.wait_for("READY=1", Duration::from_secs(20));
    assert_eq!(before.len(), 1, "messages before READY=1: {before:?}");
    (d, systemd)
}

#[test]
fn pings_follow_ready_about_every_half_interval() {
    let (d, systemd) = start(&[("WATCHDOG_USEC", WATCHDOG_USEC)]);
    let msgs = systemd.collect(Duration::from_millis(1500));
    let times = pings(&msgs);
    // Due every 100 ms: ~15 in 1.5 s; systemd needs one per 200 ms.
    assert!(times.len() >= 8, "{} pings in 1.5 s: {msgs:?}\n{}", times.len(), d.log_text());
    assert!(max_gap(&times) < INTERVAL, "a gap of {:?} would have tripped WatchdogSec=200ms", max_gap(&times));
    assert!(d.log_text().contains("systemd watchdog: WatchdogSec=200ms"), "{}", d.log_text());
}

#[test]
fn watchdog_pid_must_name_the_daemon() {
    // Set by a shell that then execs the daemon, keeping its PID: WATCHDOG_PID is the daemon's.
    let dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::bind(dir.path());
    let root = dir.path().join("root");
    let sock = dir.path().join("engine.sock");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"export WATCHDOG_PID=$$; exec "$0" "$@""#)
        .arg(common::BIN)
        .args(["-H", &format!("unix://{}", sock.display()), "--data-root", root.to_str().unwrap()])
        .args(["--exec-root", dir.path().join("exec").to_str().unwrap(), "--pidfile", dir.path().join("pid").to_str().unwrap()])
        .env("NOTIFY_SOCKET", &systemd.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .stderr(log)
        .spawn()
        .unwrap();
    systemd.wait_for("READY=1", Duration::from_secs(20));
    let n = pings(&systemd.collect(Duration::from_millis(600))).len();
    let _ = child.kill();
    let _ = child.wait();
    assert!(n >= 3, "{n} pings with WATCHDOG_PID = the daemon's PID");

    // Another process's watchdog (an inherited environment) is not ours.
    let (d, systemd) = start(&[("WATCHDOG_USEC", WATCHDOG_USEC), ("WATCHDOG_PID", "1")]);
    let msgs = systemd.collect(Duration::from_millis(800));
    assert!(pings(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(d.http("GET", "/_ping").status, 200);
}

/// Socket-activated (`-H fd://`, as balena-engine.service runs it): the check reaches the daemon through the
/// socket systemd passed, found by its address.
#[test]
fn a_socket_activated_daemon_probes_the_passed_socket() {
    let dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::bind(dir.path());
    let sock = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let fd = listener.as_raw_fd();
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(r#"export LISTEN_FDS=1 LISTEN_PID=$$ WATCHDOG_PID=$$; exec "$0" "$@""#)
        .arg(common::BIN)
        .args(["-H", "fd://", "--data-root", dir.path().join("root").to_str().unwrap()])
        .args(["--exec-root", dir.path().join("exec").to_str().unwrap(), "--pidfile", dir.path().join("pid").to_str().unwrap()])
        .env("NOTIFY_SOCKET", &systemd.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    systemd.wait_for("READY=1", Duration::from_secs(20));
    let before = pings(&systemd.collect(Duration::from_millis(500))).len();
    // The socket file is systemd's; with it gone, clients cannot connect, and neither can the check.
    std::fs::remove_file(&sock).unwrap();
    let _ = systemd.collect(INTERVAL);
    let after = systemd.collect(Duration::from_millis(600));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(before >= 3, "{before} pings: {log}");
    assert!(log.contains(&format!("while GET /_ping on {}", sock.display())), "{log}");
    assert!(pings(&after).is_empty(), "{after:?}");
}

#[test]
fn no_watchdog_no_pings_and_no_failure() {
    for env in [&[][..], &[("WATCHDOG_USEC", "0")], &[("WATCHDOG_USEC", "garbage")]] {
        let (d, systemd) = start(env);
        let msgs = systemd.collect(Duration::from_millis(800));
        assert!(pings(&msgs).is_empty(), "{env:?}: {msgs:?}");
        assert_eq!(d.http("GET", "/_ping").status, 200, "{env:?}");
        assert!(!d.log_text().contains("systemd watchdog:"), "{env:?}: {}", d.log_text());
    }
}

#[test]
fn a_stopped_daemon_sends_nothing_and_resumes_after_sigcont() {
    let (d, systemd) = start(&[("WATCHDOG_USEC", WATCHDOG_USEC)]);
    assert!(pings(&systemd.collect(Duration::from_millis(400))).len() >= 2);
    d.signal(libc::SIGSTOP);
    // What was sent before the stop took effect.
    let _ = systemd.collect(Duration::from_millis(50));
    let during = systemd.collect(Duration::from_millis(700));
    let continued = Instant::now();
    d.signal(libc::SIGCONT);
    assert!(pings(&during).is_empty(), "pings while stopped: {during:?}");
    let (at, _) = systemd.wait_for("WATCHDOG=1", Duration::from_secs(5));
    assert!(at - continued < INTERVAL, "first ping {:?} after SIGCONT", at - continued);
    assert!(pings(&systemd.collect(Duration::from_millis(500))).len() >= 3);
}

#[test]
fn an_unreadable_store_stops_pings_until_it_is_readable_again() {
    let (d, systemd) = start(&[("WATCHDOG_USEC", WATCHDOG_USEC)]);
    assert!(!pings(&systemd.collect(Duration::from_millis(300))).is_empty());
    let meta = d.root.join("metadata.json");
    let saved = std::fs::read(&meta).ok();
    let tmp = d.root.join("metadata.json.garbage");
    std::fs::write(&tmp, b"{ not json").unwrap();
    std::fs::rename(&tmp, &meta).unwrap();
    // A check in flight may still pass; after one interval none may.
    let first = systemd.collect(INTERVAL);
    let msgs = systemd.collect(Duration::from_millis(800));
    assert!(pings(&msgs).is_empty(), "pings with a corrupt store: {msgs:?}");
    let status = first.iter().chain(&msgs).find(|(_, m)| m.starts_with("STATUS=Unhealthy"));
    assert!(status.is_some_and(|(_, m)| m.contains("image store")), "{first:?} {msgs:?}");
    assert!(d.log_text().contains("health check failed, not feeding the systemd watchdog"), "{}", d.log_text());
    match saved {
        Some(bytes) => std::fs::write(&meta, bytes).unwrap(),
        None => std::fs::remove_file(&meta).unwrap(),
    }
    let (_, seen) = systemd.wait_for("STATUS=Processing requests", Duration::from_secs(5));
    assert!(seen.iter().any(|m| m == "WATCHDOG=1"), "{seen:?}");
    assert!(d.log_text().contains("health check passes again"), "{}", d.log_text());
}

/// A notify socket nobody reads fills up (10 datagrams by default); a send to it would block. Neither the
/// pings nor the stop may hang on it.
#[test]
fn a_notify_socket_nobody_reads_cannot_hang_the_daemon() {
    let (mut d, _systemd) = start(&[("WATCHDOG_USEC", WATCHDOG_USEC)]);
    // ~15 pings due: the queue is full after 10.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.http("GET", "/_ping").status, 200, "{}", d.log_text());
    let started = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", d.log_text());
    // STOPPING=1 waits for room at most 2 s, then the stop goes on.
    assert!(started.elapsed() < Duration::from_secs(8), "stop took {:?}", started.elapsed());
}

/// The test plays systemd: when WATCHDOG=1 is missing for WatchdogSec, it sends WatchdogSignal=SIGTERM. The
/// daemon (unhealthy: clients can no longer reach its socket) stops gracefully: STOPPING=1, exit 0, and no
/// WATCHDOG=1 after STOPPING=1.
#[test]
fn a_missed_deadline_gets_sigterm_and_a_graceful_stop() {
    let (mut d, systemd) = start(&[("WATCHDOG_USEC", WATCHDOG_USEC)]);
    let (mut last, _) = systemd.wait_for("WATCHDOG=1", Duration::from_secs(5));
    std::fs::remove_file(&d.sock).unwrap();
    let mut statuses = Vec::new();
    let fired = loop {
        let deadline = last + INTERVAL;
        match systemd.recv(deadline.saturating_duration_since(Instant::now())) {
            Some((at, m)) if m.lines().any(|l| l == "WATCHDOG=1") => last = at,
            Some((_, m)) => statuses.push(m),
            None => break Instant::now(),
        }
        assert!(Instant::now() - last < Duration::from_secs(5), "pings kept coming without a socket");
    };
    d.signal(libc::SIGTERM);
    let (_, seen) = systemd.wait_for("STOPPING=1", Duration::from_secs(10));
    let after = systemd.collect(Duration::from_millis(500));
    assert!(pings(&after).is_empty(), "WATCHDOG=1 after STOPPING=1: {after:?}");
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", d.log_text());
    assert!(fired - last >= INTERVAL);
    assert!(statuses.iter().chain(&seen).any(|m| m.contains("STATUS=Unhealthy: GET /_ping")), "{statuses:?} {seen:?}");
    assert!(d.log_text().contains("Daemon shutdown complete"), "{}", d.log_text());
    // The socket was already gone; nothing else is left behind.
    assert!(!d.pidfile.exists());
}
