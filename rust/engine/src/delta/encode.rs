//! Server side: encodes one target layer as a `bedelta/1` payload against the base image's files.
//! Unchanged files become COPY (no bytes), changed files with a predecessor become a bsdiff PATCH when that
//! is smaller than sending them, everything else LITERAL. Headers travel as RAW, compressed.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use super::base_files::BaseIndex;
use super::bsdiff;
use super::format::{self, write_source, write_varint, Header, OP_COPY, OP_END, OP_LITERAL, OP_PATCH, OP_RAW};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer::{open_layer_file, Record};
use crate::store::{LayerFiles, LayerRecord};

/// zstd level and window of the sections: strong compression, and decoder windows small enough for the
/// device (three decoders at 4 MiB each).
const LEVEL: i32 = 19;
const WINDOW_LOG: u32 = 22;
/// Files larger than this are sent as literals (bsdiff's suffix array needs 4 bytes per byte of old file).
const MAX_PATCH_FILE: u64 = 64 << 20;

#[derive(Debug, Default, Clone, Copy)]
pub struct EncodeStats {
    pub target_bytes: u64,
    pub copied_bytes: u64,
    pub patched_bytes: u64,
    pub literal_bytes: u64,
    pub payload_bytes: u64,
}

type Section = zstd::stream::Encoder<'static, Vec<u8>>;

fn section() -> Result<Section> {
    let mut e = zstd::stream::Encoder::new(Vec::new(), LEVEL).ctx(|| "starting compression".into())?;
    e.window_log(WINDOW_LOG).ctx(|| "configuring compression".into())?;
    e.include_checksum(true).ctx(|| "configuring compression".into())?;
    Ok(e)
}

/// Cheap estimate of what bytes cost once compressed.
fn estimate(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| zstd::bulk::compress(p, 3).map_or(p.len(), |c| c.len())).sum()
}

struct Encoder<'a> {
    base: &'a BaseIndex,
    ops: Section,
    data: Section,
    diff: Section,
    raw: Vec<u8>,
    stats: EncodeStats,
}

impl Encoder<'_> {
    fn flush_raw(&mut self) -> Result<()> {
        if !self.raw.is_empty() {
            self.ops.write_all(&[OP_RAW]).ctx(|| "encoding".into())?;
            write_varint(&mut self.ops, self.raw.len() as u64).ctx(|| "encoding".into())?;
            self.ops.write_all(&self.raw).ctx(|| "encoding".into())?;
            self.raw.clear();
        }
        Ok(())
    }

    fn file(&mut self, target_dir: &OwnedFd, path: &[u8], size: u64) -> Result<()> {
        self.flush_raw()?;
        let mut f = open_layer_file(target_dir, path)?;
        if size > MAX_PATCH_FILE {
            return self.literal_stream(&mut f, size);
        }
        let mut new = Vec::with_capacity(size as usize);
        f.read_to_end(&mut new).ctx(|| format!("reading {:?}", String::from_utf8_lossy(path)))?;
        if new.len() as u64 != size {
            return Err(Error::Corrupt(format!("layer file {:?} changed size", String::from_utf8_lossy(path))));
        }
        if let Some(src) = self.base.identical(&Digest::of_bytes(&new)) {
            self.ops.write_all(&[OP_COPY]).ctx(|| "encoding".into())?;
            write_source(&mut self.ops, src.layer, &src.path).ctx(|| "encoding".into())?;
            write_varint(&mut self.ops, size).ctx(|| "encoding".into())?;
            self.stats.copied_bytes += size;
            return Ok(());
        }
        if let Some(src) = self.base.predecessor(path).filter(|s| s.size > 0 && s.size <= MAX_PATCH_FILE).cloned() {
            let mut old = Vec::with_capacity(src.size as usize);
            self.base.layers.open_file(src.layer, &src.path)?.read_to_end(&mut old).ctx(|| "reading base file".into())?;
            let patch = bsdiff::diff(&old, &new);
            if estimate(&[&patch.control, &patch.diff, &patch.extra]) < estimate(&[&new]) {
                self.ops.write_all(&[OP_PATCH]).ctx(|| "encoding".into())?;
                write_source(&mut self.ops, src.layer, &src.path).ctx(|| "encoding".into())?;
                for v in [old.len() as u64, size, patch.control.len() as u64] {
                    write_varint(&mut self.ops, v).ctx(|| "encoding".into())?;
                }
                self.ops.write_all(&patch.control).ctx(|| "encoding".into())?;
                self.diff.write_all(&patch.diff).ctx(|| "encoding".into())?;
                self.data.write_all(&patch.extra).ctx(|| "encoding".into())?;
                self.stats.patched_bytes += size;
                return Ok(());
            }
        }
        self.literal_stream(&mut new.as_slice(), size)
    }

    fn literal_stream(&mut self, r: &mut impl Read, size: u64) -> Result<()> {
        self.ops.write_all(&[OP_LITERAL]).ctx(|| "encoding".into())?;
        write_varint(&mut self.ops, size).ctx(|| "encoding".into())?;
        let n = std::io::copy(&mut r.take(size), &mut self.data).ctx(|| "encoding".into())?;
        if n != size {
            return Err(Error::Corrupt("layer file shorter than recorded".into()));
        }
        self.stats.literal_bytes += size;
        Ok(())
    }
}

/// Encodes the target layer in `layer_dir` (an installed layer: `diff/`, `tar-split.zst`) as payload bytes.
pub fn encode_layer(base: &BaseIndex, layer_dir: &Path, record: &LayerRecord, target_index: u32) -> Result<(Vec<u8>, EncodeStats)> {
    let target_dir = LayerFiles::open_diff(layer_dir)?;
    let mut enc = Encoder { base, ops: section()?, data: section()?, diff: section()?, raw: Vec::new(), stats: EncodeStats::default() };
    let mut records = LayerFiles::records(layer_dir)?;
    for rec in &mut records {
        match rec? {
            Record::Raw(bytes) => enc.raw.extend_from_slice(&bytes),
            Record::File { path, size } => enc.file(&target_dir, &path, size)?,
        }
    }
    enc.flush_raw()?;
    let total = records.total();
    enc.ops.write_all(&[OP_END]).ctx(|| "encoding".into())?;
    write_varint(&mut enc.ops, total).ctx(|| "encoding".into())?;
    let sections = [enc.ops.finish(), enc.data.finish(), enc.diff.finish()];
    let sections: Vec<Vec<u8>> = sections.into_iter().collect::<std::io::Result<_>>().ctx(|| "compressing".into())?;
    let header = Header {
        target_index,
        target_diff_id: record.diff_id.clone(),
        target_size: total,
        sections: [sections[0].len() as u64, sections[1].len() as u64, sections[2].len() as u64],
    };
    let mut payload = Vec::new();
    format::write_header(&mut payload, &header).ctx(|| "encoding".into())?;
    for s in &sections {
        payload.extend_from_slice(s);
    }
    let mut stats = enc.stats;
    stats.target_bytes = total;
    stats.payload_bytes = payload.len() as u64;
    Ok((payload, stats))
}
