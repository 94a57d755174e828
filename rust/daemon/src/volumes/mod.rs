//! Volumes: docker's `local` driver — a directory per volume under `DATA/volumes/<name>/_data`, metadata
//! (creation time, labels) beside it in `meta.json`, written crash-safely. Volumes outlive the containers
//! that mount them and daemon restarts; they go only by `docker volume rm` / `prune`.
//!
//! - [`store`] — the store ([`VolumeStore`]), shared by the API (`api::volumes`) and the container manager
//!   (`get_or_create` for `-v name:/path`, `create(None, …)` for anonymous volumes, `path` to mount)
//! - the container manager says who uses which volume through [`VolumeStore::set_users`] (default: nobody),
//!   so removing a volume in use is refused and the `dangling` filter and `/system/df` know.

pub mod store;

use serde_json::{json, Value};

pub use store::{valid_name, VolumeError, VolumeInfo, VolumeStore, VolumeUsers, ANONYMOUS_LABEL};

use crate::backends::Volumes;

impl Volumes for VolumeStore {
    fn count(&self) -> usize {
        self.list().len()
    }

    /// Each volume with docker's `UsageData` (`Size`: bytes of its files; `RefCount`: containers using it).
    fn disk_usage(&self) -> Vec<Value> {
        // Walking volumes is disk work: keep it off the async workers when called from one.
        let walk = || {
            self.list()
                .into_iter()
                .map(|v| {
                    let size = self.size(&v.name);
                    let refs = self.users(&v.name).len();
                    let mut doc = serde_json::to_value(&v).unwrap_or(Value::Null);
                    doc["UsageData"] = json!({ "Size": size, "RefCount": refs });
                    doc
                })
                .collect()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(walk),
            _ => walk(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn disk_usage_has_size_and_refcount() {
        let root = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(root.path()).unwrap();
        let v = s.create(Some("db"), BTreeMap::new(), "local").unwrap();
        std::fs::write(v.mountpoint.join("x"), [0u8; 1234]).unwrap();
        s.create(Some("empty"), BTreeMap::new(), "local").unwrap();
        s.set_users(Arc::new(|n: &str| if n == "db" { vec!["c1".into(), "c2".into()] } else { vec![] }));
        assert_eq!(Volumes::count(&s), 2);
        let du = Volumes::disk_usage(&s);
        assert_eq!(du[0]["Name"], "db");
        assert_eq!(du[0]["UsageData"], json!({"Size": 1234, "RefCount": 2}));
        assert_eq!(du[1]["UsageData"], json!({"Size": 0, "RefCount": 0}));
    }
}
