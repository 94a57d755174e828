//! Binary diff of one file against its previous version: Colin Percival's bsdiff algorithm.
//!
//! [`diff`] runs where the new image is built: beside its inputs it needs a 4-byte suffix-array
//! entry per old byte plus the patch (≈ new size), so ≈ 5 × old + 2 × new bytes in all (194 MB for
//! a 28.5 MB binary, in about 5 s). It indexes the old file with a suffix array (`divsufsort`)
//! and emits the classic bsdiff control triples
//! `(add, copy, seek)`: `add` bytes of the new file are the old bytes at the current old position
//! plus a *diff* byte each (wrapping), `copy` bytes come verbatim from the *extra* stream, and then
//! the old position moves by `seek`. The three streams are kept apart ([`PatchStreams`]) so each
//! compresses well on its own; [`PatchStreams::interleave`] packs them into one stream instead.
//! One deviation from classic bsdiff bounds its running time on repetitive input (see
//! `REUSE_MIN`); on real files the output is the same.
//!
//! [`apply`] runs on the device: it streams, with two 64 KiB buffers whatever the file sizes,
//! reads the old file by offset ([`ReadAt`]) and writes the new bytes as they are produced. Every
//! number in a patch is checked before use, so a corrupt or hostile patch yields
//! [`Error::Corrupt`] — never a panic, an overflow or a large allocation — and a successful apply
//! writes exactly `new_len` bytes.
//!
//! Control stream format: per triple, three unsigned LEB128 varints `add`, `copy`, `zigzag(seek)`.
//! Only the first triple may have `add == copy == 0` (it positions the old file before any output);
//! every later one produces at least one byte, so a patch has at most `new_len + 1` triples.
//! [`apply`] reads exactly the triples (and diff / extra bytes) that produce `new_len` bytes and
//! nothing more, so the streams of several files can be concatenated and applied one after the
//! other from the same readers.

use std::io::{self, Read, Write};

use crate::error::{Error, IoContext, Result};

/// The three byte streams of a patch, to be compressed independently.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PatchStreams {
    /// Control triples: LEB128 varints `add`, `copy`, `zigzag(seek)` per triple.
    pub control: Vec<u8>,
    /// `new[i] - old[j]` (wrapping) for every byte produced by an `add`.
    pub diff: Vec<u8>,
    /// Bytes of the new file copied verbatim.
    pub extra: Vec<u8>,
}

/// Positional reads, so the old file is read without a shared cursor (`pread` for files).
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; `Ok(0)` means end of data.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else { return Ok(0) };
        let Some(src) = self.get(start..) else { return Ok(0) };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
}

// ---------------------------------------------------------------------------------------------
// Diff
// ---------------------------------------------------------------------------------------------

/// `divsufsort` indexes with `i32`: a larger old file is indexed on its first 2 GiB only (matches
/// are then only found there; the patch stays correct, just larger).
const MAX_INDEXED: usize = i32::MAX as usize;

/// bsdiff's threshold: a new match must beat the current alignment by more than this many bytes.
const MISMATCH_SLACK: i64 = 8;

/// While the match found at the previous position is longer than this, the next position reuses
/// it (one byte shorter) instead of searching the suffix array again. Classic bsdiff searches at
/// every position, which is quadratic when a long match lies beside a nearly-as-good alignment
/// (an old file holding two near-copies of a region: 1 MiB took a minute); reusing bounds the
/// cost of those stretches by their length, and long matches are rarely beaten by a fresh search.
const REUSE_MIN: i64 = 256;

/// Computes the patch that turns `old` into `new`.
pub fn diff(old: &[u8], new: &[u8]) -> PatchStreams {
    diff_counting(old, new).0
}

/// [`diff`], also returning how many suffix-array searches it made (tests bound it).
fn diff_counting(old: &[u8], new: &[u8]) -> (PatchStreams, u64) {
    let mut out = Emitter::default();
    let mut searches = 0u64;
    if new.is_empty() {
        return (out.finish(), searches);
    }
    let indexed = &old[..old.len().min(MAX_INDEXED)];
    if indexed.is_empty() {
        out.push(old, new, 0, 0, 0, new.len(), 0);
        return (out.finish(), searches);
    }
    let index = Index::new(indexed);

    let oldsize = old.len() as i64;
    let newsize = new.len() as i64;
    let old_at = |i: i64| old[i as usize];
    let new_at = |i: i64| new[i as usize];
    // Whether the old byte at `i + offset` exists and equals new[i].
    let aligned = |i: i64, offset: i64| {
        let o = i + offset;
        o >= 0 && o < oldsize && old[o as usize] == new[i as usize]
    };

    let (mut scan, mut len, mut pos) = (0i64, 0i64, 0i64);
    let (mut lastscan, mut lastpos, mut lastoffset) = (0i64, 0i64, 0i64);
    while scan < newsize {
        let mut oldscore = 0i64;
        scan += len;
        let mut scsc = scan;
        let mut reuse = false;
        while scan < newsize {
            if reuse {
                // The match found one byte back, shortened by that byte (see REUSE_MIN).
                len -= 1;
                pos += 1;
            } else {
                let (l, p) = index.search(&new[scan as usize..]);
                searches += 1;
                len = l as i64;
                pos = p as i64;
            }
            while scsc < scan + len {
                if aligned(scsc, lastoffset) {
                    oldscore += 1;
                }
                scsc += 1;
            }
            if (len == oldscore && len != 0) || len > oldscore + MISMATCH_SLACK {
                break;
            }
            if aligned(scan, lastoffset) {
                oldscore -= 1;
            }
            scan += 1;
            reuse = len > REUSE_MIN;
        }

        if len != oldscore || scan == newsize {
            // Extend the previous match forwards while it scores at least 50 %.
            let (mut s, mut sf, mut lenf) = (0i64, 0i64, 0i64);
            let mut i = 0i64;
            while lastscan + i < scan && lastpos + i < oldsize {
                if old_at(lastpos + i) == new_at(lastscan + i) {
                    s += 1;
                }
                i += 1;
                if s * 2 - i > sf * 2 - lenf {
                    sf = s;
                    lenf = i;
                }
            }

            // Extend the new match backwards likewise.
            let mut lenb = 0i64;
            if scan < newsize {
                let (mut s, mut sb) = (0i64, 0i64);
                let mut i = 1i64;
                while scan >= lastscan + i && pos >= i {
                    if old_at(pos - i) == new_at(scan - i) {
                        s += 1;
                    }
                    if s * 2 - i > sb * 2 - lenb {
                        sb = s;
                        lenb = i;
                    }
                    i += 1;
                }
            }

            // If the two extensions overlap, split the overlap where it scores best.
            if lastscan + lenf > scan - lenb {
                let overlap = (lastscan + lenf) - (scan - lenb);
                let (mut s, mut ss, mut lens) = (0i64, 0i64, 0i64);
                for i in 0..overlap {
                    if new_at(lastscan + lenf - overlap + i) == old_at(lastpos + lenf - overlap + i) {
                        s += 1;
                    }
                    if new_at(scan - lenb + i) == old_at(pos - lenb + i) {
                        s -= 1;
                    }
                    if s > ss {
                        ss = s;
                        lens = i + 1;
                    }
                }
                lenf += lens - overlap;
                lenb -= lens;
            }

            let extra = (scan - lenb) - (lastscan + lenf);
            let seek = (pos - lenb) - (lastpos + lenf);
            out.push(old, new, lastscan as usize, lastpos as usize, lenf as usize, extra as usize, seek);

            lastscan = scan - lenb;
            lastpos = pos - lenb;
            lastoffset = pos - scan;
        }
    }
    (out.finish(), searches)
}

/// Collects the streams; folds control triples that produce nothing into their predecessor.
#[derive(Default)]
struct Emitter {
    streams: PatchStreams,
    /// The last triple, kept back so that an empty triple after it can fold its seek into it.
    pending: Option<(u64, u64, i64)>,
}

impl Emitter {
    /// One triple: `add` bytes `new[newpos..] - old[oldpos..]`, then `copy` bytes
    /// `new[newpos + add..]`, then the old position moves by `seek`.
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, old: &[u8], new: &[u8], newpos: usize, oldpos: usize, add: usize, copy: usize, seek: i64) {
        let n = &new[newpos..newpos + add];
        let o = &old[oldpos..oldpos + add];
        self.streams.diff.extend(n.iter().zip(o).map(|(n, o)| n.wrapping_sub(*o)));
        self.streams.extra.extend_from_slice(&new[newpos + add..newpos + add + copy]);
        let (add, copy) = (add as u64, copy as u64);
        match &mut self.pending {
            Some(prev) if add == 0 && copy == 0 => prev.2 += seek,
            _ => {
                self.flush();
                self.pending = Some((add, copy, seek));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((add, copy, seek)) = self.pending.take() {
            put_varint(&mut self.streams.control, add);
            put_varint(&mut self.streams.control, copy);
            put_varint(&mut self.streams.control, zigzag(seek));
        }
    }

    fn finish(mut self) -> PatchStreams {
        // The last seek moves nowhere useful: drop it (the position stays inside the old file).
        if let Some(last) = &mut self.pending {
            last.2 = 0;
        }
        self.flush();
        self.streams
    }
}

/// Suffix array of the old file plus a table of where each 2-byte prefix starts in it.
struct Index<'a> {
    text: &'a [u8],
    sa: Vec<i32>,
    /// `start[k]..start[k + 1]` is the range of suffixes with key `k`: `b0 * 257 + b1 + 1` for
    /// suffixes starting with bytes b0 b1, `b0 * 257` for the one-byte suffix `b0`.
    start: Vec<u32>,
}

const KEYS: usize = 256 * 257;

impl<'a> Index<'a> {
    fn new(text: &'a [u8]) -> Self {
        debug_assert!(!text.is_empty() && text.len() <= MAX_INDEXED);
        let mut sa = vec![0i32; text.len()];
        divsufsort::sort_in_place(text, &mut sa);
        let mut start = vec![0u32; KEYS + 1];
        for w in text.windows(2) {
            start[w[0] as usize * 257 + w[1] as usize + 1 + 1] += 1;
        }
        start[text[text.len() - 1] as usize * 257 + 1] += 1;
        for k in 1..=KEYS {
            start[k] += start[k - 1];
        }
        Index { text, sa, start }
    }

    /// The longest prefix of `target` (non-empty) found in the text: `(length, position)`.
    fn search(&self, target: &[u8]) -> (usize, usize) {
        let b0 = target[0] as usize * 257;
        let range = |k: usize| (self.start[k] as usize, self.start[k + 1] as usize);
        let (mut lo, mut hi) = (0, 0);
        if target.len() >= 2 {
            (lo, hi) = range(b0 + target[1] as usize + 1);
        }
        if lo == hi {
            (lo, hi) = (self.start[b0] as usize, self.start[b0 + 257] as usize);
            if lo == hi {
                return (0, 0);
            }
        }
        let (mut st, mut en) = (lo, hi - 1);
        while en - st >= 2 {
            let x = st + (en - st) / 2;
            if &self.text[self.sa[x] as usize..] < target {
                st = x;
            } else {
                en = x;
            }
        }
        let (ps, pe) = (self.sa[st] as usize, self.sa[en] as usize);
        let x = common_prefix(&self.text[ps..], target);
        let y = common_prefix(&self.text[pe..], target);
        if x > y {
            (x, ps)
        } else {
            (y, pe)
        }
    }
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_le_bytes(ca.try_into().unwrap()) ^ u64::from_le_bytes(cb.try_into().unwrap());
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

impl PatchStreams {
    /// Packs the three streams into one: per triple its three varints, then its `add` diff bytes,
    /// then its `copy` extra bytes. Apply it with [`apply_interleaved`].
    pub fn interleave(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.control.len() + self.diff.len() + self.extra.len());
        let (mut control, mut diff, mut extra) = (&self.control[..], &self.diff[..], &self.extra[..]);
        while !control.is_empty() {
            let add = read_varint(&mut One(&mut control))?;
            let copy = read_varint(&mut One(&mut control))?;
            let seek = read_varint(&mut One(&mut control))?;
            let take = |s: &mut &[u8], n: u64, what: &str| -> Result<Vec<u8>> {
                let n = usize::try_from(n).ok().filter(|&n| n <= s.len());
                let n = n.ok_or_else(|| corrupt(format!("{what} stream truncated")))?;
                let (head, tail) = s.split_at(n);
                *s = tail;
                Ok(head.to_vec())
            };
            let d = take(&mut diff, add, "diff")?;
            let e = take(&mut extra, copy, "extra")?;
            for v in [add, copy, seek] {
                put_varint(&mut out, v);
            }
            out.extend_from_slice(&d);
            out.extend_from_slice(&e);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Apply
// ---------------------------------------------------------------------------------------------

/// Size of each of the two buffers [`apply`] uses.
const BUF: usize = 64 * 1024;

/// Writes to `out` the `new_len` bytes that the patch makes of `old` (`old_len` bytes, read by
/// offset), reading the control, diff and extra streams. Returns the bytes written (`new_len`).
///
/// Reads only as much of each stream as the patch needs, so streams of several patches may be
/// concatenated. Memory use is two 64 KiB buffers, whatever the sizes.
pub fn apply<R, C, D, E, W>(
    old: &R,
    old_len: u64,
    control: &mut C,
    diff: &mut D,
    extra: &mut E,
    new_len: u64,
    out: &mut W,
) -> Result<u64>
where
    R: ReadAt + ?Sized,
    C: Read + ?Sized,
    D: Read + ?Sized,
    E: Read + ?Sized,
    W: Write + ?Sized,
{
    apply_core(old, old_len, &mut Three { control, diff, extra }, new_len, out)
}

/// [`apply`] for the single stream made by [`PatchStreams::interleave`].
pub fn apply_interleaved<R, P, W>(old: &R, old_len: u64, patch: &mut P, new_len: u64, out: &mut W) -> Result<u64>
where
    R: ReadAt + ?Sized,
    P: Read + ?Sized,
    W: Write + ?Sized,
{
    apply_core(old, old_len, &mut One(patch), new_len, out)
}

#[derive(Clone, Copy)]
enum Stream {
    Control,
    Diff,
    Extra,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Control => "control",
            Stream::Diff => "diff",
            Stream::Extra => "extra",
        }
    }
}

trait Source {
    fn read(&mut self, which: Stream, buf: &mut [u8]) -> io::Result<usize>;
}

struct Three<'a, C: ?Sized, D: ?Sized, E: ?Sized> {
    control: &'a mut C,
    diff: &'a mut D,
    extra: &'a mut E,
}

impl<C: Read + ?Sized, D: Read + ?Sized, E: Read + ?Sized> Source for Three<'_, C, D, E> {
    fn read(&mut self, which: Stream, buf: &mut [u8]) -> io::Result<usize> {
        match which {
            Stream::Control => self.control.read(buf),
            Stream::Diff => self.diff.read(buf),
            Stream::Extra => self.extra.read(buf),
        }
    }
}

struct One<'a, P: ?Sized>(&'a mut P);

impl<P: Read + ?Sized> Source for One<'_, P> {
    fn read(&mut self, _: Stream, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

fn corrupt(msg: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("delta: {msg}"))
}

fn read_exact(src: &mut impl Source, which: Stream, mut buf: &mut [u8]) -> Result<()> {
    while !buf.is_empty() {
        match src.read(which, buf) {
            Ok(0) => return Err(corrupt(format_args!("{} stream truncated", which.name()))),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| format!("reading delta {} stream", which.name())),
        }
    }
    Ok(())
}

fn read_varint(src: &mut impl Source) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        read_exact(src, Stream::Control, &mut b)?;
        let b = b[0];
        if i == 9 && b > 1 {
            break;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("control varint exceeds 64 bits"))
}

fn read_old<R: ReadAt + ?Sized>(old: &R, mut buf: &mut [u8], mut offset: u64) -> Result<()> {
    while !buf.is_empty() {
        match old.read_at(buf, offset) {
            Ok(0) => return Err(corrupt(format_args!("old file ends before offset {}", offset + buf.len() as u64))),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| format!("reading old file at offset {offset}")),
        }
    }
    Ok(())
}

fn apply_core<R, S, W>(old: &R, old_len: u64, src: &mut S, new_len: u64, out: &mut W) -> Result<u64>
where
    R: ReadAt + ?Sized,
    S: Source,
    W: Write + ?Sized,
{
    let mut buf = Vec::new();
    let mut oldbuf = Vec::new();
    let mut written = 0u64;
    let mut oldpos = 0u64;
    let mut first = true;
    while written < new_len {
        let add = read_varint(src)?;
        let copy = read_varint(src)?;
        let seek = unzigzag(read_varint(src)?);
        if add == 0 && copy == 0 && !first {
            return Err(corrupt("control triple produces no bytes"));
        }
        first = false;

        let left = new_len - written;
        if add > left {
            return Err(corrupt(format_args!("add of {add} bytes exceeds the {left} bytes left of the new file")));
        }
        match oldpos.checked_add(add) {
            Some(end) if end <= old_len => {}
            _ => {
                return Err(corrupt(format_args!(
                    "add of {add} bytes at offset {oldpos} reads past the old file ({old_len} bytes)"
                )))
            }
        }
        let mut todo = add;
        while todo > 0 {
            let n = todo.min(BUF as u64) as usize;
            buf.resize(n.max(buf.len()), 0);
            oldbuf.resize(n.max(oldbuf.len()), 0);
            let (b, o) = (&mut buf[..n], &mut oldbuf[..n]);
            read_exact(src, Stream::Diff, b)?;
            read_old(old, o, oldpos)?;
            for (b, o) in b.iter_mut().zip(o.iter()) {
                *b = b.wrapping_add(*o);
            }
            out.write_all(b).ctx(|| "writing patched file".to_string())?;
            oldpos += n as u64;
            todo -= n as u64;
        }
        written += add;

        let left = new_len - written;
        if copy > left {
            return Err(corrupt(format_args!("copy of {copy} bytes exceeds the {left} bytes left of the new file")));
        }
        let mut todo = copy;
        while todo > 0 {
            let n = todo.min(BUF as u64) as usize;
            buf.resize(n.max(buf.len()), 0);
            let b = &mut buf[..n];
            read_exact(src, Stream::Extra, b)?;
            out.write_all(b).ctx(|| "writing patched file".to_string())?;
            todo -= n as u64;
        }
        written += copy;

        let target = if seek >= 0 {
            oldpos.checked_add(seek.unsigned_abs())
        } else {
            oldpos.checked_sub(seek.unsigned_abs())
        };
        oldpos = target.filter(|&p| p <= old_len).ok_or_else(|| {
            corrupt(format_args!("seek by {seek} from offset {oldpos} leaves the old file ({old_len} bytes)"))
        })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
