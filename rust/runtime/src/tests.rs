//! The child's syscall sequence, checked with the recording fake (no root needed).

use std::path::PathBuf;

use crate::cgroups::{CgroupVersion, SysfsCgroup};
use crate::child;
use crate::plan::Plan;
use crate::setup::{build, Host};
use crate::spec::{ContainerSpec, Mount, Network, Rootfs, User};
use crate::syscall::fake::FakeSyscall;
use crate::syscall::Errno;

fn spec() -> ContainerSpec {
    let rootfs = Rootfs { lower_dirs: vec!["/l/a".into(), "/l/b".into()], container_dir: "/c".into(), readonly: false };
    ContainerSpec::new("c1", rootfs, vec!["sh".into(), "-c".into(), "true".into()])
}

fn host(version: CgroupVersion) -> Host {
    let (procs, sysfs) = match version {
        CgroupVersion::V1 => (
            vec![
                (20, PathBuf::from("/sys/fs/cgroup/memory/be/c1/cgroup.procs")),
                (21, PathBuf::from("/sys/fs/cgroup/pids/be/c1/cgroup.procs")),
            ],
            SysfsCgroup::V1(vec![
                ("memory".into(), "/sys/fs/cgroup/memory/be/c1".into()),
                ("pids".into(), "/sys/fs/cgroup/pids/be/c1".into()),
            ]),
        ),
        CgroupVersion::V2 => (vec![(20, PathBuf::from("/sys/fs/cgroup/be/c1/cgroup.procs"))], SysfsCgroup::V2),
    };
    Host {
        report_fd: 7,
        stdio: [10, 11, 12],
        cgroup_procs: procs,
        cgroup_version: version,
        sysfs_cgroup: sysfs,
        last_cap: 40,
        option_limit: 4095,
    }
}

/// Runs the plan against a fresh fake; returns the calls and where the run stopped.
fn run(plan: &Plan, fake: FakeSyscall) -> (Vec<String>, child::Failure) {
    let failure = child::run(&fake, plan);
    (fake.calls(), failure)
}

fn calls_of(spec: &ContainerSpec, version: CgroupVersion) -> Vec<String> {
    let plan = build(spec, &host(version)).unwrap();
    let (calls, failure) = run(&plan, FakeSyscall::new());
    // The fake's exec "fails" with ENOEXEC on the first candidate: the plan ran to its end.
    assert_eq!(failure.errno, Errno::ENOEXEC);
    assert_eq!(failure.step, plan.steps.len() - 1);
    calls
}

fn mount_calls(calls: &[String]) -> Vec<&str> {
    let kinds = ["mount", "umount2 ", "pivot_root ", "chdir ", "open_tree ", "move_mount ", "mknod ", "symlink "];
    calls.iter().map(String::as_str).filter(|c| kinds.iter().any(|k| c.starts_with(k))).collect()
}

#[test]
fn mount_sequence_v2() {
    let calls = calls_of(&spec(), CgroupVersion::V2);
    let expected = [
        "mount - / - rec|slave -",
        "mount overlay /c/merged overlay 0 lowerdir=/l/a:/l/b,upperdir=/c/upper,workdir=/c/work",
        "chdir /c/merged",
        "pivot_root . .",
        "umount2 . detach",
        "chdir /",
        "mount proc /proc proc nosuid|nodev|noexec -",
        "mount tmpfs /dev tmpfs nosuid|strictatime mode=755,size=65536k",
        "mount sysfs /sys sysfs ro|nosuid|nodev|noexec -",
        "mount devpts /dev/pts devpts nosuid|noexec newinstance,ptmxmode=0666,mode=0620,gid=5",
        "mount mqueue /dev/mqueue mqueue nosuid|nodev|noexec -",
        "mount shm /dev/shm tmpfs nosuid|nodev|noexec mode=1777,size=65536k",
        "mount cgroup /sys/fs/cgroup cgroup2 ro|nosuid|nodev|noexec|relatime -",
        "mknod /dev/null 20666 1:3",
        "mknod /dev/zero 20666 1:5",
        "mknod /dev/full 20666 1:7",
        "mknod /dev/random 20666 1:8",
        "mknod /dev/urandom 20666 1:9",
        "mknod /dev/tty 20666 5:0",
        "symlink /proc/self/fd /dev/fd",
        "symlink /proc/self/fd/0 /dev/stdin",
        "symlink /proc/self/fd/1 /dev/stdout",
        "symlink /proc/self/fd/2 /dev/stderr",
        "symlink pts/ptmx /dev/ptmx",
        "mount /dev/null /proc/acpi - bind -",
        "mount /dev/null /proc/kcore - bind -",
        "mount /dev/null /proc/keys - bind -",
        "mount /dev/null /proc/latency_stats - bind -",
        "mount /dev/null /proc/timer_list - bind -",
        "mount /dev/null /proc/timer_stats - bind -",
        "mount /dev/null /proc/sched_debug - bind -",
        "mount /dev/null /proc/scsi - bind -",
        "mount /dev/null /sys/firmware - bind -",
        "mount /dev/null /sys/devices/virtual/powercap - bind -",
        "mount /proc/bus /proc/bus - bind|rec -",
        "mount - /proc/bus - ro|nosuid|nodev|noexec|remount|bind -",
        "mount /proc/fs /proc/fs - bind|rec -",
        "mount - /proc/fs - ro|nosuid|nodev|noexec|remount|bind -",
        "mount /proc/irq /proc/irq - bind|rec -",
        "mount - /proc/irq - ro|nosuid|nodev|noexec|remount|bind -",
        "mount /proc/sys /proc/sys - bind|rec -",
        "mount - /proc/sys - ro|nosuid|nodev|noexec|remount|bind -",
        "mount /proc/sysrq-trigger /proc/sysrq-trigger - bind|rec -",
        "mount - /proc/sysrq-trigger - ro|nosuid|nodev|noexec|remount|bind -",
        "chdir /",
    ];
    assert_eq!(mount_calls(&calls), expected);
}

#[test]
fn process_sequence_before_exec() {
    let mut s = spec();
    s.process.user = User { uid: 1000, gid: 1001, additional_gids: vec![27, 100] };
    s.process.no_new_privileges = true;
    s.process.cwd = "/work/dir".into();
    s.hostname = "box".into();
    let calls = calls_of(&s, CgroupVersion::V2);
    assert_eq!(
        calls[..12],
        [
            "reset_signals",
            "setsid",
            "dup_cloexec 10 3 = 100",
            "dup_cloexec 11 3 = 101",
            "dup_cloexec 12 3 = 102",
            "dup2 100 0",
            "dup2 101 1",
            "dup2 102 2",
            "close 100",
            "close 101",
            "close 102",
            "write 20 0",
        ]
    );
    assert_eq!(calls[12], "write_file /proc/self/oom_score_adj 0");
    assert_eq!(calls[13], format!("unshare {:#x}", libc::CLONE_NEWCGROUP));
    assert_eq!(calls[14..17], ["close_range 3 6", "close_range 8 max", "umask 0"]);
    let tail_start = calls.iter().position(|c| c == "sethostname box").unwrap();
    let tail: Vec<&str> =
        calls[tail_start..].iter().map(String::as_str).filter(|c| !c.starts_with("capbset_drop")).collect();
    assert_eq!(
        tail,
        [
            "sethostname box",
            "loopback_up",
            "setrlimit 4 0 0",
            "chdir /work/dir",
            "set_keepcaps true",
            "setgroups [27, 100]",
            "setgid 1001",
            "setuid 1000",
            "capset 0xa80425fb 0xa80425fb 0x0",
            "set_no_new_privs",
            "umask 22",
            "execve /usr/local/sbin/sh sh -c true",
        ]
    );
    // Every capability outside docker's default set leaves the bounding set.
    let dropped = calls.iter().filter(|c| c.starts_with("capbset_drop ")).count();
    assert_eq!(dropped, 41 - 14);
    assert!(calls.contains(&"capbset_drop 21".to_string()), "CAP_SYS_ADMIN is dropped");
    assert!(!calls.contains(&"capbset_drop 0".to_string()), "CAP_CHOWN is kept");
}

#[test]
fn masked_directories_get_a_readonly_tmpfs_and_absent_paths_are_skipped() {
    let plan = build(&spec(), &host(CgroupVersion::V2)).unwrap();
    let fake = FakeSyscall::new();
    fake.fail("mount /dev/null /proc/acpi ", Errno::ENOTDIR);
    fake.fail("mount /dev/null /proc/timer_stats ", Errno::ENOENT);
    fake.fail("mount /proc/irq /proc/irq ", Errno::ENOENT);
    let (calls, _) = run(&plan, fake);
    let at = calls.iter().position(|c| c.starts_with("mount /dev/null /proc/acpi")).unwrap();
    assert_eq!(calls[at + 1], "mount tmpfs /proc/acpi tmpfs ro -");
    let at = calls.iter().position(|c| c.starts_with("mount /dev/null /proc/timer_stats")).unwrap();
    assert_eq!(calls[at + 1], "mount /dev/null /proc/sched_debug - bind -");
    let at = calls.iter().position(|c| c.starts_with("mount /proc/irq")).unwrap();
    assert_eq!(calls[at + 1], "mount /proc/sys /proc/sys - bind|rec -");
}

#[test]
fn binds_tmpfs_and_readonly_root_v1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), "").unwrap();
    let mut s = spec();
    s.rootfs.readonly = true;
    s.network = Network::Host;
    s.mounts = vec![
        Mount::Bind { source: dir.path().into(), destination: "/data".into(), readonly: true },
        Mount::Tmpfs { destination: "/run".into(), size: Some(1 << 20), mode: Some(0o755) },
    ];
    s.etc_files.hosts = Some(dir.path().join("hosts"));
    let calls = calls_of(&s, CgroupVersion::V1);
    let src = dir.path().display();
    let has = |line: &str| calls.iter().any(|c| c == line);
    // Sources are cloned before the pivot, attached after the old root is gone.
    let clone_data = calls.iter().position(|c| c == &format!("open_tree {src} = 103")).unwrap();
    let pivot = calls.iter().position(|c| c == "pivot_root . .").unwrap();
    let detach = calls.iter().position(|c| c == "umount2 . detach").unwrap();
    let attach_data = calls.iter().position(|c| c == "move_mount 103 /data").unwrap();
    assert!(clone_data < pivot && pivot < detach && detach < attach_data);
    for line in [
        "mount_setattr /data rdonly recursive".to_string(),
        "mount tmpfs /run tmpfs nosuid|nodev|noexec size=1048576,mode=755".into(),
        // /etc/hosts follows the rootfs: read-only here.
        "move_mount 104 /etc/hosts".into(),
        "mount_setattr /etc/hosts rdonly recursive".into(),
        // v1: a read-only tmpfs with the container's own cgroup directories.
        "mount tmpfs /sys/fs/cgroup tmpfs nosuid|nodev|noexec mode=755".into(),
        "move_mount 105 /sys/fs/cgroup/memory".into(),
        "mount_setattr /sys/fs/cgroup/memory rdonly recursive".into(),
        "mount - /sys/fs/cgroup - ro|nosuid|nodev|noexec|remount|bind -".into(),
    ] {
        assert!(has(&line), "missing {line:?} in {calls:#?}");
    }
    let ro_root = calls.iter().position(|c| c == "mount - / - ro|remount|bind -").unwrap();
    assert!(ro_root > calls.iter().position(|c| c == "mkdir /work 755").unwrap_or(0));
    assert!(!calls.iter().any(|c| c.starts_with("unshare")), "no cgroup namespace on v1");
    assert!(!has("loopback_up"), "host network");
}

#[test]
fn readonly_binds_fall_back_to_a_remount_before_linux_5_12() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.mounts = vec![Mount::Bind { source: dir.path().into(), destination: "/data".into(), readonly: true }];
    let plan = build(&s, &host(CgroupVersion::V2)).unwrap();
    let fake = FakeSyscall::new();
    fake.fail("mount_setattr", Errno::ENOSYS);
    let (calls, _) = run(&plan, fake);
    let at = calls.iter().position(|c| c == "mount_setattr /data rdonly recursive").unwrap();
    // The remount keeps the source's nosuid/nodev/noexec (none on a temp dir).
    assert_eq!(calls[at + 1], "mount - /data - ro|remount|bind -");
}

#[test]
fn without_open_tree_binds_fail_clearly_and_the_cgroup_view_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec();
    let fake = FakeSyscall::new();
    fake.fail("open_tree", Errno::ENOSYS);
    let plan = build(&s, &host(CgroupVersion::V1)).unwrap();
    let (calls, failure) = run(&plan, fake);
    assert_eq!(failure.errno, Errno::ENOEXEC, "the start goes on: {calls:#?}");
    assert!(!calls.iter().any(|c| c.starts_with("move_mount")));
    s.mounts = vec![Mount::Bind { source: dir.path().into(), destination: "/data".into(), readonly: false }];
    let plan = build(&s, &host(CgroupVersion::V1)).unwrap();
    let fake = FakeSyscall::new();
    fake.fail("open_tree", Errno::ENOSYS);
    let (_, failure) = run(&plan, fake);
    let err = crate::process::explain_for_tests(&plan, failure).to_string();
    assert!(err.ends_with("ENOSYS: Function not implemented (bind mounts need Linux 5.2 or later)"), "{err}");
}

#[test]
fn working_dir_is_created_before_the_root_turns_readonly() {
    let mut s = spec();
    s.rootfs.readonly = true;
    s.process.cwd = "/srv/app".into();
    let plan = build(&s, &host(CgroupVersion::V2)).unwrap();
    let fake = FakeSyscall::new();
    fake.missing("/srv/app").missing("/srv");
    let (calls, _) = run(&plan, fake);
    let mkdir = calls.iter().position(|c| c == "mkdir /srv/app 755").unwrap();
    let ro = calls.iter().position(|c| c == "mount - / - ro|remount|bind -").unwrap();
    let chdir = calls.iter().position(|c| c == "chdir /srv/app").unwrap();
    assert!(mkdir < ro && ro < chdir);
}

#[test]
fn rlimits_as_given_and_core_off_by_default() {
    use crate::rlimits::{Rlimit, RlimitKind};
    let mut s = spec();
    s.process.rlimits = vec![Rlimit { kind: RlimitKind::Nofile, soft: 1024, hard: 4096 }];
    let calls = calls_of(&s, CgroupVersion::V2);
    let limits: Vec<&String> = calls.iter().filter(|c| c.starts_with("setrlimit")).collect();
    assert_eq!(
        limits,
        [&format!("setrlimit {} 1024 4096", libc::RLIMIT_NOFILE), &format!("setrlimit {} 0 0", libc::RLIMIT_CORE)]
    );
    s.process.rlimits = vec![Rlimit { kind: RlimitKind::Core, soft: u64::MAX, hard: u64::MAX }];
    let calls = calls_of(&s, CgroupVersion::V2);
    let limits: Vec<&String> = calls.iter().filter(|c| c.starts_with("setrlimit")).collect();
    assert_eq!(limits, [&format!("setrlimit {} {} {}", libc::RLIMIT_CORE, u64::MAX, u64::MAX)]);
    s.process.rlimits = vec![Rlimit { kind: RlimitKind::Nofile, soft: 10, hard: 5 }];
    assert!(build(&s, &host(CgroupVersion::V2)).is_err());
}

#[test]
fn a_failing_step_is_reported_by_index_and_worded_by_the_parent() {
    let plan = build(&spec(), &host(CgroupVersion::V2)).unwrap();
    let fake = FakeSyscall::new();
    fake.fail("sethostname", Errno::EPERM);
    let (calls, failure) = run(&plan, fake);
    assert_eq!(calls.last().unwrap(), "sethostname c1");
    assert_eq!(failure.errno, Errno::EPERM);
    let err = crate::process::explain_for_tests(&plan, failure);
    assert_eq!(err.to_string(), "container setup failed: sethostname \"c1\": EPERM: Operation not permitted");
    assert_eq!(err.exit_code(), 128);
}

#[test]
fn exec_searches_path_and_reports_not_found() {
    let mut s = spec();
    s.process.args = vec!["nope".into()];
    s.process.env = vec!["PATH=/bin:/usr/bin".into()];
    let plan = build(&s, &host(CgroupVersion::V2)).unwrap();
    let fake = FakeSyscall::new();
    fake.fail("execve", Errno::ENOENT).missing("/bin/nope").missing("/usr/bin/nope");
    let (calls, failure) = run(&plan, fake);
    assert_eq!(calls[calls.len() - 2..], ["execve /bin/nope nope", "execve /usr/bin/nope nope"]);
    let err = crate::process::explain_for_tests(&plan, failure);
    assert_eq!(
        err.to_string(),
        "unable to start container process: exec: \"nope\": executable file not found in $PATH"
    );
    assert_eq!(err.exit_code(), 127);
}

#[test]
fn clone_flags_follow_the_network_mode() {
    use crate::namespaces::clone_flags;
    let base = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    assert_eq!(clone_flags(Network::Host), base);
    assert_eq!(clone_flags(Network::None), base | libc::CLONE_NEWNET);
}

#[test]
fn rejects_bad_specs() {
    let mut s = spec();
    s.process.capabilities.push("CAP_NOPE".into());
    assert!(build(&s, &host(CgroupVersion::V2)).unwrap_err().to_string().contains("CAP_NOPE"));
    let mut s = spec();
    s.process.cwd = "relative".into();
    assert!(build(&s, &host(CgroupVersion::V2)).is_err());
    let mut s = spec();
    s.hostname = "x".repeat(65);
    assert!(build(&s, &host(CgroupVersion::V2)).is_err());
    assert!(crate::setup::validate_id("../x").is_err());
    assert!(crate::setup::validate_id("c1_a.b-2").is_ok());
}

/// The v2 code path on the real kernel: on a hybrid host the empty unified hierarchy has no
/// controllers, but joining, the cgroup namespace and the cgroup2 mount work the same. Root only.
#[test]
fn v2_flow_on_the_unified_hierarchy() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    let unified = Path::new("/sys/fs/cgroup/unified");
    if unsafe { libc::geteuid() } != 0 || !unified.join("cgroup.procs").exists() || !Path::new("/bin/busybox").exists()
    {
        eprintln!("skipped: needs root, busybox and a cgroup2 hierarchy at {}", unified.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "grep", "mknod", "head"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    let rootfs = Rootfs { lower_dirs: vec![layer], container_dir: dir.path().join("c"), readonly: false };
    // The device filter (eBPF): a block device node may be created but not opened; /dev/null works.
    let script = "cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/mounts; \
                  mknod /disk b 7 0 && echo mknod=ok; head -c1 /disk 2>&1; echo disk=$?; echo x > /dev/null; echo null=$?";
    let mut s = ContainerSpec::new("v2-flow", rootfs, vec!["sh".into(), "-c".into(), script.into()]);
    s.cgroup_parent = "balena-engine-test".into();
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    s.stdio.stdout = Some(w.as_raw_fd());
    let container = crate::process::start_in(&s, unified).unwrap();
    drop(w);
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    let status = container.wait().unwrap();
    container.cleanup().unwrap();
    assert_eq!(status.code, 0, "{out}");
    // In its own cgroup namespace the container's cgroup is the root.
    assert!(out.lines().any(|l| l == "0::/"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("cgroup /sys/fs/cgroup cgroup2 ro,")), "{out}");
    assert!(out.lines().any(|l| l == "mknod=ok"), "{out}");
    assert!(out.lines().any(|l| l == "disk=1"), "{out}");
    assert!(out.contains("/disk: Operation not permitted"), "{out}");
    assert!(out.lines().any(|l| l == "null=0"), "{out}");
    assert!(!unified.join("balena-engine-test/v2-flow").exists());
    let _ = std::fs::remove_dir(unified.join("balena-engine-test"));
}
