//! Layer snapshots: a layer tar unpacked once into a directory that overlayfs can use as a lower dir,
//! plus the tar-split record that rebuilds the exact original tar from that directory.

pub(crate) mod entry_path;
mod fsops;
mod tarsplit;
mod unpack;

pub use tarsplit::{open_layer_file, reassemble, Record, RecordReader, TarSplitWriter};
pub use unpack::{unpack_layer, unpack_layer_linked, LinkSource, UnpackStats};

#[cfg(test)]
mod tests;
