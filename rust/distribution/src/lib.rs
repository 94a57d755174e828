//! The balena engine's registry client: OCI distribution spec 1.1 and Docker registry v2.
//!
//! Pulls stream each layer blob from HTTP through the decompressor into the engine's unpacker: no compressed
//! copy is staged, the blob digest is checked as the bytes pass and the DiffID by the unpacker, and an image
//! is committed only when every layer matched. A cut or stalled transfer resumes with `Range` from the
//! current offset, continuing the same hash. Pushes skip blobs the registry has, mount them across
//! repositories, and upload the rest streamed in chunks. The engine library stays free of HTTP: this crate
//! hands it readers and staged layers.

pub mod auth;
pub mod blob;
pub mod bridge;
pub mod config;
pub mod error;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod remote;
pub mod retry;
pub mod session;
pub mod store_access;
mod transport;

pub use config::RegistryConfig;
pub use error::{Error, Result};
pub use reference::Reference;
pub use session::Registries;
