//! `--data-root DIR pull / push`: the registry client on the store directly, without a daemon (preloading a
//! device image at build time from a local registry, offline tooling).

use std::path::Path;
use std::sync::Mutex;

use distribution::platform::Platform;
use distribution::pull::{pull as pull_image, PullRequest};
use distribution::push::{push as push_image, PushRequest};
use distribution::{Reference, Registries, RegistryConfig};
use engine::store::Access;
use tokio_util::sync::CancellationToken;

use crate::args::{PullArgs, PushArgs};
use crate::progress::LayerBars;
use crate::registry_auth;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Ctrl-C cancels the transfer (the store is left as it was).
fn cancel_on_interrupt(rt: &tokio::runtime::Runtime) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

fn registries(insecure: &[String]) -> Registries {
    Registries::new(RegistryConfig { insecure: insecure.to_vec(), ..Default::default() })
}

pub fn pull(root: &Path, a: &PullArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(&a.image)?;
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    let store = Mutex::new(super::open(root, Access::Write)?);
    let rt = runtime()?;
    let cancel = cancel_on_interrupt(&rt);
    let req = PullRequest { creds: registry_auth::credentials(&reference), reference, platform };
    let pulled =
        pull_image(rt.handle(), &registries(&a.insecure_registries), &store, &req, &LayerBars::new(a.quiet), &cancel)?;
    if a.quiet {
        println!("{}", pulled.tag.as_deref().unwrap_or(&pulled.repo_digest));
    } else {
        println!("{}", req.reference);
    }
    Ok(())
}

pub fn push(root: &Path, a: &PushArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(&a.image)?;
    let store = Mutex::new(super::open(root, Access::Write)?);
    let rt = runtime()?;
    let cancel = cancel_on_interrupt(&rt);
    let req = PushRequest { creds: registry_auth::credentials(&reference), reference };
    let pushed =
        push_image(rt.handle(), &registries(&a.insecure_registries), &store, &req, &LayerBars::new(a.quiet), &cancel)?;
    println!("{}: digest: {} size: {}", pushed.tag, pushed.digest, pushed.size);
    Ok(())
}
