//! What the healthcheck accepts and refuses: the real daemon healthy, stopped, gone or unreachable; fake
//! servers answering wrongly or not at all; processes that are zombies, stopped or something else.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fake_server, run, strings, Engine, Outcome};

fn assert_healthy(o: &Outcome) {
    assert!(o.status.success(), "unhealthy ({}): {}", o.status, o.stderr);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", ""), "a healthy run prints nothing");
}

/// Exit 1 and exactly one line on stderr containing `needle`.
fn assert_unhealthy(o: &Outcome, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}: {}", o.status, o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "one line expected: {:?}", o.stderr);
    assert!(o.stderr.ends_with('\n'));
    assert!(o.stderr.starts_with("balena-engine-healthcheck: unhealthy: "), "{}", o.stderr);
    assert!(o.stderr.contains(needle), "{needle:?} not in {:?}", o.stderr);
    assert_eq!(o.stdout, "");
}

/// The fake-server runs skip the process check.
fn fake_args(sock: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut a = strings(&["-H", sock.to_str().unwrap(), "--pidfile", ""]);
    a.extend(strings(extra));
    a
}

#[test]
fn the_real_daemon_is_healthy_and_then_not() {
    let e = Engine::start();
    assert_healthy(&run(&e.args()));
    // Stopped (SIGSTOP): refused at once from procfs, without waiting for the ping's timeout.
    let pid = e.child.id() as i32;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let o = run(&e.args());
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_unhealthy(&o, &format!("process {pid} is stopped (state T)"));
    assert!(o.elapsed < Duration::from_secs(1), "took {:?}", o.elapsed);
    assert_healthy(&run(&e.args()));
    // Its socket file gone: clients cannot reach it any more.
    std::fs::remove_file(&e.sock).unwrap();
    assert_unhealthy(&run(&e.args()), "cannot connect");
}

#[test]
fn a_dead_daemon_with_its_pidfile_left_is_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    let pidfile = dir.path().join("pid");
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let sock = fake_server(dir.path(), |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK");
    });
    let args = strings(&["-H", sock.to_str().unwrap(), "--pidfile", pidfile.to_str().unwrap()]);
    assert_unhealthy(&run(&args), &format!("process {pid} does not exist"));
    // A PID now used by something else is not the engine.
    let me = std::process::id().to_string();
    assert_unhealthy(&run(&strings(&["-H", sock.to_str().unwrap(), "--pid", &me])), "not balena-engined");
    // No pidfile at all.
    let missing = dir.path().join("missing.pid");
    assert_unhealthy(&run(&strings(&["-H", sock.to_str().unwrap(), "-p", missing.to_str().unwrap()])), "missing.pid: No such file");
    std::fs::write(&pidfile, "garbage").unwrap();
    assert_unhealthy(&run(&strings(&["-H", sock.to_str().unwrap(), "-p", pidfile.to_str().unwrap()])), "not a PID");
}

#[test]
fn zombies_and_stopped_processes_are_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let sock = fake_server(dir.path(), |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK");
    });
    let s = sock.to_str().unwrap();

    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    assert!(run(&strings(&["-H", s, "--pid", &pid, "--comm", "sleep"])).status.success());
    // SAFETY: signals to our own child.
    unsafe { libc::kill(sleeper.id() as i32, libc::SIGSTOP) };
    assert_unhealthy(&run(&strings(&["-H", s, "--pid", &pid, "--comm", "sleep"])), "is stopped (state T)");
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // Exited, not reaped: a zombie.
    let mut z = Command::new("true").stdout(Stdio::null()).spawn().unwrap();
    let zpid = z.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthcheck::process::stat(zpid).map(|s| s.state) .ok() != Some('Z') {
        assert!(Instant::now() < deadline, "no zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = run(&strings(&["-H", s, "--pid", &zpid.to_string(), "--comm", ""]));
    z.wait().unwrap();
    assert_unhealthy(&o, "is a zombie (state Z)");
}

#[test]
fn wrong_answers_are_unhealthy() {
    let cases: [(&[u8], &str); 6] = [
        (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n", "answered status 500"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nNO", "answered \"NO\" instead of \"OK\""),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", "status 404"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "malformed"),
        (b"", "connection closed without an answer"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nOK", "closed before the end of the body"),
    ];
    for (answer, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_server(dir.path(), move |s| {
            let _ = s.write_all(answer);
        });
        assert_unhealthy(&run(&fake_args(&sock, &[])), needle);
    }
}

#[test]
fn right_answers_in_any_framing_are_healthy() {
    let answers: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nOK",
    ];
    for answer in answers {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_server(dir.path(), move |s| {
            let _ = s.write_all(answer);
        });
        assert_healthy(&run(&fake_args(&sock, &[])));
    }
}

#[test]
fn huge_answers_are_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let sock = fake_server(dir.path(), |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
        let line = format!("X-Filler: {}\r\n", "x".repeat(1000));
        for _ in 0..100 {
            if s.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    assert_unhealthy(&run(&fake_args(&sock, &[])), "more than 16384 bytes");
}

#[test]
fn a_silent_server_times_out_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let sock = fake_server(dir.path(), |_| std::thread::sleep(Duration::from_secs(5)));
    let o = run(&fake_args(&sock, &["--timeout", "300ms"]));
    assert_unhealthy(&o, "timed out waiting for the answer");
    assert!(o.elapsed >= Duration::from_millis(300) && o.elapsed < Duration::from_millis(1500), "{:?}", o.elapsed);
}

/// A hung engine stops accepting; once its listen backlog is full, connect(2) blocks. The backstop timer
/// ends the run shortly after the timeout anyway.
#[test]
fn a_full_backlog_cannot_hang_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: plain socket calls on a sockaddr_un we fill within its bounds.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in c_path.as_bytes().iter().enumerate() {
            addr.sun_path[i] = *b as libc::c_char;
        }
        assert_eq!(libc::bind(fd, &addr as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_un>() as u32), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        fd
    };
    // Fill the backlog (a backlog of 0 holds one pending connection) without ever accepting.
    let mut queued = 0;
    while socket_nonblocking_connect(&path) {
        queued += 1;
        assert!(queued < 10, "backlog never filled");
    }
    let o = run(&fake_args(&path, &["--timeout", "300ms"]));
    assert_unhealthy(&o, "stuck connecting to");
    assert!(o.elapsed < Duration::from_secs(2), "{:?}", o.elapsed);
    // SAFETY: closing the listener we opened.
    unsafe { libc::close(fd) };
}

/// Whether a non-blocking connect to `path` would be accepted into the backlog now.
fn socket_nonblocking_connect(path: &std::path::Path) -> bool {
    use std::os::fd::FromRawFd;
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: as above; the descriptor is owned by the UnixStream (closed on drop) when connected.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in c_path.as_bytes().iter().enumerate() {
            addr.sun_path[i] = *b as libc::c_char;
        }
        let rc = libc::connect(fd, &addr as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_un>() as u32);
        if rc == 0 {
            // Keep it queued: leak into a stream that lives as long as the test process.
            std::mem::forget(UnixStream::from_raw_fd(fd));
            true
        } else {
            libc::close(fd);
            false
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let o = run(&strings(&["--bogus"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr.contains("unknown argument"), "{}", o.stderr);
    let o = run(&strings(&["--help"]));
    assert!(o.status.success());
    assert!(o.stdout.contains("Usage: balena-engine-healthcheck"));
}
