//! Recognises what an archive entry holds from its first bytes, and opens decompressors.

use std::io::Read;

use crate::tar::BLOCK;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Gzip,
    Zstd,
    Tar,
    Json,
    Other,
}

pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Sniffed::Gzip;
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Sniffed::Zstd;
    }
    if head.len() >= BLOCK {
        let block = &head[..BLOCK];
        if block.iter().all(|&b| b == 0) || &block[257..262] == b"ustar" || v7_checksum_ok(block) {
            return Sniffed::Tar;
        }
    }
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => Sniffed::Json,
        _ => Sniffed::Other,
    }
}

fn v7_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let text: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else { return false };
    let sum: u32 = block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    stored == sum
}

/// Largest zstd window accepted (2^27 = 128 MiB is zstd's default decoder limit; layers use far less).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

pub fn decompressor<'a>(kind: Sniffed, input: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match kind {
        Sniffed::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Sniffed::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(input)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        _ => Box::new(input),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_kinds() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Sniffed::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Sniffed::Zstd);
        assert_eq!(sniff(&[0u8; 1024]), Sniffed::Tar);
        assert_eq!(sniff(b"  {\"a\":1}"), Sniffed::Json);
        assert_eq!(sniff(b"hello"), Sniffed::Other);
    }
}
