//! Sizes and ages the way docker prints them.

/// Decimal units, three significant digits: 5.57MB, 208MB, 1.2kB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let digits = if v >= 100.0 { 0 } else if v >= 10.0 { 1 } else { 2 };
    let s = if i == 0 { format!("{bytes}") } else { format!("{:.*}", digits, s.parse::<f64>().unwrap_or(v)) };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}{}", UNITS[i])
}

pub use engine::time::parse_rfc3339;

/// Binary units with four significant digits, as docker's `BytesSize`: 512MiB, 23.43GiB.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let digits = if v >= 1000.0 { 0 } else if v >= 100.0 { 1 } else if v >= 10.0 { 2 } else { 3 };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}{}", UNITS[i])
}

pub use engine::time::human_duration as duration;

/// Seconds since the epoch now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub use engine::time::datetime as civil;

/// docker's `CreatedAt`: "2024-05-01 12:00:00 +0000 UTC".
pub fn created_at(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}

pub use engine::time::rfc3339_fixed as rfc3339_nanos;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(1_200), "1.2kB");
        assert_eq!(size(5_570_000), "5.57MB");
        assert_eq!(size(208_197_120), "208MB");
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-01-01T00:00:00.5Z"), Some(1_735_689_600));
        assert_eq!(parse_rfc3339("2025-01-01T01:00:00+01:00"), Some(1_735_689_600));
    }

    #[test]
    fn docker_units() {
        assert_eq!(binary_size(512 << 20), "512MiB");
        assert_eq!(binary_size(25_158_512_640), "23.43GiB");
        assert_eq!(binary_size(1000), "1000B");
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(3), "3 seconds");
        assert_eq!(duration(75), "About a minute");
        assert_eq!(duration(3 * 3600), "3 hours");
        assert_eq!(created_at(1_714_564_800), "2024-05-01 12:00:00 +0000 UTC");
        assert_eq!(rfc3339_nanos(1_714_564_800_000_000_005), "2024-05-01T12:00:00.000000005Z");
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(parse_rfc3339("2000-02-29T23:59:59Z").map(civil), Some((2000, 2, 29, 23, 59, 59)));
    }
}
