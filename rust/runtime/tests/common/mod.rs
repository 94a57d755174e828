//! Integration test helpers: a busybox rootfs shared by every test, containers run with their
//! stdout and stderr captured.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use runtime::{start, Container, ContainerSpec, ExitStatus, Rootfs};
use testkit::busybox;

pub const CGROUP_PARENT: &str = "balena-engine-test";

/// True when the tests can use the kernel for real (root); otherwise they print why and pass.
pub fn root() -> bool {
    testkit::root("integration tests")
}

/// A directory on the host that the image's `/escape` symlink points at (absolute target).
pub fn escape_target() -> &'static Path {
    &fixture().1
}

/// Built once into cargo's test scratch directory and reused by later runs (and by concurrent
/// ones: each builds into its own staging directory, the first rename wins).
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-fixture-v1");
        let (layer, target) = (base.join("layer"), base.join("escape-target"));
        if !layer.exists() {
            fs::create_dir_all(&target).unwrap();
            fs::create_dir_all(base.join("escape-target2")).unwrap();
            let staging = base.join(format!("layer.{}", std::process::id()));
            build_layer(&staging, &target);
            if fs::rename(&staging, &layer).is_err() {
                fs::remove_dir_all(&staging).unwrap();
            }
        }
        (layer, target)
    })
}

/// busybox with a symlink per applet; `/escape` points at `target`, an absolute host path that
/// also exists inside the image; `/escape2` at a host directory the image lacks;
/// `/climb` climbs with `..` to that same host directory; `/etc/resolv.conf` is a dangling
/// relative symlink (as in systemd-based images).
fn build_layer(layer: &Path, target: &Path) {
    for d in ["bin", "etc", "tmp", "root"] {
        fs::create_dir_all(layer.join(d)).unwrap();
    }
    fs::copy(busybox(), layer.join("bin/busybox")).unwrap();
    let list = Command::new(layer.join("bin/busybox")).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    fs::write(layer.join("etc/motd"), "not executable\n").unwrap();
    symlink(target, layer.join("escape")).unwrap();
    fs::create_dir_all(layer.join(target.strip_prefix("/").unwrap())).unwrap();
    symlink(target.with_file_name("escape-target2"), layer.join("escape2")).unwrap();
    symlink("../run/systemd/resolve/stub-resolv.conf", layer.join("etc/resolv.conf")).unwrap();
    let climb = Path::new("../../../../../../../../..")
        .join(target.with_file_name("escape-target2").strip_prefix("/").unwrap());
    symlink(climb, layer.join("climb")).unwrap();
}

/// The host directory the image's `/escape2` symlink points at (absent from the image).
pub fn escape_target2() -> PathBuf {
    fixture().1.with_file_name("escape-target2")
}

/// The busybox image layer (read-only lower dir).
pub fn layer() -> &'static Path {
    &fixture().0
}

/// A unique container ID for this test.
pub fn id(name: &str) -> String {
    format!("rt-{name}-{}", std::process::id())
}

/// A spec for `args` over the busybox layer, with its container dir in a fresh temp dir.
pub fn spec(name: &str, args: &[&str]) -> (ContainerSpec, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix("runtime-ctr-").tempdir().unwrap();
    let rootfs =
        Rootfs { lower_dirs: vec![layer().to_path_buf()], container_dir: dir.path().join("c"), readonly: false };
    let mut spec = ContainerSpec::new(id(name), rootfs, args.iter().map(|s| s.to_string()).collect());
    spec.cgroup_parent = CGROUP_PARENT.into();
    spec.process.env.push("HOME=/root".into());
    (spec, dir)
}

pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A started container with its output pipes.
pub struct Running {
    pub container: Container,
    pub stdout: fs::File,
    pub stderr: fs::File,
}

pub fn spawn(spec: &mut ContainerSpec) -> runtime::Result<Running> {
    use std::os::fd::AsRawFd;
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    spec.stdio.stdout = Some(out_w.as_raw_fd());
    spec.stdio.stderr = Some(err_w.as_raw_fd());
    let container = start(spec)?;
    // Our copies of the write ends close here: EOF comes when the container's close.
    drop((out_w, err_w));
    Ok(Running { container, stdout: out_r.into(), stderr: err_r.into() })
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    /// Reads all output, waits, cleans up.
    pub fn finish(mut self) -> Output {
        let mut stderr = self.stderr;
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        let _ = self.stdout.read_to_string(&mut stdout);
        let status = self.container.wait().unwrap();
        self.container.cleanup().unwrap();
        Output { status, stdout, stderr: reader.join().unwrap() }
    }
}

/// Runs the container to completion.
pub fn run(spec: &mut ContainerSpec) -> runtime::Result<Output> {
    Ok(spawn(spec)?.finish())
}

/// Runs and expects exit 0; returns stdout.
pub fn output(spec: &mut ContainerSpec) -> String {
    let out = run(spec).unwrap();
    assert_eq!(out.status.code, 0, "{out:?}");
    out.stdout
}

/// The container's cgroup directory in a v1 hierarchy.
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(controller).join(CGROUP_PARENT).join(id)
}
