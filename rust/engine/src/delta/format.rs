//! The delta payload of one target layer (`bedelta/1`): the file `delta`, the single entry of a delta layer.
//!
//! ```text
//! "BEDELTA1"  u32-LE header length  header JSON  ops section  data section  diff section
//! ```
//! Each section is one zstd frame, read concurrently on apply (three decoders, small windows). The ops
//! stream rebuilds the target layer's tar in order:
//! `RAW len bytes` (headers, padding, trailer), `COPY layer path size` (content of a base file, unchanged),
//! `PATCH layer path old_size size control_len control` (bsdiff against a base file: diff bytes from the diff
//! section, extra bytes from the data section), `LITERAL size` (bytes from the data section), `END total`.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"BEDELTA1";
/// Largest header accepted (a few hundred bytes in practice).
const MAX_HEADER: u32 = 64 * 1024;
/// Largest path in an op.
pub const MAX_PATH: u64 = 64 * 1024;
/// Largest RAW op (tar headers; a pax header is at most 1 MiB, and raw runs are flushed in 64 KiB).
pub const MAX_RAW: u64 = 8 << 20;

pub const OP_END: u8 = 0;
pub const OP_RAW: u8 = 1;
pub const OP_COPY: u8 = 2;
pub const OP_PATCH: u8 = 3;
pub const OP_LITERAL: u8 = 4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Index of the target layer this payload rebuilds (0 = bottom).
    pub target_index: u32,
    pub target_diff_id: Digest,
    pub target_size: u64,
    /// Compressed sizes of the ops, data and diff sections, in that order.
    pub sections: [u64; 3],
}

pub fn write_header(out: &mut impl Write, h: &Header) -> io::Result<()> {
    let json = serde_json::to_vec(h).map_err(io::Error::other)?;
    out.write_all(MAGIC)?;
    out.write_all(&(json.len() as u32).to_le_bytes())?;
    out.write_all(&json)
}

/// Reads the header; returns it with the offset where the sections begin.
pub fn read_header(r: &mut impl Read) -> Result<(Header, u64)> {
    let bad = |what: &str| Error::Corrupt(format!("delta payload: {what}"));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| bad("too short"))?;
    if &magic != MAGIC {
        return Err(bad("not a bedelta/1 payload (bad magic)"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|_| bad("truncated header"))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(bad("header too large"));
    }
    let mut json = vec![0u8; len as usize];
    r.read_exact(&mut json).map_err(|_| bad("truncated header"))?;
    let h: Header = serde_json::from_slice(&json).map_err(|e| bad(&format!("header: {e}")))?;
    Ok((h, 12 + u64::from(len)))
}

pub fn write_varint(out: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    out.write_all(&buf[..n])
}

/// Reads a LEB128 varint; more than 10 bytes or a value over 64 bits is corruption.
pub fn read_varint(r: &mut impl Read) -> io::Result<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        let low = u64::from(b[0] & 0x7f);
        if i == 9 && low > 1 {
            break;
        }
        v |= low << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "varint overflows 64 bits"))
}

/// Writes `layer path` of a COPY or PATCH op.
pub fn write_source(out: &mut impl Write, layer: u32, path: &[u8]) -> io::Result<()> {
    write_varint(out, u64::from(layer))?;
    write_varint(out, path.len() as u64)?;
    out.write_all(path)
}

pub fn read_source(r: &mut impl Read) -> io::Result<(u32, Vec<u8>)> {
    let layer = u32::try_from(read_varint(r)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "layer index"))?;
    let len = read_varint(r)?;
    if len > MAX_PATH {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "path too long"));
    }
    let mut path = vec![0u8; len as usize];
    r.read_exact(&mut path)?;
    Ok((layer, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            write_varint(&mut b, v).unwrap();
            assert_eq!(read_varint(&mut b.as_slice()).unwrap(), v);
        }
        assert!(read_varint(&mut [0xffu8; 11].as_slice()).is_err());
        assert!(read_varint(&mut [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02].as_slice()).is_err());
        assert!(read_varint(&mut [0x80u8].as_slice()).is_err());
    }

    #[test]
    fn header_round_trips() {
        let h = Header { target_index: 2, target_diff_id: Digest::of_bytes(b"x"), target_size: 10, sections: [1, 2, 3] };
        let mut b = Vec::new();
        write_header(&mut b, &h).unwrap();
        let (back, off) = read_header(&mut b.as_slice()).unwrap();
        assert_eq!(back, h);
        assert_eq!(off, b.len() as u64);
        assert!(read_header(&mut &b[..10]).is_err());
        b[0] = b'X';
        assert!(read_header(&mut b.as_slice()).is_err());
    }
}
