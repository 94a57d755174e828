//! How a delta image says what it is: labels in its config.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Ours: the base image ID, the target's exact config, the target's tags, the payload format.
pub const BASE: &str = "io.balena.delta.base";
pub const CONFIG: &str = "io.balena.delta.config";
pub const TAGS: &str = "io.balena.delta.tags";
/// The base's tags when the delta was made, for error messages only (the base is identified by ID).
pub const BASE_TAGS: &str = "io.balena.delta.base-tags";
pub const FORMAT: &str = "io.balena.delta.format";
pub const FORMAT_V1: &str = "bedelta/1";
/// balenaEngine's: rdiff deltas against the base image's concatenated layer tars.
pub const RESIN_BASE: &str = "io.resin.delta.base";
pub const RESIN_CONFIG: &str = "io.resin.delta.config";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bedelta,
    Rdiff,
}

#[derive(Debug, Clone)]
pub struct DeltaInfo {
    pub kind: Kind,
    pub base: Digest,
    /// The target image's config, byte for byte (its sha256 is the target image ID).
    pub target_config: Vec<u8>,
    pub target_tags: Vec<String>,
    /// What the base was called where the delta was made (informational).
    pub base_tags: Vec<String>,
}

impl DeltaInfo {
    pub fn target_id(&self) -> Digest {
        Digest::of_bytes(&self.target_config)
    }
}

/// Reads the delta labels of an image config; `None` for an ordinary image.
pub fn detect(config: &[u8]) -> Result<Option<DeltaInfo>> {
    let v: Value = serde_json::from_slice(config).map_err(|e| Error::bad_archive(format!("image config: {e}")))?;
    let labels = &v["config"]["Labels"];
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let (kind, base, target) = if let Some(base) = label(BASE) {
        match label(FORMAT) {
            Some(FORMAT_V1) => {}
            Some(other) => return Err(Error::Unsupported(format!("delta format {other:?} (this engine applies {FORMAT_V1})"))),
            None => return Err(Error::bad_archive(format!("delta image without the {FORMAT} label"))),
        }
        (Kind::Bedelta, base, label(CONFIG))
    } else if let Some(base) = label(RESIN_BASE) {
        (Kind::Rdiff, base, label(RESIN_CONFIG))
    } else {
        return Ok(None);
    };
    let base: Digest = base.parse().map_err(|_| Error::bad_archive(format!("delta base label {base:?} is not an image ID")))?;
    let target = target.ok_or_else(|| Error::bad_archive("delta image without the target's config label"))?;
    let tags = |k: &str| -> Result<Vec<String>> {
        label(k)
            .map(|t| t.split(',').filter(|s| !s.is_empty()).map(crate::reference::normalize).collect())
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Some(DeltaInfo {
        kind,
        base,
        target_config: target.as_bytes().to_vec(),
        target_tags: tags(TAGS)?,
        base_tags: tags(BASE_TAGS)?,
    }))
}
