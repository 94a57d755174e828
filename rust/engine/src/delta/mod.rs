//! Binary delta updates between image versions.
//!
//! `bedelta/1` (ours): per target layer, a payload that rebuilds the layer's exact tar from the base image's
//! unpacked files (COPY unchanged files, bsdiff PATCH changed ones, LITERAL new ones); applied as a stream
//! into the ordinary unpacker with bounded memory, hard-linking unchanged files instead of writing them.
//! balenaEngine's format (rdiff deltas against the base image's concatenated layer tars) is applied too.

pub mod base_files;
pub mod base_stream;
pub mod bsdiff;
pub mod create;
pub mod decode;
pub mod encode;
pub mod format;
pub mod labels;
pub mod rdiff;
pub mod rebuild;
