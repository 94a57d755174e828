//! `image load`: one pass over the archive, then the import stage shared with pulls (verification against
//! each image's config, deltas rebuilt, one atomic commit). On any error the store is left exactly as it was.

use std::collections::HashSet;
use std::io::{self, Read};

use super::collect::{collect, Blob, Collected};
use super::compression::{decompressor, sniff, Sniffed};
use super::plan::{plan, ImagePlan};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
pub use crate::import::LoadedImage;
use crate::import::{import, ImageImport, LayerInput};
use crate::store::{Access, Store};

/// The archive itself may be gzip- or zstd-compressed (`docker save | gzip`), as `docker load` accepts.
fn decompressed<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut head = Vec::with_capacity(4);
    (&mut input).take(4).read_to_end(&mut head).ctx(|| "reading archive".into())?;
    let kind = match sniff(&head) {
        k @ (Sniffed::Gzip | Sniffed::Zstd) => k,
        _ => Sniffed::Tar,
    };
    decompressor(kind, io::Cursor::new(head).chain(input)).ctx(|| "reading compressed archive".into())
}

/// Loads every image of the archive read from `input`.
pub fn load(store: &mut Store, input: impl Read) -> Result<Vec<LoadedImage>> {
    if store.access() != Access::Write {
        return Err(Error::Conflict("store opened read-only".into()));
    }
    let known = store.metadata().chains_by_diff_id();
    let known_ids: HashSet<Digest> = known.keys().cloned().collect();
    let staging = store.begin_staging()?;
    let collected = collect(decompressed(input)?, &staging, &known_ids)?;
    let plans = plan(&collected)?;
    if plans.is_empty() {
        return Err(Error::bad_archive("archive lists no image"));
    }
    let images = plans.into_iter().map(|p| to_import(p, &collected, &known)).collect::<Result<Vec<_>>>()?;
    import(store, &staging, images)
}

/// An archive's image for the import stage: its layer paths resolved to what the single pass found.
fn to_import(p: ImagePlan, c: &Collected, known: &std::collections::HashMap<Digest, Digest>) -> Result<ImageImport> {
    let layers = p
        .layer_paths
        .iter()
        .map(|path| match c.blobs.get(&c.resolve(path)?) {
            Some(Blob::Staged(s)) => Ok(LayerInput::Staged(s.clone())),
            Some(Blob::Known(d)) => match known.get(d) {
                Some(chain) => Ok(LayerInput::Stored { diff_id: d.clone(), chain: chain.clone() }),
                None => Err(Error::Corrupt(format!("layer {d} vanished"))),
            },
            None => Err(Error::bad_archive(format!("layer {path:?} is missing from the archive"))),
        })
        .collect::<Result<_>>()?;
    Ok(ImageImport { config: p.config, layers, tags: p.tags, delta_recorded_tags: true, origin: None })
}
