//! Small docker-archive images (legacy layout: `<hex>/layer.tar`, `<hex>.json`, `manifest.json`), built
//! here so the tests need no registry.

use serde_json::json;
use sha2::{Digest as _, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub use testkit::noise;

/// A tar of regular files (and the directories their paths need), ustar, fixed owners and times.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, data) in files {
        let mut acc = String::new();
        for comp in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            acc.push_str(comp);
            acc.push('/');
            if dirs.insert(acc.clone()) {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_mtime(1_700_000_000);
                h.set_size(0);
                h.set_cksum();
                b.append_data(&mut h, &acc, std::io::empty()).unwrap();
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A layer with a few files whose content depends on `seed`.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    let host = format!("host-{seed}\n");
    tar_of(&[("etc/hostname", host.as_bytes()), ("bin/tool", &noise(seed, size))])
}

#[derive(Clone)]
pub struct Image {
    pub tags: Vec<String>,
    pub layers: Vec<Vec<u8>>,
    pub created: String,
    pub labels: serde_json::Value,
}

impl Image {
    pub fn new(tag: &str, layers: Vec<Vec<u8>>) -> Image {
        Image { tags: vec![tag.to_owned()], layers, created: "2024-05-01T12:00:00Z".into(), labels: json!({}) }
    }

    pub fn config(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| digest(l)).collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "created": self.created,
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": self.labels},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    /// The image ID (config digest).
    pub fn id(&self) -> String {
        digest(&self.config())
    }

    pub fn archive(&self) -> Vec<u8> {
        archive_of(std::slice::from_ref(self))
    }
}

/// One docker-archive holding several images.
pub fn archive_of(images: &[Image]) -> Vec<u8> {
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest = Vec::new();
    for img in images {
        let mut layer_names = Vec::new();
        for l in &img.layers {
            let name = format!("{}/layer.tar", sha256_hex(l));
            if !members.iter().any(|(n, _)| n == &name) {
                members.push((name.clone(), l.clone()));
            }
            layer_names.push(name);
        }
        let config = img.config();
        let config_name = format!("{}.json", sha256_hex(&config));
        members.push((config_name.clone(), config));
        manifest.push(json!({"Config": config_name, "RepoTags": img.tags, "Layers": layer_names}));
    }
    members.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    let files: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    tar_of(&files)
}

/// The image most tests load: two layers, tagged `app:1`.
pub fn app(tag: &str, seed: u64) -> Image {
    Image::new(tag, vec![layer(1, 4000), layer(seed, 3000)])
}
