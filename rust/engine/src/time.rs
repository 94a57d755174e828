//! Times as the Docker API and image configs write them: RFC 3339 strings and `seconds[.nanoseconds]`,
//! computed without a time-zone database (UTC only). Shared by the store, the daemon and the CLI.

use std::time::{SystemTime, UNIX_EPOCH};

/// (seconds, nanoseconds) since the epoch, now.
pub fn now() -> (i64, u32) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// (year, month, day) of a day number since the epoch (Howard Hinnant's civil-from-days).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour, minute, second) in UTC.
pub fn datetime(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// RFC 3339 in UTC, whole seconds: "2025-01-01T00:00:00Z".
pub fn rfc3339(secs: i64) -> String {
    rfc3339_nanos(secs, 0)
}

pub fn now_rfc3339() -> String {
    rfc3339(now().0)
}

/// RFC 3339 in UTC with nanoseconds, as Go's `time.RFC3339Nano` (trailing zeros of the fraction dropped).
pub fn rfc3339_nanos(secs: i64, nanos: u32) -> String {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let frac = if nanos == 0 { String::new() } else { format!(".{nanos:09}").trim_end_matches('0').to_owned() };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// RFC 3339 in UTC with always nine digits of fraction (docker's `RFC3339NanoFixed`, as `logs -t` prints).
pub fn rfc3339_fixed(time_nanos: i128) -> String {
    let secs = time_nanos.div_euclid(1_000_000_000) as i64;
    let nanos = time_nanos.rem_euclid(1_000_000_000);
    let whole = rfc3339(secs);
    format!("{}.{nanos:09}Z", whole.trim_end_matches('Z'))
}

pub fn now_rfc3339_nanos() -> String {
    let (s, n) = now();
    rfc3339_nanos(s, n)
}

/// Seconds since the epoch of an RFC 3339 time ("2024-01-02T03:04:05.123Z", or with an offset).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 19 || !s.is_char_boundary(19) {
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

/// A `since`/`until` value: `SECONDS[.NANOSECONDS]` (what the docker CLI sends) or an RFC 3339 time.
/// Returns nanoseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i128> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if let Ok(secs) = secs.parse::<i64>() {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos: i128 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
        return Some(i128::from(secs) * 1_000_000_000 + nanos);
    }
    parse_rfc3339(s).map(|secs| i128::from(secs) * 1_000_000_000)
}

/// Go's `units.HumanDuration`, as docker prints ages: "Up 3 minutes", "Exited (0) 2 hours ago", "5 days ago".
pub fn human_duration(secs: i64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_like_go() {
        assert_eq!(human_duration(-4), "Less than a second");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(65), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3700), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(100 * 86_400), "3 months");
        assert_eq!(human_duration(800 * 86_400), "2 years");
    }

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nanos(1_735_689_600, 120_000_000), "2025-01-01T00:00:00.12Z");
        assert_eq!(parse_rfc3339("2025-01-01T01:00:00+01:00"), Some(1_735_689_600));
        assert_eq!(parse_timestamp("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_timestamp("2025-01-01T00:00:00Z"), Some(1_735_689_600_000_000_000));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(datetime(1_735_689_600 + 3661), (2025, 1, 1, 1, 1, 1));
    }
}
