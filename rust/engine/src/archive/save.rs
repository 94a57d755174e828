//! `image save`: one tar that docker, podman and skopeo all load. It holds an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) and docker's `manifest.json` pointing at the same blobs.
//! Layers are the original uncompressed tars, rebuilt byte for byte, so every digest and the image ID survive.

use std::collections::HashSet;
use std::io::Write;

use serde_json::{json, Value};

use super::formats::{DockerManifestItem, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_LAYOUT};
use super::tar_writer::TarWriter;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference;
use crate::store::Store;

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub struct SaveRequest {
    pub id: Digest,
    /// Normalised tags to record for this image (none: saved by ID).
    pub tags: Vec<String>,
}

/// `busybox:latest` → `docker.io/library/busybox:latest`, as containerd names images.
fn fully_qualified(tag: &str) -> String {
    let (repo, _) = reference::split(tag);
    let first = repo.split('/').next().unwrap_or("");
    let has_host = repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_host, repo.contains('/')) {
        (true, _) => tag.to_owned(),
        (false, true) => format!("docker.io/{tag}"),
        (false, false) => format!("docker.io/library/{tag}"),
    }
}

fn blob(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

pub fn save<W: Write>(store: &Store, images: &[SaveRequest], out: W) -> Result<W> {
    let mut tw = TarWriter::new(out);
    tw.dir("blobs/")?;
    tw.dir("blobs/sha256/")?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index: Vec<Value> = Vec::new();
    let mut docker: Vec<DockerManifestItem> = Vec::new();
    for req in images {
        let rec = store
            .metadata()
            .images
            .get(&req.id)
            .ok_or_else(|| Error::ImageNotFound(req.id.to_string()))?;
        let config = store.get_blob(&req.id)?;
        if written.insert(req.id.clone()) {
            tw.file(&blob(&req.id), &config)?;
        }
        let mut layers = Vec::new();
        for (diff_id, chain) in rec.diff_ids.iter().zip(rec.chain_ids()) {
            let lr = store.layer_record(&chain)?;
            if written.insert(diff_id.clone()) {
                tw.file_with(&blob(diff_id), lr.tar_size, |w| store.write_layer_tar(&chain, w))?;
            }
            layers.push(json!({"mediaType": MT_LAYER, "digest": diff_id.to_string(), "size": lr.tar_size}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": req.id.to_string(), "size": config.len()},
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Corrupt(e.to_string()))?;
        let manifest_digest = Digest::of_bytes(&manifest_bytes);
        if written.insert(manifest_digest.clone()) {
            tw.file(&blob(&manifest_digest), &manifest_bytes)?;
        }
        let descriptor = |annotations: Option<Value>| {
            let mut d = json!({"mediaType": MT_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest_bytes.len()});
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if req.tags.is_empty() {
            index.push(descriptor(None));
        }
        for t in &req.tags {
            let (_, tag) = reference::split(t);
            index.push(descriptor(Some(json!({ANNOTATION_IMAGE_NAME: fully_qualified(t), ANNOTATION_REF_NAME: tag}))));
        }
        docker.push(DockerManifestItem {
            config: blob(&req.id),
            repo_tags: (!req.tags.is_empty()).then(|| req.tags.clone()),
            layers: rec.diff_ids.iter().map(blob).collect(),
        });
    }
    let index = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": index});
    tw.file("index.json", &to_json(&index)?)?;
    tw.file("manifest.json", &to_json(&docker)?)?;
    tw.file("oci-layout", OCI_LAYOUT.as_bytes())?;
    tw.finish()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::fully_qualified;

    #[test]
    fn qualifies_names_like_containerd() {
        assert_eq!(fully_qualified("busybox:latest"), "docker.io/library/busybox:latest");
        assert_eq!(fully_qualified("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(fully_qualified("localhost/app:v1"), "localhost/app:v1");
    }
}
