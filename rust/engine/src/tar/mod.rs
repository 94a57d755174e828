//! A streaming tar reader that keeps the exact bytes of every header (the tar-split idea): layers are
//! unpacked to directories, and their original tar stream is reproduced byte for byte from those bytes plus
//! the unpacked files. Both the outer image archive and layer tars are read with it.

mod header;
mod pax;
mod reader;

pub use header::{EntryKind, BLOCK};
pub use reader::{Entry, Next, TarError, TarReader};
