//! Normalisation of tar entry paths into safe, relative path components.

/// Splits an entry path into components: `./` and `.` dropped, empty components collapsed.
/// Absolute paths and `..` components are refused.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    if path.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if path.contains(&0) {
        return Err("NUL byte in path".into());
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains '..'".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether a symlink placed at `parent_depth` components below the layer root, pointing at `target`,
/// stays inside the root when resolved lexically. Absolute targets are resolved from the container's root,
/// so they always stay inside.
pub fn symlink_stays_inside(parent_depth: usize, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = parent_depth as i64;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert_eq!(components(b"./usr//bin/./ls").unwrap(), vec![&b"usr"[..], b"bin", b"ls"]);
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../etc").is_err());
        assert!(components(b"..").is_err());
    }

    #[test]
    fn symlink_escape_is_lexical() {
        assert!(symlink_stays_inside(2, b"../../lib/x.so"));
        assert!(!symlink_stays_inside(2, b"../../../etc/shadow"));
        assert!(symlink_stays_inside(0, b"/proc/self/fd"));
        assert!(symlink_stays_inside(0, b"usr/bin"));
        assert!(!symlink_stays_inside(0, b".."));
    }
}
