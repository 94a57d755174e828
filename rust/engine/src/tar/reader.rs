//! Streaming tar reader. Every byte that is not file content is handed to the caller as `raw` bytes, so a
//! caller can record them and later rebuild the identical stream.

use std::io::{self, Read};

use super::header::{BlockKind, EntryKind, Header, BLOCK};
use super::pax;

/// Largest pax or GNU long-name extension accepted (real ones are a few hundred bytes).
const MAX_EXTENSION: u64 = 1 << 20;
/// Largest run of header bytes before one entry (extensions + header).
const MAX_RAW_HEADER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{0}")]
    Io(io::Error),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("malformed tar: {0}")]
    Malformed(String),
    #[error("unsupported tar feature: {0}")]
    Unsupported(String),
}

/// The stream underneath ending early (e.g. an outer archive cut inside the layer blob this tar is read from)
/// is truncation, wherever in this tar it is noticed.
impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Truncated(e.to_string())
        } else {
            TarError::Io(e)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Exact bytes before this entry's content: padding of the previous entry, extension headers, header.
    pub raw: Vec<u8>,
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: (i64, u32),
    pub dev: (u64, u64),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

pub enum Next {
    Entry(Entry),
    /// End-of-archive marker reached; carries the previous entry's padding and the first zero block.
    End(Vec<u8>),
}

pub struct TarReader<R> {
    r: R,
    remaining: u64,
    padding: usize,
    ended: bool,
}

#[derive(Default)]
struct Pending {
    seen: bool,
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn padding_of(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader { r, remaining: 0, padding: 0, ended: false }
    }

    pub fn into_inner(self) -> R {
        self.r
    }

    /// The underlying reader. The tar reader buffers nothing, so its position is the stream position.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// Reads one header block; `None` when the stream ends cleanly at a block boundary.
    fn read_block(&mut self, raw: &mut Vec<u8>) -> Result<Option<[u8; BLOCK]>, TarError> {
        let mut block = [0u8; BLOCK];
        match read_full(&mut self.r, &mut block)? {
            BLOCK => {
                raw.extend_from_slice(&block);
                if raw.len() > MAX_RAW_HEADER {
                    return Err(TarError::Malformed("extension headers exceed 4 MiB".into()));
                }
                Ok(Some(block))
            }
            0 => Ok(None),
            _ => Err(TarError::Truncated("stream ends inside a header block".into())),
        }
    }

    /// Reads an extension's data (pax or GNU long name) including its padding into `raw`.
    fn read_extension(&mut self, size: u64, raw: &mut Vec<u8>) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION {
            return Err(TarError::Malformed(format!("extension header of {size} bytes (limit {MAX_EXTENSION})")));
        }
        let total = size as usize + padding_of(size);
        let start = raw.len();
        raw.resize(start + total, 0);
        if raw.len() > MAX_RAW_HEADER {
            return Err(TarError::Malformed("extension headers exceed 4 MiB".into()));
        }
        if read_full(&mut self.r, &mut raw[start..])? != total {
            return Err(TarError::Truncated("stream ends inside an extension header".into()));
        }
        Ok(raw[start..start + size as usize].to_vec())
    }

    /// Skips what is left of the current entry's content.
    fn skip_content(&mut self) -> Result<(), TarError> {
        if self.remaining > 0 {
            let n = io::copy(&mut self.content(), &mut io::sink())?;
            debug_assert_eq!(self.remaining, 0, "copied {n}");
        }
        Ok(())
    }

    pub fn next_entry(&mut self) -> Result<Next, TarError> {
        if self.ended {
            return Err(TarError::Malformed("read past the end-of-archive marker".into()));
        }
        self.skip_content()?;
        let mut raw = vec![0u8; self.padding];
        if read_full(&mut self.r, &mut raw)? != self.padding {
            return Err(TarError::Truncated("stream ends inside entry padding".into()));
        }
        self.padding = 0;
        let mut pending = Pending::default();
        loop {
            let Some(block) = self.read_block(&mut raw)? else {
                // Some writers (umoci 0.4 `insert`) omit the end-of-archive marker. A stream that stops at a
                // block boundary ends there; a cut elsewhere is truncation, and digests catch the rest.
                if !pending.is_empty() {
                    return Err(TarError::Truncated("stream ends after an extension header".into()));
                }
                self.ended = true;
                return Ok(Next::End(raw));
            };
            let h = Header::new(&block);
            if h.is_zero() {
                self.ended = true;
                return Ok(Next::End(raw));
            }
            h.verify_checksum()?;
            let size = h.size()?;
            match h.block_kind()? {
                BlockKind::PaxLocal => {
                    pending.seen = true;
                    let data = self.read_extension(size, &mut raw)?;
                    apply_pax(&mut pending, &data)?;
                }
                BlockKind::PaxGlobal => {
                    self.read_extension(size, &mut raw)?;
                }
                BlockKind::GnuLongName => {
                    pending.seen = true;
                    let data = self.read_extension(size, &mut raw)?;
                    pending.path = Some(trim_nul(data));
                }
                BlockKind::GnuLongLink => {
                    pending.seen = true;
                    let data = self.read_extension(size, &mut raw)?;
                    pending.link = Some(trim_nul(data));
                }
                BlockKind::Entry(kind) => {
                    let entry = Entry {
                        path: pending.path.take().unwrap_or_else(|| h.path()),
                        link: pending.link.take().unwrap_or_else(|| h.link_name()),
                        kind,
                        size: pending.size.unwrap_or(size),
                        mode: h.mode()?,
                        uid: pending.uid.map_or_else(|| h.uid(), Ok)?,
                        gid: pending.gid.map_or_else(|| h.gid(), Ok)?,
                        mtime: match pending.mtime {
                            Some(t) => t,
                            None => (i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0),
                        },
                        dev: (h.dev_major()?, h.dev_minor()?),
                        xattrs: std::mem::take(&mut pending.xattrs),
                        raw,
                    };
                    // Hard links, symlinks, directories and devices carry no content, whatever the size field says.
                    let has_content = matches!(kind, EntryKind::File);
                    let content = if has_content { entry.size } else { 0 };
                    if !has_content && entry.size != 0 && kind != EntryKind::HardLink {
                        return Err(TarError::Malformed(format!(
                            "{:?} entry {:?} declares {} bytes of content",
                            kind,
                            entry.path_lossy(),
                            entry.size
                        )));
                    }
                    if kind == EntryKind::HardLink && entry.size != 0 {
                        return Err(TarError::Unsupported(format!(
                            "hard link {:?} with content",
                            entry.path_lossy()
                        )));
                    }
                    self.remaining = content;
                    self.padding = padding_of(content);
                    return Ok(Next::Entry(entry));
                }
            }
        }
    }

    /// The current entry's content; reading past a truncated stream fails with `UnexpectedEof`.
    pub fn content(&mut self) -> Content<'_, R> {
        Content { tar: self }
    }

    /// After `Next::End`: hands every remaining byte of the stream (zero blocks, record padding) to `f`.
    pub fn read_trailer(&mut self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> Result<u64, TarError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match self.r.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            total += n as u64;
            f(&buf[..n])?;
        }
    }
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.seen
    }
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(n) = v.iter().position(|&b| b == 0) {
        v.truncate(n);
    }
    v
}

fn apply_pax(p: &mut Pending, data: &[u8]) -> Result<(), TarError> {
    for (key, value) in pax::parse_records(data)? {
        match key.as_str() {
            "path" => p.path = Some(value),
            "linkpath" => p.link = Some(value),
            "size" => p.size = Some(pax::decimal(&value, "size")?),
            "uid" => p.uid = Some(pax::decimal(&value, "uid")?),
            "gid" => p.gid = Some(pax::decimal(&value, "gid")?),
            "mtime" => p.mtime = Some(pax::time(&value, "mtime")?),
            k if k.starts_with("GNU.sparse") => return Err(TarError::Unsupported("GNU sparse files".into())),
            k => {
                if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                    p.xattrs.push((name.as_bytes().to_vec(), value));
                }
            }
        }
    }
    Ok(())
}

pub struct Content<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.tar.remaining).unwrap_or(usize::MAX));
        let n = self.tar.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ends inside a file's content"));
        }
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn reassemble(stream: &[u8]) -> Vec<u8> {
        let mut t = TarReader::new(stream);
        let mut out = Vec::new();
        loop {
            match t.next_entry().unwrap() {
                Next::Entry(e) => {
                    out.extend_from_slice(&e.raw);
                    io::copy(&mut t.content(), &mut out).unwrap();
                }
                Next::End(raw) => {
                    out.extend_from_slice(&raw);
                    t.read_trailer(|b| {
                        out.extend_from_slice(b);
                        Ok(())
                    })
                    .unwrap();
                    return out;
                }
            }
        }
    }

    #[test]
    fn raw_bytes_and_content_rebuild_the_stream() {
        let long = "d/".repeat(80) + "file";
        let stream = build(&[("a.txt", b"hello"), (&long, b"x".repeat(1000).as_slice()), ("empty", b"")]);
        assert_eq!(reassemble(&stream), stream);
        let mut t = TarReader::new(stream.as_slice());
        let Next::Entry(_) = t.next_entry().unwrap() else { panic!() };
        let Next::Entry(e) = t.next_entry().unwrap() else { panic!() };
        assert_eq!(e.path, long.as_bytes());
        assert_eq!(e.size, 1000);
    }

    #[test]
    fn truncation_is_detected_everywhere() {
        let stream = build(&[("a.txt", b"hello world")]);
        // A cut at a block boundary between entries reads as an archive without end marker (accepted).
        for cut in [100, 512, 515, 1030] {
            let mut t = TarReader::new(&stream[..cut]);
            let res = (|| -> Result<(), TarError> {
                loop {
                    match t.next_entry()? {
                        Next::Entry(_) => {
                            io::copy(&mut t.content(), &mut io::sink())?;
                        }
                        Next::End(_) => return Ok(()),
                    }
                }
            })();
            assert!(res.is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut stream = build(&[("a", b"x")]);
        stream[0] = b'b';
        let mut t = TarReader::new(stream.as_slice());
        assert!(matches!(t.next_entry(), Err(TarError::Malformed(_))));
    }

    #[test]
    fn huge_extension_is_rejected() {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(1 << 40);
        h.set_path("pax").unwrap();
        h.set_cksum();
        let mut t = TarReader::new(h.as_bytes().as_slice());
        assert!(matches!(t.next_entry(), Err(TarError::Malformed(_))));
    }
}
