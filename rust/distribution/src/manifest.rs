//! Manifests and manifest lists (Docker schema 2, OCI image manifest and index): media types, parsing with
//! limits, fetching with digest verification.

use engine::digest::Digest;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::session::{read_limited, Req, Session};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// docker's limit on a manifest's size.
pub const MAX_MANIFEST: usize = 4 << 20;
/// The engine's limit on a JSON document (as for archives).
pub const MAX_CONFIG: usize = 8 << 20;
/// More layers than overlayfs could stack is not an image.
pub const MAX_LAYERS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestList {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub enum Parsed {
    Image(ImageManifest),
    List(ManifestList),
}

/// A manifest as fetched: its exact bytes, their digest and media type, and what they say.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub parsed: Parsed,
}

pub fn is_layer_type(mt: &str) -> bool {
    [DOCKER_LAYER, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD].contains(&mt)
}

fn is_foreign(mt: &str) -> bool {
    mt.contains("foreign") || mt.contains("nondistributable")
}

/// Parses manifest bytes; the media type comes from `Content-Type` when it names a manifest, else from the
/// document's own `mediaType`, else from its shape.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(String, Parsed)> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        layers: Option<serde::de::IgnoredAny>,
    }
    let bad = |e: String| Error::BadManifest(e);
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
    if probe.schema_version == Some(1) {
        return Err(Error::Unsupported(
            "Docker image manifest schema 1 (deprecated): push the image again with a current client".into(),
        ));
    }
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_owned());
    let known = |m: &str| [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].contains(&m) || SCHEMA1.contains(&m);
    let mt = ct
        .filter(|c| known(c))
        .or(probe.media_type.clone())
        .or_else(|| match (&probe.manifests, &probe.layers) {
            (Some(_), _) => Some(OCI_INDEX.to_owned()),
            (None, Some(_)) => Some(OCI_MANIFEST.to_owned()),
            _ => None,
        })
        .ok_or_else(|| bad("neither a manifest nor a manifest list".into()))?;
    if SCHEMA1.contains(&mt.as_str()) {
        return Err(Error::Unsupported(
            "Docker image manifest schema 1 (deprecated): push the image again with a current client".into(),
        ));
    }
    if probe.schema_version != Some(2) {
        return Err(bad(format!("schemaVersion {:?}, expected 2", probe.schema_version)));
    }
    let parsed = match mt.as_str() {
        DOCKER_LIST | OCI_INDEX => {
            let l: ManifestList = serde_json::from_slice(bytes).map_err(|e| bad(format!("manifest list: {e}")))?;
            if l.manifests.len() > 1000 {
                return Err(bad(format!("manifest list with {} entries", l.manifests.len())));
            }
            Parsed::List(l)
        }
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| bad(format!("image manifest: {e}")))?;
            validate_image(&m)?;
            Parsed::Image(m)
        }
        other => return Err(Error::Unsupported(format!("manifest media type {other:?}"))),
    };
    Ok((mt, parsed))
}

fn validate_image(m: &ImageManifest) -> Result<()> {
    if ![DOCKER_CONFIG, OCI_CONFIG].contains(&m.config.media_type.as_str()) {
        return Err(Error::Unsupported(format!("config media type {:?}: not a container image", m.config.media_type)));
    }
    if m.config.size > MAX_CONFIG as u64 {
        return Err(Error::BadManifest(format!("image config of {} bytes (limit {MAX_CONFIG})", m.config.size)));
    }
    if m.layers.len() > MAX_LAYERS {
        return Err(Error::BadManifest(format!("{} layers (limit {MAX_LAYERS})", m.layers.len())));
    }
    for l in &m.layers {
        if is_foreign(&l.media_type) {
            return Err(Error::Unsupported(format!("foreign layer {} ({})", l.digest, l.media_type)));
        }
        if !is_layer_type(&l.media_type) {
            return Err(Error::BadManifest(format!("layer {} has media type {:?}", l.digest, l.media_type)));
        }
    }
    Ok(())
}

const ACCEPTED: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// Fetches a manifest by tag or digest. A manifest asked for by digest must have that digest; one asked
/// for by tag must match the `Docker-Content-Digest` the registry claims, if it sends one.
pub async fn fetch(s: &Session<'_>, reference: &str, display: &str) -> Result<Fetched> {
    let req = Req::get(format!("/v2/{}/manifests/{reference}", s.repo)).header(ACCEPT, ACCEPTED);
    let mut resp = match s.send_ok(req, &format!("manifest for {display}")).await {
        Err(Error::NotFound(_)) => return Err(Error::ManifestUnknown(display.to_owned())),
        other => other?,
    };
    let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let claimed = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = read_limited(&mut resp, MAX_MANIFEST, &format!("manifest for {display}")).await?;
    let digest = Digest::of_bytes(&bytes);
    let expected = if reference.starts_with("sha256:") { Some(reference.to_owned()) } else { claimed };
    if let Some(e) = expected.filter(|e| e.starts_with("sha256:")) {
        if e != digest.to_string() {
            return Err(Error::DigestMismatch {
                what: format!("manifest for {display}"),
                expected: e,
                actual: digest.to_string(),
            });
        }
    }
    let (media_type, parsed) = parse(&bytes, ct.as_deref())?;
    Ok(Fetched { bytes, digest, media_type, parsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":10}},
               "layers":[{{"mediaType":"{layer_type}","digest":"{}","size":20}}]}}"#,
            d('a'),
            d('b')
        )
    }

    #[test]
    fn parses_kinds() {
        let (mt, p) = parse(
            image(DOCKER_LAYER).as_bytes(),
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        assert!(matches!(p, Parsed::Image(m) if m.layers.len() == 1));
        let list = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#,
            d('c')
        );
        let (mt, p) = parse(list.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(mt, OCI_INDEX);
        assert!(matches!(p, Parsed::List(l) if l.manifests[0].platform.as_ref().unwrap().variant == "v7"));
    }

    #[test]
    fn refuses_bad_ones() {
        assert!(matches!(parse(b"garbage", None), Err(Error::BadManifest(_))));
        assert!(matches!(parse(b"{}", None), Err(Error::BadManifest(_))));
        assert!(matches!(parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None), Err(Error::Unsupported(_))));
        assert!(matches!(parse(image("text/html").as_bytes(), None), Err(Error::BadManifest(_))));
        assert!(matches!(
            parse(image("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip").as_bytes(), None),
            Err(Error::Unsupported(_))
        ));
        let helm = image(DOCKER_LAYER).replace(DOCKER_CONFIG, "application/vnd.cncf.helm.config.v1+json");
        assert!(matches!(parse(helm.as_bytes(), None), Err(Error::Unsupported(_))));
        let bad_digest = image(DOCKER_LAYER).replace(&d('b'), "sha256:xyz");
        assert!(matches!(parse(bad_digest.as_bytes(), None), Err(Error::BadManifest(_))));
    }
}
