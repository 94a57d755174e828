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

/// Seconds since the epoch of an RFC 3339 time ("2024-01-02T03:04:05.123Z" or with an offset).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        r if r.len() == 6 => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r.get(1..3)?.parse::<i64>().ok()? * 3600 + r.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

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

/// Go's `units.HumanDuration`, as docker's "Up 3 seconds" and "5 minutes ago".
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let hours = (s as f64 / 3600.0).round() as i64;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{hours} hours"),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86_400),
        s if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86_400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86_400)),
        s => format!("{} years", s / (365 * 86_400)),
    }
}

/// Seconds since the epoch now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// (year, month, day, hour, minute, second) in UTC.
pub fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// docker's `CreatedAt`: "2024-05-01 12:00:00 +0000 UTC".
pub fn created_at(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}

/// RFC 3339 with nanoseconds in UTC: "2024-05-01T12:00:00.123456789Z".
pub fn rfc3339_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}Z")
}

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
