//! Token authentication against a real registry: a small "token gate" in this file stands in front of
//! Debian's docker-registry (which does token auth only with JWTs signed against a certificate bundle). The
//! gate is a token server (`/token`, Basic credentials or an OAuth2 refresh token, tokens `t1`, `t2`, …) and
//! a guard that wants `Authorization: Bearer <token>` on `/v2/...` (a 401 with a Bearer challenge otherwise)
//! and forwards what passes to the registry. It records the scopes asked, the credentials the token server
//! got and every Authorization header the registry side saw.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use distribution::auth::Credentials;
use distribution::progress::Silent;
use distribution::pull::{pull, PullRequest, Pulled};
use distribution::push::{push, PushRequest};
use distribution::{Error, Reference, Registries, RegistryConfig};
use engine::digest::Digest;
use engine::store::{Access, Store};
use serde_json::json;
use testkit::archive::layer_tar as layer;
use testkit::http;
use testkit::registry::{Registry, RegistryOptions};
use tokio_util::sync::CancellationToken;

const USER: &str = "user";
const PASS: &str = "pass";
const REFRESH: &str = "refresh-abc";

// ---------------------------------------------------------------------------------------------------------
// Images

/// A docker-archive of `layers` with the tags `tags`; returns it and the image ID.
fn archive(tags: &[String], layers: &[Vec<u8>]) -> (Vec<u8>, Digest) {
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let a = testkit::archive::docker_archive(&tags, layers);
    (a.bytes, a.id.parse().unwrap())
}

/// Three layers of incompressible files (three downloads at once), different per `seed`.
fn app_layers(seed: u64) -> Vec<Vec<u8>> {
    (0..3).map(|i| layer(&[(&format!("bin/part{i}"), testkit::noise(seed * 10 + i, 200 << 10))])).collect()
}

fn open(root: &Path) -> Mutex<Store> {
    Mutex::new(Store::open(root, Access::Write).unwrap())
}

fn load(store: &Mutex<Store>, archive: &[u8]) {
    engine::archive::load(&mut store.lock().unwrap(), io::Cursor::new(archive)).unwrap();
}

fn config() -> RegistryConfig {
    RegistryConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_attempts: Some(3),
        certs_dir: "/nonexistent".into(),
        ..Default::default()
    }
}

struct Env {
    rt: tokio::runtime::Runtime,
    reg: Registries,
}

impl Env {
    fn new() -> Env {
        Env::with(config())
    }

    fn with(c: RegistryConfig) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Env { rt, reg: Registries::new(c) }
    }

    fn pull(&self, store: &Mutex<Store>, reference: &str, creds: Credentials) -> distribution::Result<Pulled> {
        let req = PullRequest { reference: Reference::parse(reference).unwrap(), platform: None, creds };
        pull(self.rt.handle(), &self.reg, store, &req, &Silent, &CancellationToken::new())
    }

    fn push(&self, store: &Mutex<Store>, reference: &str, creds: Credentials) -> distribution::Result<()> {
        let req = PushRequest { reference: Reference::parse(reference).unwrap(), creds };
        push(self.rt.handle(), &self.reg, store, &req, &Silent, &CancellationToken::new()).map(|_| ())
    }
}

fn password(user: &str, pass: &str) -> Credentials {
    Credentials { username: Some(user.into()), password: Some(pass.into()), ..Default::default() }
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", http::base64(format!("{user}:{pass}").as_bytes()))
}

/// A registry holding `app:1` (three layers); returns it with the image ID.
fn registry_with_app(tmp: &Path) -> (Registry, Digest) {
    let registry = Registry::start(RegistryOptions::default());
    let root = tmp.join("build");
    let build = open(&root);
    let (a, id) = archive(&[format!("{}/app:1", registry.addr())], &app_layers(1));
    load(&build, &a);
    Env::new().push(&build, &format!("{}/app:1", registry.addr()), Credentials::default()).expect("fill");
    (registry, id)
}

// ---------------------------------------------------------------------------------------------------------
// The token gate

#[derive(Clone, Default)]
struct GateOpts {
    /// Want a Bearer token on `/v2/...` (false: an open pass-through that only records).
    require_token: bool,
    /// A token is refused after this many `/v2/` requests (`None`: never).
    token_uses: Option<u32>,
    /// Only the first token issued is limited by `token_uses`.
    only_first_limited: bool,
    /// `expires_in` of the tokens issued.
    expires_in: u64,
    /// Tokens valid without having been issued (a supervisor's `registrytoken`).
    preissued: Vec<String>,
    /// A GET of a blob is answered 307 to this prefix + the request target.
    redirect_blobs_to: Option<String>,
}

/// A request the guard saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
    status: u16,
}

/// A request the token server saw.
#[derive(Clone, Debug)]
struct TokenAsk {
    method: String,
    scopes: Vec<String>,
    service: Option<String>,
    authorization: Option<String>,
    /// The form of a POST (OAuth2).
    form: HashMap<String, String>,
    granted: Option<String>,
}

struct State {
    addr: String,
    upstream: String,
    opts: GateOpts,
    issued: AtomicU32,
    valid: Mutex<HashSet<String>>,
    uses: Mutex<HashMap<String, u32>>,
    asks: Mutex<Vec<TokenAsk>>,
    seen: Mutex<Vec<Seen>>,
}

struct Gate {
    st: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Gate {
    fn start(upstream: &str, opts: GateOpts) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let st = Arc::new(State {
            addr,
            upstream: upstream.to_owned(),
            valid: Mutex::new(opts.preissued.iter().cloned().collect()),
            opts,
            issued: AtomicU32::new(0),
            uses: Mutex::new(HashMap::new()),
            asks: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, stop2) = (st.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(&s, &conn);
                    let _ = conn.shutdown(Shutdown::Both);
                });
            }
        });
        Gate { st, stop, accept: Some(accept) }
    }

    fn addr(&self) -> String {
        self.st.addr.clone()
    }

    fn url(&self) -> String {
        format!("http://{}", self.st.addr)
    }

    fn asks(&self) -> Vec<TokenAsk> {
        self.st.asks.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.st.seen.lock().unwrap().clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.st.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// One request per connection (answers say `Connection: close`).
fn serve(st: &State, conn: &TcpStream) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut first = [0u8; 1];
    // A TLS ClientHello (the client tries https first): not spoken here, close.
    if conn.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(());
    }
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some(head) = http::read_head(&mut reader)? else { return Ok(()) };
    let mut parts = head[0].split(' ');
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let headers = http::parse_headers(&head[1..])?;
    let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let len: u64 = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = Vec::new();
    (&mut reader).take(len).read_to_end(&mut body)?;
    let (status, resp_headers, resp_body) = respond(st, &method, &target, &headers, &body);
    let mut out = format!("HTTP/1.1 {status} Gate\r\n");
    let mut length = None;
    for (k, v) in &resp_headers {
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.clone());
        } else if !k.eq_ignore_ascii_case("transfer-encoding") && !k.eq_ignore_ascii_case("connection") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    // A HEAD answer keeps the length of what a GET would send.
    let length = if method == "HEAD" { length.unwrap_or_else(|| "0".into()) } else { resp_body.len().to_string() };
    out.push_str(&format!("Content-Length: {length}\r\nConnection: close\r\n\r\n"));
    let mut w = conn;
    w.write_all(out.as_bytes())?;
    if method != "HEAD" {
        w.write_all(&resp_body)?;
    }
    w.flush()
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

fn json_answer(status: u16, v: serde_json::Value) -> Answer {
    (status, vec![("Content-Type".into(), "application/json".into())], serde_json::to_vec(&v).unwrap())
}

fn respond(st: &State, method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let authorization = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.clone());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/token" {
        return token(st, method, query, authorization, body);
    }
    let answer = if !path.starts_with("/v2") {
        json_answer(404, json!({}))
    } else if st.opts.require_token && !admit(st, authorization.as_deref()) {
        let challenge =
            format!(r#"Bearer realm="http://{}/token",service="test",scope="repository:app:pull""#, st.addr);
        let (s, mut h, b) = json_answer(
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": null}]}),
        );
        h.push(("WWW-Authenticate".into(), challenge));
        (s, h, b)
    } else if let Some(prefix) =
        st.opts.redirect_blobs_to.as_ref().filter(|_| method == "GET" && path.contains("/blobs/sha256:"))
    {
        (307, vec![("Location".into(), format!("{prefix}{target}"))], Vec::new())
    } else {
        forward(st, method, target, headers, body)
    };
    st.seen.lock().unwrap().push(Seen {
        method: method.into(),
        target: target.into(),
        authorization,
        status: answer.0,
    });
    answer
}

/// Is this a valid bearer token (counting its use)?
fn admit(st: &State, authorization: Option<&str>) -> bool {
    let Some(t) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else { return false };
    if !st.valid.lock().unwrap().contains(t) {
        return false;
    }
    let mut uses = st.uses.lock().unwrap();
    let n = uses.entry(t.to_owned()).or_default();
    let limited = !st.opts.only_first_limited || t == "t1";
    if let Some(max) = st.opts.token_uses.filter(|_| limited) {
        if *n >= max {
            return false;
        }
    }
    *n += 1;
    true
}

fn token(st: &State, method: &str, query: &str, authorization: Option<String>, body: &[u8]) -> Answer {
    let q = form(query);
    let f = if method == "POST" { form(&String::from_utf8_lossy(body)) } else { Vec::new() };
    let first = |pairs: &[(String, String)], k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (scopes, service) = if method == "POST" {
        let scopes = first(&f, "scope").map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default();
        (scopes, first(&f, "service"))
    } else {
        (q.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect(), first(&q, "service"))
    };
    let ok = if method == "POST" {
        first(&f, "grant_type").as_deref() == Some("refresh_token")
            && first(&f, "refresh_token").as_deref() == Some(REFRESH)
    } else {
        authorization.as_deref() == Some(&basic(USER, PASS))
    };
    let granted = ok.then(|| format!("t{}", st.issued.fetch_add(1, Ordering::SeqCst) + 1));
    st.asks.lock().unwrap().push(TokenAsk {
        method: method.into(),
        scopes,
        service,
        authorization,
        form: f.into_iter().collect(),
        granted: granted.clone(),
    });
    match granted {
        Some(t) => {
            st.valid.lock().unwrap().insert(t.clone());
            let key = if method == "POST" { "access_token" } else { "token" };
            json_answer(200, json!({ key: t, "expires_in": st.opts.expires_in.max(60) }))
        }
        None => json_answer(401, json!({"details": "incorrect username or password"})),
    }
}

/// `a=b&c=d`, percent-decoded (`+` is a space).
fn form(s: &str) -> Vec<(String, String)> {
    let decode = |v: &str| {
        let b = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The request to the registry (its own `Host` kept, so that upload locations point at the gate), the
/// whole answer back.
fn forward(st: &State, method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let hop = ["connection", "keep-alive", "transfer-encoding", "content-length", "authorization"];
    let h: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !hop.iter().any(|x| k.eq_ignore_ascii_case(x)))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match http::request(&st.upstream, method, target, &h, body) {
        Ok(r) => (r.status, r.headers, r.body),
        Err(e) => (502, Vec::new(), format!("gate: upstream: {e}").into_bytes()),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tests

fn token_gate(registry: &Registry) -> Gate {
    Gate::start(&registry.addr(), GateOpts { require_token: true, expires_in: 300, ..Default::default() })
}

/// The requests that reached the registry side (the guard let them through).
fn forwarded(g: &Gate) -> Vec<Seen> {
    g.seen().into_iter().filter(|s| s.status != 401).collect()
}

fn assert_no_basic_upstream(g: &Gate) {
    for s in g.seen() {
        assert!(
            !s.authorization.as_deref().unwrap_or("").starts_with("Basic"),
            "the registry side saw Basic credentials on {} {}",
            s.method,
            s.target
        );
    }
}

#[test]
fn pull_with_password_goes_through_the_token_flow() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, id) = registry_with_app(tmp.path());
    let gate = token_gate(&registry);
    let env = Env::new();
    let device = open(&tmp.path().join("device"));
    let reference = format!("{}/app:1", gate.addr());
    let t = Instant::now();
    let pulled = env.pull(&device, &reference, password(USER, PASS)).expect("pull through the token gate");
    eprintln!("pull took {:?}", t.elapsed());
    assert_eq!(pulled.id, id);
    assert_eq!(engine::images::resolve(&device.lock().unwrap(), &reference).unwrap(), id);

    let asks = gate.asks();
    assert_eq!(asks.len(), 1, "one token for the whole pull: {asks:?}");
    assert_eq!(asks[0].method, "GET");
    assert_eq!(asks[0].scopes, ["repository:app:pull"]);
    assert_eq!(asks[0].service.as_deref(), Some("test"));
    assert_eq!(
        asks[0].authorization.as_deref(),
        Some(basic(USER, PASS).as_str()),
        "Basic credentials to the token server"
    );
    assert_no_basic_upstream(&gate);
    let fwd = forwarded(&gate);
    // Manifest, config and the three layers, each with the token (only GET /v2/ goes without).
    let blobs: Vec<&Seen> = fwd.iter().filter(|s| s.target.contains("/blobs/")).collect();
    assert_eq!(blobs.len(), 4, "config and three layers: {fwd:?}");
    for s in fwd.iter().filter(|s| s.target != "/v2/") {
        assert_eq!(s.authorization.as_deref(), Some("Bearer t1"), "{} {}", s.method, s.target);
    }
    assert!(fwd.iter().any(|s| s.target == "/v2/app/manifests/1" && s.status == 200));
}

#[test]
fn token_refused_mid_pull_is_renewed() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, id) = registry_with_app(tmp.path());
    // Every token is good for two requests; one download at a time, so the renewals happen at known points.
    let gate = Gate::start(
        &registry.addr(),
        GateOpts { require_token: true, expires_in: 300, token_uses: Some(2), ..Default::default() },
    );
    let env = Env::with(RegistryConfig { max_concurrent_downloads: 1, ..config() });
    let device = open(&tmp.path().join("device"));
    let t = Instant::now();
    let pulled = env.pull(&device, &format!("{}/app:1", gate.addr()), password(USER, PASS)).expect("pull");
    eprintln!("pull took {:?}", t.elapsed());
    assert_eq!(pulled.id, id);
    let asks = gate.asks();
    // manifest + config on t1, layers 1-2 on t2, layer 3 on t3.
    assert_eq!(asks.len(), 3, "a new token each time one lapsed: {asks:?}");
    assert!(asks.iter().all(|a| a.scopes == ["repository:app:pull"] && a.granted.is_some()));
    let seen = gate.seen();
    assert!(
        seen.iter().any(|s| s.status == 401 && s.authorization.as_deref() == Some("Bearer t1")),
        "the lapsed token was refused: {seen:?}"
    );
    let layers_ok = |t: &str| {
        seen.iter()
            .filter(|s| s.status == 200 && s.authorization.as_deref() == Some(t) && s.target.contains("/blobs/"))
            .count()
    };
    assert_eq!((layers_ok("Bearer t1"), layers_ok("Bearer t2"), layers_ok("Bearer t3")), (1, 2, 1));
    assert_no_basic_upstream(&gate);
}

#[test]
fn token_revoked_while_layers_download_concurrently() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, id) = registry_with_app(tmp.path());
    // The first token dies after manifest and config, as the three layer downloads start at once.
    let gate = Gate::start(
        &registry.addr(),
        GateOpts {
            require_token: true,
            expires_in: 300,
            token_uses: Some(2),
            only_first_limited: true,
            ..Default::default()
        },
    );
    let env = Env::new();
    let device = open(&tmp.path().join("device"));
    let t = Instant::now();
    let pulled = env.pull(&device, &format!("{}/app:1", gate.addr()), password(USER, PASS)).expect("pull");
    eprintln!("pull took {:?}", t.elapsed());
    assert_eq!(pulled.id, id);
    let asks = gate.asks();
    assert!((2..=4).contains(&asks.len()), "a second token, at most one per refused request: {asks:?}");
    let refused = gate.seen().iter().filter(|s| s.status == 401 && s.authorization.is_some()).count();
    eprintln!("{} token requests, {refused} requests refused with a token", asks.len());
    assert!((1..=3).contains(&refused), "{refused} requests refused");
}

#[test]
fn wrong_password_is_unauthorized_without_a_retry_storm() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, _) = registry_with_app(tmp.path());
    let gate = token_gate(&registry);
    let env = Env::new();
    let root = tmp.path().join("device");
    let device = open(&root);
    let before = std::fs::read(root.join("metadata.json")).ok();
    let t = Instant::now();
    let err = env.pull(&device, &format!("{}/app:1", gate.addr()), password(USER, "wrong")).expect_err("denied");
    let took = t.elapsed();
    let Error::Unauthorized(msg) = &err else { panic!("expected Unauthorized, got {err:?}") };
    eprintln!("error after {took:?}: {msg}");
    assert!(msg.contains("denied") && msg.contains("app") && msg.contains("401"), "a clear message: {msg}");
    assert!(!msg.contains("wrong"), "no password in the message: {msg}");
    let asks = gate.asks();
    assert!(!asks.is_empty() && asks.len() <= 2, "no retry storm: {} token requests", asks.len());
    assert!(gate.seen().len() <= 4, "no retry storm: {:?}", gate.seen());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(std::fs::read(root.join("metadata.json")).ok(), before, "nothing stored");

    // Anonymous: the token server refuses too, and the message says so.
    let err = env.pull(&device, &format!("{}/app:1", gate.addr()), Credentials::default()).expect_err("denied");
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
}

#[test]
fn registry_token_is_sent_as_bearer_without_the_token_server() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, id) = registry_with_app(tmp.path());
    let gate = Gate::start(
        &registry.addr(),
        GateOpts {
            require_token: true,
            expires_in: 300,
            preissued: vec!["supervisor-tok".into()],
            ..Default::default()
        },
    );
    let env = Env::new();
    let device = open(&tmp.path().join("device"));
    let creds = Credentials { registry_token: Some("supervisor-tok".into()), ..Default::default() };
    let pulled = env.pull(&device, &format!("{}/app:1", gate.addr()), creds).expect("pull with a registry token");
    assert_eq!(pulled.id, id);
    assert!(gate.asks().is_empty(), "the token server was not asked: {:?}", gate.asks());
    let seen = gate.seen();
    assert!(seen.iter().all(|s| s.status != 401 || s.target == "/v2/"), "nothing refused: {seen:?}");
    for s in seen.iter().filter(|s| s.target != "/v2/") {
        assert_eq!(s.authorization.as_deref(), Some("Bearer supervisor-tok"), "{} {}", s.method, s.target);
    }
    assert_eq!(seen.iter().filter(|s| s.target.contains("/blobs/")).count(), 4);

    // A refused registry token is not traded for another one: Unauthorized at once.
    let other = open(&tmp.path().join("other"));
    let creds = Credentials { registry_token: Some("stale".into()), ..Default::default() };
    let err = env.pull(&other, &format!("{}/app:1", gate.addr()), creds).expect_err("stale token");
    let Error::Unauthorized(msg) = &err else { panic!("expected Unauthorized, got {err:?}") };
    assert!(msg.contains("registry token"), "{msg}");
    assert!(gate.asks().is_empty(), "still no token request");
}

#[test]
fn identity_token_is_exchanged_with_an_oauth2_refresh_grant() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, id) = registry_with_app(tmp.path());
    let gate = token_gate(&registry);
    let env = Env::new();
    let device = open(&tmp.path().join("device"));
    let creds = Credentials { identity_token: Some(REFRESH.into()), ..Default::default() };
    let pulled = env.pull(&device, &format!("{}/app:1", gate.addr()), creds).expect("pull with an identity token");
    assert_eq!(pulled.id, id);
    let asks = gate.asks();
    assert_eq!(asks.len(), 1, "{asks:?}");
    let a = &asks[0];
    assert_eq!(a.method, "POST");
    assert_eq!(a.form.get("grant_type").map(String::as_str), Some("refresh_token"));
    assert_eq!(a.form.get("refresh_token").map(String::as_str), Some(REFRESH));
    assert_eq!(a.form.get("client_id").map(String::as_str), Some("balena-engine"));
    assert_eq!(a.scopes, ["repository:app:pull"]);
    assert_eq!(a.service.as_deref(), Some("test"));
    assert_eq!(a.authorization, None);
    assert!(forwarded(&gate)
        .iter()
        .filter(|s| s.target != "/v2/")
        .all(|s| s.authorization.as_deref() == Some("Bearer t1")));
}

#[test]
fn push_with_password_asks_for_pull_and_push() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let gate = token_gate(&registry);
    let env = Env::new();
    let root = tmp.path().join("build");
    let build = open(&root);
    let reference = format!("{}/app:2", gate.addr());
    let (a, id) = archive(std::slice::from_ref(&reference), &app_layers(2));
    load(&build, &a);
    let t = Instant::now();
    env.push(&build, &reference, password(USER, PASS)).expect("push through the token gate");
    eprintln!("push took {:?}", t.elapsed());
    let asks = gate.asks();
    assert!(!asks.is_empty());
    for a in &asks {
        assert_eq!(a.scopes, ["repository:app:pull,push"], "{asks:?}");
        assert_eq!(a.authorization.as_deref(), Some(basic(USER, PASS).as_str()));
    }
    assert_no_basic_upstream(&gate);
    let seen = gate.seen();
    assert!(seen.iter().any(|s| s.method == "PUT" && s.target == "/v2/app/manifests/2" && s.status == 201), "{seen:?}");
    // What was pushed is there, and pulls back.
    let (_, m) = registry.manifest("app", "2");
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(m["config"]["digest"].as_str(), Some(id.to_string().as_str()));
    let device = open(&tmp.path().join("device"));
    assert_eq!(env.pull(&device, &reference, password(USER, PASS)).expect("pull back").id, id);
}

#[test]
fn redirected_blobs_do_not_carry_the_authorization_header() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (registry, id) = registry_with_app(tmp.path());
    // The blob store: another port, open, recording what it gets.
    let storage = Gate::start(&registry.addr(), GateOpts::default());
    let gate = Gate::start(
        &registry.addr(),
        GateOpts { require_token: true, expires_in: 300, redirect_blobs_to: Some(storage.url()), ..Default::default() },
    );
    let env = Env::new();
    let device = open(&tmp.path().join("device"));
    let pulled = env.pull(&device, &format!("{}/app:1", gate.addr()), password(USER, PASS)).expect("pull");
    assert_eq!(pulled.id, id);
    let redirected: Vec<Seen> = gate.seen().into_iter().filter(|s| s.status == 307).collect();
    assert_eq!(redirected.len(), 4, "config and layers redirected: {:?}", gate.seen());
    assert!(redirected.iter().all(|s| s.authorization.as_deref() == Some("Bearer t1")));
    let other = storage.seen();
    assert_eq!(other.iter().filter(|s| s.target.contains("/blobs/") && s.status == 200).count(), 4, "{other:?}");
    for s in &other {
        assert_eq!(s.authorization, None, "credentials went to another origin: {} {}", s.method, s.target);
    }
    assert!(storage.asks().is_empty());
}
