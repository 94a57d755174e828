//! The files of a delta's base image, by layer position (0 = bottom): what both sides can name. The server
//! indexes them by content and by path to find sources; the device opens them to copy or patch from.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::layer::{open_layer_file, Record};
use crate::store::{LayerFiles, Store};

/// The base image's layer dirs, open.
pub struct BaseLayers {
    dirs: Vec<OwnedFd>,
}

impl BaseLayers {
    pub fn open(store: &Store, image: &Digest) -> Result<BaseLayers> {
        let rec = store
            .metadata()
            .images
            .get(image)
            .ok_or_else(|| Error::ImageNotFound(image.to_string()))?;
        let dirs = rec
            .chain_ids()
            .iter()
            .map(|c| LayerFiles::open_diff(&store.layer_dir(c)))
            .collect::<Result<_>>()?;
        Ok(BaseLayers { dirs })
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Opens a file of base layer `layer`, never through a symlink.
    pub fn open_file(&self, layer: u32, path: &[u8]) -> Result<File> {
        let dir = self
            .dirs
            .get(layer as usize)
            .ok_or_else(|| Error::Corrupt(format!("delta names base layer {layer}, the base has {}", self.dirs.len())))?;
        open_layer_file(dir, path)
    }
}

/// Where a base file lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub layer: u32,
    pub path: Vec<u8>,
    pub size: u64,
}

/// The server's index of the base image's regular files.
pub struct BaseIndex {
    pub layers: BaseLayers,
    by_content: HashMap<Digest, Source>,
    by_path: HashMap<Vec<u8>, Source>,
    by_shape: HashMap<Vec<u8>, Source>,
}

/// A path with every run of digits replaced by '#': `libssl.so.3.0.15` and `libssl.so.3.0.16` share a shape,
/// so a file renamed by a version bump still finds its predecessor.
pub fn shape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_digit() {
            if out.last() != Some(&b'#') {
                out.push(b'#');
            }
        } else {
            out.push(b);
        }
    }
    out
}

pub fn hash_file(f: &mut File) -> Result<Digest> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).ctx(|| "reading base file".into())?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

impl BaseIndex {
    pub fn build(store: &Store, image: &Digest) -> Result<BaseIndex> {
        let layers = BaseLayers::open(store, image)?;
        let rec = store.metadata().images.get(image).ok_or_else(|| Error::ImageNotFound(image.to_string()))?;
        let mut idx = BaseIndex { layers, by_content: HashMap::new(), by_path: HashMap::new(), by_shape: HashMap::new() };
        for (layer, chain) in rec.chain_ids().iter().enumerate() {
            for record in LayerFiles::records(&store.layer_dir(chain))? {
                let Record::File { path, size } = record? else { continue };
                let mut f = idx.layers.open_file(layer as u32, &path)?;
                let digest = hash_file(&mut f)?;
                let src = Source { layer: layer as u32, path: path.clone(), size };
                // Upper layers win for paths; the first copy of any content is as good as another.
                idx.by_content.entry(digest).or_insert_with(|| src.clone());
                idx.by_shape.insert(shape(&path), src.clone());
                idx.by_path.insert(path, src);
            }
        }
        Ok(idx)
    }

    /// A base file with exactly this content.
    pub fn identical(&self, digest: &Digest) -> Option<&Source> {
        self.by_content.get(digest)
    }

    /// The base file a target file most likely evolved from: the same path, else the same shape.
    pub fn predecessor(&self, path: &[u8]) -> Option<&Source> {
        self.by_path.get(path).or_else(|| self.by_shape.get(&shape(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::shape;

    #[test]
    fn shapes_ignore_version_numbers() {
        assert_eq!(shape(b"usr/lib/libssl.so.3.0.15"), shape(b"usr/lib/libssl.so.3.0.16"));
        assert_eq!(shape(b"usr/lib/x86_64-linux-gnu/libperl.so.5.36"), b"usr/lib/x#_#-linux-gnu/libperl.so.#.#".to_vec());
        assert_ne!(shape(b"usr/bin/python3"), shape(b"usr/bin/perl5"));
    }
}
