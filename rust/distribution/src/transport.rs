//! HTTP clients per registry endpoint: TLS with rustls, per-registry CA and client certificates in docker's
//! layout (`certs.d/<host:port>/{*.crt,client.cert,client.key}`), no automatic redirects (the session
//! follows them itself so that credentials never go to another host), and a per-read timeout that turns a
//! stalled transfer into an error.

use std::path::Path;

use crate::config::RegistryConfig;
use crate::error::{describe, Error, Result};

pub(crate) fn build(config: &RegistryConfig, host: &str, skip_verify: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.stall_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .http1_only()
        .user_agent(concat!("balena-engine/", env!("CARGO_PKG_VERSION")));
    if skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    let dir = config.certs_dir.join(host);
    if dir.is_dir() {
        b = with_certs(b, &dir)?;
    }
    b.build().map_err(|e| Error::Config(format!("TLS setup for {host}: {}", describe(&e))))
}

/// docker's certs.d: every `*.crt` is a CA; `client.cert` + `client.key` are the client's identity.
fn with_certs(mut b: reqwest::ClientBuilder, dir: &Path) -> Result<reqwest::ClientBuilder> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::Config(format!("reading {}: {e}", p.display())));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::Config(format!("reading {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries.iter().filter(|p| p.extension().is_some_and(|x| x == "crt")) {
        for cert in reqwest::Certificate::from_pem_bundle(&read(p)?)
            .map_err(|e| Error::Config(format!("CA certificate {}: {}", p.display(), describe(&e))))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    let (cert, key) = (dir.join("client.cert"), dir.join("client.key"));
    match (cert.is_file(), key.is_file()) {
        (true, true) => {
            let mut pem = read(&cert)?;
            pem.push(b'\n');
            pem.extend(read(&key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| Error::Config(format!("client certificate in {}: {}", dir.display(), describe(&e))))?;
            b = b.identity(id);
        }
        (false, false) => {}
        _ => return Err(Error::Config(format!("{}: client.cert and client.key go together", dir.display()))),
    }
    Ok(b)
}
