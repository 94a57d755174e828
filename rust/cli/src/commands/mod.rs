//! One module per command; each opens the store with the access it needs.

pub mod delta;
pub mod inspect;
pub mod list;
pub mod load;
pub mod registry;
pub mod remove;
pub mod save;
pub mod tag;

use std::path::Path;

use anyhow::Context;
use engine::store::{Access, Store};

pub fn open(root: &Path, access: Access) -> anyhow::Result<Store> {
    Store::open(root, access).with_context(|| format!("opening data root {}", root.display()))
}

pub fn resolve_all(store: &Store, refs: &[String]) -> anyhow::Result<Vec<engine::digest::Digest>> {
    refs.iter().map(|r| engine::images::resolve(store, r).map_err(Into::into)).collect()
}
