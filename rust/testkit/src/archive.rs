//! Small images for tests, built in memory: layer tars of regular files and docker-archives (`manifest.json`,
//! `<config hex>.json`, `<diff hex>/layer.tar`) of them, with digests computed here.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An uncompressed layer tar of regular files (path, contents): mode 0644, owner 0:0, the same mtime for all.
pub fn layer_tar<D: AsRef<[u8]>>(files: &[(&str, D)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).expect("layer entry path");
        let data = data.as_ref();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data).expect("layer entry");
    }
    b.into_inner().expect("layer tar")
}

/// A plain image config (`linux`/`amd64`) for these layers; `label` makes configs of equal layers differ.
pub fn image_config(diff_ids: &[String], label: &str) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/app"], "Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
}

/// A docker-archive as bytes.
pub struct DockerArchive {
    pub bytes: Vec<u8>,
    pub config: Vec<u8>,
    /// The image ID (`sha256:…` of the config).
    pub id: String,
    pub diff_ids: Vec<String>,
}

/// A docker-archive of `layers` (uncompressed tars) tagged `tags`, with a plain config.
pub fn docker_archive(tags: &[&str], layers: &[Vec<u8>]) -> DockerArchive {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = image_config(&diff_ids, tags.first().copied().unwrap_or(""));
    docker_archive_with(tags, layers, config)
}

/// As [`docker_archive`] with a config of the caller's (its `rootfs.diff_ids` are set to the layers').
pub fn docker_archive_with(tags: &[&str], layers: &[Vec<u8>], mut config: Value) -> DockerArchive {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let config = serde_json::to_vec(&config).expect("config JSON");
    let id = sha256(&config);
    let config_name = format!("{}.json", &id[7..]);
    // A layer listed twice (balenaEngine's empty layers) is stored once, as docker does.
    let names: Vec<String> = diff_ids.iter().map(|d| format!("{}/layer.tar", &d[7..])).collect();
    let manifest =
        serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": tags, "Layers": names}])).expect("manifest");
    let mut out = tar::Builder::new(Vec::new());
    let mut seen = std::collections::HashSet::new();
    let mut members: Vec<(&str, &[u8])> = vec![(config_name.as_str(), &config)];
    for (n, l) in names.iter().zip(layers) {
        if seen.insert(n.as_str()) {
            members.push((n.as_str(), l));
        }
    }
    members.push(("manifest.json", &manifest));
    for (name, bytes) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("archive entry path");
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        out.append(&h, bytes).expect("archive entry");
    }
    DockerArchive { bytes: out.into_inner().expect("archive"), config, id, diff_ids }
}
