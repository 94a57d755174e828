//! Delta on load: a delta image in an archive becomes its target image. Each target layer the store lacks is
//! rebuilt from the delta and the base image into staging and checked against the target's DiffID; the
//! delta itself is not kept.

use std::fs::File;
use std::path::PathBuf;

use super::base_files::BaseLayers;
use super::base_stream::BaseStream;
use super::decode::{apply_payload, payload_error};
use super::format;
use super::labels::{DeltaInfo, Kind};
use super::rdiff;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image_config::diff_ids_of;
use crate::store::{LayerFiles, StagedLayer, Staging, Store};

pub struct Rebuilt {
    pub config: Vec<u8>,
    pub diff_ids: Vec<Digest>,
    /// New layers, by ChainID.
    pub layers: Vec<(Digest, StagedLayer)>,
}

/// `delta_layers`: the unpacked layer dirs of the delta image, in order (each holds `diff/delta`).
pub fn rebuild(store: &Store, staging: &Staging, info: &DeltaInfo, delta_layers: &[PathBuf]) -> Result<Rebuilt> {
    if !store.metadata().images.contains_key(&info.base) {
        let known_as =
            if info.base_tags.is_empty() { String::new() } else { format!(" ({})", info.base_tags.join(", ")) };
        return Err(Error::MissingBase(format!("{}{known_as}", info.base)));
    }
    let diff_ids = diff_ids_of(&info.target_config)?;
    let chains = Digest::chain_ids(&diff_ids);
    let payloads: Vec<PathBuf> = delta_layers.iter().map(|d| LayerFiles::diff_dir(d).join("delta")).collect();
    let payload = |i: usize| -> Result<&PathBuf> {
        let p = &payloads[i];
        if !p.is_file() {
            return Err(Error::bad_archive(format!("delta layer {i} holds no 'delta' file")));
        }
        Ok(p)
    };
    let mut layers = Vec::new();
    match info.kind {
        Kind::Bedelta => {
            let base = BaseLayers::open(store, &info.base)?;
            let mut by_index = std::collections::HashMap::new();
            for i in 0..payloads.len() {
                let p = payload(i)?;
                let f = File::open(p).ctx(|| format!("opening {}", p.display()))?;
                let (h, _) = format::read_header(&mut &f).map_err(payload_error)?;
                by_index.insert(h.target_index as usize, p.clone());
            }
            for (i, chain) in chains.iter().enumerate() {
                if store.has_layer(chain) {
                    continue;
                }
                let p = by_index.get(&i).ok_or_else(|| missing_layer(i, &info.base))?;
                let (h, staged) = apply_payload(staging, p, &base)?;
                if h.target_diff_id != diff_ids[i] {
                    return Err(Error::DigestMismatch {
                        what: format!("delta payload for target layer {i}"),
                        expected: diff_ids[i].to_string(),
                        actual: h.target_diff_id.to_string(),
                    });
                }
                layers.push((chain.clone(), staged));
            }
        }
        Kind::Rdiff => {
            if payloads.len() != diff_ids.len() {
                return Err(Error::bad_archive(format!(
                    "rdiff delta has {} layers, its target {}",
                    payloads.len(),
                    diff_ids.len()
                )));
            }
            let base = BaseStream::open(store, &info.base)?;
            for (i, chain) in chains.iter().enumerate() {
                // balenaEngine sends an empty layer (no `delta` file) for a layer the base has.
                if store.has_layer(chain) {
                    continue;
                }
                let p = payload(i)?;
                let delta = File::open(p).ctx(|| format!("opening {}", p.display()))?;
                let staged =
                    staging.unpack_produced(&format!("{} rebuilt from the rdiff delta", diff_ids[i]), None, |w| {
                        rdiff::apply(delta, &base, w)
                    })?;
                if staged.record.diff_id != diff_ids[i] {
                    return Err(Error::DigestMismatch {
                        what: format!("layer {i} rebuilt from the rdiff delta (wrong base image?)"),
                        expected: diff_ids[i].to_string(),
                        actual: staged.record.diff_id.to_string(),
                    });
                }
                layers.push((chain.clone(), staged));
            }
        }
    }
    Ok(Rebuilt { config: info.target_config.clone(), diff_ids, layers })
}

fn missing_layer(i: usize, base: &Digest) -> Error {
    Error::bad_archive(format!("the delta has no data for target layer {i}, which base {base} lacks"))
}
