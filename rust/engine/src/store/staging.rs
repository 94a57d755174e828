//! Work in progress of one load: layers are unpacked under `tmp/`, then moved into `layers/` by rename
//! (each byte written once). Whatever is not installed is removed when the staging ends, or at the next
//! start if the process died.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::atomic::fsync_dir;
use super::layers::{LayerRecord, DIFF, RECORD, TAR_SPLIT};
use super::Store;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer::{unpack_layer_linked, LinkSource, TarSplitWriter};
use crate::pipe::{pipe, PipeWriter};

pub struct Staging {
    dir: PathBuf,
    layers_dir: PathBuf,
    next: AtomicUsize,
}

#[derive(Debug, Clone)]
pub struct StagedLayer {
    pub dir: PathBuf,
    pub record: LayerRecord,
}

impl Store {
    pub fn begin_staging(&self) -> Result<Staging> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = self.tmp_dir().join(format!("load-{}-{nanos}", std::process::id()));
        fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        Ok(Staging { dir, layers_dir: self.root.join("layers"), next: AtomicUsize::new(0) })
    }
}

impl Staging {
    /// Unpacks an uncompressed layer stream into a new staged layer dir.
    pub fn unpack(&self, input: impl Read, name: &str) -> Result<StagedLayer> {
        self.unpack_linked(input, name, None)
    }

    /// `unpack`, hard-linking files that `links` knows to be unchanged (see `LinkSource`).
    pub fn unpack_linked(
        &self,
        input: impl Read,
        name: &str,
        links: Option<&mut dyn LinkSource>,
    ) -> Result<StagedLayer> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = self.dir.join(format!("layer-{n}"));
        let diff = dir.join(DIFF);
        fs::create_dir_all(&diff).ctx(|| format!("creating {}", diff.display()))?;
        let split_path = dir.join(TAR_SPLIT);
        let split_file = File::create(&split_path).ctx(|| format!("creating {}", split_path.display()))?;
        let encoder = zstd::Encoder::new(split_file, 3).ctx(|| "starting tar-split compression".into())?;
        let mut split = TarSplitWriter::new(encoder).ctx(|| format!("writing {}", split_path.display()))?;
        let root: OwnedFd = File::open(&diff).ctx(|| format!("opening {}", diff.display()))?.into();
        let guard_dir = File::open(&diff).ctx(|| format!("opening {}", diff.display()))?;
        let input = super::reserve::SpaceGuard::new(input, guard_dir);
        let stats = unpack_layer_linked(input, &root, &mut split, name, links)?;
        let encoder = split.finish(stats.tar_size).ctx(|| format!("writing {}", split_path.display()))?;
        encoder.finish().ctx(|| format!("writing {}", split_path.display()))?;
        let record = LayerRecord {
            diff_id: stats.diff_id,
            tar_size: stats.tar_size,
            file_bytes: stats.file_bytes,
            entries: stats.entries,
        };
        record.write(&dir)?;
        Ok(StagedLayer { dir, record })
    }

    /// Unpacks the layer tar that `produce` writes, on a producer thread. The error reported is the cause:
    /// the producer's (a damaged delta: the unpacker merely sees the stream end early), unless the producer
    /// failed only because the unpacker had stopped first (a full disk, a refused entry).
    pub fn unpack_produced(
        &self,
        name: &str,
        links: Option<&mut dyn LinkSource>,
        produce: impl FnOnce(&mut PipeWriter) -> Result<u64> + Send,
    ) -> Result<StagedLayer> {
        let (reader, mut writer) = pipe();
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let r = produce(&mut writer);
                (r, writer.reader_gone())
            });
            let staged = self.unpack_linked(reader, name, links);
            let (produced, reader_gone) =
                producer.join().map_err(|_| Error::Corrupt("layer producer thread panicked".into()))?;
            match (produced, staged) {
                (Err(_), Err(consumer)) if reader_gone => Err(consumer),
                (Err(producer), _) => Err(producer),
                (Ok(_), staged) => staged,
            }
        })
    }

    /// A second, independent copy of a layer dir (staged or installed), rebuilt from its tar.
    pub fn clone_layer(&self, src: &Path) -> Result<StagedLayer> {
        let rec = LayerRecord::read(src)?;
        let staged = self.unpack_produced(&rec.diff_id.to_string(), None, |w| {
            let split = File::open(src.join(TAR_SPLIT)).ctx(|| "opening tar-split".into())?;
            let dec = zstd::Decoder::new(split).ctx(|| "reading tar-split".into())?;
            let diff: OwnedFd = File::open(src.join(DIFF)).ctx(|| "opening layer dir".into())?.into();
            crate::layer::reassemble(dec, &diff, w)
        })?;
        if staged.record.diff_id != rec.diff_id {
            return Err(Error::Corrupt(format!("copy of layer {} came out as {}", rec.diff_id, staged.record.diff_id)));
        }
        Ok(staged)
    }

    /// Makes everything written so far durable (one syncfs instead of an fsync per file).
    pub fn sync(&self) -> Result<()> {
        let d = File::open(&self.dir).ctx(|| format!("opening {}", self.dir.display()))?;
        nix::unistd::syncfs(d.as_fd()).ctx(|| "syncing the data root".into())
    }

    /// Moves a staged layer into the store as `chain_id`.
    pub fn install(&self, staged: &StagedLayer, chain_id: &Digest) -> Result<()> {
        let dest = self.layers_dir.join(chain_id.hex());
        if dest.join(RECORD).is_file() {
            return Ok(());
        }
        fs::rename(&staged.dir, &dest).ctx(|| format!("installing layer {chain_id}"))
    }

    pub fn finish_installs(&self) -> Result<()> {
        fsync_dir(&self.layers_dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
