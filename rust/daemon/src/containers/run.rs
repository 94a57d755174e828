//! Running containers: start, the supervisor thread of each (output, exit, restart policy, `--rm`),
//! stop, kill, remove; and the daemon's boot (restore, restart policies) and shutdown (stop all).
//!
//! Locks: `Ctr::op` serialises the user's operations on one container (start, stop, restart, remove);
//! `Ctr::inner` guards its state and is held only briefly. The supervisor never takes `op` except to
//! remove a `--rm` container after its last exit.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::Signal;

use super::deps::{self, LogConfig};
use super::record::Record;
use super::{lock, output, parse_signal, spec, Ctr, Manager};
use crate::api::error::ApiError;
use crate::restart::{self, RestartPolicy};

/// The default `docker stop` timeout.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// What a started run hands its supervisor.
struct Run {
    proc_: Arc<runtime::Container>,
    out: OwnedFd,
    err: OwnedFd,
    log_out: OwnedFd,
    log_err: OwnedFd,
    copier: deps::LogCopier,
}

/// Why a start failed: docker's exit code (127/126/128), the message, and whether it is the user's
/// command (400) or the engine (500).
struct StartError {
    code: i32,
    message: String,
    user: bool,
}

impl StartError {
    fn engine(message: String) -> StartError {
        StartError { code: 128, message, user: false }
    }

    fn api(&self) -> ApiError {
        if self.user {
            ApiError::bad_request(&self.message)
        } else {
            ApiError::internal(&self.message)
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn stop_signal(rec: &Record) -> Signal {
    rec.config["StopSignal"].as_str().and_then(|s| parse_signal(s).ok()).unwrap_or(Signal::SIGTERM)
}

fn policy(rec: &Record) -> RestartPolicy {
    RestartPolicy::from_host_config(&rec.host_config["RestartPolicy"]).unwrap_or_default()
}

/// Prepares what the runtime needs and starts the process.
fn launch(mgr: &Manager, ctr: &Ctr, rec: &Record) -> Result<Run, StartError> {
    for m in &rec.mounts {
        match m.kind.as_str() {
            "bind" if m.create_source && !m.source.exists() => {
                fs::create_dir_all(&m.source)
                    .map_err(|e| StartError::engine(format!("creating bind source {}: {e}", m.source.display())))?;
            }
            "bind" if !m.source.exists() => {
                return Err(StartError {
                    code: 128,
                    message: format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source.display()
                    ),
                    user: true,
                })
            }
            "volume" => {
                mgr.volumes
                    .get_or_create(&m.name, Default::default())
                    .map_err(|e| StartError::engine(e.to_string()))?;
                if !m.mode.split(',').any(|o| o == "nocopy") {
                    super::copyup::populate(&rec.lower_dirs, &m.destination, &mgr.volumes.path(&m.name)).map_err(
                        |e| {
                            StartError::engine(format!(
                                "copying the image's {} into volume {}: {e}",
                                m.destination, m.name
                            ))
                        },
                    )?;
                }
            }
            _ => {}
        }
    }
    let mut spec = spec::build(&ctr.dir, rec).map_err(|message| StartError { code: 128, message, user: true })?;
    let log_cfg = LogConfig::from_host_config(&rec.host_config["LogConfig"]).map_err(StartError::engine)?;
    let io = |e: std::io::Error| StartError::engine(format!("creating the container's output pipes: {e}"));
    let (out_r, out_w) = pipe().map_err(io)?;
    let (err_r, err_w) = pipe().map_err(io)?;
    let (lo_r, lo_w) = pipe().map_err(io)?;
    let (le_r, le_w) = pipe().map_err(io)?;
    let copier = deps::spawn_log_copier_named(&ctr.dir, &log_cfg, lo_r, le_r, &rec.id, rec.short_name())
        .map_err(|e| StartError::engine(format!("starting the log driver: {e}")))?;
    spec.stdio.stdout = Some(out_w.as_raw_fd());
    spec.stdio.stderr = Some(err_w.as_raw_fd());
    match runtime::start(&spec) {
        Ok(c) => {
            drop((out_w, err_w));
            Ok(Run { proc_: Arc::new(c), out: out_r, err: err_r, log_out: lo_w, log_err: le_w, copier })
        }
        Err(e) => {
            drop((lo_w, le_w));
            copier.join();
            // A limit the host's cgroups cannot apply is the request's (400), with the fix in the message.
            let user = matches!(
                e,
                runtime::Error::Exec(_)
                    | runtime::Error::Setup { .. }
                    | runtime::Error::InvalidSpec(_)
                    | runtime::Error::Cgroup(_)
            );
            Err(StartError { code: e.exit_code(), message: e.to_string(), user })
        }
    }
}

impl Manager {
    /// `POST /containers/{id}/start`: false when it was already running (304).
    pub fn start(self: &Arc<Self>, ctr: &Arc<Ctr>) -> Result<bool, ApiError> {
        if self.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        let _op = lock(&ctr.op);
        self.start_locked(ctr, true)
    }

    fn start_locked(self: &Arc<Self>, ctr: &Arc<Ctr>, by_user: bool) -> Result<bool, ApiError> {
        let rec = {
            let i = ctr.lock();
            if i.removing || i.removed {
                return Err(ApiError::conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    ctr.id
                )));
            }
            if i.supervising {
                return Ok(false);
            }
            i.rec.clone()
        };
        match launch(self, ctr, &rec) {
            Ok(run) => {
                {
                    let mut i = ctr.lock();
                    i.rec.set_running(run.proc_.pid());
                    if by_user {
                        i.rec.manually_stopped = false;
                        i.rec.restart_count = 0;
                        i.rec.consecutive_failures = 0;
                    }
                    i.exit_on_next = false;
                    i.cancel = false;
                    i.supervising = true;
                    i.proc_ = Some(run.proc_.clone());
                    i.started = Some(Instant::now());
                    ctr.save(&i);
                    ctr.notify(&i);
                }
                self.event(ctr, "start", &[]);
                let (mgr, c) = (self.clone(), ctr.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("ctr-{}", &ctr.id[..12]))
                    .spawn(move || supervise(mgr, c, run));
                if let Err(e) = spawned {
                    // Without a supervisor nobody would reap it: undo.
                    log::error!("container {}: starting its supervisor: {e}", ctr.id);
                    let p = ctr.lock().proc_.take();
                    if let Some(p) = p {
                        let _ = p.kill(Signal::SIGKILL);
                    }
                    return Err(ApiError::internal(format!("starting the supervisor thread: {e}")));
                }
                Ok(true)
            }
            Err(e) => {
                {
                    let mut i = ctr.lock();
                    i.rec.set_start_error(e.code, e.message.clone());
                    ctr.save(&i);
                    ctr.notify(&i);
                }
                lock(&ctr.subscribers).clear();
                if rec.auto_remove() {
                    if let Err(re) = self.remove_locked(ctr, true, true) {
                        log::warn!("container {}: auto-remove after a failed start: {}", ctr.id, re.message);
                    }
                }
                Err(e.api())
            }
        }
    }

    /// Blocks until the container's supervisor is done (exit recorded, no restart pending), at most
    /// `timeout`; true if it is.
    fn wait_inactive(&self, ctr: &Ctr, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut i = ctr.lock();
        while i.supervising {
            match deadline {
                None => i = ctr.cond.wait(i).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    i = ctr.cond.wait_timeout(i, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }

    /// `POST /containers/{id}/stop?t=`: false when it was not running (304).
    pub fn stop(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        timeout: Option<i64>,
        signal: Option<Signal>,
    ) -> Result<bool, ApiError> {
        let _op = lock(&ctr.op);
        Ok(self.stop_locked(ctr, timeout, signal, true))
    }

    /// The stop signal, then SIGKILL after the timeout (negative: wait for ever).
    fn stop_locked(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        timeout: Option<i64>,
        signal: Option<Signal>,
        by_user: bool,
    ) -> bool {
        let (proc_, sig, t) = {
            let mut i = ctr.lock();
            if !i.supervising {
                return false;
            }
            if by_user {
                i.rec.manually_stopped = true;
            } else {
                i.rec.stopped_by_shutdown = true;
            }
            i.exit_on_next = true;
            i.cancel = true;
            ctr.save(&i);
            ctr.cond.notify_all();
            let t = timeout.or(i.rec.config["StopTimeout"].as_i64()).unwrap_or(DEFAULT_STOP_TIMEOUT);
            (i.proc_.clone(), signal.unwrap_or_else(|| stop_signal(&i.rec)), t)
        };
        let Some(p) = proc_ else {
            // Waiting to restart: the cancel ends it.
            self.wait_inactive(ctr, None);
            self.event(ctr, "stop", &[]);
            return true;
        };
        self.event(ctr, "kill", &[("signal", (sig as i32).to_string())]);
        let _ = p.kill(sig);
        let timeout = (t >= 0).then(|| Duration::from_secs(t as u64));
        if !self.wait_inactive(ctr, timeout) {
            log::info!("container {} did not stop within {t}s of {sig}: killing it", ctr.id);
            self.event(ctr, "kill", &[("signal", "9".into())]);
            let _ = p.kill(Signal::SIGKILL);
            self.wait_inactive(ctr, None);
        }
        self.event(ctr, "stop", &[]);
        true
    }

    /// `POST /containers/{id}/kill?signal=`. SIGKILL waits for the exit to be recorded, as dockerd does.
    pub fn kill(self: &Arc<Self>, ctr: &Arc<Ctr>, sig: Signal) -> Result<(), ApiError> {
        let p = {
            let mut i = ctr.lock();
            if !i.rec.state.running || i.proc_.is_none() {
                if i.rec.state.restarting {
                    return Err(ApiError::conflict(format!(
                        "Cannot kill container: {}: Container {} is restarting, wait until the container is running",
                        i.rec.short_name(),
                        ctr.id
                    )));
                }
                return Err(ApiError::conflict(format!(
                    "Cannot kill container: {}: Container {} is not running",
                    i.rec.short_name(),
                    ctr.id
                )));
            }
            if !self.is_shutting_down() {
                i.rec.manually_stopped = true;
            }
            let ss = stop_signal(&i.rec);
            if sig == Signal::SIGKILL || sig == ss || i.rec.config["StopSignal"].is_null() {
                i.exit_on_next = true;
            }
            ctr.save(&i);
            i.proc_.clone()
        };
        let Some(p) = p else { return Ok(()) };
        self.event(ctr, "kill", &[("signal", (sig as i32).to_string())]);
        if let Err(e) = p.kill(sig) {
            return Err(ApiError::conflict(format!("Cannot kill container: {}: {e}", ctr.id)));
        }
        if sig == Signal::SIGKILL {
            self.wait_inactive(ctr, Some(Duration::from_secs(10)));
        }
        Ok(())
    }

    /// `POST /containers/{id}/restart?t=`.
    pub fn restart(self: &Arc<Self>, ctr: &Arc<Ctr>, timeout: Option<i64>) -> Result<(), ApiError> {
        if self.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        let _op = lock(&ctr.op);
        self.stop_locked(ctr, timeout, None, true);
        self.start_locked(ctr, true)?;
        self.event(ctr, "restart", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}?force=&v=`.
    pub fn remove(self: &Arc<Self>, ctr: &Arc<Ctr>, force: bool, volumes: bool) -> Result<(), ApiError> {
        let _op = lock(&ctr.op);
        self.remove_locked(ctr, force, volumes)
    }

    fn remove_locked(self: &Arc<Self>, ctr: &Arc<Ctr>, force: bool, volumes: bool) -> Result<(), ApiError> {
        let p = {
            let mut i = ctr.lock();
            if i.removed {
                return Ok(());
            }
            if i.supervising && !force {
                return Err(ApiError::conflict(format!(
                    "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                    i.rec.name
                )));
            }
            i.removing = true;
            i.cancel = true;
            i.exit_on_next = true;
            ctr.cond.notify_all();
            if i.supervising {
                i.proc_.clone()
            } else {
                None
            }
        };
        if let Some(p) = p {
            self.event(ctr, "kill", &[("signal", "9".into())]);
            let _ = p.kill(Signal::SIGKILL);
        }
        self.wait_inactive(ctr, None);
        let rec = {
            let mut i = ctr.lock();
            i.rec.state.status = "removing".into();
            ctr.save(&i);
            i.rec.clone()
        };
        self.unregister(ctr);
        lock(&ctr.subscribers).clear();
        if let Err(e) = remove_dir(&ctr.dir) {
            log::error!("container {}: removing {}: {e}", ctr.id, ctr.dir.display());
        }
        // Its image's layers go too if no image keeps them any more (`rmi -f` while it existed).
        if let Some(d) = self.daemon() {
            match d.with_reader(|s| Ok(s.remove_lease(&ctr.id)?)) {
                Ok(()) => d.collect_garbage(),
                Err(e) => log::warn!("container {}: releasing its layers: {}", ctr.id, e.message),
            }
        }
        if volumes {
            for m in rec.mounts.iter().filter(|m| m.anonymous) {
                if let Err(e) = self.volumes.remove(&m.name, false) {
                    log::warn!("container {}: removing anonymous volume {}: {e}", ctr.id, m.name);
                }
            }
        }
        {
            let mut i = ctr.lock();
            i.removed = true;
            ctr.notify(&i);
        }
        self.event(ctr, "destroy", &[]);
        Ok(())
    }

    /// Stops every running container with its stop timeout (in parallel), as dockerd without
    /// live-restore does, before the daemon exits. Bounded: the longest timeout plus 5 s.
    pub fn shutdown(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let all = self.list();
        for c in &all {
            let _i = c.lock();
            c.cond.notify_all();
        }
        let active: Vec<_> = all.into_iter().filter(|c| c.is_active()).collect();
        if active.is_empty() {
            return;
        }
        let longest = active
            .iter()
            .map(|c| c.lock().rec.config["StopTimeout"].as_i64().unwrap_or(DEFAULT_STOP_TIMEOUT).max(0))
            .max()
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        log::info!("stopping {} running container(s)", active.len());
        let (tx, rx) = std::sync::mpsc::channel();
        for c in active.iter().cloned() {
            let (mgr, tx) = (self.clone(), tx.clone());
            std::thread::spawn(move || {
                let _op = lock(&c.op);
                mgr.stop_locked(&c, None, None, false);
                let _ = tx.send(());
            });
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(longest as u64 + 5);
        for _ in 0..active.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                log::warn!("containers still running at shutdown: killing them");
                for c in &active {
                    if let Some(p) = c.lock().proc_.clone() {
                        let _ = p.kill(Signal::SIGKILL);
                    }
                }
                break;
            }
        }
    }

    /// `docker container prune`: removes every container not running; their IDs.
    pub fn prune(self: &Arc<Self>, keep: impl Fn(&Record) -> bool) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for c in self.list() {
            let rec = c.record();
            if c.is_active() || keep(&rec) {
                continue;
            }
            let size = super::view::dir_size(&c.dir.join("rootfs/upper"));
            if self.remove(&c, false, false).is_ok() {
                out.push((c.id.clone(), size));
            }
        }
        out
    }
}

fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One run after another until the container stays stopped: output, exit, restart policy.
fn supervise(mgr: Arc<Manager>, ctr: Arc<Ctr>, mut run: Run) {
    loop {
        output::tee(&ctr, run.out, run.err, run.log_out, run.log_err);
        run.copier.join();
        let status = run.proc_.wait();
        lock(&ctr.subscribers).clear();
        let (code, oom) = match status {
            Ok(s) => (s.code, s.oom_killed),
            Err(e) => {
                log::error!("container {}: waiting for its process: {e}", ctr.id);
                (255, false)
            }
        };
        let p = ctr.lock().proc_.take();
        drop(p);
        match Arc::try_unwrap(run.proc_) {
            Ok(c) => {
                if let Err(e) = c.cleanup() {
                    log::warn!("container {}: cleanup: {e}", ctr.id);
                }
            }
            // A kill in flight holds a reference; the last one dropped cleans up.
            Err(_) => log::debug!("container {}: cleanup deferred", ctr.id),
        }
        let shutting = mgr.is_shutting_down();
        let (decision, rec) = {
            let mut i = ctr.lock();
            let ran_for = i.started.map(|s| s.elapsed()).unwrap_or_default();
            let stopped_by_user = i.exit_on_next || i.removing;
            let pol = policy(&i.rec);
            let d = if i.cancel {
                None
            } else {
                restart::decide(
                    &pol,
                    code,
                    i.rec.restart_count,
                    i.rec.consecutive_failures,
                    ran_for,
                    stopped_by_user,
                    shutting,
                )
            };
            if d.is_some() {
                i.rec.consecutive_failures = restart::next_consecutive_failures(i.rec.consecutive_failures, ran_for);
                i.rec.restart_count += 1;
            }
            i.rec.set_exited(code, oom, d.is_some());
            i.exits += 1;
            if d.is_none() {
                i.supervising = false;
            }
            ctr.save(&i);
            ctr.notify(&i);
            (d, i.rec.clone())
        };
        if oom {
            mgr.event(&ctr, "oom", &[]);
        }
        mgr.event(&ctr, "die", &[("exitCode", code.to_string())]);
        let Some(delay) = decision else { break };
        log::debug!("container {}: restarting in {delay:?} (restart {})", ctr.id, rec.restart_count);
        let go = {
            let deadline = Instant::now() + delay;
            let mut i = ctr.lock();
            loop {
                if i.cancel || i.removing || mgr.is_shutting_down() {
                    break false;
                }
                let now = Instant::now();
                if now >= deadline {
                    break true;
                }
                i = ctr.cond.wait_timeout(i, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        };
        let next = if go { launch(&mgr, &ctr, &rec) } else { Err(StartError::engine(String::new())) };
        match next {
            Ok(r) => {
                let mut i = ctr.lock();
                i.rec.set_running(r.proc_.pid());
                i.proc_ = Some(r.proc_.clone());
                i.started = Some(Instant::now());
                if i.cancel || i.removing {
                    // Stopped while it was starting: end this run at once.
                    let _ = r.proc_.kill(Signal::SIGKILL);
                }
                ctr.save(&i);
                ctr.notify(&i);
                drop(i);
                mgr.event(&ctr, "start", &[]);
                run = r;
            }
            Err(e) => {
                let mut i = ctr.lock();
                if go {
                    log::warn!("container {}: restart failed: {}", ctr.id, e.message);
                    i.rec.set_start_error(e.code, e.message);
                }
                i.rec.state.status = "exited".into();
                i.rec.state.running = false;
                i.rec.state.restarting = false;
                i.supervising = false;
                ctr.save(&i);
                ctr.notify(&i);
                break;
            }
        }
    }
    let auto_remove = {
        let i = ctr.lock();
        i.rec.auto_remove() && !i.removing && !i.removed
    };
    if auto_remove {
        let _op = lock(&ctr.op);
        if let Err(e) = mgr.remove_locked(&ctr, true, true) {
            log::warn!("container {}: auto-remove: {}", ctr.id, e.message);
        }
    }
}

/// Kills what is left of a container whose daemon died (its processes were children of that daemon, so
/// nobody can wait for them) and removes its cgroups.
fn reap_orphans(id: &str) {
    let root = Path::new(runtime::CGROUP_ROOT);
    let mut dirs = vec![root.join(spec::CGROUP_PARENT).join(id)];
    if let Ok(rd) = fs::read_dir(root) {
        dirs.extend(rd.flatten().map(|e| e.path().join(spec::CGROUP_PARENT).join(id)));
    }
    dirs.retain(|d| d.join("cgroup.procs").exists());
    if dirs.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut any = false;
        for d in &dirs {
            for pid in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    any = true;
                    // SAFETY: kill(2).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        if !any || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
    log::info!("container {id}: killed what the previous daemon left running");
}

/// Loads the containers of the data root (see [`Manager::open`]).
pub(super) fn restore(mgr: &Arc<Manager>) -> Result<(), String> {
    let rd = fs::read_dir(mgr.root()).map_err(|e| format!("reading {}: {e}", mgr.root().display()))?;
    let mut boot = Vec::new();
    for entry in rd.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let mut rec = match Record::load(&dir) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("skipping container directory {}: {e}", dir.display());
                continue;
            }
        };
        if rec.state.status == "removing" {
            let _ = remove_dir(&dir);
            continue;
        }
        let was_running = rec.state.running || rec.stopped_by_shutdown;
        if rec.state.running {
            reap_orphans(&rec.id);
            rec.set_exited(255, false, false);
            rec.state.error = "the daemon stopped while the container was running".into();
        }
        let start = restart::should_start_on_boot(&policy(&rec), was_running, rec.manually_stopped);
        if rec.auto_remove() {
            let _ = remove_dir(&dir);
            continue;
        }
        rec.stopped_by_shutdown = false;
        if let Err(e) = rec.save(&dir) {
            log::warn!("container {}: {e}", rec.id);
        }
        let ctr = Arc::new(Ctr::new(dir, rec));
        mgr.insert(ctr.clone());
        if start {
            boot.push(ctr);
        }
    }
    *lock(&mgr.boot) = boot;
    Ok(())
}

/// Starts, in the background, the containers their restart policy starts at boot.
pub(super) fn boot(mgr: &Arc<Manager>) {
    let list = std::mem::take(&mut *lock(&mgr.boot));
    if list.is_empty() {
        return;
    }
    let mgr = mgr.clone();
    std::thread::spawn(move || {
        for c in list {
            if mgr.is_shutting_down() {
                return;
            }
            let _op = lock(&c.op);
            match mgr.start_locked(&c, false) {
                Ok(_) => log::info!("container {} started (restart policy)", c.id),
                Err(e) => log::warn!("container {}: start at boot failed: {}", c.id, e.message),
            }
        }
    });
}
