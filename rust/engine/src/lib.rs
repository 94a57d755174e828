//! The balena engine's library: content-addressed store, layer snapshots and image archives.
//! Free of any command-line concern so the CLI, the daemon and build-time preloading share it.

pub mod digest;
pub mod error;
pub mod tar;
pub mod layer;
pub mod store;
pub mod reference;
pub mod archive;
pub mod images;
pub mod pipe;
pub mod delta;
pub mod time;
