//! POSIX pax extended header records: "<len> <key>=<value>\n".

use super::reader::TarError;

/// Parses all records of one extended header. Values stay bytes (paths need not be UTF-8).
pub fn parse_records(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, TarError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| TarError::Malformed("pax record without length".into()))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TarError::Malformed("pax record length is not a number".into()))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(TarError::Malformed("pax record length out of bounds".into()));
        }
        let rec = &data[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| TarError::Malformed("pax record without '='".into()))?;
        let key = String::from_utf8(rec[..eq].to_vec())
            .map_err(|_| TarError::Malformed("pax record key is not UTF-8".into()))?;
        out.push((key, rec[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

pub fn decimal(value: &[u8], key: &str) -> Result<u64, TarError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TarError::Malformed(format!("pax {key} is not a decimal number")))
}

/// Seconds and nanoseconds of a pax time value such as "1700000000.123456789" (the fraction is optional).
pub fn time(value: &[u8], key: &str) -> Result<(i64, u32), TarError> {
    let s = std::str::from_utf8(value).map_err(|_| TarError::Malformed(format!("pax {key} is not UTF-8")))?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| TarError::Malformed(format!("pax {key} is not a time")))?;
    let mut nanos: u32 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10).ok_or_else(|| TarError::Malformed(format!("pax {key} is not a time")))?;
        nanos += d * 10u32.pow(8 - i as u32);
    }
    Ok((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let r = parse_records(b"20 path=a/b/c/d/e.x\n27 SCHILY.xattr.user.k=v\0w\n").unwrap();
        assert_eq!(r[0], ("path".to_string(), b"a/b/c/d/e.x".to_vec()));
        assert_eq!(r[1], ("SCHILY.xattr.user.k".to_string(), b"v\0w".to_vec()));
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(parse_records(b"99 path=x\n").is_err());
        assert!(parse_records(b"3 p\n").is_err());
        assert!(parse_records(b"x path=y\n").is_err());
    }

    #[test]
    fn parses_times() {
        assert_eq!(time(b"12.5", "mtime").unwrap(), (12, 500_000_000));
        assert_eq!(time(b"-3", "mtime").unwrap(), (-3, 0));
    }
}
