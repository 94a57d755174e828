//! Registry credentials for the CLI, from docker's client configuration (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`, as `docker login` writes it): the `auths` entry of the registry's host (Docker
//! Hub's is `https://index.docker.io/v1/`). Credential helpers are not run.

use base64::Engine as _;
use distribution::auth::Credentials;
use distribution::Reference;

fn config_path() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(std::path::PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker/config.json"))
}

/// The credentials docker's configuration holds for the registry of `r`, if any.
pub fn credentials(r: &Reference) -> Credentials {
    let Some(path) = config_path() else { return Credentials::default() };
    let Ok(bytes) = std::fs::read(path) else { return Credentials::default() };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Credentials::default() };
    let keys: Vec<String> = if r.domain == distribution::reference::DOCKER_HUB {
        vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into()]
    } else {
        vec![r.domain.clone(), format!("https://{}", r.domain), format!("http://{}", r.domain)]
    };
    keys.iter()
        .find_map(|k| v["auths"].get(k))
        .and_then(|entry| Credentials::from_json(entry.to_string().as_bytes()).ok())
        .unwrap_or_default()
}

/// The `X-Registry-Auth` header for the daemon (base64url of the JSON, as the docker CLI sends it).
pub fn header(c: &Credentials) -> String {
    let v = serde_json::json!({
        "username": c.username.clone().unwrap_or_default(),
        "password": c.password.clone().unwrap_or_default(),
        "identitytoken": c.identity_token.clone().unwrap_or_default(),
        "registrytoken": c.registry_token.clone().unwrap_or_default(),
        "serveraddress": c.server_address.clone().unwrap_or_default(),
    });
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}
