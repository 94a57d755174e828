//! Layer directories, keyed by ChainID: `diff/` is the overlay lower dir, `tar-split.zst` rebuilds the
//! original tar, `layer.json` describes it. A layer dir appears by one rename, whole.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::layer::{reassemble, RecordReader};

pub const DIFF: &str = "diff";
pub const TAR_SPLIT: &str = "tar-split.zst";
pub const RECORD: &str = "layer.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// Size of the layer's uncompressed tar.
    pub tar_size: u64,
    /// Bytes of regular-file content in `diff/`.
    pub file_bytes: u64,
    pub entries: u64,
}

impl LayerRecord {
    pub fn read(layer_dir: &Path) -> Result<LayerRecord> {
        let path = layer_dir.join(RECORD);
        let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
    }

    pub fn write(&self, layer_dir: &Path) -> Result<()> {
        let path = layer_dir.join(RECORD);
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Corrupt(format!("encoding layer record: {e}")))?;
        std::fs::write(&path, bytes).ctx(|| format!("writing {}", path.display()))
    }
}

/// The files of a layer dir (installed or staged): its unpacked tree and its tar-split records.
pub struct LayerFiles;

impl LayerFiles {
    /// The unpacked tree, the overlay lower dir.
    pub fn diff_dir(layer_dir: &Path) -> std::path::PathBuf {
        layer_dir.join(DIFF)
    }

    /// The chain ID of the layer whose [`LayerFiles::diff_dir`] is `diff_dir` (`layers/<chain hex>/diff`).
    pub fn chain_of_diff_dir(diff_dir: &Path) -> Option<Digest> {
        if diff_dir.file_name()? != DIFF {
            return None;
        }
        Digest::from_hex(diff_dir.parent()?.file_name()?.to_str()?).ok()
    }

    pub fn open_diff(layer_dir: &Path) -> Result<OwnedFd> {
        open_dir(&layer_dir.join(DIFF))
    }

    /// The tar-split records that rebuild the layer's tar.
    pub fn records(layer_dir: &Path) -> Result<RecordReader<zstd::Decoder<'static, std::io::BufReader<File>>>> {
        let path = layer_dir.join(TAR_SPLIT);
        let split = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
        let dec = zstd::Decoder::new(split).ctx(|| format!("reading {}", path.display()))?;
        RecordReader::new(dec)
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    Ok(OwnedFd::from(f))
}

impl Store {
    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_dir(chain_id).join(RECORD).is_file()
    }

    pub fn layer_record(&self, chain_id: &Digest) -> Result<LayerRecord> {
        LayerRecord::read(&self.layer_dir(chain_id))
    }

    /// Writes the exact original tar of a layer to `out`, verifying its DiffID on the way.
    pub fn write_layer_tar(&self, chain_id: &Digest, out: &mut impl Write) -> Result<u64> {
        let dir = self.layer_dir(chain_id);
        let rec = LayerRecord::read(&dir)?;
        let split = File::open(dir.join(TAR_SPLIT)).ctx(|| format!("opening tar-split of layer {}", rec.diff_id))?;
        let decoder = zstd::Decoder::new(split).ctx(|| format!("reading tar-split of layer {}", rec.diff_id))?;
        let diff = open_dir(&dir.join(DIFF))?;
        let mut hw = HashingWriter::new(out);
        let n = reassemble(decoder, &diff, &mut hw)?;
        let (_, h) = hw.into_parts();
        let actual = h.finish();
        if actual != rec.diff_id || n != rec.tar_size {
            return Err(Error::Corrupt(format!(
                "layer {} rebuilt as {actual} ({n} bytes): its files changed on disk",
                rec.diff_id
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_diff_dir_inverts_diff_dir() {
        let chain = Digest::of_bytes(b"layer");
        let diff = LayerFiles::diff_dir(&Path::new("/data/layers").join(chain.hex()));
        assert_eq!(LayerFiles::chain_of_diff_dir(&diff), Some(chain.clone()));
        assert_eq!(LayerFiles::chain_of_diff_dir(&Path::new("/data/layers").join(chain.hex())), None);
        assert_eq!(LayerFiles::chain_of_diff_dir(Path::new("/data/layers/not-hex/diff")), None);
    }
}
