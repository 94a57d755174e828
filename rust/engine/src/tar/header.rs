//! One 512-byte tar header block: ustar, GNU and v7 forms.

use super::reader::TarError;

pub const BLOCK: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// What a header block announces.
pub enum BlockKind {
    Entry(EntryKind),
    /// POSIX extended header for the next entry ('x').
    PaxLocal,
    /// POSIX global extended header ('g'): kept byte-exact, its values are not applied.
    PaxGlobal,
    /// GNU long name ('L') / long link name ('K') for the next entry.
    GnuLongName,
    GnuLongLink,
}

pub struct Header<'a> {
    block: &'a [u8; BLOCK],
}

fn field(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// Parses a numeric field: octal text (NUL/space padded) or GNU base-256 (high bit set).
fn number(b: &[u8], name: &str) -> Result<u64, TarError> {
    if let Some(&first) = b.first() {
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                return Err(TarError::Malformed(format!("negative {name} field")));
            }
            let mut v: u64 = u64::from(first & 0x3f);
            for &c in &b[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(c)))
                    .ok_or_else(|| TarError::Malformed(format!("{name} field overflows 64 bits")))?;
            }
            return Ok(v);
        }
    }
    let text = field(b);
    let trimmed: Vec<u8> = text.iter().copied().filter(|c| *c != b' ').collect();
    if trimmed.is_empty() {
        return Ok(0);
    }
    let mut v: u64 = 0;
    for c in trimmed {
        if !(b'0'..=b'7').contains(&c) {
            return Err(TarError::Malformed(format!("{name} field is not an octal number")));
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or_else(|| TarError::Malformed(format!("{name} field overflows 64 bits")))?;
    }
    Ok(v)
}

impl<'a> Header<'a> {
    pub fn new(block: &'a [u8; BLOCK]) -> Self {
        Header { block }
    }

    pub fn is_zero(&self) -> bool {
        self.block.iter().all(|&b| b == 0)
    }

    /// The checksum is the sum of all header bytes with the checksum field read as spaces;
    /// historic writers summed signed bytes, so both sums are accepted.
    pub fn verify_checksum(&self) -> Result<(), TarError> {
        let not_tar = || TarError::Malformed("header checksum mismatch (not a tar stream, or corrupt)".into());
        let stored = number(&self.block[148..156], "checksum").map_err(|_| not_tar())?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in self.block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        if stored == unsigned || i64::try_from(stored).ok() == Some(signed) {
            Ok(())
        } else {
            Err(not_tar())
        }
    }

    pub fn block_kind(&self) -> Result<BlockKind, TarError> {
        Ok(match self.block[156] {
            b'0' | 0 | b'7' => BlockKind::Entry(EntryKind::File),
            b'1' => BlockKind::Entry(EntryKind::HardLink),
            b'2' => BlockKind::Entry(EntryKind::Symlink),
            b'3' => BlockKind::Entry(EntryKind::CharDevice),
            b'4' => BlockKind::Entry(EntryKind::BlockDevice),
            b'5' => BlockKind::Entry(EntryKind::Directory),
            b'6' => BlockKind::Entry(EntryKind::Fifo),
            b'x' => BlockKind::PaxLocal,
            b'g' => BlockKind::PaxGlobal,
            b'L' => BlockKind::GnuLongName,
            b'K' => BlockKind::GnuLongLink,
            b'S' => return Err(TarError::Unsupported("GNU sparse files".into())),
            b'M' | b'V' => return Err(TarError::Unsupported("multi-volume archives".into())),
            other => return Err(TarError::Unsupported(format!("entry type {:?}", other as char))),
        })
    }

    fn is_posix_ustar(&self) -> bool {
        &self.block[257..263] == b"ustar\0"
    }

    /// Name, joined with the ustar prefix field where the header is POSIX ustar.
    pub fn path(&self) -> Vec<u8> {
        let name = field(&self.block[0..100]);
        let prefix = if self.is_posix_ustar() { field(&self.block[345..500]) } else { &[] };
        if prefix.is_empty() {
            name.to_vec()
        } else {
            let mut p = prefix.to_vec();
            p.push(b'/');
            p.extend_from_slice(name);
            p
        }
    }

    pub fn link_name(&self) -> Vec<u8> {
        field(&self.block[157..257]).to_vec()
    }

    pub fn mode(&self) -> Result<u32, TarError> {
        Ok((number(&self.block[100..108], "mode")? & 0o7777) as u32)
    }
    pub fn uid(&self) -> Result<u64, TarError> {
        number(&self.block[108..116], "uid")
    }
    pub fn gid(&self) -> Result<u64, TarError> {
        number(&self.block[116..124], "gid")
    }
    pub fn size(&self) -> Result<u64, TarError> {
        number(&self.block[124..136], "size")
    }
    pub fn mtime(&self) -> Result<u64, TarError> {
        number(&self.block[136..148], "mtime")
    }
    pub fn dev_major(&self) -> Result<u64, TarError> {
        number(&self.block[329..337], "devmajor")
    }
    pub fn dev_minor(&self) -> Result<u64, TarError> {
        number(&self.block[337..345], "devminor")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_octal_and_base256() {
        assert_eq!(number(b"0000644\0", "m").unwrap(), 0o644);
        assert_eq!(number(b"  17 \0", "m").unwrap(), 0o17);
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 1, 0], "s").unwrap(), 256);
        assert!(number(b"12345678", "m").is_err());
        assert!(number(&[0xff; 12], "s").is_err());
        assert!(number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "s").is_err());
    }
}
