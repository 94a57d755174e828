//! Writes the outer archive of `image save`: plain ustar entries, deterministic (mtime 0, root-owned).

use std::io::Write;

use crate::error::{Error, IoContext, Result};
use crate::tar::BLOCK;

pub struct TarWriter<W: Write> {
    out: W,
}

fn header(path: &str, size: u64, kind: tar::EntryType, mode: u32) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| Error::Corrupt(format!("archive path {path:?}: {e}")))?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h.set_cksum();
    Ok(h)
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).ctx(|| "writing archive".into())
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        let h = header(path, 0, tar::EntryType::Directory, 0o755)?;
        self.write(h.as_bytes())
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.file_with(path, data.len() as u64, |w| w.write_all(data).ctx(|| "writing archive".into()).map(|_| data.len() as u64))
    }

    /// Writes an entry of `size` bytes whose content `fill` streams into the writer.
    pub fn file_with(&mut self, path: &str, size: u64, fill: impl FnOnce(&mut W) -> Result<u64>) -> Result<()> {
        let h = header(path, size, tar::EntryType::Regular, 0o644)?;
        self.write(h.as_bytes())?;
        let n = fill(&mut self.out)?;
        if n != size {
            return Err(Error::Corrupt(format!("{path}: wrote {n} bytes, announced {size}")));
        }
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.write(&vec![0u8; pad as usize])
    }

    pub fn finish(mut self) -> Result<W> {
        self.write(&[0u8; 2 * BLOCK])?;
        self.out.flush().ctx(|| "writing archive".into())?;
        Ok(self.out)
    }
}
