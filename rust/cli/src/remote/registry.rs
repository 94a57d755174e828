//! `pull` and `push` through the daemon (`POST /images/create`, `POST /images/{name}/push`): docker's
//! progress messages are printed as they come; credentials come from docker's client configuration.

use distribution::Reference;

use crate::args::{PullArgs, PushArgs};
use crate::client::stream::show_progress;
use crate::progress::LayerBars;
use crate::client::{seg, Client, Req};
use crate::registry_auth;

pub async fn pull(c: &Client, a: &PullArgs) -> anyhow::Result<()> {
    let r = Reference::parse(&a.image)?;
    let mut req = Req::post("/images/create")
        .query("fromImage", r.familiar_repository())
        .query("tag", r.manifest_reference())
        .header("X-Registry-Auth", registry_auth::header(&registry_auth::credentials(&r)));
    if let Some(p) = &a.platform {
        req = req.query("platform", p.as_str());
    }
    let resp = c.call(req).await?;
    show_progress(resp.into_body(), &LayerBars::new(a.quiet)).await?;
    println!("{}", r);
    Ok(())
}

pub async fn push(c: &Client, a: &PushArgs) -> anyhow::Result<()> {
    let r = Reference::parse(&a.image)?;
    let explicit_tag = a.image.rsplit('/').next().is_some_and(|l| l.contains(':'));
    let req = Req::post(format!("/images/{}/push", seg(&r.familiar_repository())))
        .query("tag", if explicit_tag { r.tag.clone().unwrap_or_default() } else { String::new() })
        .header("X-Registry-Auth", registry_auth::header(&registry_auth::credentials(&r)));
    let resp = c.call(req).await?;
    show_progress(resp.into_body(), &LayerBars::new(a.quiet)).await?;
    Ok(())
}
