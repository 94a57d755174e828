//! Image archives: `load` reads docker-archive and OCI image-layout tars in one streaming pass;
//! `save` writes one tar that is both (docker's `manifest.json` and an OCI `index.json`).

mod collect;
pub(crate) mod compression;
mod formats;
pub(crate) mod load;
mod plan;
mod save;
mod tar_writer;

pub use load::{load, LoadedImage};
pub use save::{save, SaveRequest};
