//! Real containers on the real kernel (root). Each test starts one or a few busybox containers;
//! no sleeps: start() returns once the process has been executed, pipes carry the rest.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::Path;

use common::{cgroup_dir, escape_target, escape_target2, id, output, root, run, spawn, spec};
use runtime::{detect_version, CgroupVersion, Mount, Network, Resources, Rlimit, RlimitKind, Signal, User};

fn v1() -> bool {
    detect_version(Path::new("/sys/fs/cgroup")) == CgroupVersion::V1
}

#[test]
fn true_exits_zero() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("true", &["true"]);
    let out = run(&mut s).unwrap();
    assert_eq!((out.status.code, out.status.signal, out.status.oom_killed), (0, None, false));
}

#[test]
fn exit_code_is_passed_through() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("exit3", &["sh", "-c", "exit 3"]);
    assert_eq!(run(&mut s).unwrap().status.code, 3);
}

#[test]
fn sigkill_from_the_daemon_is_reported() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("sigkill", &["sleep", "1000"]);
    let r = spawn(&mut s).unwrap();
    r.container.kill(Signal::SIGKILL).unwrap();
    let out = r.finish();
    assert_eq!((out.status.code, out.status.signal), (137, Some(9)));
}

#[test]
fn pid1_ignores_unhandled_signals_from_inside_like_docker() {
    if !root() {
        return;
    }
    // The kernel protects a PID namespace's init: `kill -9 $$` from PID 1 itself does nothing.
    let (mut s, _dir) = spec("pid1-kill", &["sh", "-c", "kill -9 $$; echo survived"]);
    assert_eq!(output(&mut s), "survived\n");
}

#[test]
fn pid1_gets_signals_it_handles() {
    if !root() {
        return;
    }
    let script = "trap 'exit 7' TERM; sleep 1000 & echo ready; wait";
    let (mut s, _dir) = spec("sigterm", &["sh", "-c", script]);
    let mut r = spawn(&mut s).unwrap();
    let mut line = String::new();
    BufReader::new(&mut r.stdout).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    r.container.kill(Signal::SIGTERM).unwrap();
    let out = r.finish();
    assert_eq!((out.status.code, out.status.signal), (7, None));
}

#[test]
fn the_process_is_pid_1_with_a_clean_signal_state_and_only_stdio_open() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("pid1", &["cat", "/proc/1/cmdline", "/proc/self/status"]);
    let out = output(&mut s);
    assert!(out.starts_with("cat\0/proc/1/cmdline\0/proc/self/status\0"), "{out:?}");
    // The test harness ignores SIGPIPE; the container must not inherit that.
    assert!(out.contains("\nSigIgn:\t0000000000000000\n"), "{out}");
    assert!(out.contains("\nSigBlk:\t0000000000000000\n"), "{out}");
    // A descriptor the daemon left inheritable does not reach the container either.
    let leaky = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(leaky > 2);
    let (mut s, _dir) = spec("fds", &["ls", "/proc/self/fd"]);
    let out = output(&mut s);
    unsafe { libc::close(leaky) };
    // 0, 1, 2, and the directory ls is reading.
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"]);
}

#[test]
fn hostname_is_set_or_defaults_to_the_id() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("hostname", &["hostname"]);
    s.hostname = "box".into();
    assert_eq!(output(&mut s), "box\n");
    let (mut s, _dir) = spec("hostname-default", &["hostname"]);
    assert_eq!(output(&mut s).trim(), &id("hostname-default")[..12]);
}

#[test]
fn root_gets_docker_default_capabilities() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("caps", &["grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"]);
    let out = output(&mut s);
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    let (mut s, _dir) = spec("nnp", &["grep", "NoNewPrivs", "/proc/self/status"]);
    s.process.no_new_privileges = true;
    s.process.capabilities = vec!["CAP_KILL".into()];
    assert_eq!(output(&mut s), "NoNewPrivs:\t1\n");
}

#[test]
fn non_root_user_has_ids_groups_no_capabilities_and_a_created_cwd() {
    if !root() {
        return;
    }
    let script = "id; pwd; grep CapEff /proc/self/status; touch x 2>&1 || echo denied";
    let (mut s, dir) = spec("user", &["sh", "-c", script]);
    s.process.user = User { uid: 1000, gid: 1001, additional_gids: vec![1001, 2000] };
    s.process.cwd = "/home/app/work".into();
    let out = output(&mut s);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "uid=1000 gid=1001 groups=1001,2000");
    assert_eq!(lines[1], "/home/app/work");
    assert_eq!(lines[2], "CapEff:\t0000000000000000");
    // The working directory is root's (docker creates it 0755): user 1000 cannot write there.
    assert!(lines[3].contains("Permission denied") || lines[4] == "denied", "{out}");
    assert!(dir.path().join("c/upper/home/app/work").is_dir());
}

#[test]
fn core_dumps_are_off_by_default_and_rlimits_apply() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("ulimit", &["sh", "-c", "ulimit -c; ulimit -Hc; ulimit -n; ulimit -Hn"]);
    s.process.rlimits = vec![Rlimit { kind: RlimitKind::Nofile, soft: 1024, hard: 2048 }];
    assert_eq!(output(&mut s), "0\n0\n1024\n2048\n");
}

#[test]
fn memory_limit_oom_kill_is_detected() {
    if !root() {
        return;
    }
    let script = "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let (mut s, _dir) = spec("oom", &["sh", "-c", script]);
    s.resources = Resources { memory_limit: Some(16 << 20), ..Default::default() };
    let out = run(&mut s).unwrap();
    assert!(out.status.oom_killed, "{out:?}");
    assert_ne!(out.status.code, 0, "{out:?}");
    // Without a limit the same container is fine and not OOM-flagged.
    let (mut s, _dir) = spec("no-oom", &["sh", "-c", "x=$(head -c 4000 /dev/zero | tr '\\0' a); echo ${#x}"]);
    s.resources = Resources { memory_limit: Some(64 << 20), ..Default::default() };
    let out = run(&mut s).unwrap();
    assert_eq!((out.status.code, out.status.oom_killed, out.stdout.as_str()), (0, false, "4000\n"));
}

#[test]
fn pids_limit_stops_forks() {
    if !root() {
        return;
    }
    let script = "for i in 1 2 3 4 5 6 7 8; do sleep 100 & done";
    let (mut s, _dir) = spec("pids", &["sh", "-c", script]);
    s.resources = Resources { pids_limit: Some(4), cpu_shares: Some(512), ..Default::default() };
    let out = run(&mut s).unwrap();
    // busybox sh gives up at the first fork the pids controller refuses.
    assert!(out.stderr.contains("can't fork"), "{out:?}");
    assert_ne!(out.status.code, 0);
}

#[test]
fn limits_are_visible_in_the_container_cgroup() {
    if !root() || !v1() {
        return;
    }
    let script =
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares; \
                  touch /sys/fs/cgroup/pids/x 2>&1; grep -c . /sys/fs/cgroup/devices/devices.list";
    let (mut s, _dir) = spec("cgview", &["sh", "-c", script]);
    s.resources = Resources { memory_limit: Some(32 << 20), pids_limit: Some(50), cpu_shares: Some(256) };
    let out = output(&mut s);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["33554432", "50", "256"]);
    assert!(lines[3].contains("Read-only file system"), "{out}");
    assert_eq!(lines[4], "12", "docker's device whitelist");
}

#[test]
fn readonly_rootfs_refuses_writes() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("ro", &["sh", "-c", "touch /x; echo $?; touch /dev/shm/ok && echo shm-ok"]);
    s.rootfs.readonly = true;
    let out = run(&mut s).unwrap();
    assert_eq!(out.stdout, "1\nshm-ok\n");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
}

#[test]
fn tmpfs_and_bind_mounts() {
    if !root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "hello\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let script = "grep ' /scratch ' /proc/mounts; cat /data/f; touch /data/new 2>&1; echo out > /rw/written; \
                  echo x > /scratch/y && cat /scratch/y";
    let (mut s, _dir) = spec("mounts", &["sh", "-c", script]);
    s.mounts = vec![
        Mount::Tmpfs { destination: "/scratch".into(), size: Some(1 << 20), mode: Some(0o755) },
        Mount::Bind { source: host.path().into(), destination: "/data".into(), readonly: true },
        Mount::Bind { source: rw.path().into(), destination: "/rw".into(), readonly: false },
    ];
    let out = output(&mut s);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=755 0 0");
    assert_eq!(lines[1], "hello");
    assert!(lines[2].contains("Read-only file system"), "{out}");
    assert_eq!(lines[3], "x");
    assert!(!host.path().join("new").exists());
    assert_eq!(std::fs::read_to_string(rw.path().join("written")).unwrap(), "out\n");
}

#[test]
fn etc_files_are_bound() {
    if !root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hosts"), "127.0.0.1 localhost box\n").unwrap();
    std::fs::write(host.path().join("resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
    let (mut s, _dir) = spec("etc", &["cat", "/etc/hosts", "/etc/resolv.conf"]);
    s.etc_files.hosts = Some(host.path().join("hosts"));
    s.etc_files.resolv_conf = Some(host.path().join("resolv.conf"));
    assert_eq!(output(&mut s), "127.0.0.1 localhost box\nnameserver 10.0.0.1\n");
}

#[test]
fn default_mounts_masks_and_readonly_paths() {
    if !root() {
        return;
    }
    let script = "cat /proc/mounts; echo ---; cat /proc/keys /proc/timer_list 2>/dev/null | wc -c; \
                  ls -A /sys/firmware /proc/acpi 2>/dev/null | grep -v ':$' | grep -c .; \
                  echo 1 > /proc/sys/kernel/hostname 2>/dev/null || echo sys-ro; readlink /dev/ptmx; \
                  echo > /dev/null && echo null-ok; ls /dev/pts/ptmx";
    let (mut s, _dir) = spec("layout", &["sh", "-c", script]);
    let out = output(&mut s);
    let (mounts, rest) = out.split_once("---\n").unwrap();
    let has = |needle: &str| mounts.lines().any(|l| l.starts_with(needle));
    assert!(has("overlay / overlay rw,"), "{mounts}");
    assert!(has("proc /proc proc rw,nosuid,nodev,noexec"), "{mounts}");
    assert!(has("tmpfs /dev tmpfs rw,nosuid,size=65536k,mode=755"), "{mounts}");
    assert!(has("devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=666"), "{mounts}");
    assert!(has("sysfs /sys sysfs ro,nosuid,nodev,noexec"), "{mounts}");
    assert!(has("mqueue /dev/mqueue mqueue rw,nosuid,nodev,noexec"), "{mounts}");
    assert!(has("shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k"), "{mounts}");
    assert!(mounts.lines().any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" ro,")), "{mounts}");
    assert!(has("proc /proc/sys proc ro,"), "{mounts}");
    let targets: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert!(targets.iter().all(|t| !t.starts_with("/tmp")), "host mount points leak:\n{mounts}");
    let rest: Vec<&str> = rest.lines().collect();
    assert_eq!(rest, ["0", "0", "sys-ro", "pts/ptmx", "null-ok", "/dev/pts/ptmx"]);
}

#[test]
fn network_none_has_only_lo_up() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("net-none", &["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"]);
    s.network = Network::None;
    assert_eq!(output(&mut s), "lo\n0x9\n");
}

#[test]
fn network_host_sees_host_interfaces() {
    if !root() {
        return;
    }
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let (mut s, _dir) = spec("net-host", &["ls", "/sys/class/net"]);
    s.network = Network::Host;
    assert_eq!(output(&mut s).split_whitespace().collect::<Vec<_>>(), host);
}

#[test]
fn missing_binary_is_127_not_executable_is_126() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("notfound", &["no-such-binary", "arg"]);
    let err = run(&mut s).unwrap_err();
    assert_eq!(err.exit_code(), 127);
    assert_eq!(
        err.to_string(),
        "unable to start container process: exec: \"no-such-binary\": executable file not found in $PATH"
    );
    let (mut s, _dir) = spec("notfound-abs", &["/bin/nope"]);
    let err = run(&mut s).unwrap_err();
    assert_eq!(err.exit_code(), 127);
    assert!(err.to_string().contains("stat /bin/nope: no such file or directory"), "{err}");
    let (mut s, _dir) = spec("noexec", &["/etc/motd"]);
    let err = run(&mut s).unwrap_err();
    assert_eq!(err.exit_code(), 126);
    assert!(err.to_string().ends_with("exec: \"/etc/motd\": permission denied"), "{err}");
    // A failed start leaves no cgroup behind.
    if v1() {
        assert!(!cgroup_dir("memory", &id("noexec")).exists());
    }
}

#[test]
fn setup_errors_name_the_step() {
    if !root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("file"), "").unwrap();
    // A file bound onto a directory of the image.
    let (mut s, _dir) = spec("badmount", &["true"]);
    s.mounts = vec![Mount::Bind { source: host.path().join("file"), destination: "/bin".into(), readonly: false }];
    let err = run(&mut s).unwrap_err();
    assert_eq!(err.exit_code(), 128);
    let msg = err.to_string();
    assert!(msg.starts_with("container setup failed: bind mount on /bin: "), "{msg}");
    assert!(msg.ends_with("(are you trying to mount a directory onto a file, or the reverse?)"), "{msg}");
}

#[test]
fn writes_go_to_the_upper_dir_and_survive_a_restart() {
    if !root() {
        return;
    }
    let (mut s, dir) = spec("persist", &["sh", "-c", "echo hi > /state"]);
    output(&mut s);
    assert_eq!(std::fs::read_to_string(dir.path().join("c/upper/state")).unwrap(), "hi\n");
    s.process.args = vec!["cat".into(), "/state".into()];
    assert_eq!(output(&mut s), "hi\n");
    assert!(!common::layer().join("state").exists());
}

#[test]
fn image_symlinks_cannot_point_mounts_at_the_host() {
    if !root() {
        return;
    }
    // /escape -> <absolute host path>: inside the container that path is resolved in the rootfs.
    let inside = format!("{}/inner", escape_target().display());
    let script = format!("grep ' {inside} ' /proc/mounts | cut -d' ' -f1,3");
    let (mut s, dir) = spec("escape", &["sh", "-c", &script]);
    s.mounts = vec![Mount::Tmpfs { destination: "/escape/inner".into(), size: None, mode: None }];
    assert_eq!(output(&mut s), "tmpfs tmpfs\n");
    assert!(std::fs::read_dir(escape_target()).unwrap().next().is_none(), "the host directory was touched");
    assert!(dir.path().join("c/upper").join(inside.trim_start_matches('/')).is_dir());
}

#[test]
fn dangling_image_symlinks_lead_inside_the_container() {
    if !root() {
        return;
    }
    // /escape2 -> a host directory the image does not have: created inside the rootfs.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("resolv.conf"), "nameserver 10.0.0.2\n").unwrap();
    let inside = escape_target2().join("inner");
    let script = format!(
        "cat /etc/resolv.conf; ls -d /run/systemd/resolve; grep -c ' {} tmpfs' /proc/mounts; grep -c ' {} tmpfs' /proc/mounts",
        inside.display(),
        escape_target2().join("climbed").display()
    );
    let (mut s, dir) = spec("dangling", &["sh", "-c", &script]);
    s.mounts = vec![
        Mount::Tmpfs { destination: "/escape2/inner".into(), size: None, mode: None },
        // /climb -> ../../../../(…)/<that host directory>: `..` stops at the container's `/`.
        Mount::Tmpfs { destination: "/climb/climbed".into(), size: None, mode: None },
    ];
    // The image's /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf, which is missing.
    s.etc_files.resolv_conf = Some(host.path().join("resolv.conf"));
    assert_eq!(output(&mut s), "nameserver 10.0.0.2\n/run/systemd/resolve\n1\n1\n");
    assert!(std::fs::read_dir(escape_target2()).unwrap().next().is_none(), "the host directory was touched");
    assert!(dir.path().join("c/upper").join(inside.strip_prefix("/").unwrap()).is_dir());
}

#[test]
fn readonly_binds_are_recursive() {
    if !root() {
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let c = std::ffi::CString::new(sub.to_str().unwrap()).unwrap();
    let r = unsafe { libc::mount(c"tmpfs".as_ptr(), c.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) };
    assert_eq!(r, 0);
    let _unmount = Unmount(sub.clone());
    let (mut s, _dir) = spec("rro", &["sh", "-c", "touch /data/sub/x 2>&1; touch /data/y 2>&1; true"]);
    s.mounts = vec![Mount::Bind { source: host.path().into(), destination: "/data".into(), readonly: true }];
    let out = output(&mut s);
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert!(!sub.join("x").exists());
}

#[test]
fn stdin_and_env_reach_the_process() {
    if !root() {
        return;
    }
    let (r, w) = common::pipe();
    let (mut s, _dir) = spec("stdin", &["sh", "-c", "cat; echo $FOO"]);
    s.process.env.push("FOO=bar baz".into());
    s.stdio.stdin = Some(r.as_raw_fd());
    let running = spawn(&mut s).unwrap();
    drop(r);
    let mut w = std::fs::File::from(w);
    std::io::Write::write_all(&mut w, b"from stdin\n").unwrap();
    drop(w);
    let out = running.finish();
    assert_eq!(out.stdout, "from stdin\nbar baz\n");
}

#[test]
fn cleanup_removes_the_cgroup_and_leaves_no_host_mount() {
    if !root() {
        return;
    }
    let (mut s, dir) = spec("cleanup", &["sleep", "1000"]);
    s.resources.memory_limit = Some(64 << 20);
    let r = spawn(&mut s).unwrap();
    let pid = r.container.pid();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroup.contains(&format!("/{}/{}", common::CGROUP_PARENT, id("cleanup"))), "{cgroup}");
    // cleanup() kills a running container.
    r.container.cleanup().unwrap();
    if v1() {
        for c in ["memory", "pids", "cpu", "devices"] {
            assert!(!cgroup_dir(c, &id("cleanup")).exists(), "{c}");
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir.path().display().to_string()), "{mounts}");
}

#[test]
fn concurrent_starts_from_many_threads() {
    if !root() {
        return;
    }
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let (mut s, _dir) = spec(&format!("par{i}"), &["sh", "-c", "echo $$"]);
                output(&mut s)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "1\n");
    }
}

#[test]
fn wait_and_kill_from_two_threads() {
    if !root() {
        return;
    }
    let (mut s, _dir) = spec("waitkill", &["sleep", "1000"]);
    let r = spawn(&mut s).unwrap();
    let container = std::sync::Arc::new(r.container);
    let waiter = {
        let c = container.clone();
        std::thread::spawn(move || c.wait().unwrap())
    };
    container.kill(Signal::SIGKILL).unwrap();
    let status = waiter.join().unwrap();
    assert_eq!(status.signal, Some(9));
    assert_eq!(container.wait().unwrap(), status);
    assert!(matches!(container.kill(Signal::SIGKILL), Err(runtime::Error::NotRunning)));
}
