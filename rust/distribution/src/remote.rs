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

/// `POST /auth` (`docker login`): checks credentials against a registry (`server` as the docker CLI sends
/// it: empty or Docker Hub's index URL for Docker Hub, else `host[:port]`, with or without a scheme).
pub async fn login(reg: &Registries, server: &str, creds: &Credentials) -> Result<()> {
    let host = server.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let host = host.split('/').next().unwrap_or("");
    let domain = if host.is_empty() || host == "index.docker.io" { crate::reference::DOCKER_HUB } else { host };
    let r = Reference { domain: domain.to_owned(), path: String::new(), tag: None, digest: None };
    let mut last = None;
    for ep in reg.endpoints(&r, false) {
        let s = Session::new(reg, ep, "", creds, false)?;
        let resp = match s.send(crate::session::Req::get("/v2/")).await {
            Ok(resp) => resp,
            Err(e) if e.is_transient() => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        return match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(Error::Unauthorized(format!(
                "login to {domain} failed: unauthorized: incorrect username or password"
            ))),
            s => Err(Error::Registry(format!("login to {domain}: GET /v2/ answered {s}"))),
        };
    }
    Err(last.unwrap_or_else(|| Error::Config(format!("no endpoint for {domain}"))))
}

pub async fn inspect(
    reg: &Registries,
    r: &Reference,
    creds: &Credentials,
    cancel: &CancellationToken,
) -> Result<DistributionInspect> {
    let mut last = None;
    for ep in reg.endpoints(r, true) {
        let creds = if ep.mirror { Credentials::default() } else { creds.clone() };
        let s = Session::new(reg, ep, &r.path, &creds, false)?;
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
