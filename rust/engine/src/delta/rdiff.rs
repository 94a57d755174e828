//! Applies librsync ("rdiff") deltas, the format of balenaEngine's image deltas (`rdiff patch`).
//!
//! A delta is the magic `0x72730236` (big-endian) then a stream of commands, each one opcode byte
//! followed by big-endian parameters (librsync `prototab.c`):
//!
//! | opcode        | command                   | parameters                                   |
//! |---------------|---------------------------|----------------------------------------------|
//! | `0x00`        | END                       | –                                            |
//! | `0x01..=0x40` | LITERAL of `opcode` bytes | the bytes                                    |
//! | `0x41..=0x44` | LITERAL_N1/N2/N4/N8       | length (1/2/4/8 bytes), then the bytes       |
//! | `0x45..=0x54` | COPY_Na_Nb                | offset (a bytes), length (b bytes); a, b ∈ {1,2,4,8}, a major |
//! | `0x55..=0xff` | reserved                  | refused                                      |
//!
//! COPY copies `length` bytes of the base ("basis") stream from `offset`. Like librsync, zero lengths are
//! refused. Deltas are produced by librsync or by balena's librsync-go (which only uses LITERAL_Nx and
//! COPY); both are handled. Memory is bounded (one `CHUNK` buffer plus the delta read buffer) whatever the
//! lengths in the delta; all arithmetic is on `u64` and checked, so 32-bit hosts read 8-byte parameters
//! safely. Errors in the delta are `Error::BadArchive("rdiff delta: …")`.

use std::io::{self, BufReader, Read, Write};

use crate::error::{Error, IoContext, Result};

/// `RS_DELTA_MAGIC`.
pub const DELTA_MAGIC: u32 = 0x7273_0236;

const OP_END: u8 = 0x00;
const OP_LITERAL_64: u8 = 0x40;
const OP_LITERAL_N1: u8 = 0x41;
const OP_LITERAL_N8: u8 = 0x44;
const OP_COPY_N1_N1: u8 = 0x45;
const OP_COPY_N8_N8: u8 = 0x54;

/// Bytes moved per read/write.
const CHUNK: usize = 128 * 1024;

/// A byte source readable at any offset (the base of a delta).
pub trait ReadAt {
    /// Total size in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many, 0 only at or past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let Ok(start) = usize::try_from(offset) else { return Ok(0) };
        if start >= <[u8]>::len(self) {
            return Ok(0);
        }
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).read_at(offset, buf)
    }
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::BadArchive(format!("rdiff delta: {msg}"))
}

/// The delta input with its position, for error messages.
struct Delta<R> {
    r: BufReader<R>,
    pos: u64,
}

impl<R: Read> Delta<R> {
    /// Fills `buf` or fails: a short delta is `what` truncated.
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(bad(format_args!("truncated: ends inside {what} (at byte {})", self.pos)))
            }
            Err(e) => Err(e).ctx(|| "reading rdiff delta".into()),
        }
    }

    /// A big-endian unsigned integer of `width` (1, 2, 4 or 8) bytes.
    fn be(&mut self, width: usize, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.exact(&mut b[8 - width..], what)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Copies `len` bytes of the delta to `out`.
    fn literal(&mut self, len: u64, out: &mut impl Write, buf: &mut [u8]) -> Result<()> {
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            self.exact(&mut buf[..n], "LITERAL data")?;
            out.write_all(&buf[..n]).ctx(|| "writing patched output".into())?;
            left -= n as u64;
        }
        Ok(())
    }

    /// True when no byte is left.
    fn at_end(&mut self) -> Result<bool> {
        loop {
            match self.r.read(&mut [0u8; 1]) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).ctx(|| "reading rdiff delta".into()),
            }
        }
    }
}

/// Copies `len` bytes of `base` at `offset` to `out`; the range is already checked against `base.len()`.
fn copy<B: ReadAt + ?Sized>(base: &B, offset: u64, len: u64, out: &mut impl Write, buf: &mut [u8]) -> Result<()> {
    let mut pos = offset;
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = base.read_at(pos, &mut buf[..want])?;
        if n == 0 {
            return Err(Error::Corrupt(format!(
                "delta base ended at {pos} bytes, before its stated size {}",
                base.len()
            )));
        }
        out.write_all(&buf[..n]).ctx(|| "writing patched output".into())?;
        pos += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Applies the rdiff delta read from `delta` to `base`, writing the new file to `out`; returns its size.
/// The delta must end with END and nothing after it. `out` is not flushed.
pub fn apply<B: ReadAt + ?Sized>(delta: impl Read, base: &B, out: &mut impl Write) -> Result<u64> {
    let mut d = Delta { r: BufReader::with_capacity(64 * 1024, delta), pos: 0 };
    let magic = d.be(4, "the header")? as u32;
    if magic != DELTA_MAGIC {
        return Err(bad(format_args!("bad magic {magic:#010x}, expected {DELTA_MAGIC:#010x}")));
    }
    let base_len = base.len();
    let mut buf = vec![0u8; CHUNK];
    let mut written: u64 = 0;
    let add = |written: u64, n: u64| written.checked_add(n).ok_or_else(|| bad("output size overflows"));
    loop {
        let at = d.pos;
        let mut op = [0u8; 1];
        d.exact(&mut op, "a command (no END)")?;
        match op[0] {
            OP_END => break,
            n @ 1..=OP_LITERAL_64 => {
                d.literal(u64::from(n), out, &mut buf)?;
                written = add(written, u64::from(n))?;
            }
            op @ OP_LITERAL_N1..=OP_LITERAL_N8 => {
                let len = d.be(1 << (op - OP_LITERAL_N1), "a LITERAL length")?;
                if len == 0 {
                    return Err(bad(format_args!("LITERAL of length 0 at byte {at}")));
                }
                written = add(written, len)?;
                d.literal(len, out, &mut buf)?;
            }
            op @ OP_COPY_N1_N1..=OP_COPY_N8_N8 => {
                let i = op - OP_COPY_N1_N1;
                let offset = d.be(1 << (i / 4), "a COPY offset")?;
                let len = d.be(1 << (i % 4), "a COPY length")?;
                if len == 0 {
                    return Err(bad(format_args!("COPY of length 0 at byte {at}")));
                }
                match offset.checked_add(len) {
                    Some(end) if end <= base_len => {}
                    _ => {
                        return Err(bad(format_args!(
                            "COPY({offset}, {len}) at byte {at} reaches beyond the end of the base ({base_len} bytes): \
                             the delta was made against another base"
                        )))
                    }
                }
                written = add(written, len)?;
                copy(base, offset, len, out, &mut buf)?;
            }
            op => return Err(bad(format_args!("reserved command byte {op:#04x} at byte {at}"))),
        }
    }
    if !d.at_end()? {
        return Err(bad(format_args!("data after the END command at byte {}", d.pos - 1)));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds deltas command by command.
    struct Enc(Vec<u8>);

    impl Enc {
        fn new() -> Self {
            Enc(DELTA_MAGIC.to_be_bytes().to_vec())
        }
        fn be(&mut self, v: u64, width: usize) {
            self.0.extend_from_slice(&v.to_be_bytes()[8 - width..]);
        }
        fn lit_short(mut self, data: &[u8]) -> Self {
            assert!((1..=64).contains(&data.len()));
            self.0.push(data.len() as u8);
            self.0.extend_from_slice(data);
            self
        }
        fn lit(mut self, width: usize, data: &[u8]) -> Self {
            self.0.push(OP_LITERAL_N1 + width.trailing_zeros() as u8);
            self.be(data.len() as u64, width);
            self.0.extend_from_slice(data);
            self
        }
        fn copy(mut self, ow: usize, lw: usize, off: u64, len: u64) -> Self {
            self.0.push(OP_COPY_N1_N1 + 4 * ow.trailing_zeros() as u8 + lw.trailing_zeros() as u8);
            self.be(off, ow);
            self.be(len, lw);
            self
        }
        fn end(mut self) -> Vec<u8> {
            self.0.push(OP_END);
            self.0
        }
    }

    fn run(delta: &[u8], base: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = apply(delta, base, &mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    fn err(delta: &[u8], base: &[u8]) -> String {
        match run(delta, base) {
            Ok(v) => panic!("applied to {} bytes", v.len()),
            Err(e) => {
                assert!(matches!(e, Error::BadArchive(_)), "{e:?}");
                e.to_string()
            }
        }
    }

    #[test]
    fn every_command_form() {
        let base: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut want = Vec::new();
        let mut e = Enc::new();
        for n in 1..=64usize {
            let d: Vec<u8> = (0..n).map(|i| (i + n) as u8).collect();
            e = e.lit_short(&d);
            want.extend_from_slice(&d);
        }
        for w in [1, 2, 4, 8] {
            let d = vec![w as u8; 200];
            e = e.lit(w, &d);
            want.extend_from_slice(&d);
        }
        for ow in [1usize, 2, 4, 8] {
            for lw in [1usize, 2, 4, 8] {
                let off = if ow == 1 { 200 } else { 65_000 + ow as u64 };
                let len = match lw {
                    1 => 255,
                    _ => 1000 + lw as u64,
                };
                let len = len.min(base.len() as u64 - off);
                e = e.copy(ow, lw, off, len);
                want.extend_from_slice(&base[off as usize..(off + len) as usize]);
            }
        }
        assert_eq!(run(&e.end(), &base).unwrap(), want);
    }

    #[test]
    fn large_copy_and_literal_are_chunked() {
        let base: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let lit: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let delta = Enc::new().copy(4, 4, 3, 999_990).lit(4, &lit).copy(1, 1, 0, 1).end();
        let mut want = base[3..999_993].to_vec();
        want.extend_from_slice(&lit);
        want.push(base[0]);
        assert_eq!(run(&delta, &base).unwrap(), want);
    }

    #[test]
    fn empty_delta_makes_empty_output() {
        assert_eq!(run(&Enc::new().end(), b"").unwrap(), b"");
        assert_eq!(run(&Enc::new().end(), b"base").unwrap(), b"");
    }

    #[test]
    fn copy_of_whole_base_and_last_byte() {
        let base = b"0123456789";
        assert_eq!(run(&Enc::new().copy(1, 1, 0, 10).end(), base).unwrap(), base);
        assert_eq!(run(&Enc::new().copy(1, 1, 9, 1).end(), base).unwrap(), b"9");
    }

    #[test]
    fn bad_deltas_are_refused() {
        let base = b"0123456789";
        // Header.
        assert!(err(b"", base).contains("truncated"));
        assert!(err(&[0x72, 0x73, 0x02], base).contains("truncated"));
        assert!(err(&[0x72, 0x73, 0x01, 0x36, 0], base).contains("bad magic 0x72730136"));
        // No END.
        assert!(err(&Enc::new().0, base).contains("no END"));
        assert!(err(&Enc::new().lit_short(b"abc").0, base).contains("no END"));
        // Truncated literal data and parameters.
        let mut d = Enc::new().lit_short(b"abcd").end();
        d.truncate(d.len() - 3);
        assert!(err(&d, base).contains("LITERAL data"));
        assert!(err(&[0x72, 0x73, 0x02, 0x36, 0x42, 0x01], base).contains("LITERAL length"));
        assert!(err(&[0x72, 0x73, 0x02, 0x36, 0x4f, 0, 0, 0, 1, 0, 0], base).contains("COPY length"));
        assert!(err(&[0x72, 0x73, 0x02, 0x36, 0x54, 0, 0], base).contains("COPY offset"));
        // A huge literal length that is not there: refused without allocating it.
        let mut d = Enc::new().0;
        d.push(OP_LITERAL_N8);
        d.extend_from_slice(&u64::MAX.to_be_bytes());
        d.extend_from_slice(b"short");
        assert!(err(&d, base).contains("truncated"));
        // Reserved opcodes.
        for op in [0x55u8, 0x80, 0xff] {
            let mut d = Enc::new().0;
            d.push(op);
            assert!(err(&d, base).contains("reserved command byte"), "{op:#x}");
        }
        // Zero lengths, as librsync.
        assert!(err(&Enc::new().lit(1, b"").end(), base).contains("LITERAL of length 0"));
        assert!(err(&Enc::new().copy(1, 1, 0, 0).end(), base).contains("COPY of length 0"));
        // COPY beyond the base, including u64 overflow of offset + length.
        assert!(err(&Enc::new().copy(1, 1, 5, 6).end(), base).contains("beyond the end of the base"));
        assert!(err(&Enc::new().copy(1, 1, 10, 1).end(), base).contains("beyond the end of the base"));
        assert!(err(&Enc::new().copy(8, 8, u64::MAX, 2).end(), base).contains("beyond the end"));
        assert!(err(&Enc::new().copy(8, 8, 1, u64::MAX).end(), base).contains("beyond the end"));
        assert!(err(&Enc::new().copy(8, 1, 1 << 33, 1).end(), base).contains("beyond the end"));
        // Anything after END.
        let mut d = Enc::new().lit_short(b"x").end();
        d.push(0);
        assert!(err(&d, base).contains("after the END"));
    }

    #[test]
    fn output_errors_are_io_errors() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = apply(&Enc::new().copy(1, 1, 0, 3).end()[..], &b"abc"[..], &mut Full).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
    }

    #[test]
    fn slice_read_at() {
        let s: &[u8] = b"hello";
        let mut b = [0u8; 8];
        assert_eq!(ReadAt::read_at(s, 1, &mut b).unwrap(), 4);
        assert_eq!(&b[..4], b"ello");
        assert_eq!(ReadAt::read_at(s, 5, &mut b).unwrap(), 0);
        assert_eq!(ReadAt::read_at(s, u64::MAX, &mut b).unwrap(), 0);
        assert_eq!(ReadAt::len(s), 5);
    }
}
