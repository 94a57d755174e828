//! `GET /distribution/{name}/json`: what a reference points at in its registry, without pulling it — the
//! manifest's descriptor and the platforms it offers.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::auth::Credentials;
use crate::blob::fetch_small;
use crate::error::{Error, Result};
use crate::manifest::{self, Parsed};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::session::{Registries, Session};

#[derive(Debug, Clone, Serialize)]
pub struct RemoteDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionInspect {
    pub descriptor: RemoteDescriptor,
    pub platforms: Vec<Platform>,
}

pub async fn inspect(
    reg: &Registries,
    r: &Reference,
    creds: &Credentials,
    cancel: &CancellationToken,
) -> Result<DistributionInspect> {
    let mut last = None;
    for ep in reg.endpoints(r, true) {
        let s = Session::new(reg, ep, &r.path, creds, false)?;
        if let Err(e) = s.ping().await {
            last = Some(e);
            continue;
        }
        let m = manifest::fetch(&s, &r.manifest_reference(), &r.to_string()).await?;
        let platforms = match &m.parsed {
            Parsed::List(l) => l.manifests.iter().filter_map(|d| d.platform.clone()).collect(),
            Parsed::Image(img) => {
                let cfg = fetch_small(&s, &img.config.digest, img.config.size, manifest::MAX_CONFIG, cancel).await?;
                #[derive(serde::Deserialize)]
                struct C {
                    #[serde(default)]
                    architecture: String,
                    #[serde(default)]
                    os: String,
                    #[serde(default)]
                    variant: String,
                }
                let c: C =
                    serde_json::from_slice(&cfg).map_err(|e| Error::BadManifest(format!("image config: {e}")))?;
                vec![Platform { architecture: c.architecture, os: c.os, variant: c.variant, os_version: String::new() }]
            }
        };
        return Ok(DistributionInspect {
            descriptor: RemoteDescriptor {
                media_type: m.media_type,
                digest: m.digest.to_string(),
                size: m.bytes.len() as u64,
            },
            platforms,
        });
    }
    Err(last.unwrap_or_else(|| Error::Config(format!("no endpoint for {}", r.domain))))
}
