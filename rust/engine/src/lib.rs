//! The balena engine's library: content-addressed store, layer snapshots and image archives.
//! Free of any command-line concern so the CLI, the daemon and build-time preloading share it.

pub mod archive;
pub mod delta;
pub mod digest;
pub mod error;
pub mod image_config;
pub mod images;
pub mod import;
pub mod layer;
pub mod pipe;
pub mod reference;
pub mod store;
pub mod tar;
pub mod time;
