//! The daemon as a system service: sockets, locks, systemd activation and notification, signals.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http, Daemon, BIN};

#[test]
fn socket_is_0660_and_pidfile_names_the_daemon() {
    let d = Daemon::start();
    let meta = std::fs::metadata(&d.sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::fs::read_to_string(&d.pidfile).unwrap().trim(), d.pid().to_string());
}

#[test]
fn group_flag_sets_the_sockets_group() {
    let d = Daemon::start_with(|c| {
        c.args(["--group", "12345"]);
    });
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&d.sock).unwrap().gid(), 12345);
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut d = Daemon::start();
    // An events stream stays open until shutdown; it must not hold the daemon up.
    let mut events = UnixStream::connect(&d.sock).unwrap();
    std::io::Write::write_all(&mut events, b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let status = d.stop();
    assert!(status.success(), "exit status {status}:\n{}", d.log_text());
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert!(!d.sock.exists(), "socket left behind");
    assert!(!d.pidfile.exists(), "pidfile left behind");
    let mut rest = Vec::new();
    events.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    events.read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&rest));
    let log = d.log_text();
    assert!(log.contains("Daemon shutdown complete"), "{log}");
}

/// Starts a load whose body stops halfway: the request is in flight until the rest is sent.
fn half_sent_load(d: &Daemon, archive: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    let head = format!("POST /images/load?quiet=1 HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", archive.len());
    std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
    std::io::Write::write_all(&mut s, &archive[..archive.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s
}

#[test]
fn a_load_in_flight_finishes_after_sigterm() {
    let mut d = Daemon::start();
    let img = common::archive::app("app:1", 2);
    let archive = img.archive();
    let mut s = half_sent_load(&d, &archive);
    d.signal(libc::SIGTERM);
    // No new connections once stopping ...
    let deadline = Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(&d.sock).is_ok() {
        assert!(Instant::now() < deadline, "still accepting 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... but the request in flight completes.
    std::io::Write::write_all(&mut s, &archive[archive.len() / 2..]).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = http::parse(&raw, false);
    assert!(r.text().contains("Loaded image: app:1"), "{}", r.text());
    assert!(d.wait_exit(Duration::from_secs(15)).success());
    // It was committed: a new daemon on the same data root has it.
    let dir = tempfile::tempdir().unwrap();
    let e = Daemon::start_in(dir, d.root.clone(), |_| {});
    assert_eq!(e.http("GET", "/images/app:1/json").json()["Id"], img.id());
}

#[test]
fn a_stalled_request_holds_shutdown_for_the_grace_period_only() {
    let mut d = Daemon::start();
    let archive = common::archive::app("app:1", 2).archive();
    let _stalled = half_sent_load(&d, &archive);
    let started = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(30));
    let took = started.elapsed();
    assert!(status.success(), "{status}: {}", d.log_text());
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(20), "shutdown took {took:?}");
    assert!(!d.sock.exists());
    assert!(d.log_text().contains("requests still in flight"), "{}", d.log_text());
    // Nothing of the abandoned load stays in the store.
    let dir = tempfile::tempdir().unwrap();
    let e = Daemon::start_in(dir, d.root.clone(), |_| {});
    assert_eq!(e.http("GET", "/images/json").json(), serde_json::json!([]));
}

#[test]
fn sigint_also_stops_it() {
    let mut d = Daemon::start();
    d.signal(libc::SIGINT);
    assert!(d.wait_exit(Duration::from_secs(15)).success());
    assert!(!d.sock.exists());
}

#[test]
fn a_second_daemon_on_the_same_data_root_is_refused() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let mut second = Daemon::spawn_in(dir, d.root.clone(), |_| {});
    let status = second.wait_exit(Duration::from_secs(15));
    assert!(!status.success());
    let log = second.log_text();
    assert!(log.contains("in use"), "{log}");
    assert!(!second.sock.exists(), "the refused daemon created its socket");
    // The first one is untouched.
    assert_eq!(d.http("GET", "/_ping").status, 200);
}

#[test]
fn a_live_socket_is_not_taken_over_but_a_stale_one_is() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("other-root");
    let sock = d.sock.clone();
    let mut second = Daemon::spawn_in(dir, root, |c| {
        c.arg("-H").arg(format!("unix://{}", sock.display()));
    });
    assert!(!second.wait_exit(Duration::from_secs(15)).success());
    assert!(second.log_text().contains("another daemon is listening"), "{}", second.log_text());
    assert!(!second.sock.exists(), "the refused daemon left its own socket behind");
    assert_eq!(d.http("GET", "/_ping").status, 200);

    // A socket file nobody listens on (a crash) is replaced.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("engine.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let root = dir.path().join("root");
    let fresh = Daemon::start_in(dir, root, |_| {});
    assert_eq!(fresh.http("GET", "/_ping").status, 200);
}

#[test]
fn readiness_and_stopping_are_notified_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let root = dir.path().join("root");
    let mut d = Daemon::spawn_in(dir, root, |c| {
        c.env("NOTIFY_SOCKET", &notify_path);
    });
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("no READY=1 from the daemon");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // Ready means serving: the very next request is answered.
    assert_eq!(http::request(&d.sock, "GET", "/_ping", &[], b"").status, 200);
    d.signal(libc::SIGTERM);
    let n = notify.recv(&mut buf).expect("no STOPPING=1 from the daemon");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1"));
    assert!(d.wait_exit(Duration::from_secs(15)).success());
}

/// Runs the daemon as systemd would with socket activation: the listening socket is fd 3, LISTEN_FDS=1 and
/// LISTEN_PID is the daemon's PID (set by a shell that then execs the daemon, keeping its PID).
fn activated(listener: &UnixListener, set_pid: bool, args: &[&str]) -> Command {
    let fd = listener.as_raw_fd();
    let script = if set_pid {
        r#"export LISTEN_FDS=1 LISTEN_PID=$$; exec "$0" "$@""#
    } else {
        r#"export LISTEN_FDS=1; exec "$0" "$@""#
    };
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(script).arg(BIN).args(args);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

#[test]
fn socket_activation_serves_the_passed_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let root = dir.path().join("root");
    let pidfile = dir.path().join("pid");
    let args = ["-H", "fd://", "--data-root", root.to_str().unwrap(), "--pidfile", pidfile.to_str().unwrap()];
    let log = dir.path().join("log");
    let mut child = activated(&listener, true, &args)
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "no pidfile: {}", std::fs::read_to_string(&log).unwrap_or_default());
        assert!(child.try_wait().unwrap().is_none(), "daemon exited: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = http::request(&sock, "GET", "/v1.45/version", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    // The socket belongs to systemd: it stays.
    assert!(sock.exists(), "activated socket was removed");
}

#[test]
fn socket_activation_ignores_fds_not_meant_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let root = dir.path().join("root");
    let pidfile = dir.path().join("pid");
    let args = ["-H", "fd://", "--data-root", root.to_str().unwrap(), "--pidfile", pidfile.to_str().unwrap()];
    let out = activated(&listener, false, &args).arg("--exec-root").arg(dir.path().join("exec")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("systemd passed no socket"), "{err}");
}

#[test]
fn tcp_is_served_only_when_asked_for_and_with_a_warning() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let d = Daemon::start_with(|c| {
        c.arg("-H").arg(format!("tcp://127.0.0.1:{port}"));
    });
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(http::parse(&raw, false).text(), "OK");
    assert!(d.log_text().contains("without TLS or authentication"), "{}", d.log_text());
    // The unix socket is served too.
    assert_eq!(d.http("GET", "/_ping").status, 200);
}

#[test]
fn bad_flags_fail_clearly() {
    for (args, needle) in [
        (vec!["-H", "http://x:1"], "invalid -H"),
        (vec!["-H", "unix://relative.sock"], "must be absolute"),
        (vec!["--group", "no-such-group-here"], "no such group"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let out = Command::new(BIN)
            .args(&args)
            .arg("--data-root")
            .arg(&root)
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
