//! Which image a reference names: its manifest (mirrors first, then the registry, retrying transient
//! failures), the platform's manifest when it is a list, and the image config.

use std::time::Duration;

use engine::digest::Digest;
use tokio_util::sync::CancellationToken;

use super::{Ctx, PullRequest};
use crate::auth::Credentials;
use crate::blob::fetch_small;
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Fetched, ImageManifest, Parsed};
use crate::platform::{self, Platform};
use crate::retry::retrying;
use crate::session::{Registries, Session};

/// What the registry says the reference is.
pub(super) struct Resolved<'r> {
    pub session: Session<'r>,
    /// What the reference named (a list's digest when it was a list).
    pub digest: Digest,
    pub manifest: Fetched,
    pub image: ImageManifest,
    pub config: Vec<u8>,
}

/// Finds the manifest (mirrors first, then the registry; retrying transient failures), picks the platform's
/// manifest from a list, and fetches the config.
pub(super) async fn resolve<'r>(ctx: &Ctx<'r>, req: &PullRequest) -> Result<Resolved<'r>> {
    let (reg, progress, cancel) = (ctx.reg, ctx.progress, ctx.cancel);
    let r = &req.reference;
    let want = req.platform.clone().unwrap_or_else(Platform::host);
    let endpoints = reg.endpoints(r, true);
    let notify =
        |e: &Error, d: Duration| progress.status(None, &format!("{e}: Retrying in {} seconds", d.as_secs().max(1)));
    retrying(reg.config(), cancel, &notify, || async {
        let mut last = None;
        for ep in &endpoints {
            let mirror = ep.mirror;
            match resolve_at(reg, ep.clone(), req, &want, cancel).await {
                Ok(res) => return Ok(res),
                Err(e) if mirror || e.is_transient() => {
                    log::info!("{}: {e}", ep.base);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config(format!("no endpoint for {}", r.domain))))
    })
    .await
}

async fn resolve_at<'r>(
    reg: &'r Registries,
    ep: crate::config::Endpoint,
    req: &PullRequest,
    want: &Platform,
    cancel: &CancellationToken,
) -> Result<Resolved<'r>> {
    let r = &req.reference;
    let display = r.to_string();
    // A mirror is not trusted with the registry's credentials.
    let creds = if ep.mirror { Credentials::default() } else { req.creds.clone() };
    let session = Session::new(reg, ep, &r.path, &creds, false)?;
    session.ping().await?;
    let top = manifest::fetch(&session, &r.manifest_reference(), &display).await?;
    let digest = top.digest.clone();
    let manifest = match &top.parsed {
        Parsed::Image(_) => top,
        Parsed::List(list) => {
            let entries: Vec<(Option<Platform>, &Descriptor)> =
                list.manifests.iter().map(|d| (d.platform.clone(), d)).collect();
            let chosen = platform::select(&entries, want).ok_or_else(|| Error::NoMatchingPlatform(want.to_string()))?;
            let child = manifest::fetch(&session, &chosen.digest.to_string(), &format!("{display} ({want})")).await?;
            if !matches!(child.parsed, Parsed::Image(_)) {
                return Err(Error::BadManifest("a manifest list names another list for a platform".into()));
            }
            child
        }
    };
    let Parsed::Image(image) = manifest.parsed.clone() else { unreachable!("checked above") };
    let config = fetch_small(&session, &image.config.digest, image.config.size, manifest::MAX_CONFIG, cancel).await?;
    Ok(Resolved { session, digest, manifest, image, config })
}
