//! Containers: the manager behind `/containers/…`.
//!
//! - [`Manager`]: every container of the data root, by ID and name; create, lookups, and what the image
//!   and system endpoints need ([`crate::backends::Containers`]).
//! - [`run`]: start, supervision (one thread per running container: output, exit, restart policy),
//!   stop, kill, restart, remove, the daemon's boot and shutdown.
//! - [`create`]: the create request checked and merged with the image config; [`spec`]: a record to the
//!   runtime's spec; [`users`]: `User` through the image's passwd/group; [`names`]: names.
//! - [`record`]: what is kept on disk, `DATA/containers/<id>/config.v2.json` (atomic replace);
//!   [`view`]: docker's JSON (inspect, list); [`output`]: attach subscribers and docker's stream framing.
//!
//! Per container, under `DATA/containers/<id>/`: `config.v2.json`, `rootfs/{upper,work,merged}` (the
//! runtime's overlay dirs), `hostname`, `hosts`, `resolv.conf`, and the json-file log `<id>-json.log`.

pub mod copyup;
pub mod create;
pub mod deps;
pub mod names;
pub mod output;
pub mod record;
pub mod run;
pub mod spec;
pub mod users;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use engine::store::LayerFiles;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::error::ApiError;
use crate::backends::{ContainerCounts, Containers, ImageUse};
use crate::events::Event;
use crate::state::Daemon;
use deps::VolumeStore;
use output::Subscriber;
use record::Record;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: writes into the rest of `buf`.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n > 0 {
            got += n as usize;
        }
    }
}

/// `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<runtime::Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return runtime::Signal::try_from(n).map_err(|_| format!("Invalid signal: {s}"));
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<runtime::Signal>().map_err(|_| format!("Invalid signal: {s}"))
}

/// What `/wait` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitState {
    /// Exits so far (each run's end, restarts included).
    pub exits: u64,
    pub code: i32,
    /// Running or waiting to restart.
    pub running: bool,
    pub removed: bool,
}

/// One container: its record and what is alive of it.
pub struct Ctr {
    pub id: String,
    pub dir: PathBuf,
    inner: Mutex<Inner>,
    /// Signalled at every change of `inner` others wait for (exit, end of supervision, cancel).
    cond: Condvar,
    /// Serialises start, stop, restart and remove.
    op: Mutex<()>,
    watch: watch::Sender<WaitState>,
    /// `attach` clients of the current (or next) run.
    subscribers: Mutex<Vec<Subscriber>>,
}

pub(crate) struct Inner {
    pub rec: Record,
    proc_: Option<Arc<runtime::Container>>,
    /// A supervisor thread owns the container (running, or waiting to restart).
    supervising: bool,
    /// Stop what the supervisor would do next (a pending restart).
    cancel: bool,
    /// The user stopped or killed it: the restart policy does not apply to this exit.
    exit_on_next: bool,
    removing: bool,
    removed: bool,
    exits: u64,
    started: Option<Instant>,
}

impl Ctr {
    fn new(dir: PathBuf, rec: Record) -> Ctr {
        let ws = WaitState { exits: 0, code: rec.state.exit_code, running: false, removed: false };
        Ctr {
            id: rec.id.clone(),
            dir,
            inner: Mutex::new(Inner {
                rec,
                proc_: None,
                supervising: false,
                cancel: false,
                exit_on_next: false,
                removing: false,
                removed: false,
                exits: 0,
                started: None,
            }),
            cond: Condvar::new(),
            op: Mutex::new(()),
            watch: watch::Sender::new(ws),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// A copy of the record.
    pub fn record(&self) -> Record {
        self.lock().rec.clone()
    }

    /// Running or restarting.
    pub fn is_active(&self) -> bool {
        self.lock().supervising
    }

    /// Adds an attach client for the current (or next) run's output.
    pub fn subscribe(&self, s: Subscriber) {
        lock(&self.subscribers).push(s);
    }

    pub fn wait_state(&self) -> watch::Receiver<WaitState> {
        self.watch.subscribe()
    }

    /// Publishes the state for `/wait` and wakes blocking waiters. Call with `inner` locked.
    fn notify(&self, i: &Inner) {
        self.watch.send_replace(WaitState {
            exits: i.exits,
            code: i.rec.state.exit_code,
            running: i.supervising,
            removed: i.removed,
        });
        self.cond.notify_all();
    }

    fn save(&self, i: &Inner) {
        if i.removed {
            return;
        }
        if let Err(e) = i.rec.save(&self.dir) {
            log::error!("container {}: saving state: {e}", self.id);
        }
    }
}

#[derive(Default)]
struct Registry {
    by_id: BTreeMap<String, Arc<Ctr>>,
    /// Name (without slash) → ID; names being created are reserved with an empty ID.
    names: HashMap<String, String>,
}

pub struct Manager {
    root: PathBuf,
    daemon: OnceLock<Weak<Daemon>>,
    reg: Mutex<Registry>,
    pub volumes: Arc<VolumeStore>,
    shutting_down: AtomicBool,
    /// Containers the boot starts once the daemon is bound (restart policies).
    boot: Mutex<Vec<Arc<Ctr>>>,
}

impl Manager {
    /// Loads every container of `data_root`. Containers the record says were running lost their process
    /// with the previous daemon: what is left of them is killed and they are marked exited (255).
    pub fn open(data_root: &Path, volumes: Arc<VolumeStore>) -> Result<Arc<Manager>, String> {
        let root = data_root.join("containers");
        fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let mgr = Arc::new(Manager {
            root: root.clone(),
            daemon: OnceLock::new(),
            reg: Mutex::new(Registry::default()),
            volumes,
            shutting_down: AtomicBool::new(false),
            boot: Mutex::new(Vec::new()),
        });
        run::restore(&mgr)?;
        let weak = Arc::downgrade(&mgr);
        mgr.volumes.set_users(Arc::new(move |name: &str| match weak.upgrade() {
            Some(m) => m.volume_users(name),
            None => Vec::new(),
        }));
        Ok(mgr)
    }

    /// Gives the manager its daemon (events, store) and starts what the restart policies start at boot.
    pub fn bind(self: &Arc<Self>, d: &Arc<Daemon>) {
        let _ = self.daemon.set(Arc::downgrade(d));
        self.lease_existing(d);
        run::boot(self);
    }

    /// Containers created before layers were leased get their lease now (their layers are still there:
    /// their images were, or removing them was refused).
    fn lease_existing(&self, d: &Daemon) {
        let containers = self.list();
        let opened = d.with_reader(|s| {
            for ctr in containers.iter().filter(|c| !s.has_lease(&c.id)) {
                let chains: Vec<_> =
                    ctr.lock().rec.lower_dirs.iter().filter_map(|l| LayerFiles::chain_of_diff_dir(l)).collect();
                if let Err(e) = s.add_lease(&ctr.id, &chains) {
                    log::warn!("container {}: leasing its layers: {e}", ctr.id);
                }
            }
            Ok(())
        });
        if let Err(e) = opened {
            log::warn!("leasing the layers of existing containers: {}", e.message);
        }
    }

    pub fn daemon(&self) -> Option<Arc<Daemon>> {
        self.daemon.get().and_then(Weak::upgrade)
    }

    /// IDs of the containers that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        let reg = lock(&self.reg);
        reg.by_id
            .values()
            .filter(|c| c.lock().rec.mounts.iter().any(|m| m.kind == "volume" && m.name == name))
            .map(|c| c.id.clone())
            .collect()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All containers, newest first.
    pub fn list(&self) -> Vec<Arc<Ctr>> {
        let reg = lock(&self.reg);
        let mut v: Vec<(String, Arc<Ctr>)> =
            reg.by_id.values().map(|c| (c.lock().rec.created.clone(), c.clone())).collect();
        v.sort_by(|a, b| b.0.cmp(&a.0));
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// By full ID, name (with or without its slash), or unique ID prefix, as dockerd looks them up.
    pub fn get(&self, key: &str) -> Result<Arc<Ctr>, ApiError> {
        let reg = lock(&self.reg);
        if let Some(c) = reg.by_id.get(key) {
            return Ok(c.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(c) = reg.names.get(name).and_then(|id| reg.by_id.get(id)) {
            return Ok(c.clone());
        }
        if !key.is_empty() {
            let mut hits = reg.by_id.range(key.to_owned()..).take_while(|(id, _)| id.starts_with(key));
            if let Some((_, c)) = hits.next() {
                if hits.next().is_some() {
                    return Err(ApiError::bad_request(format!("multiple IDs found with provided prefix: {key}")));
                }
                return Ok(c.clone());
            }
        }
        Err(ApiError::not_found(format!("No such container: {key}")))
    }

    fn insert(&self, ctr: Arc<Ctr>) {
        let mut reg = lock(&self.reg);
        let name = ctr.lock().rec.short_name().to_owned();
        reg.names.insert(name, ctr.id.clone());
        reg.by_id.insert(ctr.id.clone(), ctr);
    }

    fn unregister(&self, ctr: &Ctr) {
        let mut reg = lock(&self.reg);
        reg.by_id.remove(&ctr.id);
        reg.names.retain(|_, id| *id != ctr.id);
    }

    /// Reserves `name` (docker's 409 if taken).
    fn reserve_name(&self, name: &str) -> Result<(), ApiError> {
        let mut reg = lock(&self.reg);
        if let Some(id) = reg.names.get(name) {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        reg.names.insert(name.to_owned(), String::new());
        Ok(())
    }

    fn release_name(&self, name: &str) {
        let mut reg = lock(&self.reg);
        if reg.names.get(name).is_some_and(String::is_empty) {
            reg.names.remove(name);
        }
    }

    fn generated_name(&self) -> String {
        for attempt in 0..32 {
            let mut b = [0u8; 8];
            fill_random(&mut b);
            let n = names::generate(u64::from_le_bytes(b), attempt.min(1));
            if self.reserve_name(&n).is_ok() {
                return n;
            }
        }
        let mut b = [0u8; 8];
        fill_random(&mut b);
        let n = format!("container_{:016x}", u64::from_le_bytes(b));
        let _ = self.reserve_name(&n);
        n
    }

    /// A fresh container ID, for [`Manager::create`] (the caller leases the image's layers under it first).
    pub fn new_id(&self) -> String {
        create::new_id(|id| lock(&self.reg).by_id.contains_key(id))
    }

    /// Creates container `id` from a validated request (blocking: writes its directory). Returns its ID.
    pub fn create(
        self: &Arc<Self>,
        id: &str,
        name: Option<&str>,
        body: &Value,
        image: create::ImageInfo,
    ) -> Result<String, ApiError> {
        if self.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !names::valid(n) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                let n = n.trim_start_matches('/').to_owned();
                self.reserve_name(&n)?;
                n
            }
            None => self.generated_name(),
        };
        let res = (|| {
            if lock(&self.reg).by_id.contains_key(id) {
                return Err(ApiError::conflict(format!("container ID {id} is already in use")));
            }
            let rec = create::build(id, &name, body, &image, &self.volumes)?;
            let dir = self.root.join(id);
            fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
            if let Err(e) = rec.save(&dir) {
                let _ = fs::remove_dir_all(&dir);
                return Err(ApiError::internal(e));
            }
            Ok((dir, rec))
        })();
        let (dir, rec) = match res {
            Ok(x) => x,
            Err(e) => {
                self.release_name(&name);
                return Err(e);
            }
        };
        let ctr = Arc::new(Ctr::new(dir, rec));
        let id = ctr.id.clone();
        self.insert(ctr.clone());
        self.event(&ctr, "create", &[]);
        Ok(id)
    }

    /// Publishes a container event with docker's attributes (image, name, the labels) and `extra`.
    pub fn event(&self, ctr: &Ctr, action: &str, extra: &[(&str, String)]) {
        let Some(d) = self.daemon() else { return };
        let (image, name, labels) = {
            let i = ctr.lock();
            (i.rec.image_name.clone(), i.rec.short_name().to_owned(), i.rec.labels())
        };
        let mut attrs: BTreeMap<String, String> =
            labels.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or("").to_owned())).collect();
        attrs.insert("image".into(), image);
        attrs.insert("name".into(), name);
        for (k, v) in extra {
            attrs.insert((*k).to_owned(), v.clone());
        }
        d.events.publish(Event::new("container", action, &ctr.id, attrs));
    }
}

impl Containers for Manager {
    fn counts(&self) -> ContainerCounts {
        let mut c = ContainerCounts::default();
        for ctr in self.list() {
            c.total += 1;
            if ctr.lock().rec.state.running {
                c.running += 1;
            } else {
                c.stopped += 1;
            }
        }
        c
    }

    fn image_use(&self) -> HashMap<String, ImageUse> {
        let mut m: HashMap<String, ImageUse> = HashMap::new();
        for ctr in self.list() {
            let i = ctr.lock();
            let u = m.entry(i.rec.image.clone()).or_default();
            u.total += 1;
            if i.rec.state.running {
                u.running += 1;
            }
        }
        m
    }

    fn disk_usage(&self) -> Vec<Value> {
        self.list()
            .iter()
            .map(|c| {
                let rec = c.record();
                let mut v = view::summary(&rec);
                let size = view::dir_size(&c.dir.join("rootfs/upper"));
                v["SizeRw"] = size.into();
                v["SizeRootFs"] = size.into();
                v
            })
            .collect()
    }

    fn security_options(&self) -> Vec<String> {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            vec!["name=cgroupns".into()]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), runtime::Signal::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), runtime::Signal::SIGKILL);
        assert_eq!(parse_signal("1").unwrap(), runtime::Signal::SIGHUP);
        assert!(parse_signal("SIGBOGUS").is_err());
    }
}
