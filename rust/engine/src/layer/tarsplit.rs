//! The tar-split record of a layer: every non-content byte of the original tar in order, with references
//! to the unpacked files for content. `reassemble` rebuilds the identical tar stream from it.
//!
//! Format (zstd-compressed): magic, then records. `R` u64-LE length + raw bytes; `F` u32-LE path length +
//! path (relative to the layer dir) + u64-LE size; `E` u64-LE total tar size, then end of stream.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

use crate::error::{Error, IoContext, Result};

const MAGIC: &[u8; 12] = b"BETARSPLIT1\n";
const RAW_FLUSH: usize = 64 * 1024;

pub struct TarSplitWriter<W: Write> {
    out: W,
    pending: Vec<u8>,
}

impl<W: Write> TarSplitWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(TarSplitWriter { out, pending: Vec::new() })
    }

    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= RAW_FLUSH {
            self.flush_raw()?;
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(b"R")?;
            self.out.write_all(&(self.pending.len() as u64).to_le_bytes())?;
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    pub fn file(&mut self, path: &[u8], size: u64) -> io::Result<()> {
        self.flush_raw()?;
        let len = u32::try_from(path.len()).map_err(|_| io::Error::other("path too long"))?;
        self.out.write_all(b"F")?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(path)?;
        self.out.write_all(&size.to_le_bytes())
    }

    pub fn finish(mut self, total: u64) -> io::Result<W> {
        self.flush_raw()?;
        self.out.write_all(b"E")?;
        self.out.write_all(&total.to_le_bytes())?;
        Ok(self.out)
    }
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("tar-split record: {what}"))
}

/// One record of a tar-split: raw bytes of the tar, or the content of a file of the layer dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Raw(Vec<u8>),
    File { path: Vec<u8>, size: u64 },
}

/// Reads the records of a tar-split in order; the end record's size is checked against the records.
pub struct RecordReader<R> {
    r: io::BufReader<R>,
    total: u64,
    done: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(tarsplit: R) -> Result<Self> {
        let mut r = io::BufReader::new(tarsplit);
        let mut magic = [0u8; 12];
        r.read_exact(&mut magic).map_err(|_| corrupt("missing header"))?;
        if &magic != MAGIC {
            return Err(corrupt("bad magic"));
        }
        Ok(RecordReader { r, total: 0, done: false })
    }

    /// Size of the tar the records describe (complete once the iterator is exhausted).
    pub fn total(&self) -> u64 {
        self.total
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        let mut tag = [0u8; 1];
        self.r.read_exact(&mut tag).map_err(|_| corrupt("ends without end record"))?;
        match &tag {
            b"R" => {
                let len = read_u64(&mut self.r).map_err(|_| corrupt("truncated raw record"))?;
                let mut raw = Vec::new();
                (&mut self.r).take(len).read_to_end(&mut raw).map_err(|_| corrupt("truncated raw record"))?;
                if raw.len() as u64 != len {
                    return Err(corrupt("truncated raw record"));
                }
                self.total += len;
                Ok(Some(Record::Raw(raw)))
            }
            b"F" => {
                let mut lb = [0u8; 4];
                self.r.read_exact(&mut lb).map_err(|_| corrupt("truncated file record"))?;
                let mut path = vec![0u8; u32::from_le_bytes(lb) as usize];
                self.r.read_exact(&mut path).map_err(|_| corrupt("truncated file record"))?;
                let size = read_u64(&mut self.r).map_err(|_| corrupt("truncated file record"))?;
                self.total += size;
                Ok(Some(Record::File { path, size }))
            }
            b"E" => {
                let expect = read_u64(&mut self.r).map_err(|_| corrupt("truncated end record"))?;
                if expect != self.total {
                    return Err(corrupt("size does not match end record"));
                }
                Ok(None)
            }
            _ => Err(corrupt("unknown record")),
        }
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let r = self.next_record();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }
}

/// Writes the original layer tar to `out`, reading file content from the layer directory `dir`.
/// Returns the number of bytes written.
pub fn reassemble(tarsplit: impl Read, dir: &OwnedFd, out: &mut impl Write) -> Result<u64> {
    let mut records = RecordReader::new(tarsplit)?;
    let mut buf = vec![0u8; 128 * 1024];
    for rec in &mut records {
        match rec? {
            Record::Raw(raw) => out.write_all(&raw).ctx(|| "writing layer tar".into())?,
            Record::File { path, size } => {
                copy_file(dir, &path, size, out, &mut buf)?;
            }
        }
    }
    Ok(records.total())
}

/// Opens a file of a layer dir for reading, refusing symlinks anywhere in `path`.
pub fn open_layer_file(dir: &OwnedFd, path: &[u8]) -> Result<std::fs::File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let name = String::from_utf8_lossy(path);
    openat2(dir, OsStr::from_bytes(path), how)
        .map(std::fs::File::from)
        .map_err(|e| Error::Corrupt(format!("layer file {name:?} is missing: {e}")))
}

fn copy_file(dir: &OwnedFd, path: &[u8], size: u64, out: &mut impl Write, buf: &mut [u8]) -> Result<u64> {
    let name = String::from_utf8_lossy(path).into_owned();
    let mut f = open_layer_file(dir, path)?;
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want]).ctx(|| format!("reading layer file {name:?}"))?;
        if n == 0 {
            return Err(Error::Corrupt(format!("layer file {name:?} is shorter than recorded")));
        }
        out.write_all(&buf[..n]).ctx(|| "writing layer tar".into())?;
        left -= n as u64;
    }
    let mut probe = [0u8; 1];
    if f.read(&mut probe).ctx(|| format!("reading layer file {name:?}"))? != 0 {
        return Err(Error::Corrupt(format!("layer file {name:?} is longer than recorded")));
    }
    Ok(size)
}
