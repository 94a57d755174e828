//! Shared helpers of the healthcheck's tests: the real `balena-engined` on a temporary socket, the
//! healthcheck binary run as a child whose `/proc/PID/io` is read before it is reaped, small fake servers,
//! and percentiles.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const HC: &str = env!("CARGO_BIN_EXE_balena-engine-healthcheck");

/// The daemon binary: `$BALENA_ENGINED`, else `balena-engined` in the same target directory as this test
/// (built by `cargo test -p balena-engine-healthcheck -p balena-engined`, or `cargo test --workspace`).
pub fn engined() -> PathBuf {
    if let Some(p) = std::env::var_os("BALENA_ENGINED") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/balena-engined
    let p = exe.parent().and_then(Path::parent).unwrap().join("balena-engined");
    assert!(
        p.is_file(),
        "{} not found: these tests run the real daemon. Build it in the same profile \
         (`cargo test -p balena-engine-healthcheck -p balena-engined` does) or set BALENA_ENGINED",
        p.display()
    );
    p
}

/// A temporary directory on tmpfs (`/dev/shm`), where the engine's socket and pidfile go: on a device they
/// live in `/run`, a tmpfs. (On a disk file system the kernel's atime update on `connect(2)` to a socket
/// and on the first read of a freshly written file dirties an inode block, which `/proc/PID/io` charges
/// to the reader as `write_bytes`.)
pub fn runtime_dir() -> TempDir {
    let dir = tempfile::Builder::new().prefix("hc-test").tempdir_in("/dev/shm").expect("a temporary directory in /dev/shm");
    assert!(on_tmpfs(dir.path()), "/dev/shm is not a tmpfs here");
    dir
}

// `f_type` and `TMPFS_MAGIC` have different integer types on different architectures.
#[allow(clippy::unnecessary_cast)]
pub fn on_tmpfs(path: &Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statfs into a zeroed struct, path NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == libc::TMPFS_MAGIC as i64
    }
}

/// The real daemon on a temporary data root, with its socket and pidfile on tmpfs as on a device; stopped
/// with SIGTERM when dropped.
pub struct Engine {
    pub dir: TempDir,
    pub run: TempDir,
    pub sock: PathBuf,
    pub pidfile: PathBuf,
    pub child: Child,
}

impl Engine {
    pub fn start() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let run = runtime_dir();
        let sock = run.path().join("engine.sock");
        let pidfile = run.path().join("engine.pid");
        let child = Command::new(engined())
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(&pidfile)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
            .spawn()
            .expect("spawning balena-engined");
        let mut e = Engine { dir, run, sock, pidfile, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = e.child.try_wait().unwrap() {
                panic!("daemon exited early ({s}): {}", e.log());
            }
            if e.pidfile.exists() && healthcheck::http::ping(&e.sock, Instant::now() + Duration::from_secs(2)).is_ok() {
                return e;
            }
            assert!(Instant::now() < deadline, "daemon not ready within 20 s: {}", e.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The healthcheck's arguments for this daemon.
    pub fn args(&self) -> Vec<String> {
        vec!["-H".into(), format!("unix://{}", self.sock.display()), "--pidfile".into(), self.pidfile.display().to_string()]
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/proc/PID/io` of a process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Io {
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
}

pub fn parse_io(text: &str) -> Io {
    let mut io = Io::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v: u64 = v.trim().parse().unwrap();
        match k {
            "rchar" => io.rchar = v,
            "wchar" => io.wchar = v,
            "syscr" => io.syscr = v,
            "syscw" => io.syscw = v,
            "read_bytes" => io.read_bytes = v,
            "write_bytes" => io.write_bytes = v,
            "cancelled_write_bytes" => io.cancelled_write_bytes = v,
            _ => {}
        }
    }
    io
}

pub struct Outcome {
    pub status: ExitStatus,
    pub stderr: String,
    pub stdout: String,
    /// Spawn to exit, as a caller (systemd, a supervisor) sees it.
    pub elapsed: Duration,
    /// The child's I/O accounting, read after it exited and before it was reaped.
    pub io: Io,
}

/// Runs the healthcheck with `args`; stdout and stderr are pipes (never files: nothing of the run may
/// reach storage).
pub fn run(args: &[String]) -> Outcome {
    let started = Instant::now();
    let mut child = Command::new(HC).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    // EOF on both pipes means the child closed them, i.e. exited (it spawns nothing).
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let pid = child.id();
    // Wait for the exit without reaping, so /proc/PID/io still exists and is final.
    // SAFETY: waitid on our own child with a zeroed siginfo_t buffer.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
    };
    assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
    let elapsed = started.elapsed();
    let io = parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).expect("reading /proc/PID/io of the exited child"));
    let status = child.wait().unwrap();
    Outcome { status, stderr, stdout, elapsed, io }
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The value below which `p` percent of `samples` fall (nearest rank).
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A unix socket server in a thread: for each connection, reads the request head, then lets `respond`
/// write whatever it likes. Returns the socket path (inside `dir`).
pub fn fake_server(dir: &Path, respond: impl Fn(&mut UnixStream) + Send + 'static) -> PathBuf {
    let path = dir.join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).map(|n| n == 1).unwrap_or(false) {
                head.push(b[0]);
            }
            respond(&mut s);
            let _ = s.flush();
        }
    });
    path
}
