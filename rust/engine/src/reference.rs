//! Image references as docker users type them, normalised to docker's familiar form:
//! `busybox` → `busybox:latest`, `docker.io/library/busybox:1` → `busybox:1`, `docker.io/x/y` → `x/y:latest`.

use crate::error::{Error, Result};

const MAX_TAG: usize = 128;

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or '-'+
    !c.is_empty()
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn valid_host(h: &str) -> bool {
    let (host, port) = h.split_once(':').map_or((h, None), |(a, b)| (a, Some(b)));
    host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TAG
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
}

/// Normalises a `name[:tag]` reference; a missing tag becomes `latest`. Digest references are refused.
pub fn normalize(input: &str) -> Result<String> {
    let bad = || Error::BadReference(input.to_owned());
    if input.contains('@') {
        return Err(Error::Unsupported(format!("digest reference {input:?}")));
    }
    // The tag is after the last ':' that follows the last '/'.
    let last_slash = input.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match input[last_slash..].rfind(':') {
        Some(i) => (&input[..last_slash + i], &input[last_slash + i + 1..]),
        None => (input, "latest"),
    };
    if !valid_tag(tag) || name.len() > 255 {
        return Err(bad());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let has_host = parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
    if has_host && !valid_host(parts[0]) {
        return Err(bad());
    }
    let path_start = usize::from(has_host);
    if parts[path_start..].iter().any(|c| !valid_component(c)) {
        return Err(bad());
    }
    if has_host && (parts[0] == "docker.io" || parts[0] == "index.docker.io") {
        parts.remove(0);
        if parts.len() > 1 && parts[0] == "library" {
            parts.remove(0);
        }
    }
    Ok(format!("{}:{tag}", parts.join("/")))
}

/// A digest reference `name[:tag]@sha256:…` → (familiar repository name, digest); `None` for a reference
/// without a digest. The tag, if any, is ignored, as docker does.
pub fn digest_ref(input: &str) -> Result<Option<(String, crate::digest::Digest)>> {
    let Some((name, digest)) = input.split_once('@') else { return Ok(None) };
    let digest = digest.parse()?;
    let normalized = normalize(name)?;
    Ok(Some((split(&normalized).0.to_owned(), digest)))
}

/// `repository@digest`, as docker's `RepoDigests` lists it.
pub fn repo_digest(repository: &str, digest: &crate::digest::Digest) -> String {
    format!("{repository}@{digest}")
}

/// Splits a normalised reference into repository and tag.
pub fn split(normalized: &str) -> (&str, &str) {
    let last_slash = normalized.rfind('/').map_or(0, |i| i + 1);
    match normalized[last_slash..].rfind(':') {
        Some(i) => (&normalized[..last_slash + i], &normalized[last_slash + i + 1..]),
        None => (normalized, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(normalize("docker.io/foo/bar").unwrap(), "foo/bar:latest");
        assert_eq!(normalize("localhost/app:v2").unwrap(), "localhost/app:v2");
        assert_eq!(normalize("registry:5000/team/app").unwrap(), "registry:5000/team/app:latest");
        assert_eq!(split("registry:5000/team/app:v1"), ("registry:5000/team/app", "v1"));
    }

    #[test]
    fn digest_references() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let (repo, digest) = digest_ref(&format!("docker.io/library/busybox:1@{d}")).unwrap().unwrap();
        assert_eq!((repo.as_str(), digest.to_string()), ("busybox", d.clone()));
        let (repo, _) = digest_ref(&format!("127.0.0.1:5000/team/app@{d}")).unwrap().unwrap();
        assert_eq!(repo, "127.0.0.1:5000/team/app");
        assert!(digest_ref("app:1").unwrap().is_none());
        assert!(digest_ref("app@sha256:00").is_err());
    }

    #[test]
    fn refuses_bad_references() {
        for r in ["", "UPPER", "a b", "app:", "app:-x", "../x", "a//b", "app@sha256:00"] {
            assert!(normalize(r).is_err(), "{r:?} accepted");
        }
    }
}
