//! One repository on one registry endpoint, for one pull or push: authenticated requests (anonymous,
//! Basic, Bearer tokens fetched from the challenge's realm and renewed when they lapse), redirects followed
//! by hand with credentials kept to the endpoint's own origin, and registry errors turned into typed ones.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{parse_token_response, Challenge, Credentials, Token};
use crate::config::{Endpoint, RegistryConfig};
use crate::error::{transport, Error, Result};
use crate::reference::Reference;
use crate::transport;

const MAX_REDIRECTS: usize = 5;
/// Largest error body or token answer read.
const MAX_SMALL_BODY: usize = 64 * 1024;

/// The registry client: settings and one HTTP client per endpoint (connections are reused across pulls).
pub struct Registries {
    config: RegistryConfig,
    clients: Mutex<HashMap<(String, bool), reqwest::Client>>,
}

impl Registries {
    pub fn new(config: RegistryConfig) -> Registries {
        Registries { config, clients: Mutex::new(HashMap::new()) }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub(crate) fn client(&self, host: &str, skip_verify: bool) -> Result<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&(host.to_owned(), skip_verify)) {
            return Ok(c.clone());
        }
        let c = transport::build(&self.config, host, skip_verify)?;
        clients.insert((host.to_owned(), skip_verify), c.clone());
        Ok(c)
    }

    /// Endpoints for `r`, in the order to try; mirrors only when `with_mirrors` (pulls, never pushes).
    pub fn endpoints(&self, r: &Reference, with_mirrors: bool) -> Vec<Endpoint> {
        self.config.endpoints(&r.domain, r.api_host()).into_iter().filter(|e| with_mirrors || !e.mirror).collect()
    }
}

enum Auth {
    None,
    Basic(String),
    Bearer { realm: String, service: Option<String>, token: Option<Token> },
}

pub struct Session<'r> {
    reg: &'r Registries,
    pub endpoint: Endpoint,
    client: reqwest::Client,
    /// Repository path (`library/busybox`).
    pub repo: String,
    creds: Credentials,
    /// Scope actions asked of a token server: `pull` or `pull,push`.
    actions: &'static str,
    /// Other repositories whose blobs a push may mount (their pull scope goes into the token).
    extra_scopes: Mutex<Vec<String>>,
    auth: tokio::sync::Mutex<Auth>,
}

/// A request, kept so it can be sent again (after authenticating, or to a redirect's target).
pub struct Req {
    pub method: Method,
    /// Absolute URL, or a path below the endpoint (`/v2/...`).
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl Req {
    pub fn get(url: impl Into<String>) -> Req {
        Req { method: Method::GET, url: url.into(), headers: HeaderMap::new(), body: None }
    }

    pub fn new(method: Method, url: impl Into<String>) -> Req {
        Req { method, url: url.into(), headers: HeaderMap::new(), body: None }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Req {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Bytes) -> Req {
        self.body = Some(body);
        self
    }
}

fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!("{}://{}:{}", u.scheme(), u.host_str()?, u.port_or_known_default()?))
}

impl<'r> Session<'r> {
    pub fn new(
        reg: &'r Registries,
        endpoint: Endpoint,
        repo: &str,
        creds: &Credentials,
        push: bool,
    ) -> Result<Session<'r>> {
        let client = reg.client(&endpoint.host, endpoint.skip_verify)?;
        let auth = match &creds.registry_token {
            // A ready bearer token (the balena supervisor's `registrytoken`): used as is.
            Some(t) => Auth::ready_bearer(t),
            None => Auth::None,
        };
        Ok(Session {
            reg,
            endpoint,
            client,
            repo: repo.to_owned(),
            creds: creds.clone(),
            actions: if push { "pull,push" } else { "pull" },
            extra_scopes: Mutex::new(Vec::new()),
            auth: tokio::sync::Mutex::new(auth),
        })
    }

    /// Asks for pull access to `repo` too in the next token (for cross-repository mounts).
    pub fn add_pull_scope(&self, repo: &str) {
        let mut s = self.extra_scopes.lock().unwrap_or_else(|e| e.into_inner());
        let scope = format!("repository:{repo}:pull");
        if !s.contains(&scope) {
            s.push(scope);
        }
    }

    pub fn registries(&self) -> &'r Registries {
        self.reg
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.base)
    }

    /// `GET /v2/`: does the endpoint answer as a registry? (401 counts: it does, and wants credentials.)
    pub async fn ping(&self) -> Result<()> {
        let resp = self
            .client
            .get(self.url("/v2/"))
            .send()
            .await
            .map_err(|e| transport(e, &format!("reaching registry {}", self.endpoint.base)))?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::UNAUTHORIZED => Ok(()),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Err(Error::Transient(format!("registry {} answered {s}", self.endpoint.base)))
            }
            s => Err(Error::Registry(format!("{} is not a registry: GET /v2/ answered {s}", self.endpoint.base))),
        }
    }

    async fn auth_header(&self) -> Result<Option<String>> {
        let mut auth = self.auth.lock().await;
        match &mut *auth {
            Auth::None => Ok(None),
            Auth::Basic(b) => Ok(Some(format!("Basic {b}"))),
            Auth::Bearer { token: Some(t), .. } if t.is_fresh() || self.creds.registry_token.is_some() => {
                Ok(Some(format!("Bearer {}", t.value)))
            }
            Auth::Bearer { realm, service, token } => {
                let t = self.fetch_token(realm, service.as_deref()).await?;
                *token = Some(t.clone());
                Ok(Some(format!("Bearer {}", t.value)))
            }
        }
    }

    /// Reacts to a 401: sets up Basic credentials or fetches a (new) bearer token for the challenge.
    /// `used` is the Authorization the refused request carried: if another request renewed the token since,
    /// the new one is tried instead of fetching yet another (parallel downloads share one renewal).
    async fn authenticate(&self, header: Option<&str>, used: Option<&str>) -> Result<()> {
        let challenge = header.and_then(Challenge::parse);
        let mut auth = self.auth.lock().await;
        if let (Auth::Bearer { token: Some(t), .. }, Some(used)) = (&*auth, used) {
            if t.is_fresh() && used != format!("Bearer {}", t.value) && self.creds.registry_token.is_none() {
                return Ok(());
            }
        }
        match challenge {
            Some(Challenge::Basic) => {
                let b = self.creds.basic().ok_or_else(|| self.denied("no basic auth credentials"))?;
                *auth = Auth::Basic(b);
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                if self.creds.registry_token.is_some() {
                    return Err(self.denied("the registry token was refused"));
                }
                let t = self.fetch_token(&realm, service.as_deref()).await?;
                *auth = Auth::Bearer { realm, service, token: Some(t) };
            }
            None => return Err(self.denied("authentication required")),
        }
        Ok(())
    }

    fn denied(&self, why: &str) -> Error {
        Error::Unauthorized(format!("{} access to {} on {} denied: {why}", self.actions, self.repo, self.endpoint.host))
    }

    async fn fetch_token(&self, realm: &str, service: Option<&str>) -> Result<Token> {
        // A login (no repository) asks for a token without a scope, as docker does.
        let mut scopes: Vec<String> =
            if self.repo.is_empty() { Vec::new() } else { vec![format!("repository:{}:{}", self.repo, self.actions)] };
        scopes.extend(self.extra_scopes.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        let host = reqwest::Url::parse(realm)
            .ok()
            .and_then(|u| Some(format!("{}{}", u.host_str()?, u.port().map(|p| format!(":{p}")).unwrap_or_default())))
            .ok_or_else(|| Error::Unauthorized(format!("token realm {realm:?} is not a URL")))?;
        let client = self.reg.client(&host, self.reg.config().is_insecure(&host))?;
        let resp = if let Some(refresh) = &self.creds.identity_token {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", refresh.clone()),
                ("client_id", "balena-engine".to_owned()),
                ("scope", scopes.join(" ")),
            ];
            if let Some(s) = service {
                form.push(("service", s.to_owned()));
            }
            let body = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&");
            client
                .post(realm)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        } else {
            let mut query: Vec<(&str, String)> = scopes.iter().map(|s| ("scope", s.clone())).collect();
            if let Some(s) = service {
                query.push(("service", s.to_owned()));
            }
            let mut rb = client.get(realm).query(&query);
            if let Some(b) = self.creds.basic() {
                rb = rb.header(AUTHORIZATION, format!("Basic {b}"));
            }
            rb.send().await
        }
        .map_err(|e| transport(e, &format!("fetching a token from {realm}")))?;
        let status = resp.status();
        let body = read_small(resp).await?;
        match status {
            s if s.is_success() => parse_token_response(&body),
            s if s.is_server_error() => Err(Error::Transient(format!("token server {realm} answered {s}"))),
            _ => Err(self.denied(&format!("token server answered {status}"))),
        }
    }

    /// Sends `req`, authenticating on a 401 (once) and following redirects (credentials only to the
    /// endpoint's origin). Returns whatever else the registry answered.
    pub async fn send(&self, req: Req) -> Result<Response> {
        let mut url = if req.url.starts_with('/') { self.url(&req.url) } else { req.url.clone() };
        let home = origin(&self.endpoint.base);
        let mut redirects = 0;
        let mut authenticated = false;
        loop {
            let ours = origin(&url) == home;
            let mut rb = self.client.request(req.method.clone(), &url).headers(req.headers.clone());
            let mut used = None;
            if ours {
                if let Some(h) = self.auth_header().await? {
                    rb = rb.header(AUTHORIZATION, &h);
                    used = Some(h);
                }
            }
            if let Some(b) = &req.body {
                rb = rb.body(b.clone());
            }
            let resp = rb.send().await.map_err(|e| transport(e, &format!("{} {}", req.method, strip_query(&url))))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && ours && !authenticated {
                let challenge = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_owned);
                self.authenticate(challenge.as_deref(), used.as_deref()).await?;
                authenticated = true;
                continue;
            }
            if status.is_redirection() {
                let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
                    return Err(Error::Registry(format!(
                        "{} {} answered {status} without a Location",
                        req.method,
                        strip_query(&url)
                    )));
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(Error::Redirect(format!("too many redirects fetching {}", strip_query(&req.url))));
                }
                url = reqwest::Url::parse(&url)
                    .and_then(|base| base.join(loc))
                    .map_err(|_| Error::Registry(format!("bad redirect Location {loc:?}")))?
                    .to_string();
                continue;
            }
            return Ok(resp);
        }
    }

    /// `send`, then the registry's verdict on the status: 2xx is returned; 404, 401/403, 5xx/429 and the
    /// rest become typed errors carrying the registry's own message.
    pub async fn send_ok(&self, req: Req, what: &str) -> Result<Response> {
        let resp = self.send(req).await?;
        check(resp, what, self).await
    }
}

impl Auth {
    fn ready_bearer(token: &str) -> Auth {
        Auth::Bearer {
            realm: String::new(),
            service: None,
            token: Some(Token::new(token.to_owned(), std::time::Duration::from_secs(365 * 86400))),
        }
    }
}

pub(crate) async fn check(resp: Response, what: &str, s: &Session<'_>) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let msg = registry_message(read_small(resp).await.unwrap_or_default());
    let text = format!("{what}: {}{msg}", status.as_u16());
    Err(match status {
        StatusCode::NOT_FOUND => Error::NotFound(format!("{what}: not found{msg}")),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => s.denied(&format!("{status}{msg}")),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Error::Transient(text),
        s if s.is_server_error() => Error::Transient(text),
        _ => Error::Registry(text),
    })
}

/// `: message` from the registry's `{"errors":[{"code","message"}]}` body, if it has one.
fn registry_message(body: Vec<u8>) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!(": {}", e.message.clone().or(e.code.clone()).unwrap_or_default().to_lowercase()))
            .collect(),
        Err(_) => String::new(),
    }
}

/// Reads a small body (errors, tokens), bounded.
pub(crate) async fn read_small(mut resp: Response) -> Result<Vec<u8>> {
    read_limited(&mut resp, MAX_SMALL_BODY, "response").await
}

/// Reads a whole body of at most `max` bytes.
pub(crate) async fn read_limited(resp: &mut Response, max: usize, what: &str) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Error::BadManifest(format!("{what} is larger than {max} bytes")));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e, &format!("reading {what}")))? {
        if out.len() + chunk.len() > max {
            return Err(Error::BadManifest(format!("{what} is larger than {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
