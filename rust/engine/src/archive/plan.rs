//! Reads the archive's index (docker `manifest.json` or OCI `index.json`) into a list of images to commit:
//! config bytes, layer blob paths and tags.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::collect::{normalize, Collected};
use super::formats::{DockerManifestItem, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference;

pub struct ImagePlan {
    pub config: Vec<u8>,
    pub layer_paths: Vec<String>,
    pub tags: Vec<String>,
}

fn json<'a>(c: &'a Collected, path: &str, what: &str) -> Result<&'a [u8]> {
    let p = c.resolve(path)?;
    c.json
        .get(&p)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::bad_archive(format!("{what} {path:?} is missing from the archive")))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::bad_archive(format!("{what}: {e}")))
}

pub fn plan(c: &Collected) -> Result<Vec<ImagePlan>> {
    if c.json.contains_key("manifest.json") {
        plan_docker(c)
    } else if c.json.contains_key("index.json") {
        plan_oci(c)
    } else {
        Err(Error::bad_archive("neither manifest.json (docker-archive) nor index.json (OCI layout) found"))
    }
}

fn plan_docker(c: &Collected) -> Result<Vec<ImagePlan>> {
    let items: Vec<DockerManifestItem> = parse(json(c, "manifest.json", "manifest")?, "manifest.json")?;
    items
        .into_iter()
        .map(|item| {
            let config = json(c, &item.config, "image config")?.to_vec();
            let tags = item.repo_tags.unwrap_or_default().iter().map(|t| reference::normalize(t)).collect::<Result<_>>()?;
            let layer_paths = item.layers.iter().map(|l| normalize(l)).collect::<Result<_>>()?;
            Ok(ImagePlan { config, layer_paths, tags })
        })
        .collect()
}

fn blob_path(d: &Descriptor) -> Result<String> {
    let digest: Digest = d.digest().to_string().parse()?;
    Ok(format!("blobs/sha256/{}", digest.hex()))
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex) || mt.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Manifest descriptors of an index, following nested indexes; keeps the host's platform when several.
fn manifests(c: &Collected, index: &ImageIndex, depth: usize) -> Result<Vec<Descriptor>> {
    if depth > 4 {
        return Err(Error::bad_archive("image indexes nested too deep"));
    }
    let mut out = Vec::new();
    for d in index.manifests() {
        if is_index(d.media_type()) {
            let nested: ImageIndex = parse(json(c, &blob_path(d)?, "image index")?, "image index")?;
            out.extend(manifests(c, &nested, depth + 1)?);
        } else if d.platform().as_ref().is_none_or(|p| p.os().to_string() != "unknown") {
            out.push(d.clone());
        }
    }
    if out.len() > 1 && out.iter().any(|d| d.platform().is_some()) {
        out.retain(|d| d.platform().as_ref().is_none_or(|p| p.architecture().to_string() == host_arch()));
        if out.is_empty() {
            return Err(Error::bad_archive(format!("no image for platform linux/{} in the index", host_arch())));
        }
    }
    Ok(out)
}

fn tags_of(d: &Descriptor) -> Vec<String> {
    let Some(ann) = d.annotations() else { return Vec::new() };
    let name = ann.get(ANNOTATION_IMAGE_NAME).or_else(|| ann.get(ANNOTATION_REF_NAME).filter(|r| r.contains(['/', ':'])));
    name.and_then(|n| reference::normalize(n).ok()).into_iter().collect()
}

fn plan_oci(c: &Collected) -> Result<Vec<ImagePlan>> {
    let index: ImageIndex = parse(json(c, "index.json", "index")?, "index.json")?;
    manifests(c, &index, 0)?
        .iter()
        .map(|d| {
            let manifest: ImageManifest = parse(json(c, &blob_path(d)?, "image manifest")?, "image manifest")?;
            let config = json(c, &blob_path(manifest.config())?, "image config")?.to_vec();
            let layer_paths = manifest.layers().iter().map(blob_path).collect::<Result<_>>()?;
            Ok(ImagePlan { config, layer_paths, tags: tags_of(d) })
        })
        .collect()
}
