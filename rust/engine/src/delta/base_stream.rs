//! Random access to an image's "base stream": the concatenation of its layer tars, bottom layer first,
//! exactly as the store rebuilds them (`Store::write_layer_tar`). balenaEngine signs this stream as one
//! librsync file, so its deltas COPY from offsets into it.
//!
//! Nothing is materialised. `BaseStream::open` reads each layer's tar-split once and keeps an index of
//! segments sorted by offset:
//!
//! * `Raw`  – tar headers, padding, end-of-archive bytes: kept in memory (one shared buffer);
//! * `Zero` – runs of at least `ZERO_RUN` zero bytes inside those (block padding, the empty tail of ustar
//!   headers, the end-of-archive blocks): kept as a length only;
//! * `File` – a regular file's content: a path below the layer's `diff/`, read with `pread` on demand.
//!
//! Memory: about the tar's non-content bytes minus their long zero runs, plus the file paths, plus 32
//! bytes per segment (2–4 segments per tar entry). For ordinary layers that is roughly 0.4–0.6 KiB per
//! tar entry (see `heap_bytes`; a Debian rootfs of ~8,000 entries costs a few MiB), independent of the
//! file content size. One directory fd is kept open per layer and at most `OPEN_FILES` content files,
//! least recently used first to go.
//!
//! File content is trusted as the store's own: each file's size is checked against the tar-split when it
//! is opened, but content is not re-hashed (a patch result is verified against its DiffID by its caller).
//! Keep the `Store` the stream was opened from alive while reading: its lock keeps the layers from being
//! garbage-collected.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use super::rdiff::ReadAt;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer::{open_layer_file, Record};
use crate::store::{LayerFiles, LayerRecord, Store};

/// Zero runs at least this long are stored as a length instead of bytes (a split costs two segments).
const ZERO_RUN: usize = 128;
/// Content files kept open between reads.
const OPEN_FILES: usize = 16;

const RAW: u32 = u32::MAX;
const ZERO: u32 = u32::MAX - 1;

/// One contiguous piece of the stream. 32 bytes.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Offset of the piece in the whole stream.
    start: u64,
    len: u64,
    /// `RAW`: offset into `BaseStream::raw`; file: offset into `BaseStream::paths`; `ZERO`: unused.
    data: u64,
    path_len: u32,
    /// Index into `BaseStream::layers`, or `RAW` / `ZERO`.
    kind: u32,
}

struct LayerSrc {
    diff: OwnedFd,
    diff_id: Digest,
}

/// The concatenated layer tars of one image, readable at any offset. `Sync`: reads may run concurrently.
pub struct BaseStream {
    segments: Vec<Segment>,
    raw: Vec<u8>,
    paths: Vec<u8>,
    layers: Vec<LayerSrc>,
    len: u64,
    /// Most recently used last: (segment index, open file).
    open: Mutex<Vec<(usize, Arc<File>)>>,
}

impl std::fmt::Debug for BaseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseStream")
            .field("len", &self.len)
            .field("layers", &self.layers.len())
            .field("segments", &self.segments.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

struct Builder {
    segments: Vec<Segment>,
    raw: Vec<u8>,
    paths: Vec<u8>,
    pos: u64,
}

impl Builder {
    fn push(&mut self, len: u64, data: u64, path_len: u32, kind: u32) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let start = self.pos;
        self.pos = start.checked_add(len).ok_or_else(|| Error::Corrupt("base stream: size overflows".into()))?;
        self.segments.push(Segment { start, len, data, path_len, kind });
        Ok(())
    }

    fn raw_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        // Split out zero runs of at least ZERO_RUN bytes; keep the rest.
        let mut i = 0;
        let mut kept_from = 0;
        while i < bytes.len() {
            if bytes[i] != 0 {
                i += 1;
                continue;
            }
            let run_start = i;
            while i < bytes.len() && bytes[i] == 0 {
                i += 1;
            }
            if i - run_start >= ZERO_RUN {
                self.keep(&bytes[kept_from..run_start])?;
                self.push((i - run_start) as u64, 0, 0, ZERO)?;
                kept_from = i;
            }
        }
        self.keep(&bytes[kept_from..])
    }

    fn keep(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        // Extend the previous raw segment when it ends where this one starts (both in stream and buffer).
        if let Some(last) = self.segments.last_mut() {
            if last.kind == RAW && last.data + last.len == self.raw.len() as u64 && last.start + last.len == self.pos {
                last.len += bytes.len() as u64;
                self.pos += bytes.len() as u64;
                self.raw.extend_from_slice(bytes);
                return Ok(());
            }
        }
        let data = self.raw.len() as u64;
        self.raw.extend_from_slice(bytes);
        self.push(bytes.len() as u64, data, 0, RAW)
    }
}

impl BaseStream {
    /// Indexes the layer tars of image `image_id` (an image ID, i.e. config digest) of `store`.
    pub fn open(store: &Store, image_id: &Digest) -> Result<BaseStream> {
        let rec = store.metadata().images.get(image_id).ok_or_else(|| Error::ImageNotFound(image_id.to_string()))?;
        let mut b = Builder { segments: Vec::new(), raw: Vec::new(), paths: Vec::new(), pos: 0 };
        let mut layers = Vec::new();
        for chain in rec.chain_ids() {
            let dir = store.layer_dir(&chain);
            let lrec = LayerRecord::read(&dir)?;
            let layer_idx = u32::try_from(layers.len())
                .ok()
                .filter(|i| *i < ZERO)
                .ok_or_else(|| Error::Unsupported("base image has too many layers".into()))?;
            let diff = LayerFiles::open_diff(&dir)?;
            let layer_start = b.pos;
            let mut records = LayerFiles::records(&dir)?;
            for r in &mut records {
                match r? {
                    Record::Raw(bytes) => b.raw_bytes(&bytes)?,
                    Record::File { path, size } => {
                        let path_len =
                            u32::try_from(path.len()).map_err(|_| Error::Corrupt("tar-split: path too long".into()))?;
                        if size > 0 {
                            let data = b.paths.len() as u64;
                            b.paths.extend_from_slice(&path);
                            b.push(size, data, path_len, layer_idx)?;
                        }
                    }
                }
            }
            if records.total() != lrec.tar_size || b.pos - layer_start != lrec.tar_size {
                return Err(Error::Corrupt(format!(
                    "layer {}: tar-split describes {} bytes, its record {}",
                    lrec.diff_id,
                    records.total(),
                    lrec.tar_size
                )));
            }
            layers.push(LayerSrc { diff, diff_id: lrec.diff_id });
        }
        let Builder { mut segments, mut raw, mut paths, pos } = b;
        segments.shrink_to_fit();
        raw.shrink_to_fit();
        paths.shrink_to_fit();
        Ok(BaseStream { segments, raw, paths, layers, len: pos, open: Mutex::new(Vec::new()) })
    }

    /// Total size: the sum of the image's layer tar sizes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap memory held by the index (segments, raw bytes, paths).
    pub fn heap_bytes(&self) -> usize {
        self.segments.capacity() * std::mem::size_of::<Segment>()
            + self.raw.capacity()
            + self.paths.capacity()
            + self.layers.capacity() * std::mem::size_of::<LayerSrc>()
    }

    /// Number of index segments (for diagnostics).
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 only at or past the end). Fills
    /// `buf` completely unless the end of the stream comes first.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        // The last segment starting at or before `offset`: it exists since segments[0].start == 0.
        let mut idx = self.segments.partition_point(|s| s.start <= offset) - 1;
        let mut done = 0usize;
        let mut pos = offset;
        while done < buf.len() && idx < self.segments.len() {
            let seg = self.segments[idx];
            let within = pos - seg.start;
            let avail = seg.len - within;
            let n = usize::try_from(avail).map_or(buf.len() - done, |a| a.min(buf.len() - done));
            let dst = &mut buf[done..done + n];
            match seg.kind {
                RAW => {
                    let from = usize::try_from(seg.data + within).expect("raw bytes are in memory");
                    dst.copy_from_slice(&self.raw[from..from + n]);
                }
                ZERO => dst.fill(0),
                _ => self.read_file(idx, &seg, within, dst)?,
            }
            done += n;
            pos += n as u64;
            idx += 1;
        }
        Ok(done)
    }

    /// A sequential reader (`Read + Seek`) over the stream.
    pub fn reader(&self) -> BaseReader<'_> {
        BaseReader { base: self, pos: 0 }
    }

    fn path_of(&self, seg: &Segment) -> &[u8] {
        let from = usize::try_from(seg.data).expect("paths are in memory");
        &self.paths[from..from + seg.path_len as usize]
    }

    fn file_error(&self, seg: &Segment, what: &str) -> Error {
        let layer = &self.layers[seg.kind as usize];
        Error::Corrupt(format!("layer {}: file {:?} {what}", layer.diff_id, String::from_utf8_lossy(self.path_of(seg))))
    }

    fn file(&self, idx: usize, seg: &Segment) -> Result<Arc<File>> {
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = open.iter().rposition(|(s, _)| *s == idx) {
                let entry = open.remove(i);
                let f = entry.1.clone();
                open.push(entry);
                return Ok(f);
            }
        }
        let layer = &self.layers[seg.kind as usize];
        let f = open_layer_file(&layer.diff, self.path_of(seg))?;
        let size = f
            .metadata()
            .ctx(|| format!("layer {}: stat of {:?}", layer.diff_id, String::from_utf8_lossy(self.path_of(seg))))?
            .len();
        if size != seg.len {
            return Err(self.file_error(seg, &format!("has {size} bytes, its tar-split records {}", seg.len)));
        }
        let f = Arc::new(f);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= OPEN_FILES {
            open.remove(0);
        }
        open.push((idx, f.clone()));
        Ok(f)
    }

    fn read_file(&self, idx: usize, seg: &Segment, within: u64, dst: &mut [u8]) -> Result<()> {
        let f = self.file(idx, seg)?;
        let mut done = 0;
        while done < dst.len() {
            match f.read_at(&mut dst[done..], within + done as u64) {
                Ok(0) => return Err(self.file_error(seg, "is shorter than its tar-split records")),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let name = String::from_utf8_lossy(self.path_of(seg)).into_owned();
                    return Err(e).ctx(|| format!("reading layer file {name:?}"));
                }
            }
        }
        Ok(())
    }
}

impl ReadAt for BaseStream {
    fn len(&self) -> u64 {
        BaseStream::len(self)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        BaseStream::read_at(self, offset, buf)
    }
}

/// Sequential `Read + Seek` over a `BaseStream`.
pub struct BaseReader<'a> {
    base: &'a BaseStream,
    pos: u64,
}

impl Read for BaseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.base.read_at(self.pos, buf).map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BaseReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.base.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> Builder {
        Builder { segments: Vec::new(), raw: Vec::new(), paths: Vec::new(), pos: 0 }
    }

    fn stream(b: Builder) -> BaseStream {
        BaseStream {
            segments: b.segments,
            raw: b.raw,
            paths: b.paths,
            layers: Vec::new(),
            len: b.pos,
            open: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn zero_runs_are_split_out_and_reads_cross_segments() {
        let mut b = builder();
        let mut a = vec![7u8; 10];
        a.extend(vec![0u8; 300]);
        a.extend(vec![9u8; 5]);
        a.extend(vec![0u8; 100]); // short run: kept
        a.push(1);
        a.extend(vec![0u8; 1024]);
        b.raw_bytes(&a).unwrap();
        b.raw_bytes(b"tail").unwrap();
        a.extend_from_slice(b"tail");
        let kept = b.raw.len();
        let s = stream(b);
        assert_eq!(s.len(), a.len() as u64);
        assert_eq!(kept, 10 + 5 + 100 + 1 + 4);
        // Adjacent raw pieces merge: 7s | zeros | 9s..1 | zeros | tail
        assert_eq!(s.segments(), 5);
        for off in 0..a.len() {
            for want in [1usize, 3, 200, 5000] {
                let mut buf = vec![0xAAu8; want];
                let n = s.read_at(off as u64, &mut buf).unwrap();
                let expect = &a[off..(off + want).min(a.len())];
                assert_eq!(&buf[..n], expect, "offset {off} len {want}");
            }
        }
        let mut buf = [0u8; 4];
        assert_eq!(s.read_at(a.len() as u64, &mut buf).unwrap(), 0);
        assert_eq!(s.read_at(u64::MAX, &mut buf).unwrap(), 0);
        let mut all = Vec::new();
        s.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, a);
        let mut r = s.reader();
        r.seek(SeekFrom::End(-4)).unwrap();
        let mut t = String::new();
        r.read_to_string(&mut t).unwrap();
        assert_eq!(t, "tail");
        assert!(r.seek(SeekFrom::Current(-100_000)).is_err());
    }

    #[test]
    fn empty_stream() {
        let s = stream(builder());
        assert!(s.is_empty());
        assert_eq!(s.read_at(0, &mut [0u8; 8]).unwrap(), 0);
    }
}
