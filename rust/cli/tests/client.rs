//! The CLI as a client of the real daemon: `balena-engined` on a temporary socket and data root (the binary
//! beside the CLI's, built once with `$CARGO build -p balena-engined` when missing), driven through
//! `balena-engine -H unix://SOCK`. Image commands, deltas, version/info, the unreachable-daemon message, the
//! direct mode (`--data-root`), and containers and volumes (those need root for the runtime: without it
//! they print why and pass).
//!
//! No fixed sleeps for synchronisation: state changes are polled against generous deadlines.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::busybox;

const IMG: &str = "busybox:test";
/// Deadline for state changes that take milliseconds on an idle machine.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------------------

/// `balena-engined` beside the CLI binary; built once (`$CARGO build -p balena-engined`) when missing.
fn daemon_bin() -> &'static Path {
    static BIN_PATH: OnceLock<PathBuf> = OnceLock::new();
    BIN_PATH.get_or_init(|| {
        let dir = Path::new(BIN).parent().expect("the CLI binary has a directory");
        let path = dir.join("balena-engined");
        if path.is_file() {
            return path;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "balena-engined"]).current_dir(&workspace);
        // Into the same target directory: target/<profile>/ or target/<triple>/<profile>/.
        let up = dir.parent().expect("target/<profile>");
        if up.join("CACHEDIR.TAG").exists() {
            cmd.arg("--target-dir").arg(up);
        } else if let Some(root) = up.parent().filter(|r| r.join("CACHEDIR.TAG").exists()) {
            cmd.arg("--target-dir").arg(root).arg("--target").arg(up.file_name().unwrap());
        }
        // The same profile as the CLI binary: target/<profile>/balena-engine.
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let out = cmd.output().expect("running cargo build -p balena-engined");
        assert!(out.status.success(), "cargo build -p balena-engined failed:\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(path.is_file(), "cargo build -p balena-engined did not produce {}", path.display());
        path
    })
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(4000)]),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The CLI with no daemon address from the environment.
fn cli() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("BALENA_ENGINE_HOST").env_remove("DOCKER_HOST").stdin(Stdio::null());
    c
}

struct Daemon {
    dir: TempDir,
    sock: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon on a fresh socket and data root, answering.
    fn start() -> Daemon {
        let dir = tempfile::Builder::new().prefix("be-client-").tempdir().unwrap();
        let sock = dir.path().join("engine.sock");
        let log = dir.path().join("daemon.log");
        let child = Command::new(daemon_bin())
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("engine.pid"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning balena-engined");
        let mut d = Daemon { dir, sock, log, child: Some(child) };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("daemon exited early ({status}):\n{}", d.log_text());
            }
            if UnixStream::connect(&d.sock).is_ok() && d.run(&["version"]).status.success() {
                return d;
            }
            assert!(Instant::now() < end, "daemon did not answer within {DEADLINE:?}:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = cli();
        c.arg("-H").arg(self.host()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs the CLI and returns its stdout; fails the test with both outputs and the daemon's log.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed:\n{}\ndaemon log:\n{}", show(&out), self.log_text());
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI expecting failure with `code`; returns its stderr.
    fn err(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}:\n{}", show(&out));
        String::from_utf8(out.stderr).unwrap()
    }

    fn scratch(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn load(&self, archive: &[u8]) -> String {
        let p = self.scratch("load.tar", archive);
        self.ok(&["image", "load", "-i", p.to_str().unwrap()])
    }

    /// (full ID, repository, tag) of every listed image, sorted.
    fn images(&self) -> Vec<(String, String, String)> {
        let mut rows: Vec<(String, String, String)> = self
            .ok(&["images", "--format", "json", "--no-trunc"])
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_owned();
                (s("ID"), s("Repository"), s("Tag"))
            })
            .collect();
        rows.sort();
        rows
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// Polls `f` until it returns `Some`, failing with `what` and the daemon's log after the deadline.
    fn poll<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}\ndaemon log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------------------

/// `good:1` with its top layer changed: the target of the delta tests (its bottom layer is good:1's).
fn target_image() -> ImageSpec {
    let mut top = TarBuf::new();
    top.dir("etc/").file("etc/motd", b"welcome to version two\n").dir("var/").dir("var/lib/").file("var/lib/new", &noise(9, 5000));
    let mut s = ImageSpec::new("app:2", vec![base_layer(1), top.finish()]);
    s.created = "2024-06-01T12:00:00Z".into();
    s
}

#[test]
fn image_commands_through_the_daemon() {
    let d = Daemon::start();
    let good = good_image();
    assert_eq!(d.load(&good.docker()), "Loaded image: good:1\n");
    // From stdin too (the body streams from the pipe).
    let out = d.run_stdin(&["load"], &target_image().oci(true));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: app:2\n");
    let mut want = vec![(target_image().id(), "app".to_owned(), "2".to_owned()), (good.id(), "good".into(), "1".into())];
    want.sort();
    assert_eq!(d.images(), want);

    // The table, docker's columns.
    let table = d.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{table}");
    }
    let short = &good.id()["sha256:".len()..][..12];
    assert!(table.lines().any(|l| l.starts_with("good ") && l.contains(short) && l.contains(" ago ")), "{table}");
    assert_eq!(d.ok(&["image", "ls", "-q"]).lines().count(), 2);
    assert_eq!(d.ok(&["images", "--filter", "reference=good"]).lines().count(), 2, "header and good:1");
    assert_eq!(d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "-f", "reference=app"]), "app:2\n");

    // inspect: docker's JSON, from the daemon.
    let doc = d.inspect("good:1");
    assert_eq!(doc["Id"], good.id());
    assert_eq!(doc["RepoTags"], json!(["good:1"]));
    assert_eq!(doc["RootFS"]["Layers"], json!(good.diff_ids()));
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "good:1"]), format!("{}\n", good.id()));

    // tag, including a registry with a port.
    d.ok(&["tag", "good:1", "good:stable"]);
    d.ok(&["image", "tag", "good:1", "localhost:5000/team/good"]);
    let tags = d.inspect("good:1")["RepoTags"].clone();
    for t in ["good:1", "good:stable", "localhost:5000/team/good:latest"] {
        assert!(tags.as_array().unwrap().contains(&json!(t)), "{tags}");
    }
    // By ID, an image with several tags needs -f: the daemon's 409.
    let err = d.err(&["rmi", &good.id()], 1);
    assert!(err.starts_with("Error response from daemon: ") && err.contains("must be forced"), "{err}");

    // save: to a file and to stdout; the same archive both ways.
    let file = d.dir.path().join("good.tar");
    assert_eq!(d.ok(&["image", "save", "-o", file.to_str().unwrap(), "good:1"]), "");
    let saved = std::fs::read(&file).unwrap();
    let out = d.cmd(&["save", "good:1"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(out.stdout == saved, "save to stdout and to a file differ");
    let names: Vec<String> = std::fs::read_dir(d.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".partial-")), "a temporary file was left: {names:?}");
    // ... which another daemon loads with the same ID, and saves byte for byte the same.
    let other = Daemon::start();
    assert_eq!(other.load(&saved), "Loaded image: good:1\n");
    assert_eq!(other.images(), vec![(good.id(), "good".into(), "1".into())]);
    let again = other.cmd(&["save", "good:1"]).output().unwrap();
    assert!(again.stdout == saved, "the round trip changed the archive");

    // rmi: docker's lines; a missing image is reported and fails the command, the others are still removed.
    assert_eq!(d.ok(&["rmi", "good:stable"]), "Untagged: good:stable\n");
    let out = d.run(&["image", "rm", "nope:1", "localhost:5000/team/good"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error response from daemon: No such image: nope:1\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Untagged: localhost:5000/team/good:latest\n");
    assert_eq!(d.ok(&["rmi", "good:1"]), format!("Untagged: good:1\nDeleted: {}\n", good.id()));

    // Bad input: the daemon's message, exit 1, nothing loaded.
    let err = d.err(&["load", "-i", d.scratch("bad.tar", b"not a tar at all").to_str().unwrap()], 1);
    assert!(err.starts_with("Error") && err.lines().count() == 1, "{err}");
    assert_eq!(d.images().len(), 1);
    let err = d.err(&["image", "inspect", "nope"], 1);
    assert!(err.contains("No such image: nope"), "{err}");
    let err = d.err(&["save", "-o", d.dir.path().join("x.tar").to_str().unwrap(), "nope"], 1);
    assert!(err.contains("No such image: nope"), "{err}");
    assert!(!d.dir.path().join("x.tar").exists());
}

#[test]
fn delta_through_the_daemon_loads_on_a_device_with_the_base() {
    let server = Daemon::start();
    let (base, target) = (good_image(), target_image());
    server.load(&base.docker());
    server.load(&target.docker());
    let out = server.ok(&["image", "delta", "good:1", "app:2", "--tag", "app:delta"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("Normal size: ") && lines[0].ends_with("x improvement"), "{out}");
    assert!(lines[1].starts_with("Created delta: sha256:"), "{out}");
    assert_eq!(lines[2], "Successfully tagged app:delta");
    let delta_archive = server.cmd(&["save", "app:delta"]).output().unwrap().stdout;
    assert!(!delta_archive.is_empty());

    // The device has only the base; loading the delta rebuilds the target exactly.
    let device = Daemon::start();
    device.load(&base.docker());
    let out = device.load(&delta_archive);
    assert!(out.contains(&format!("Applied delta: rebuilt {} from base {}", target.id(), base.id())), "{out}");
    assert!(out.contains("Loaded image: app:2"), "{out}");
    let ids: Vec<String> = device.images().into_iter().map(|(id, _, _)| id).collect();
    assert!(ids.contains(&target.id()), "{ids:?}");
    let a = server.cmd(&["save", "app:2"]).output().unwrap().stdout;
    let b = device.cmd(&["save", "app:2"]).output().unwrap().stdout;
    assert!(a == b, "the rebuilt target does not save byte for byte as on the server");

    // A device without the base: the error names it.
    let bare = Daemon::start();
    let p = bare.scratch("delta.tar", &delta_archive);
    let err = bare.err(&["load", "-i", p.to_str().unwrap()], 1);
    assert!(err.contains(&base.id()["sha256:".len()..][..12]) || err.contains(&base.id()), "{err}");
    assert!(bare.images().is_empty());

    // Deltas of unknown images: the daemon's 404.
    let err = server.err(&["image", "delta", "nope:1", "app:2"], 1);
    assert!(err.contains("No such image: nope:1"), "{err}");
}

#[test]
fn version_info_and_system_df() {
    let d = Daemon::start();
    d.load(&good_image().docker());
    let v = d.ok(&["version"]);
    assert!(v.starts_with("Client:\n Version:           0.1.0\n API version:       1.45\n"), "{v}");
    assert!(v.contains("\nServer: balenaEngine (Rust)\n Engine:\n  Version:          "), "{v}");
    assert!(v.contains("  API version:      1.45 (minimum version 1.24)\n"), "{v}");
    let j: Value = serde_json::from_str(&d.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!((j["Client"]["ApiVersion"].as_str(), j["Server"]["ApiVersion"].as_str()), (Some("1.45"), Some("1.45")));
    assert_eq!(d.ok(&["version", "-f", "{{.Server.Os}}"]), "linux\n");

    let info = d.ok(&["info"]);
    for line in ["\nServer:\n", " Containers: 0\n", " Images: 1\n", " Storage Driver: overlay\n", " OSType: linux\n"] {
        assert!(info.contains(line), "{line:?} missing from:\n{info}");
    }
    assert!(info.contains(&format!(" Docker Root Dir: {}\n", d.dir.path().join("root").display())), "{info}");
    assert_eq!(d.ok(&["system", "info", "--format", "{{.Images}}"]), "1\n");

    let df = d.ok(&["system", "df"]);
    let rows: Vec<Vec<&str>> = df.lines().map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect()).collect();
    assert_eq!(rows[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], "{df}");
    assert_eq!(&rows[1][..3], ["Images", "1", "0"], "{df}");
    assert!(rows[1][4].ends_with("(100%)"), "{df}");
    assert_eq!(rows.len(), 5, "{df}");
    let j = json_lines(&d.ok(&["system", "df", "--format", "json"]));
    assert_eq!((j[0]["Type"].as_str(), j[0]["TotalCount"].as_str()), (Some("Images"), Some("1")));
}

#[test]
fn events_through_the_daemon() {
    let d = Daemon::start();
    d.load(&good_image().docker());
    d.ok(&["tag", "good:1", "good:2"]);
    d.ok(&["rmi", "good:2"]);
    let out = d.ok(&["events", "--since", "1h", "--until", "0s", "--filter", "type=image"]);
    let actions: Vec<&str> = out.lines().map(|l| l.split(' ').nth(2).unwrap_or("")).collect();
    assert_eq!(actions, ["load", "tag", "tag", "untag"], "{out}");
    let first = out.lines().next().unwrap();
    assert!(first.contains(" image load sha256:") && first.ends_with(&format!("(name={})", good_image().id())), "{out}");
    let j = json_lines(&d.ok(&["system", "events", "--since", "1h", "--until", "0s", "--filter", "event=untag", "--format", "json"]));
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["Actor"]["Attributes"]["name"], "good:2");
    let t = d.ok(&["events", "--since", "1h", "--until", "0s", "--filter", "event=tag", "--format", "{{.Type}} {{.Action}}"]);
    assert_eq!(t, "image tag\nimage tag\n");
    // Live: an event made while listening arrives (the stream ends at --until).
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3;
    let mut child = d.cmd(&["events", "--until", &until.to_string(), "--filter", "event=tag"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    d.ok(&["tag", "good:1", "good:live"]);
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(out.contains("image tag") && out.contains("name=good:live"), "{out}");
    let err = d.err(&["events", "--since", "yesterday"], 1);
    assert!(err.contains("invalid timestamp or duration"), "{err}");
}

#[test]
fn unreachable_daemon_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nobody.sock");
    let host = format!("unix://{}", sock.display());
    let expected = format!(
        "Cannot connect to the balena engine at {host}. Is the daemon running? (use --data-root DIR to work on a data root directly)\n"
    );
    for args in [&["images"][..], &["ps"], &["volume", "ls"], &["info"], &["image", "load", "-i", "/dev/null"]] {
        let out = cli().arg("-H").arg(&host).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{args:?}");
        assert!(out.stdout.is_empty());
    }
    // `run` fails as docker's does (125); `version` still shows the client.
    let out = cli().arg("-H").arg(&host).args(["run", "busybox"]).output().unwrap();
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()), (Some(125), expected.clone()));
    let out = cli().arg("-H").arg(&host).arg("version").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Client:\n Version:"), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    // A stale socket file (nothing listening) reads the same.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let out = cli().arg("-H").arg(&host).arg("ps").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);

    // Where the address comes from: -H, then $BALENA_ENGINE_HOST, then $DOCKER_HOST, then the default.
    let env_host = |vars: &[(&str, &str)], args: &[&str]| {
        let mut c = cli();
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.args(args).arg("images").output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(env_host(&[("BALENA_ENGINE_HOST", "unix:///nope/a.sock"), ("DOCKER_HOST", "unix:///nope/b.sock")], &[]).contains("at unix:///nope/a.sock."));
    assert!(env_host(&[("DOCKER_HOST", "unix:///nope/b.sock")], &[]).contains("at unix:///nope/b.sock."));
    assert!(env_host(&[("BALENA_ENGINE_HOST", "unix:///nope/a.sock")], &["-H", "unix:///nope/c.sock"]).contains("at unix:///nope/c.sock."));
    let default = env_host(&[], &[]);
    assert!(
        default.contains("at unix:///var/run/balena-engine.sock.") || default.starts_with("Error response from daemon") || default.is_empty(),
        "{default}"
    );
    let err = env_host(&[], &["-H", "ssh://box"]);
    assert!(err.starts_with("Error: invalid host \"ssh://box\""), "{err}");
}

/// A stand-in daemon that answers `/_ping` with `API-Version: {version}` and records the request lines it
/// gets: the client must use the lower of that version and its own (1.45) on every path.
fn fake_daemon(version: &'static str) -> (TempDir, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let request = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_owned();
            let path = request.split(' ').nth(1).unwrap_or("").to_owned();
            log.lock().unwrap().push(request);
            let (status, body) = match path.as_str() {
                "/_ping" => ("200 OK", "OK".to_owned()),
                p if p.ends_with("/images/json") => ("200 OK", "[]".to_owned()),
                p if p.ends_with("/version") => ("200 OK", json!({"Version": "9.9", "Components": []}).to_string()),
                _ => ("404 Not Found", r#"{"message":"page not found"}"#.to_owned()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nApi-Version: {version}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    let host = format!("unix://{}", sock.display());
    (dir, host, seen)
}

#[test]
fn the_api_version_is_negotiated_through_ping() {
    let (_dir, host, seen) = fake_daemon("1.41");
    let out = cli().args(["-H", &host, "images", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(*seen.lock().unwrap(), ["GET /_ping HTTP/1.1", "GET /v1.41/images/json HTTP/1.1"]);
    let out = cli().args(["-H", &host, "version"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" API version:       1.41 (downgraded from 1.45)\n"), "{}", show(&out));
    // A daemon newer than the client: the client's version.
    let (_dir, host, seen) = fake_daemon("1.47");
    let out = cli().args(["-H", &host, "images", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(seen.lock().unwrap()[1], "GET /v1.45/images/json HTTP/1.1");
    // Routes the daemon does not serve: its message, as is.
    let err = cli().args(["-H", &host, "ps"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&err.stderr), "Error response from daemon: page not found\n");
}

#[test]
fn direct_mode_still_works_and_refuses_container_commands() {
    let eng = Engine::new();
    let good = good_image();
    assert_eq!(eng.load_ok(&good.docker()), "Loaded image: good:1\n");
    assert_eq!(eng.images(), vec![(good.id(), "good".into(), "1".into())]);
    let doc: Value = serde_json::from_slice(&eng.ok(&["inspect", "good:1"])).unwrap();
    assert_eq!(doc[0]["Id"], good.id());
    assert_eq!(eng.ok(&["image", "inspect", "--format", "{{.Id}}", "good:1"]), format!("{}\n", good.id()).into_bytes());
    let table = String::from_utf8(eng.ok(&["images"])).unwrap();
    let short = &good.id()["sha256:".len()..][..12];
    assert!(table.starts_with("REPOSITORY   TAG   IMAGE ID       CREATED"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with(&format!("good         1     {short}   ")), "{table}");

    // No daemon is asked: an address in the environment changes nothing.
    for args in [
        &["run", "busybox"][..],
        &["ps"],
        &["container", "ls"],
        &["logs", "web"],
        &["stop", "web"],
        &["volume", "ls"],
        &["volume", "create", "v"],
        &["events"],
        &["info"],
        &["system", "df"],
        &["inspect", "--type", "container", "web"],
    ] {
        let out = eng.cmd(args).env("BALENA_ENGINE_HOST", "unix:///nope/x.sock").output().unwrap();
        let line = expect_error(&out, &["needs the daemon; --data-root works on images only"]);
        let name = args.iter().take_while(|a| !a.starts_with('-') && **a != "busybox" && **a != "web" && **a != "v").copied().collect::<Vec<_>>().join(" ");
        assert!(line.contains(&format!("`balena-engine {name}`")), "{line}");
    }
    let out = eng.run(&["images", "--filter", "dangling=true"]);
    expect_error(&out, &["--filter needs the daemon"]);
    // Both a daemon and a data root: a usage error.
    let out = eng.run(&["-H", "unix:///x.sock", "images"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{}", show(&out));
}

#[test]
fn usage_errors_are_caught_before_the_daemon() {
    let d = Daemon::start();
    for (args, needle) in [
        (&["run", "--privileged", "img"][..], "--privileged"),
        (&["run", "-p", "80:80", "img"], "'-p'"),
        (&["run", "-m", "lots", "img"], "invalid size: 'lots'"),
        (&["run", "--ulimit", "bogus=1", "img"], "invalid ulimit type: bogus"),
        (&["run", "--restart", "always:3", "img"], "maximum retry count cannot be used"),
        (&["ps", "--format", "yaml"], "unsupported format"),
        (&["ps", "--bogus"], "--bogus"),
        (&["volume", "frobnicate"], "frobnicate"),
    ] {
        let out = d.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}: {}", show(&out));
    }
    // Values parsed here but refused by the client before sending.
    let err = d.err(&["run", "-v", "relative:dir", "img"], 125);
    assert!(err.contains("invalid volume specification: 'relative:dir'"), "{err}");
    let err = d.err(&["run", "--tmpfs", "tmp", "img"], 125);
    assert!(err.contains("invalid tmpfs specification"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Containers and volumes (root: the runtime needs namespaces, mounts and cgroups)
// ---------------------------------------------------------------------------------------------------------

fn root() -> bool {
    testkit::root("container tests")
}

/// A one-layer busybox image (an applet symlink per command, a user `app` 1000:1000) as a docker-archive.
fn busybox_archive() -> &'static [u8] {
    static ARCHIVE: OnceLock<Vec<u8>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let bin = std::fs::read(busybox()).unwrap();
        let list = Command::new(busybox()).arg("--list").output().unwrap().stdout;
        let mut t = TarBuf::new();
        for d in ["bin/", "etc/", "root/", "home/", "tmp/"] {
            t.dir(d);
        }
        t.entry(&Hdr::new(b'5', "home/app/").mode(0o755), &[]);
        t.exec("bin/busybox", &bin);
        for applet in String::from_utf8_lossy(&list).lines().filter(|a| *a != "busybox") {
            t.symlink(&format!("bin/{applet}"), "busybox");
        }
        t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n");
        t.file("etc/group", b"root:x:0:\napp:x:1000:\n");
        let layer = t.finish();
        let mut spec = ImageSpec::new(IMG, vec![layer]);
        spec.created = "2024-05-01T12:00:00Z".into();
        let mut cfg: Value = serde_json::from_slice(&spec.config()).unwrap();
        cfg["config"] = json!({"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Labels": {"from": "image"}});
        outer_tar(&spec.docker_members_with(serde_json::to_vec(&cfg).unwrap()))
    })
}

/// A daemon with the busybox image loaded.
fn container_daemon() -> Daemon {
    let d = Daemon::start();
    assert_eq!(d.load(busybox_archive()), format!("Loaded image: {IMG}\n"));
    d
}

fn state(d: &Daemon, name: &str) -> String {
    d.ok(&["inspect", "--type", "container", "-f", "{{.State.Status}}", name]).trim().to_owned()
}

#[test]
fn run_in_the_foreground_attaches_and_exits_with_the_containers_code() {
    if !root() {
        return;
    }
    let d = container_daemon();
    assert_eq!(d.ok(&["run", "--rm", IMG, "echo", "hi"]), "hi\n");
    let out = d.run(&["run", "--rm", IMG, "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    assert_eq!((String::from_utf8_lossy(&out.stdout).as_ref(), String::from_utf8_lossy(&out.stderr).as_ref()), ("out\n", "err\n"));
    // Without --rm the container stays, with its exit code.
    let out = d.run(&["run", "--name", "seven", IMG, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "seven"]), "7\n");
    // A command that does not exist: docker's 127 and the daemon's message.
    let out = d.run(&["run", "--rm", IMG, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"), "{}", show(&out));
    // Options the daemon refuses: its message, docker's 125.
    let err = d.err(&["run", "--rm", "--network", "bridge", IMG, "true"], 125);
    assert!(err.starts_with("Error response from daemon: ") && err.contains("bridge"), "{err}");
    let err = d.err(&["run", "--rm", "--cap-add", "BOGUS", IMG, "true"], 125);
    assert!(err.contains("unknown capability"), "{err}");
    let err = d.err(&["run", "--rm", "nope:1"], 125);
    assert!(err.contains("No such image: nope:1"), "{err}");
    // Only "seven" is left; large output arrives whole and in order.
    assert_eq!(d.ok(&["ps", "-a", "--format", "{{.Names}}"]), "seven\n");
    let big = d.ok(&["run", "--rm", IMG, "seq", "1", "20000"]);
    assert_eq!(big.lines().count(), 20000);
    assert_eq!(big.lines().last(), Some("20000"));
    // Signals go to the container: SIGTERM to the CLI stops a container that handles it.
    let mut child = d
        .cmd(&["run", "--rm", "--name", "trapper", IMG, "sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert_eq!(rest, "got TERM\n");
    // A container that ignores SIGINT: the third Ctrl-C detaches (130), the container keeps running.
    let mut child = d
        .cmd(&["run", "--name", "stubborn", IMG, "sh", "-c", "trap '' INT; echo ready; while true; do sleep 0.1; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdout.read_exact(&mut buf).unwrap();
    for _ in 0..3 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detached from"), "{}", show(&out));
    assert_eq!(state(&d, "stubborn"), "running");
    d.ok(&["rm", "-f", "stubborn"]);
}

#[test]
fn detached_containers_ps_logs_stop_kill_wait_rm() {
    if !root() {
        return;
    }
    let d = container_daemon();
    let id = d.ok(&["run", "-d", "--name", "web", "-l", "tier=web", IMG, "sh", "-c", "echo started; echo oops >&2; sleep 30"]).trim().to_owned();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let ps = d.ok(&["ps"]);
    let mut lines = ps.lines();
    assert_eq!(
        lines.next().unwrap().split("   ").map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>(),
        ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
        "{ps}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&format!("{}   {IMG}   \"sh -c ", &id[..12])) && row.contains("…\""), "{ps}");
    assert!(row.contains("   Up ") && row.ends_with("   web"), "{ps}");
    let j = json_lines(&d.ok(&["ps", "--format", "json", "--no-trunc"]));
    assert_eq!((j[0]["ID"].as_str(), j[0]["Names"].as_str(), j[0]["State"].as_str()), (Some(id.as_str()), Some("web"), Some("running")));
    assert_eq!(j[0]["Labels"], "from=image,tier=web");
    assert_eq!(d.ok(&["ps", "-q"]), format!("{}\n", &id[..12]));
    assert_eq!(d.ok(&["ps", "-q", "--no-trunc", "--filter", "label=tier=web"]), format!("{id}\n"));
    assert_eq!(d.ok(&["ps", "-q", "--filter", "label=tier=db"]), "");

    // logs: stdout and stderr kept apart.
    d.poll("the first log lines", || {
        let out = d.run(&["logs", "web"]);
        (out.stdout == b"started\n" && out.stderr == b"oops\n").then_some(())
    });
    let out = d.run(&["logs", "--tail", "1", "-t", "web"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains('T') && text.contains("Z "), "timestamps: {text}");
    let err = d.err(&["logs", "nope"], 1);
    assert_eq!(err, "Error response from daemon: No such container: nope\n");

    // stop: SIGTERM, then SIGKILL after -t (sh as PID 1 ignores SIGTERM): 137.
    assert_eq!(d.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web"]), "exited 137\n");
    assert_eq!(d.ok(&["ps", "-q"]), "");
    let exited = d.ok(&["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}} {{.Status}}"]);
    assert!(exited.starts_with("web Exited (137)"), "{exited}");
    // start, kill, wait.
    assert_eq!(d.ok(&["start", "web"]), "web\n");
    assert_eq!(state(&d, "web"), "running");
    assert_eq!(d.ok(&["kill", "web"]), "web\n");
    assert_eq!(d.ok(&["wait", "web"]), "137\n");
    let err = d.err(&["kill", "web"], 1);
    assert!(err.contains("is not running"), "{err}");
    // restart: a new process.
    d.ok(&["start", "web"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]);
    assert_eq!(d.ok(&["restart", "-t", "0", "web"]), "web\n");
    assert_eq!(state(&d, "web"), "running");
    assert_ne!(d.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]), pid);
    // kill with a signal the container handles.
    d.ok(&["run", "-d", "--name", "trap", IMG, "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done"]);
    d.poll("the trap to be set", || (state(&d, "trap") == "running").then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.ok(&["kill", "-s", "USR1", "trap"]), "trap\n");
    assert_eq!(d.ok(&["container", "wait", "trap"]), "42\n");
    // create, then start.
    let created = d.ok(&["create", "--name", "later", IMG, "echo", "later"]).trim().to_owned();
    assert_eq!(state(&d, &created), "created");
    d.ok(&["container", "start", "later"]);
    assert_eq!(d.ok(&["wait", "later"]), "0\n");
    assert_eq!(d.ok(&["logs", "later"]), "later\n");

    // rm: a running container needs -f; several at once; a missing one fails the command after the others.
    let err = d.err(&["rm", "web"], 1);
    assert!(err.contains("stop the container before removing or force remove"), "{err}");
    let out = d.run(&["rm", "-f", "web", "nope", "trap", "later"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\ntrap\nlater\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error response from daemon: No such container: nope\n");
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    let err = d.err(&["inspect", "--type", "container", "web"], 1);
    assert!(err.contains("No such container: web"), "{err}");
}

#[test]
fn run_flags_reach_the_container() {
    if !root() {
        return;
    }
    let d = container_daemon();
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        d.ok(&a)
    };
    assert_eq!(run(&["-e", "A=b", "--env", "PATH=/bin", IMG, "sh", "-c", "echo $A $PATH $HOME"]), "b /bin /root\n");
    let out = d.cmd(&["run", "--rm", "-e", "FROM_SHELL", "-e", "NOT_SET", IMG, "sh", "-c", "echo $FROM_SHELL ${NOT_SET-unset}"]).env("FROM_SHELL", "yes").env_remove("NOT_SET").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes unset\n", "{}", show(&out));
    assert_eq!(run(&["-w", "/made/here", IMG, "pwd"]), "/made/here\n");
    assert_eq!(run(&["-u", "1000:1000", IMG, "id", "-u"]), "1000\n");
    assert_eq!(run(&["--user", "app", IMG, "sh", "-c", "echo $HOME"]), "/home/app\n");
    assert_eq!(run(&["--entrypoint", "echo", IMG, "a", "-b"]), "a -b\n");
    assert_eq!(run(&["--hostname", "box", IMG, "hostname"]), "box\n");
    let out = d.run(&["run", "--rm", "--read-only", IMG, "touch", "/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{}", show(&out));
    assert_eq!(run(&["--read-only", "--tmpfs", "/scratch:size=1m", IMG, "sh", "-c", "echo ok > /scratch/f && cat /scratch/f"]), "ok\n");
    assert_eq!(run(&["--ulimit", "core=-1", IMG, "sh", "-c", "ulimit -c"]), "unlimited\n");
    assert_eq!(run(&["--ulimit", "nofile=100:200", IMG, "sh", "-c", "ulimit -n; ulimit -Hn"]), "100\n200\n");
    assert_eq!(run(&["--cap-drop", "ALL", "--cap-add", "KILL", IMG, "grep", "CapEff", "/proc/self/status"]), "CapEff:\t0000000000000020\n");
    assert_eq!(run(&["--network", "none", IMG, "ls", "/sys/class/net"]), "lo\n");
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(run(&["--network", "host", IMG, "ls", "/sys/class/net"]).split_whitespace().count(), host_ifaces);

    // What the daemon recorded, as docker names it.
    d.ok(&[
        "create", "--name", "cfg", "-m", "16m", "--pids-limit", "50", "--restart", "on-failure:3", "-l", "tier=web",
        "--log-driver", "json-file", "--log-opt", "max-size=1m", "--log-opt", "max-file=2", "--stop-signal", "SIGINT",
        "--stop-timeout", "5", IMG, "true",
    ]);
    let c = d.inspect("cfg");
    let h = &c["HostConfig"];
    assert_eq!(h["Memory"], 16 << 20);
    assert_eq!(h["PidsLimit"], 50);
    assert_eq!(h["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 3}));
    assert_eq!(h["LogConfig"]["Type"], "json-file");
    assert_eq!(h["LogConfig"]["Config"], json!({"max-size": "1m", "max-file": "2"}));
    assert_eq!(c["Config"]["Labels"], json!({"from": "image", "tier": "web"}));
    assert_eq!((c["Config"]["StopSignal"].as_str(), c["Config"]["StopTimeout"].as_i64()), (Some("SIGINT"), Some(5)));
    // A memory limit the kernel enforces: the container is killed (137), OOMKilled set.
    let out = d.run(&["run", "--name", "hog", "-m", "16m", IMG, "sh", "-c", "x=a; while true; do x=$x$x; done"]);
    assert_eq!(out.status.code(), Some(137), "{}", show(&out));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "hog"]), "true\n");
}

#[test]
fn volumes_through_the_daemon() {
    if !root() {
        return;
    }
    let d = container_daemon();
    assert_eq!(d.ok(&["volume", "create", "-l", "app=db", "data"]), "data\n");
    assert_eq!(d.ok(&["volume", "create", "--name", "spare"]), "spare\n");
    let anon = d.ok(&["volume", "create"]).trim().to_owned();
    assert_eq!(anon.len(), 64, "{anon}");
    let ls = d.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER   VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local    data\n") && ls.contains("local    spare\n"), "{ls}");
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "label=app=db"]), "data\n");
    let j = json_lines(&d.ok(&["volume", "ls", "--format", "json", "--filter", "name=spare"]));
    assert_eq!((j.len(), j[0]["Name"].as_str(), j[0]["Driver"].as_str()), (1, Some("spare"), Some("local")));
    let v: Value = serde_json::from_str(&d.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!((v[0]["Name"].as_str(), v[0]["Labels"]["app"].as_str()), (Some("data"), Some("db")));
    assert_eq!(d.ok(&["inspect", "--type", "volume", "-f", "{{.Driver}}", "data"]), "local\n");

    // Data outlives containers; read-only mounts are read-only.
    d.ok(&["run", "--rm", "-v", "data:/data", IMG, "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "data:/data:ro", IMG, "cat", "/data/f"]), "kept\n");
    let out = d.run(&["run", "--rm", "-v", "data:/data:ro", IMG, "touch", "/data/g"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{}", show(&out));
    // Binds: absolute and relative host paths.
    let host = d.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    assert_eq!(d.ok(&["run", "--rm", "-v", &format!("{}:/h:ro", host.display()), IMG, "cat", "/h/f"]), "from host\n");
    let out = d.cmd(&["run", "--rm", "-v", "./hostdir:/h", IMG, "cat", "/h/f"]).current_dir(d.dir.path()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from host\n", "{}", show(&out));
    // An anonymous volume (-v /path) goes with the container under rm -v.
    d.ok(&["run", "--name", "anon", "-v", "/cache", IMG, "touch", "/cache/x"]);
    let mounts = d.ok(&["inspect", "-f", "{{json .Mounts}}", "anon"]);
    let m: Value = serde_json::from_str(&mounts).unwrap();
    let anon_name = m[0]["Name"].as_str().unwrap().to_owned();
    assert!(d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == anon_name));

    // In use: refused, with the daemon's message.
    d.ok(&["create", "--name", "user", "-v", "data:/data", IMG, "true"]);
    let err = d.err(&["volume", "rm", "data"], 1);
    assert!(err.starts_with("Error response from daemon: ") && err.contains("in use"), "{err}");
    d.ok(&["rm", "-v", "user", "anon"]);
    assert!(!d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == anon_name), "rm -v left the anonymous volume");
    assert_eq!(d.ok(&["volume", "rm", "data", "spare"]), "data\nspare\n");
    let err = d.err(&["volume", "rm", "data"], 1);
    assert!(err.contains("no such volume"), "{err}");
    assert_eq!(d.ok(&["volume", "rm", "-f", "data"]), "data\n");
    // prune: the anonymous volume left from `volume create`.
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with(&format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: ")), "{out}");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    // Without -f it asks, and an empty answer keeps everything.
    d.ok(&["volume", "create", "kept"]);
    let out = d.run_stdin(&["volume", "prune", "--all"], b"\n");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Are you sure you want to continue? [y/N]"));
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "kept\n");
    let out = d.run_stdin(&["volume", "prune", "--all"], b"y\n");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Deleted Volumes:\nkept\n"), "{}", show(&out));
}

#[test]
fn logs_follow_events_and_disk_usage_with_containers() {
    if !root() {
        return;
    }
    let d = container_daemon();
    d.ok(&["run", "-d", "--name", "ticker", IMG, "sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done; echo bye >&2"]);
    // -f follows until the container stops.
    let out = d.run(&["logs", "-f", "ticker"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "bye\n");
    assert_eq!(d.ok(&["logs", "--tail", "2", "ticker"]), "tick 5\n", "the last two lines are tick 5 (stdout) and bye (stderr)");
    assert_eq!(d.ok(&["logs", "--since", "1h", "--until", "1h", "ticker"]), "");
    let events = d.ok(&["events", "--since", "1h", "--until", "0s", "--filter", "container=ticker", "--format", "{{.Action}}"]);
    let actions: Vec<&str> = events.lines().collect();
    assert_eq!(&actions[..2], ["create", "start"], "{events}");
    assert!(actions.contains(&"die"), "{events}");

    let df = json_lines(&d.ok(&["system", "df", "--format", "json"]));
    assert_eq!((df[0]["Type"].as_str(), df[0]["Active"].as_str()), (Some("Images"), Some("1")));
    assert_eq!((df[1]["Type"].as_str(), df[1]["TotalCount"].as_str()), (Some("Containers"), Some("1")));
    let info = d.ok(&["info"]);
    assert!(info.contains(" Containers: 1\n  Running: 0\n  Paused: 0\n  Stopped: 1\n"), "{info}");
    // An image in use cannot be removed without force.
    let err = d.err(&["rmi", IMG], 1);
    assert!(err.contains("image is being used by stopped container"), "{err}");
    d.ok(&["rm", "ticker"]);
    assert_eq!(d.ok(&["rmi", IMG]).lines().next(), Some(format!("Untagged: {IMG}").as_str()));
}
