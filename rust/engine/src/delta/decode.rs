//! Device side: rebuilds a target layer's tar from a `bedelta/1` payload and the base image's files, as a
//! stream for the ordinary unpacker (the archive path, reused). Memory is bounded by three small zstd
//! windows and a few buffers, whatever the image size; unchanged files are announced to the unpacker so it
//! hard-links them instead of writing them again.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::base_files::BaseLayers;
use super::bsdiff;
use super::format::{self, read_source, read_varint, Header, MAX_RAW, OP_COPY, OP_END, OP_LITERAL, OP_PATCH, OP_RAW};
use crate::error::{Error, IoContext, Result};
use crate::layer::LinkSource;
use crate::store::{StagedLayer, Staging};

/// Largest decoder window accepted (the encoder uses 4 MiB); bounds the device's memory.
const WINDOW_LOG_MAX: u32 = 23;
/// Largest bsdiff control block of one file.
const MAX_CONTROL: u64 = 64 << 20;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("delta payload: {what}"))
}

/// Reads a byte range of a file by `pread`, so several readers share one file.
struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

type Section<'f> = zstd::stream::read::Decoder<'static, io::BufReader<RangeReader<'f>>>;

fn open_section(file: &File, start: u64, len: u64) -> Result<Section<'_>> {
    let end = start.checked_add(len).ok_or_else(|| corrupt("section bounds overflow"))?;
    let mut d = zstd::stream::read::Decoder::new(RangeReader { file, pos: start, end }).ctx(|| "opening delta section".into())?;
    d.window_log_max(WINDOW_LOG_MAX).ctx(|| "opening delta section".into())?;
    Ok(d)
}

/// Files the producer copied whole from the base, by stream offset, for the unpacker to hard-link.
#[derive(Default)]
pub struct LinkHints {
    queue: Mutex<VecDeque<(u64, u64, File)>>,
}

impl LinkHints {
    fn push(&self, offset: u64, size: u64, file: File) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back((offset, size, file));
        }
    }
}

pub struct HintedLinks(pub Arc<LinkHints>);

impl LinkSource for HintedLinks {
    fn identical_file(&mut self, offset: u64, size: u64) -> Option<File> {
        let mut q = self.0.queue.lock().ok()?;
        while q.front().is_some_and(|h| h.0 < offset) {
            q.pop_front();
        }
        match q.front() {
            Some(h) if h.0 == offset && h.1 == size => q.pop_front().map(|h| h.2),
            _ => None,
        }
    }
}

struct Counting<'w, W> {
    inner: &'w mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn copy_exact(r: &mut impl Read, len: u64, out: &mut impl Write, what: &str) -> Result<()> {
    let n = io::copy(&mut r.take(len), out).map_err(|e| corrupt(format!("{what}: {e}")))?;
    if n != len {
        return Err(corrupt(format!("{what}: section ends early")));
    }
    Ok(())
}

fn at_end(r: &mut impl Read, what: &str) -> Result<()> {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt(format!("trailing data in the {what} section"))),
        Err(e) => Err(corrupt(format!("{what} section: {e}"))),
    }
}

fn open_base(base: &BaseLayers, layer: u32, path: &[u8], expect: u64) -> Result<File> {
    let f = base.open_file(layer, path)?;
    let len = f.metadata().ctx(|| "inspecting base file".into())?.len();
    if len != expect {
        return Err(Error::Corrupt(format!(
            "base file {:?} has {len} bytes, the delta expects {expect}: the delta was made for another base image",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(f)
}

/// Writes the target layer's tar to `out`. Returns its size.
pub fn write_target_tar(payload: &File, header: &Header, start: u64, base: &BaseLayers, out: &mut impl Write, hints: &LinkHints) -> Result<u64> {
    let [ops_len, data_len, diff_len] = header.sections;
    let data_start = start.checked_add(ops_len).ok_or_else(|| corrupt("section bounds overflow"))?;
    let diff_start = data_start.checked_add(data_len).ok_or_else(|| corrupt("section bounds overflow"))?;
    let mut ops = open_section(payload, start, ops_len)?;
    let mut data = open_section(payload, data_start, data_len)?;
    let mut diff = open_section(payload, diff_start, diff_len)?;
    let mut out = Counting { inner: out, n: 0 };
    let bad = |e: io::Error| corrupt(format!("ops section: {e}"));
    loop {
        let mut op = [0u8; 1];
        ops.read_exact(&mut op).map_err(bad)?;
        match op[0] {
            OP_RAW => {
                let len = read_varint(&mut ops).map_err(bad)?;
                if len > MAX_RAW {
                    return Err(corrupt("raw run too long"));
                }
                copy_exact(&mut ops, len, &mut out, "raw run")?;
            }
            OP_COPY => {
                let (layer, path) = read_source(&mut ops).map_err(bad)?;
                let size = read_varint(&mut ops).map_err(bad)?;
                let mut f = open_base(base, layer, &path, size)?;
                hints.push(out.n, size, f.try_clone().ctx(|| "duplicating base file handle".into())?);
                copy_exact(&mut f, size, &mut out, "base file")?;
            }
            OP_PATCH => {
                let (layer, path) = read_source(&mut ops).map_err(bad)?;
                let old_size = read_varint(&mut ops).map_err(bad)?;
                let size = read_varint(&mut ops).map_err(bad)?;
                let control_len = read_varint(&mut ops).map_err(bad)?;
                if control_len > MAX_CONTROL {
                    return Err(corrupt("patch control too long"));
                }
                let old = open_base(base, layer, &path, old_size)?;
                let mut control = (&mut ops).take(control_len);
                let n = bsdiff::apply(&old, old_size, &mut control, &mut diff, &mut data, size, &mut out)?;
                if n != size || control.limit() != 0 {
                    return Err(corrupt(format!("patch of {:?} is inconsistent", String::from_utf8_lossy(&path))));
                }
            }
            OP_LITERAL => {
                let size = read_varint(&mut ops).map_err(bad)?;
                copy_exact(&mut data, size, &mut out, "literal")?;
            }
            OP_END => {
                let total = read_varint(&mut ops).map_err(bad)?;
                if total != out.n || total != header.target_size {
                    return Err(corrupt(format!("rebuilt {} bytes, expected {}", out.n, header.target_size)));
                }
                at_end(&mut ops, "ops")?;
                at_end(&mut data, "data")?;
                at_end(&mut diff, "diff")?;
                out.flush().ctx(|| "writing layer".into())?;
                return Ok(total);
            }
            other => return Err(corrupt(format!("unknown op {other}"))),
        }
    }
}

/// Rebuilds the target layer of the payload file `payload` into a new staged layer, verifying its DiffID.
pub fn apply_payload(staging: &mut Staging, payload: &Path, base: &BaseLayers) -> Result<(Header, StagedLayer)> {
    let file = File::open(payload).ctx(|| format!("opening {}", payload.display()))?;
    let (header, start) = format::read_header(&mut &file)?;
    let hints = Arc::new(LinkHints::default());
    let mut links = HintedLinks(hints.clone());
    let name = header.target_diff_id.to_string();
    let staged = staging.unpack_produced(&name, Some(&mut links), |w| write_target_tar(&file, &header, start, base, w, &hints))?;
    if staged.record.diff_id != header.target_diff_id {
        return Err(Error::DigestMismatch {
            what: format!("layer {} rebuilt from the delta", header.target_index),
            expected: header.target_diff_id.to_string(),
            actual: staged.record.diff_id.to_string(),
        });
    }
    Ok((header, staged))
}
