//! Registry references as docker reads them: `[domain/]path[:tag][@sha256:…]`, with Docker Hub's defaults
//! (`busybox` → `docker.io/library/busybox:latest`). The engine stores tags in familiar form
//! (`busybox:latest`, `127.0.0.1:5000/app:1`); this type knows both forms.

use engine::digest::Digest;

use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, …
    pub domain: String,
    /// Repository path within the registry (`library/busybox`, `team/app`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; without a tag or digest, `latest` is meant.
    pub fn parse(input: &str) -> Result<Reference> {
        let bad = || Error::BadReference(input.to_owned());
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>().map_err(|_| bad())?)),
            None => (input, None),
        };
        // Validates and normalises the name and tag the way the store does.
        let familiar = engine::reference::normalize(name_tag).map_err(|_| bad())?;
        let (familiar_name, tag) = engine::reference::split(&familiar);
        let explicit_tag = name_tag.rsplit_once('/').map_or(name_tag, |(_, last)| last).contains(':');
        let first = familiar_name.split('/').next().unwrap_or("");
        let has_domain =
            familiar_name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        let (domain, path) = if has_domain {
            let (d, p) = familiar_name.split_once('/').ok_or_else(bad)?;
            (d.to_owned(), p.to_owned())
        } else if familiar_name.contains('/') {
            (DOCKER_HUB.to_owned(), familiar_name.to_owned())
        } else {
            (DOCKER_HUB.to_owned(), format!("library/{familiar_name}"))
        };
        let tag = if explicit_tag || digest.is_none() { Some(tag.to_owned()) } else { None };
        Ok(Reference { domain, path, tag, digest })
    }

    /// The repository as docker shows it: `busybox`, `team/app`, `127.0.0.1:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.path.strip_prefix("library/").filter(|p| !p.contains('/')).unwrap_or(&self.path).to_owned()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The tag the store records for this reference (`busybox:latest`), if it has a tag.
    pub fn familiar_tag(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.familiar_repository()))
    }

    /// `repository@digest`, as docker's `RepoDigests`.
    pub fn repo_digest(&self, digest: &Digest) -> String {
        engine::reference::repo_digest(&self.familiar_repository(), digest)
    }

    /// What goes into `/v2/<name>/manifests/<reference>`: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// Host (and port) of the registry's API.
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.domain
        }
    }

    /// The reference with `tag` (an API `tag=` parameter) applied: a digest there means a digest reference.
    pub fn with_tag_param(mut self, tag: &str) -> Result<Reference> {
        if tag.is_empty() {
            return Ok(self);
        }
        if tag.starts_with("sha256:") {
            self.digest = Some(tag.parse().map_err(|_| Error::BadReference(tag.to_owned()))?);
            self.tag = None;
        } else {
            engine::reference::normalize(&format!("x:{tag}")).map_err(|_| Error::BadReference(tag.to_owned()))?;
            self.tag = Some(tag.to_owned());
        }
        Ok(self)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.familiar_repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> String {
        format!("sha256:{}", "ab".repeat(32))
    }

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar_tag().unwrap(), "busybox:latest");
        let r = Reference::parse("balena/app:v1").unwrap();
        assert_eq!((r.domain.as_str(), r.path.as_str()), ("docker.io", "balena/app"));
        assert_eq!(r.familiar_repository(), "balena/app");
    }

    #[test]
    fn own_registries() {
        let r = Reference::parse("127.0.0.1:5000/team/app:2").unwrap();
        assert_eq!((r.domain.as_str(), r.path.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "team/app", Some("2")));
        assert_eq!(r.familiar_tag().unwrap(), "127.0.0.1:5000/team/app:2");
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.domain, "localhost");
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("127.0.0.1:5000/app@{}", d())).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d());
        assert_eq!(r.repo_digest(r.digest.as_ref().unwrap()), format!("127.0.0.1:5000/app@{}", d()));
        let r = Reference::parse("app").unwrap().with_tag_param(&d()).unwrap();
        assert_eq!((r.tag.clone(), r.manifest_reference()), (None, d()));
        let r = Reference::parse("app:1").unwrap().with_tag_param("2").unwrap();
        assert_eq!(r.tag.as_deref(), Some("2"));
    }

    #[test]
    fn refuses_bad() {
        for r in ["", "UP", "app@sha256:00", "a b", "app:-x", "../x"] {
            assert!(Reference::parse(r).is_err(), "{r:?}");
        }
    }
}
