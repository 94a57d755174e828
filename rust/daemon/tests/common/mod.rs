//! Shared helpers of the daemon's integration tests: the real `balena-engined` on a temporary socket and
//! data root, driven by the real `docker` CLI and by a tiny HTTP/1.1 client over the unix socket; and small
//! docker-archive images built here.
#![allow(dead_code)]

pub mod archive;
pub mod http;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_balena-engined");

/// The docker client: $DOCKER_CLI, or `docker` on PATH, or the usual places. Fails the test with what to do
/// when the machine has none.
pub fn docker_cli() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("DOCKER_CLI") {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|d| d.join("docker"))
                .chain(["/usr/local/bin/docker", "/usr/bin/docker"].map(PathBuf::from))
                .collect()
        }
    };
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "no docker client found (looked for $DOCKER_CLI, `docker` on PATH, /usr/local/bin/docker, /usr/bin/docker).\n\
         These tests drive the daemon with the real docker CLI: install one (Debian: `apt-get install -y docker.io`, \
         which provides /usr/bin/docker) and add that install to scripts/setup.sh."
    );
}

pub struct Daemon {
    pub dir: TempDir,
    pub sock: PathBuf,
    pub root: PathBuf,
    pub pidfile: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// A daemon on a fresh socket and data root, ready to answer.
    pub fn start() -> Daemon {
        Daemon::start_with(|_| {})
    }

    /// As `start`, with a chance to adjust the command (extra flags, environment).
    pub fn start_with(adjust: impl FnOnce(&mut Command)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        Daemon::start_in(dir, root, adjust)
    }

    pub fn start_in(dir: TempDir, root: PathBuf, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let mut d = Daemon::spawn_in(dir, root, adjust);
        d.wait_ready();
        d
    }

    /// Spawns without waiting (for tests of failing starts).
    pub fn spawn_in(dir: TempDir, root: PathBuf, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let sock = dir.path().join("engine.sock");
        let pidfile = dir.path().join("engine.pid");
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(BIN);
        cmd.arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(&root)
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(&pidfile)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawning balena-engined");
        Daemon { dir, sock, root, pidfile, log, child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the socket until `/_ping` answers; fails with the daemon's log if it never does.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("daemon exited early ({status}):\n{}", self.log_text());
            }
            if UnixStream::connect(&self.sock).is_ok()
                && http::request(&self.sock, "GET", "/_ping", &[], b"").status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not answer on {} within 20 s:\n{}", self.sock.display(), self.log_text());
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// The docker CLI aimed at this daemon, with a private config dir (no contexts, no credentials).
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(docker_cli());
        c.arg("-H").arg(self.host()).args(args);
        c.env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args).output().expect("running docker")
    }

    /// Runs the docker CLI and returns its stdout; fails the test with both outputs when it fails.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the docker CLI, killed after `timeout` (a hung pull fails the test instead of hanging it).
    pub fn docker_within(&self, args: &[&str], timeout: Duration) -> Output {
        testkit::registry::run(&mut self.docker_cmd(args), None, timeout)
    }

    /// Runs the docker CLI expecting failure; returns its stderr.
    pub fn docker_err(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(!out.status.success(), "docker {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn http(&self, method: &str, path: &str) -> http::Response {
        http::request(&self.sock, method, path, &[], b"")
    }

    pub fn http_body(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
        http::request(&self.sock, method, path, headers, body)
    }

    /// Writes `data` to a file in the test's directory and returns its path.
    pub fn scratch(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn load(&self, archive: &[u8]) -> String {
        let p = self.scratch("load.tar", archive);
        self.docker_ok(&["load", "-i", p.to_str().unwrap()])
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    /// Waits for the daemon to exit (fails the test after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("daemon running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(Instant::now() < deadline, "daemon did not exit within {timeout:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(15))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a whole file (for archives written by `docker save -o`).
pub fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path).unwrap().read_to_end(&mut v).unwrap();
    v
}

/// JSON lines (`--format '{{json .}}'`, event streams, message streams).
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
