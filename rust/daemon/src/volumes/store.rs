//! The local volume store: `DATA/volumes/<name>/_data` holds a volume's files, `DATA/volumes/<name>/meta.json`
//! its creation time and labels.
//!
//! Crash-safe: a volume is assembled in `volumes/.new-<name>-<random>/` (its `_data`, its `meta.json` synced)
//! and appears by one rename; it disappears by one rename to `volumes/.gone-<name>-<random>/`, emptied
//! afterwards. A kill at any instant leaves the volume whole or absent, and what was half done is swept
//! when the store opens. Names cannot start with a dot, so those never clash with volumes.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::state::Daemon;
use engine::time;

/// The label docker puts on volumes created without a name; `docker volume prune` (API ≥ 1.42) removes only
/// those unless told `all`.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// "Who uses this volume": the IDs of the containers that mount it. Set by the container manager; until
/// then, nobody.
pub type VolumeUsers = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// A volume in docker's shape (`GET /volumes/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Scope")]
    pub scope: String,
}

impl VolumeInfo {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeError {
    /// 404 `get NAME: no such volume`.
    NotFound(String),
    /// 409 `remove NAME: volume is in use - [ID ID]`.
    InUse(String, Vec<String>),
    /// 400: a name docker would refuse.
    InvalidName(String),
    /// 404: a driver other than `local` (docker: no such plugin).
    NoSuchDriver(String, String),
    /// 400: what the local driver does not take (driver options).
    Invalid(String),
    /// 409: the name is taken by a volume of another driver (not possible yet: one driver).
    Conflict(String),
    /// 500.
    Io(String),
}

impl VolumeError {
    /// The HTTP status dockerd answers with.
    pub fn status(&self) -> u16 {
        match self {
            VolumeError::NotFound(_) | VolumeError::NoSuchDriver(..) => 404,
            VolumeError::InUse(..) | VolumeError::Conflict(_) => 409,
            VolumeError::InvalidName(_) | VolumeError::Invalid(_) => 400,
            VolumeError::Io(_) => 500,
        }
    }
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeError::NotFound(n) => write!(f, "get {n}: no such volume"),
            VolumeError::InUse(n, ids) if ids.is_empty() => write!(f, "remove {n}: volume is in use"),
            VolumeError::InUse(n, ids) => write!(f, "remove {n}: volume is in use - [{}]", ids.join(" ")),
            VolumeError::InvalidName(n) => write!(
                f,
                "create {n}: {n:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            ),
            VolumeError::NoSuchDriver(n, d) => {
                write!(f, "create {n}: error looking up volume plugin {d}: plugin {d:?} not found (only the local driver is available)")
            }
            VolumeError::Invalid(m) | VolumeError::Conflict(m) | VolumeError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for VolumeError {}

/// docker's local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so at least two characters).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// What `meta.json` holds.
#[derive(Serialize, Deserialize, Default)]
struct Meta {
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "Labels", default)]
    labels: BTreeMap<String, String>,
}

pub struct VolumeStore {
    root: PathBuf,
    /// Creations and removals take turns (a creation checks, then renames into place).
    lock: Mutex<()>,
    users: RwLock<VolumeUsers>,
    /// Where `create`/`destroy` events go, whoever asked (the API or the container manager).
    events: RwLock<Option<Weak<Daemon>>>,
}

fn io_err(what: impl std::fmt::Display, e: io::Error) -> VolumeError {
    VolumeError::Io(format!("{what}: {e}"))
}

fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl VolumeStore {
    /// Opens (creating) `DATA/volumes`, sweeping what an interrupted creation or removal left.
    pub fn open(data_root: &Path) -> io::Result<VolumeStore> {
        let root = data_root.join("volumes");
        fs::DirBuilder::new().recursive(true).mode(0o701).create(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o701))?;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".gone-") {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    log::warn!("removing {}: {e}", entry.path().display());
                }
            }
        }
        Ok(VolumeStore { root, lock: Mutex::new(()), users: RwLock::new(Arc::new(|_: &str| Vec::new())), events: RwLock::new(None) })
    }

    /// `DATA/volumes`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a volume's files are: `DATA/volumes/<name>/_data` (what containers mount).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// Sets who uses a volume (the container manager's answer); the API refuses to remove a volume in use and
    /// answers the `dangling` filter with it.
    pub fn set_users(&self, users: VolumeUsers) {
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
    }

    /// The IDs of the containers using `name`.
    pub fn users(&self, name: &str) -> Vec<String> {
        let f = self.users.read().unwrap_or_else(|e| e.into_inner()).clone();
        f(name)
    }

    /// Publishes volume events (`create`, `destroy`) on the daemon's bus from now on.
    pub fn publish_events_to(&self, daemon: Weak<Daemon>) {
        *self.events.write().unwrap_or_else(|e| e.into_inner()) = Some(daemon);
    }

    fn publish(&self, action: &str, name: &str) {
        let d = self.events.read().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(Weak::upgrade);
        if let Some(d) = d {
            let attributes = BTreeMap::from([("driver".to_owned(), "local".to_owned())]);
            d.events.publish(Event::new("volume", action, name, attributes));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a volume (`name` None: an anonymous one, with a random 64-hex name and docker's anonymous
    /// label). An existing volume of that name is returned as it is, as docker does.
    pub fn create(&self, name: Option<&str>, labels: BTreeMap<String, String>, driver: &str) -> Result<VolumeInfo, VolumeError> {
        self.create_reporting(name, labels, driver).map(|(v, _)| v)
    }

    /// As [`create`](Self::create), and whether the volume is new.
    pub fn create_reporting(
        &self,
        name: Option<&str>,
        mut labels: BTreeMap<String, String>,
        driver: &str,
    ) -> Result<(VolumeInfo, bool), VolumeError> {
        let shown = name.unwrap_or("");
        if !(driver.is_empty() || driver == "local") {
            return Err(VolumeError::NoSuchDriver(shown.to_owned(), driver.to_owned()));
        }
        let name = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(VolumeError::InvalidName(n.to_owned()));
                }
                n.to_owned()
            }
            None => {
                labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
                random_hex().map_err(|e| io_err("generating a volume name", e))?
            }
        };
        let _g = self.lock();
        match self.read(&name) {
            Ok(v) => return Ok((v, false)),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let meta = Meta { created_at: now_rfc3339(), labels };
        let suffix = random_hex().map_err(|e| io_err("generating a name", e))?;
        let tmp = self.root.join(format!(".new-{name}-{}", &suffix[..16]));
        let res = (|| -> io::Result<()> {
            fs::DirBuilder::new().mode(0o755).create(&tmp)?;
            fs::DirBuilder::new().mode(0o755).create(tmp.join("_data"))?;
            let mut f = File::create(tmp.join("meta.json"))?;
            f.write_all(&serde_json::to_vec(&meta).map_err(io::Error::other)?)?;
            f.sync_all()?;
            fsync_dir(&tmp)?;
            fs::rename(&tmp, self.root.join(&name))?;
            fsync_dir(&self.root)
        })();
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(format_args!("create {name}"), e));
        }
        log::debug!("volume {name} created");
        self.publish("create", &name);
        Ok((self.info(&name, meta), true))
    }

    /// The volume `name`, created (with `labels`) if it does not exist: for `-v name:/path`.
    pub fn get_or_create(&self, name: &str, labels: BTreeMap<String, String>) -> Result<VolumeInfo, VolumeError> {
        self.create(Some(name), labels, "local")
    }

    pub fn get(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        self.read(name)
    }

    fn read(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let dir = self.root.join(name);
        let dir_meta = match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return Err(VolumeError::NotFound(name.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VolumeError::NotFound(name.to_owned())),
            Err(e) => return Err(io_err(format_args!("get {name}"), e)),
        };
        let meta = match fs::read(dir.join("meta.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::warn!("volume {name}: unreadable meta.json ({e}): shown without labels");
                Meta::default()
            }),
            // A directory put there by hand: a volume without labels, as docker's local driver sees it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(io_err(format_args!("get {name}"), e)),
        };
        let meta = if meta.created_at.is_empty() {
            Meta { created_at: time::rfc3339_nanos(dir_meta.mtime(), 0), ..meta }
        } else {
            meta
        };
        Ok(self.info(name, meta))
    }

    fn info(&self, name: &str, meta: Meta) -> VolumeInfo {
        VolumeInfo {
            created_at: meta.created_at,
            driver: "local".into(),
            labels: meta.labels,
            mountpoint: self.path(name),
            name: name.to_owned(),
            options: BTreeMap::new(),
            scope: "local".into(),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeInfo> {
        let mut names: Vec<String> = match fs::read_dir(&self.root) {
            Ok(rd) => rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).filter(|n| valid_name(n)).collect(),
            Err(e) => {
                log::warn!("listing volumes: {e}");
                Vec::new()
            }
        };
        names.sort();
        names.iter().filter_map(|n| self.read(n).ok()).collect()
    }

    /// Removes a volume and its files; `in_use`: the caller knows it is mounted (409).
    pub fn remove(&self, name: &str, in_use: bool) -> Result<(), VolumeError> {
        if in_use {
            return Err(VolumeError::InUse(name.to_owned(), Vec::new()));
        }
        let _g = self.lock();
        self.read(name)?;
        let suffix = random_hex().map_err(|e| io_err("generating a name", e))?;
        let gone = self.root.join(format!(".gone-{name}-{}", &suffix[..16]));
        fs::rename(self.root.join(name), &gone).map_err(|e| io_err(format_args!("remove {name}"), e))?;
        let _ = fsync_dir(&self.root);
        drop(_g);
        if let Err(e) = fs::remove_dir_all(&gone) {
            // Gone from the API already; the rest is swept at the next start.
            log::warn!("removing the files of volume {name}: {e}");
        }
        log::debug!("volume {name} removed");
        self.publish("destroy", name);
        Ok(())
    }

    /// Bytes of a volume's files (hard links counted once; symlinks not followed; other file systems mounted
    /// inside not entered).
    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.path(name))
    }
}

fn now_rfc3339() -> String {
    let (s, _) = time::now();
    time::rfc3339_nanos(s, 0)
}

fn dir_size(root: &Path) -> u64 {
    let Ok(top) = fs::symlink_metadata(root) else { return 0 };
    let dev = top.dev();
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if m.dev() == dev {
                    stack.push(e.path());
                }
            } else if m.is_file() && (m.nlink() <= 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn names_like_docker() {
        for ok in ["ab", "data", "my-vol_1.2", "0a", "A-", &"x".repeat(255)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-ab", ".ab", "_ab", "a/b", "a b", "..", "é1", &"x".repeat(256), "/abs"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_get_list_remove_and_reopen() {
        let root = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(root.path()).unwrap();
        let (v, new) = s.create_reporting(Some("data"), labels(&[("a", "1")]), "local").unwrap();
        assert!(new);
        assert_eq!(v.name, "data");
        assert_eq!(v.mountpoint, root.path().join("volumes/data/_data"));
        assert!(v.mountpoint.is_dir());
        assert_eq!(v.labels, labels(&[("a", "1")]));
        assert!(time::parse_rfc3339(&v.created_at).is_some(), "{}", v.created_at);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
        );
        assert_eq!((json["Driver"].as_str(), json["Scope"].as_str()), (Some("local"), Some("local")));
        assert_eq!(json["Options"], serde_json::json!({}));

        // Again: the same volume, labels unchanged, not new.
        let (again, new) = s.create_reporting(Some("data"), labels(&[("b", "2")]), "").unwrap();
        assert!(!new);
        assert_eq!(again, v);
        assert_eq!(s.get_or_create("data", BTreeMap::new()).unwrap(), v);

        let anon = s.create(None, BTreeMap::new(), "local").unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(anon.is_anonymous() && !v.is_anonymous());
        let other = s.get_or_create("other", labels(&[("x", "")])).unwrap();

        fs::write(v.mountpoint.join("file"), vec![1u8; 3000]).unwrap();
        fs::create_dir(v.mountpoint.join("sub")).unwrap();
        fs::write(v.mountpoint.join("sub/f"), vec![1u8; 1000]).unwrap();
        fs::hard_link(v.mountpoint.join("file"), v.mountpoint.join("sub/link")).unwrap();
        std::os::unix::fs::symlink("/etc", v.mountpoint.join("etc")).unwrap();
        assert_eq!(s.size("data"), 4000);

        // Survives a reopen (a daemon restart).
        drop(s);
        let s = VolumeStore::open(root.path()).unwrap();
        let mut names: Vec<String> = s.list().into_iter().map(|v| v.name).collect();
        let mut want = vec!["data".to_owned(), "other".to_owned(), anon.name.clone()];
        names.sort();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(s.get("data").unwrap(), v);
        assert_eq!(s.get("other").unwrap(), other);

        assert_eq!(s.remove("data", true).unwrap_err(), VolumeError::InUse("data".into(), vec![]));
        s.remove("data", false).unwrap();
        assert_eq!(s.get("data").unwrap_err(), VolumeError::NotFound("data".into()));
        assert_eq!(s.remove("data", false).unwrap_err().to_string(), "get data: no such volume");
        assert!(!root.path().join("volumes/data").exists());
        assert_eq!(s.list().len(), 2);
    }

    #[test]
    fn refuses_bad_names_and_drivers() {
        let root = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(root.path()).unwrap();
        let e = s.create(Some("a/b"), BTreeMap::new(), "local").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().starts_with("create a/b: \"a/b\" includes invalid characters for a local volume name"), "{e}");
        let e = s.create(Some("x"), BTreeMap::new(), "local").unwrap_err();
        assert_eq!(e.status(), 400);
        let e = s.create(Some("nfs1"), BTreeMap::new(), "nfs").unwrap_err();
        assert_eq!(e.status(), 404);
        assert!(e.to_string().contains("plugin \"nfs\" not found"), "{e}");
        assert_eq!(s.get("../etc").unwrap_err().status(), 404);
        assert_eq!(s.get("").unwrap_err().status(), 404);
        assert!(s.list().is_empty());
        let e = VolumeError::InUse("v1".into(), vec!["abc".into(), "def".into()]);
        assert_eq!((e.status(), e.to_string()), (409, "remove v1: volume is in use - [abc def]".to_owned()));
    }

    #[test]
    fn half_done_work_is_swept_and_hand_made_dirs_are_volumes() {
        let root = tempfile::tempdir().unwrap();
        let vols = root.path().join("volumes");
        fs::create_dir_all(vols.join(".new-x-123/_data")).unwrap();
        fs::create_dir_all(vols.join(".gone-y-456/_data")).unwrap();
        fs::create_dir_all(vols.join("handmade/_data")).unwrap();
        fs::create_dir_all(vols.join("broken/_data")).unwrap();
        fs::write(vols.join("broken/meta.json"), b"{not json").unwrap();
        let s = VolumeStore::open(root.path()).unwrap();
        assert!(!vols.join(".new-x-123").exists() && !vols.join(".gone-y-456").exists());
        let names: Vec<String> = s.list().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["broken", "handmade"]);
        assert!(s.get("handmade").unwrap().labels.is_empty());
        assert!(!s.get("handmade").unwrap().created_at.is_empty());
        assert_eq!(fs::metadata(&vols).unwrap().permissions().mode() & 0o777, 0o701);
    }

    #[test]
    fn users_hook_defaults_to_nobody() {
        let root = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(root.path()).unwrap();
        assert!(s.users("v1").is_empty());
        s.set_users(Arc::new(|n: &str| if n == "v1" { vec!["c1".into()] } else { vec![] }));
        assert_eq!(s.users("v1"), ["c1"]);
        assert!(s.users("v2").is_empty());
    }
}
