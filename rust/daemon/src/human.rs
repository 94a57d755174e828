//! Sizes as docker's `units.HumanSize` prints them: decimal units, four significant digits.

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 { 1 } else { v.log10().floor() as usize + 1 };
    let s = format!("{:.*}", 4usize.saturating_sub(int_digits), v);
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    format!("{s}{}", UNITS[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_like_docker() {
        assert_eq!(super::size(0), "0B");
        assert_eq!(super::size(512), "512B");
        assert_eq!(super::size(10_485_760), "10.49MB");
        assert_eq!(super::size(1_500_000), "1.5MB");
        assert_eq!(super::size(208_197_120), "208.2MB");
    }
}
