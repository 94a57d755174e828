//! Containers driven by the real docker CLI against the real daemon (root: the runtime needs namespaces,
//! mounts and cgroups; without root each test prints why and passes). The image is busybox from Debian's
//! busybox-static, written here as a docker-archive and loaded with `docker load`.
//!
//! No fixed sleeps for synchronisation: state changes are polled against generous deadlines.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::archive::digest;
use common::{json_lines, Daemon};
use serde_json::{json, Value};
use testkit::busybox;

const IMG: &str = "busybox:test";
/// Deadline for state changes that take milliseconds on an idle machine.
const DEADLINE: Duration = Duration::from_secs(20);

fn root() -> bool {
    testkit::root("container tests")
}

/// A one-layer busybox image (an applet symlink per command, a user `app` 1000:1000) as a docker-archive.
fn image_archive() -> &'static [u8] {
    static ARCHIVE: OnceLock<Vec<u8>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let bin = std::fs::read(busybox()).unwrap();
        let list = Command::new(busybox()).arg("--list").output().unwrap().stdout;
        let mut b = tar::Builder::new(Vec::new());
        let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32, uid: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(1_700_000_000);
            h.set_size(0);
            h.set_cksum();
            b.append_data(&mut h, p, std::io::empty()).unwrap();
        };
        let file = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(mode);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append_data(&mut h, p, data).unwrap();
        };
        for (d, mode, uid) in [("bin/", 0o755, 0), ("etc/", 0o755, 0), ("root/", 0o700, 0), ("home/", 0o755, 0), ("home/app/", 0o755, 1000), ("tmp/", 0o1777, 0)] {
            dir(&mut b, d, mode, uid);
        }
        file(&mut b, "bin/busybox", 0o755, &bin);
        for applet in String::from_utf8_lossy(&list).lines().filter(|a| *a != "busybox") {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_mtime(1_700_000_000);
            h.set_size(0);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
        }
        file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n");
        file(&mut b, "etc/group", 0o644, b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n");
        dir(&mut b, "srv/", 0o750, 1000);
        file(&mut b, "srv/seed.txt", 0o644, b"seed\n");
        let layer = b.into_inner().unwrap();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "created": "2024-05-01T12:00:00Z",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Labels": {"from": "image"}},
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
        }))
        .unwrap();
        let hex = |d: &[u8]| common::archive::sha256_hex(d);
        let manifest = serde_json::to_vec(&json!([{
            "Config": format!("{}.json", hex(&config)), "RepoTags": [IMG], "Layers": [format!("{}/layer.tar", hex(&layer))],
        }]))
        .unwrap();
        let files: Vec<(String, Vec<u8>)> = vec![
            (format!("{}/layer.tar", hex(&layer)), layer.clone()),
            (format!("{}.json", hex(&config)), config),
            ("manifest.json".into(), manifest),
        ];
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        common::archive::tar_of(&refs)
    })
}

/// The daemon under test. Its containers are force-removed when the test ends (even by a panic): the
/// harness kills the daemon with SIGKILL, which would leave them running, as a crashed daemon does.
struct Engine(Daemon);

impl std::ops::Deref for Engine {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for Engine {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.0
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.0.child.is_none() {
            return;
        }
        let r = self.0.http("GET", "/v1.45/containers/json?all=1");
        if r.status != 200 {
            return;
        }
        for c in r.json().as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                self.0.http("DELETE", &format!("/v1.45/containers/{id}?force=1&v=1"));
            }
        }
    }
}

/// A daemon with the busybox image loaded.
fn daemon() -> Engine {
    let d = Daemon::start();
    d.load(image_archive());
    Engine(d)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn inspect(d: &Daemon, name: &str) -> Value {
    json(&d.docker_ok(&["inspect", "--type", "container", name]))[0].clone()
}

/// Polls `f` until it returns `Some`, failing with `what` and the daemon's log after the deadline.
fn poll<T>(d: &Daemon, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}\ndaemon log:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(d: &Daemon, name: &str) -> String {
    inspect(d, name)["State"]["Status"].as_str().unwrap_or("").to_owned()
}

#[test]
fn run_attaches_and_propagates_exit_codes() {
    if !root() {
        return;
    }
    let d = daemon();
    assert_eq!(d.docker_ok(&["run", "--rm", IMG, "echo", "hi"]), "hi\n");
    let out = d.docker(&["run", "--rm", IMG, "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Not --rm: the exit code is kept.
    let out = d.docker(&["run", "--name", "seven", IMG, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(inspect(&d, "seven")["State"]["ExitCode"], 7);
    // A command that does not exist: docker's 127 and message.
    let out = d.docker(&["run", "--rm", IMG, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"), "{out:?}");
    // --rm removed them all; only "seven" is left.
    assert_eq!(d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(), "seven");
    // Larger output arrives whole and in order.
    let big = d.docker_ok(&["run", "--rm", IMG, "seq", "1", "20000"]);
    assert_eq!(big.lines().count(), 20000);
    assert_eq!(big.lines().last(), Some("20000"));
}

#[test]
fn detached_containers_stop_kill_wait_and_remove() {
    if !root() {
        return;
    }
    let d = daemon();
    let id = d.docker_ok(&["run", "-d", "--name", "web", IMG, "sleep", "30"]).trim().to_owned();
    assert_eq!(id.len(), 64);
    let ps = d.docker_ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(ps.starts_with(&format!("{} web Up", &id[..12])), "{ps}");
    let c = inspect(&d, "web");
    assert_eq!((c["State"]["Status"].as_str(), c["State"]["Running"].as_bool()), (Some("running"), Some(true)));
    assert!(c["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"], json!(["30"]));
    assert_eq!(c["Config"]["Labels"]["from"], "image");
    assert!(c["LogPath"].as_str().unwrap().ends_with(&format!("{id}-json.log")));

    // PID 1 ignores SIGTERM without a handler (as with docker): SIGKILL after the timeout, 137.
    let t = Instant::now();
    assert_eq!(d.docker_ok(&["stop", "-t", "1", "web"]).trim(), "web");
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
    let c = inspect(&d, "web");
    assert_eq!((c["State"]["Status"].as_str(), c["State"]["ExitCode"].as_i64()), (Some("exited"), Some(137)));
    assert_ne!(c["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(c["State"]["Pid"], 0);
    // Stopping a stopped container is fine (304).
    d.docker_ok(&["stop", "web"]);
    let exited = d.docker_ok(&["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}} {{.Status}}"]);
    assert!(exited.starts_with("web Exited (137)"), "{exited}");
    assert_eq!(d.docker_ok(&["ps", "-q"]).trim(), "");

    // A process that handles SIGTERM stops at once with its own code.
    d.docker_ok(&["run", "-d", "--name", "trap", IMG, "sh", "-c", "trap 'exit 143' TERM; sleep 30 & wait"]);
    let t = Instant::now();
    d.docker_ok(&["stop", "-t", "20", "trap"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(inspect(&d, "trap")["State"]["ExitCode"], 143);

    // Start again, kill, wait.
    d.docker_ok(&["start", "web"]);
    assert_eq!(status(&d, "web"), "running");
    d.docker_ok(&["kill", "web"]);
    assert_eq!(d.docker_ok(&["wait", "web"]).trim(), "137");
    let err = d.docker_err(&["kill", "web"]);
    assert!(err.contains("is not running"), "{err}");

    // Restart: a new run.
    d.docker_ok(&["start", "web"]);
    let pid1 = inspect(&d, "web")["State"]["Pid"].as_i64().unwrap();
    d.docker_ok(&["restart", "-t", "0", "web"]);
    let c = inspect(&d, "web");
    assert_eq!(c["State"]["Status"], "running");
    assert_ne!(c["State"]["Pid"].as_i64().unwrap(), pid1);

    // rm of a running container needs force.
    let err = d.docker_err(&["rm", "web"]);
    assert!(err.contains("container is running: stop the container before removing or force remove"), "{err}");
    d.docker_ok(&["rm", "-f", "web", "trap"]);
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
    assert!(d.docker_err(&["inspect", "--type", "container", "web"]).contains("No such container"));
}

#[test]
fn process_settings() {
    if !root() {
        return;
    }
    let d = daemon();
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        d.docker_ok(&a)
    };
    assert_eq!(run(&["-e", "A=b", "-e", "PATH=/bin", IMG, "sh", "-c", "echo $A $PATH $HOME"]), "b /bin /root\n");
    assert_eq!(run(&["-w", "/made/here", IMG, "pwd"]), "/made/here\n");
    assert_eq!(run(&["-u", "1000:1000", IMG, "id"]), "uid=1000(app) gid=1000(app)\n");
    // By name, through the image's passwd and group (with its supplementary group).
    assert_eq!(
        run(&["-u", "app", IMG, "sh", "-c", "id; echo $HOME"]),
        "uid=1000(app) gid=1000(app) groups=50(staff)\n/home/app\n"
    );
    assert!(d.docker_err(&["run", "--rm", "-u", "nobody", IMG, "true"]).contains("unable to find user nobody"));
    assert_eq!(run(&["--entrypoint", "echo", IMG, "a", "b"]), "a b\n");
    assert_eq!(
        run(&["--hostname", "box", IMG, "sh", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME"]),
        "box\nbox\nbox\n"
    );
    // Read-only root, with a tmpfs to write to.
    let out = d.docker(&["run", "--rm", "--read-only", IMG, "touch", "/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");
    assert_eq!(
        run(&["--read-only", "--tmpfs", "/scratch", IMG, "sh", "-c", "echo ok > /scratch/f && cat /scratch/f"]),
        "ok\n"
    );
    // Core dumps are off unless asked for.
    assert_eq!(run(&[IMG, "sh", "-c", "ulimit -c"]), "0\n");
    assert_eq!(run(&["--ulimit", "core=-1", IMG, "sh", "-c", "ulimit -c"]), "unlimited\n");
    assert_eq!(run(&["--ulimit", "nofile=100:200", IMG, "sh", "-c", "ulimit -n; ulimit -Hn"]), "100\n200\n");
    // Capabilities.
    assert_eq!(run(&[IMG, "grep", "CapEff", "/proc/self/status"]), "CapEff:\t00000000a80425fb\n");
    assert_eq!(run(&["--cap-drop", "ALL", IMG, "grep", "CapEff", "/proc/self/status"]), "CapEff:\t0000000000000000\n");
    assert_eq!(
        run(&["--cap-drop", "ALL", "--cap-add", "KILL", IMG, "grep", "CapEff", "/proc/self/status"]),
        "CapEff:\t0000000000000020\n"
    );
    // Networks: none (only lo) is the default; host shares the host's interfaces.
    assert_eq!(run(&[IMG, "ls", "/sys/class/net"]), "lo\n");
    assert_eq!(run(&["--network", "none", IMG, "ls", "/sys/class/net"]), "lo\n");
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    let ifaces = run(&["--network", "host", IMG, "ls", "/sys/class/net"]);
    assert_eq!(ifaces.split_whitespace().count(), host_ifaces, "{ifaces}");
    // Labels, and the ps filter on them.
    d.docker_ok(&["create", "--name", "labelled", "--label", "tier=web", IMG, "true"]);
    d.docker_ok(&["create", "--name", "other", IMG, "true"]);
    assert_eq!(d.docker_ok(&["ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}}"]).trim(), "labelled");
    assert_eq!(d.docker_ok(&["ps", "-a", "--filter", "name=oth", "--format", "{{.Names}}"]).trim(), "other");
    assert_eq!(d.docker_ok(&["ps", "-a", "--filter", "ancestor=busybox:test", "-q"]).lines().count(), 2);
    assert_eq!(d.docker_ok(&["ps", "-a", "--filter", "status=created", "-q"]).lines().count(), 2);
}

#[test]
fn volumes_and_binds() {
    if !root() {
        return;
    }
    let d = daemon();
    d.docker_ok(&["run", "--rm", "-v", "namedvol:/data", IMG, "sh", "-c", "echo kept > /data/f"]);
    // The data outlives the container; a new container sees it.
    assert_eq!(d.docker_ok(&["run", "--rm", "-v", "namedvol:/data", IMG, "cat", "/data/f"]), "kept\n");
    assert!(d.docker_ok(&["volume", "ls", "-q"]).lines().any(|l| l == "namedvol"));
    let host = d.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    let spec = format!("{}:/h:ro", host.display());
    let out = d.docker(&["run", "--rm", "-v", &spec, IMG, "sh", "-c", "cat /h/f; touch /h/g"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from host\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");
    assert!(!host.join("g").exists());
    // -v creates a missing host directory; --mount refuses a missing source.
    let missing = d.dir.path().join("made-by-v");
    d.docker_ok(&["run", "--rm", "-v", &format!("{}:/n", missing.display()), IMG, "touch", "/n/x"]);
    assert!(missing.join("x").exists());
    let gone = d.dir.path().join("gone");
    let err =
        d.docker_err(&["run", "--rm", "--mount", &format!("type=bind,src={},dst=/x", gone.display()), IMG, "true"]);
    assert!(err.contains("bind source path does not exist"), "{err}");
    // A new, empty volume over an image directory gets its content (docker's copy-up), once.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "seeded:/srv",
        IMG,
        "sh",
        "-c",
        "cat /srv/seed.txt; stat -c '%u %a' /srv; echo more > /srv/seed.txt",
    ]);
    assert_eq!(out, "seed\n1000 750\n");
    assert_eq!(d.docker_ok(&["run", "--rm", "-v", "seeded:/srv", IMG, "cat", "/srv/seed.txt"]), "more\n");
    assert_eq!(d.docker_ok(&["run", "--rm", "-v", "bare:/srv:nocopy", IMG, "ls", "/srv"]), "");
    // A volume in use by a container cannot be removed.
    d.docker_ok(&["create", "--name", "user", "-v", "namedvol:/data", IMG, "true"]);
    assert!(d.docker_err(&["volume", "rm", "namedvol"]).contains("in use"));
    let m = &inspect(&d, "user")["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Name"].as_str(), m["Destination"].as_str()),
        (Some("volume"), Some("namedvol"), Some("/data"))
    );
}

#[test]
fn resource_limits() {
    if !root() {
        return;
    }
    let d = daemon();
    let out =
        d.docker(&["run", "--name", "hog", "--memory", "16m", IMG, "sh", "-c", "x=a; while true; do x=$x$x; done"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let c = inspect(&d, "hog");
    assert_eq!(c["State"]["OOMKilled"], true);
    assert_eq!(c["HostConfig"]["Memory"], 16 << 20);
    let out = d.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        IMG,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("can't fork"), "{out:?}");
}

#[test]
fn restart_policy_on_failure_gives_up() {
    if !root() {
        return;
    }
    let d = daemon();
    d.docker_ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMG, "sh", "-c", "echo run; exit 3"]);
    let c = poll(&d, "flaky to stay exited", || {
        let c = inspect(&d, "flaky");
        (c["State"]["Status"] == "exited").then_some(c)
    });
    assert_eq!(c["RestartCount"], 2, "{c}");
    assert_eq!(c["State"]["ExitCode"], 3);
    assert_eq!(c["HostConfig"]["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 2}));
    assert_eq!(d.docker_ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    // --rm and a restart policy do not go together.
    let err = d.docker_err(&["run", "--rm", "--restart", "always", IMG, "true"]);
    assert!(err.contains("--restart") && err.contains("--rm"), "{err}");
    let r = d.http_body(
        "POST",
        "/v1.45/containers/create",
        &[("Content-Type", "application/json")],
        br#"{"Image":"busybox:test","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}"#,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn restart_always_comes_back_after_a_daemon_restart() {
    if !root() {
        return;
    }
    let mut d = daemon();
    d.docker_ok(&["run", "-d", "--name", "always", "--restart", "always", "--stop-timeout", "1", IMG, "sleep", "300"]);
    d.docker_ok(&["run", "-d", "--name", "plain", "--stop-timeout", "1", IMG, "sleep", "300"]);
    let pid = inspect(&d, "always")["State"]["Pid"].as_i64().unwrap();
    // SIGTERM: the daemon stops its containers (stop timeout 1 s) and exits.
    let t = Instant::now();
    assert!(d.stop().success());
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the container outlived the daemon");
    let (dir, root) = (std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap()), d.root.clone());
    let d = Engine(Daemon::start_in(dir, root, |_| {}));
    poll(&d, "the always container to run again", || (status(&d, "always") == "running").then_some(()));
    let c = inspect(&d, "plain");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 137);
    assert!(d.docker_ok(&["logs", "always"]).is_empty());

    // A crash (SIGKILL): the containers it ran are orphans nobody can wait for. The next daemon kills
    // them, records them as exited (255), and starts again what the policy says.
    let mut d = d;
    d.docker_ok(&["start", "plain"]);
    let (old_always, old_plain) = (
        inspect(&d, "always")["State"]["Pid"].as_i64().unwrap(),
        inspect(&d, "plain")["State"]["Pid"].as_i64().unwrap(),
    );
    d.signal(libc::SIGKILL);
    d.wait_exit(DEADLINE);
    assert!(Path::new(&format!("/proc/{old_always}")).exists(), "orphan expected after SIGKILL");
    let (dir, root) = (std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap()), d.root.clone());
    let d = Engine(Daemon::start_in(dir, root, |_| {}));
    poll(&d, "the always container to run again", || (status(&d, "always") == "running").then_some(()));
    let gone = |pid: i64| std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
    assert!(gone(old_always) && gone(old_plain), "orphans left running");
    let c = inspect(&d, "plain");
    assert_eq!((c["State"]["Status"].as_str(), c["State"]["ExitCode"].as_i64()), (Some("exited"), Some(255)));
}

/// `rmi -f` of the image of a stopped container removes the image (as docker does) but not the layers the
/// container stacks (leased): it starts again, also after a daemon restart (whose store open collects
/// garbage); removing the container takes the layers with it.
#[test]
fn forced_rmi_keeps_a_stopped_containers_layers() {
    if !root() {
        return;
    }
    let mut d = daemon();
    d.docker_ok(&["run", "--name", "keeps", IMG, "sh", "-c", "echo ran"]);
    let out = d.docker_ok(&["rmi", "-f", IMG]);
    assert!(out.contains("Deleted:"), "{out}");
    assert_eq!(d.docker_ok(&["images", "-q"]).trim(), "");
    let layers = || std::fs::read_dir(d.root.join("layers")).unwrap().count();
    assert!(layers() > 0, "the container's layers were collected");
    d.docker_ok(&["start", "keeps"]);
    assert_eq!(d.docker_ok(&["wait", "keeps"]).trim(), "0");

    assert!(d.stop().success());
    let (dir, root) = (std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap()), d.root.clone());
    let d = Engine(Daemon::start_in(dir, root, |_| {}));
    d.docker_ok(&["start", "keeps"]);
    assert_eq!(d.docker_ok(&["wait", "keeps"]).trim(), "0");
    assert_eq!(d.docker_ok(&["logs", "keeps"]), "ran\nran\nran\n");
    d.docker_ok(&["rm", "keeps"]);
    assert_eq!(std::fs::read_dir(d.root.join("layers")).unwrap().count(), 0, "layers left behind");
    assert_eq!(std::fs::read_dir(d.root.join("leases")).unwrap().count(), 0, "lease left behind");
}

#[test]
fn refusals_are_clear() {
    if !root() {
        return;
    }
    let d = daemon();
    let id = d.docker_ok(&["create", "--name", "taken", IMG, "true"]).trim().to_owned();
    let err = d.docker_err(&["run", "--name", "taken", IMG, "true"]);
    assert!(
        err.contains(&format!(
            "Conflict. The container name \"/taken\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
        )),
        "{err}"
    );
    for (flags, want) in [
        (vec!["--privileged"], "Privileged (--privileged) is not supported"),
        (vec!["-p", "80:80"], "-p/--publish"),
        (vec!["-t"], "TTY is not supported"),
        (vec!["-i"], "-i/--interactive"),
        (vec!["--network", "bridge"], "network mode \"bridge\" is not supported yet"),
        (vec!["--device", "/dev/null"], "--device"),
        (vec!["--cap-add", "BOGUS"], "unknown capability"),
        (vec!["--health-cmd", "true"], "--health-cmd"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(flags.iter().copied());
        args.extend([IMG, "true"]);
        let out = d.docker(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // An image a container uses cannot be removed.
    let err = d.docker_err(&["rmi", IMG]);
    assert!(err.contains("image is being used by stopped container"), "{err}");
    d.docker_ok(&["rm", "taken"]);
    d.docker_ok(&["rmi", IMG]);
}

#[test]
fn logs_tail_timestamps_since_and_follow() {
    if !root() {
        return;
    }
    let d = daemon();
    d.docker_ok(&["run", "--name", "mixed", IMG, "sh", "-c", "echo out; echo oops >&2"]);
    let out = d.docker(&["logs", "mixed"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    d.docker_ok(&["run", "--name", "talker", IMG, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done"]);
    assert_eq!(d.docker_ok(&["logs", "talker"]), "line1\nline2\nline3\nline4\nline5\n");
    assert_eq!(d.docker_ok(&["logs", "--tail", "2", "talker"]), "line4\nline5\n");
    let ts = d.docker_ok(&["logs", "-t", "--tail", "1", "talker"]);
    // 2024-01-02T03:04:05.123456789Z line5
    let (stamp, text) = ts.trim_end().split_once(' ').unwrap();
    assert_eq!((stamp.len(), text), (30, "line5"), "{ts}");
    assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{ts}");
    let future =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600).to_string();
    assert_eq!(d.docker_ok(&["logs", "--since", &future, "talker"]), "");
    assert_eq!(d.docker_ok(&["logs", "--since", "2000-01-01T00:00:00Z", "--tail", "1", "talker"]), "line5\n");

    // follow: lines as they come, and the end when the container exits. The container waits for a file
    // the test creates, so the follower is attached before the last line is written.
    let host = d.dir.path().join("gate");
    std::fs::create_dir_all(&host).unwrap();
    let gate = format!("{}:/gate", host.display());
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "follow",
        "-v",
        &gate,
        IMG,
        "sh",
        "-c",
        "echo first; while [ ! -e /gate/go ]; do sleep 0.05; done; echo last",
    ]);
    let mut child = d.docker_cmd(&["logs", "-f", "follow"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&got).contains("first\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "logs -f ended early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    std::fs::write(host.join("go"), "").unwrap();
    stdout.read_to_end(&mut got).unwrap();
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "docker logs -f did not end when the container exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert_eq!(String::from_utf8_lossy(&got), "first\nlast\n");
}

#[test]
fn events_and_wait_conditions() {
    if !root() {
        return;
    }
    let d = daemon();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - 1.0;
    assert_eq!(d.docker(&["run", "--rm", "--name", "brief", IMG, "sh", "-c", "exit 3"]).status.code(), Some(3));
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 1.0;
    let ev = d.docker_ok(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        "type=container",
        "--format",
        "{{json .}}",
    ]);
    let evs = json_lines(&ev);
    let actions: Vec<&str> = evs.iter().map(|e| e["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{ev}");
    assert!(evs
        .iter()
        .all(|e| e["Actor"]["Attributes"]["name"] == "brief" && e["Actor"]["Attributes"]["image"] == IMG));
    assert_eq!(evs[2]["Actor"]["Attributes"]["exitCode"], "3");

    // /wait answers its headers at once; the body comes with the exit.
    let id = d.docker_ok(&["create", IMG, "sh", "-c", "exit 5"]).trim().to_owned();
    // A created container is not running: not-running answers at once with its code (0).
    assert_eq!(d.docker_ok(&["wait", &id]).trim(), "0");
    let r = d.http("POST", &format!("/v1.45/containers/{id}/wait?condition=bogus"));
    assert_eq!(r.status, 400);
    let r = d.http("POST", "/v1.45/containers/nope/wait");
    assert_eq!(r.status, 404);
    d.docker_ok(&["start", &id]);
    poll(&d, "the container to exit", || (status(&d, &id) == "exited").then_some(()));
    assert_eq!(d.docker_ok(&["wait", &id]).trim(), "5");
    let info = json(&d.docker_ok(&["info", "--format", "{{json .}}"]));
    assert_eq!((info["Containers"].as_i64(), info["ContainersStopped"].as_i64()), (Some(1), Some(1)));
    let df = d.docker_ok(&["system", "df", "--format", "{{json .}}"]);
    assert!(json_lines(&df).iter().any(|r| r["Type"] == "Containers" && r["TotalCount"] == "1"), "{df}");
    let pruned = d.docker_ok(&["container", "prune", "-f"]);
    assert!(pruned.contains(&id), "{pruned}");
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Figures to watch (printed; `-- --nocapture`): `docker run --rm IMG true` latency and the daemon's RSS
/// with 0 and 3 running containers. Loose guards against order-of-magnitude regressions only: the other
/// tests run alongside (release-build figures are in the README of the daemon).
#[test]
fn footprint_run_latency_and_memory() {
    if !root() {
        return;
    }
    let d = daemon();
    d.docker_ok(&["run", "--rm", IMG, "true"]);
    let mut times: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            d.docker_ok(&["run", "--rm", IMG, "true"]);
            t.elapsed()
        })
        .collect();
    times.sort();
    let idle = rss_kib(d.pid());
    for n in ["fp1", "fp2", "fp3"] {
        d.docker_ok(&["run", "-d", "--name", n, IMG, "sleep", "300"]);
    }
    let busy = rss_kib(d.pid());
    eprintln!(
        "footprint: `docker run --rm {IMG} true` median {:?} (min {:?}); daemon RSS {idle} KiB with 0 containers, {busy} KiB with 3 running",
        times[5], times[0]
    );
    d.docker_ok(&["rm", "-f", "fp1", "fp2", "fp3"]);
    assert!(times[5] < Duration::from_secs(3), "run latency {:?}", times[5]);
    assert!(busy < 64 * 1024, "RSS {busy} KiB");
}
