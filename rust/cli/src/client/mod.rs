//! The daemon's client: hyper 1's HTTP/1.1 client connection over a unix socket (or TCP), one connection per
//! request (a unix socket connects in microseconds), on the caller's tokio runtime. The API version is
//! negotiated through `/_ping`'s `API-Version` header, as the docker CLI does, and every path is prefixed
//! with it. Bodies stream both ways: nothing here holds a whole archive or log in memory.

pub mod stream;

use std::fmt;
use std::io;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the CLI looks for the daemon when neither `-H` nor the environment says otherwise.
pub const DEFAULT_HOST: &str = "unix:///var/run/balena-engine.sock";
/// The newest API version this client speaks (the daemon's, dockerd 25/26's).
pub const API_VERSION: (u32, u32) = (1, 45);
/// JSON answers larger than this are refused (a listing of thousands of objects is far smaller).
pub const JSON_LIMIT: usize = 64 << 20;

/// A request body: empty, a JSON document, or a stream.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Failures the user should see exactly as they are, without the `Error: ` prefix of other errors.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens on the socket (or it does not exist).
    Unreachable {
        host: String,
    },
    PermissionDenied {
        host: String,
        cause: io::Error,
    },
    /// The daemon answered with an error status; `message` is its `{"message": …}`.
    Daemon {
        status: u16,
        message: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { host } => write!(
                f,
                "Cannot connect to the balena engine at {host}. Is the daemon running? (use --data-root DIR to work on a data root directly)"
            ),
            ClientError::PermissionDenied { host, cause } => {
                write!(f, "permission denied while trying to connect to the balena engine at {host}: {cause}")
            }
            ClientError::Daemon { message, .. } => write!(f, "Error response from daemon: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The daemon's status code, when the daemon answered with an error.
    pub fn status(err: &anyhow::Error) -> Option<u16> {
        match err.downcast_ref::<ClientError>() {
            Some(ClientError::Daemon { status, .. }) => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

/// `unix:///PATH` or `tcp://HOST[:PORT]` (port 2375 when omitted, as docker).
fn parse_host(host: &str) -> anyhow::Result<Endpoint> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            anyhow::bail!("invalid host {host:?}: unix:// needs a socket path (unix:///var/run/balena-engine.sock)");
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
        let addr = addr.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            anyhow::bail!("invalid host {host:?}: expected tcp://HOST:PORT");
        }
        let has_port = match addr.rsplit_once(':') {
            Some((h, p)) => {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
            }
            None => false,
        };
        return Ok(Endpoint::Tcp(if has_port { addr.to_owned() } else { format!("{addr}:2375") }));
    }
    anyhow::bail!("invalid host {host:?}: use unix:///PATH or tcp://HOST:PORT")
}

/// Characters escaped in a path segment; `/` stays (image names such as `localhost/app:1` travel as is,
/// as the docker CLI sends them).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// A path segment (a name the user typed) for a request path.
pub fn seg(name: &str) -> String {
    utf8_percent_encode(name, PATH).to_string()
}

/// One request to the daemon. Paths are unversioned (`/images/json`); the client adds `/vX.Y`.
pub struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Body,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    upgrade: bool,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            query: Vec::new(),
            body: empty(),
            content_type: None,
            headers: Vec::new(),
            upgrade: false,
        }
    }
    pub fn get(path: impl Into<String>) -> Req {
        Req::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>) -> Req {
        Req::new(Method::POST, path)
    }
    pub fn delete(path: impl Into<String>) -> Req {
        Req::new(Method::DELETE, path)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.headers.push((name, value.into()));
        self
    }

    pub fn query(mut self, key: &str, value: impl Into<String>) -> Req {
        self.query.push((key.to_owned(), value.into()));
        self
    }

    /// `key=value` when there is a value.
    pub fn query_opt(self, key: &str, value: Option<impl Into<String>>) -> Req {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }

    /// `key=1` when set (dockerd's booleans); nothing otherwise.
    pub fn flag(self, key: &str, on: bool) -> Req {
        if on {
            self.query(key, "1")
        } else {
            self
        }
    }

    /// `filters={"key":{"value":true}}` (the docker CLI's form) from `key=value` arguments.
    pub fn filters(self, filters: &[String]) -> anyhow::Result<Req> {
        if filters.is_empty() {
            return Ok(self);
        }
        let mut map = serde_json::Map::new();
        for f in filters {
            let (k, v) =
                f.split_once('=').ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {f}"))?;
            let entry = map.entry(k.trim().to_owned()).or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(o) = entry {
                o.insert(v.to_owned(), Value::Bool(true));
            }
        }
        Ok(self.query("filters", Value::Object(map).to_string()))
    }

    pub fn json(mut self, v: &Value) -> Req {
        self.body = Full::new(Bytes::from(v.to_string())).map_err(|never| match never {}).boxed_unsync();
        self.content_type = Some("application/json");
        self
    }

    /// A streamed body (an archive).
    pub fn stream(mut self, body: Body, content_type: &'static str) -> Req {
        self.body = body;
        self.content_type = Some(content_type);
        self
    }

    fn path_and_query(&self, version: &str) -> String {
        let mut s = format!("/v{version}{}", self.path);
        if !self.query.is_empty() {
            let q = form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.query).finish();
            s.push('?');
            s.push_str(&q);
        }
        s
    }
}

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body read from `r` in 256 KiB chunks as the connection takes them (backpressure: memory stays bounded),
/// `on_chunk` seeing each chunk's size (progress).
pub fn reader_body<R>(r: R, on_chunk: impl Fn(usize) + Send + 'static) -> Body
where
    R: AsyncRead + Send + 'static,
{
    let s = tokio_util::io::ReaderStream::with_capacity(r, 256 * 1024).map_ok(move |chunk| {
        on_chunk(chunk.len());
        Frame::data(chunk)
    });
    StreamBody::new(s).boxed_unsync()
}

/// The connection to one daemon, with the negotiated API version.
pub struct Client {
    endpoint: Endpoint,
    host: String,
    version: String,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

impl Client {
    /// A client for `host` (`unix:///…` or `tcp://…`); nothing is sent yet.
    pub fn new(host: &str) -> anyhow::Result<Client> {
        let endpoint = parse_host(host)?;
        let (a, b) = API_VERSION;
        Ok(Client { endpoint, host: host.to_owned(), version: format!("{a}.{b}") })
    }

    /// Connects and pings: the daemon's answer sets the API version (the lower of the daemon's and ours).
    pub async fn connect(host: &str) -> anyhow::Result<Client> {
        let mut c = Client::new(host)?;
        c.negotiate().await?;
        Ok(c)
    }

    /// The API version requests use.
    pub fn api_version(&self) -> &str {
        &self.version
    }

    async fn negotiate(&mut self) -> anyhow::Result<()> {
        let mut sender = self.open().await?;
        let req = Request::get("/_ping").header(header::HOST, self.host_header()).body(empty())?;
        let resp = sender.send_request(req).await.map_err(|e| self.transport_error(e))?;
        let server = resp.headers().get("api-version").and_then(|v| v.to_str().ok()).and_then(|v| {
            let (a, b) = v.trim().split_once('.')?;
            Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
        });
        if let Some(v) = server {
            let (a, b) = v.min(API_VERSION);
            self.version = format!("{a}.{b}");
        }
        // The ping's body is "OK"; read it so the connection closes cleanly.
        let _ = resp.into_body().collect().await;
        Ok(())
    }

    fn host_header(&self) -> HeaderValue {
        match &self.endpoint {
            Endpoint::Unix(_) => HeaderValue::from_static("api.moby.localhost"),
            Endpoint::Tcp(a) => HeaderValue::from_str(a).unwrap_or(HeaderValue::from_static("localhost")),
        }
    }

    fn transport_error(&self, e: hyper::Error) -> anyhow::Error {
        anyhow::Error::new(e).context(format!("talking to the balena engine at {}", self.host))
    }

    async fn open(&self) -> anyhow::Result<SendRequest<Body>> {
        let connect_error = |e: io::Error| -> anyhow::Error {
            match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    ClientError::PermissionDenied { host: self.host.clone(), cause: e }.into()
                }
                _ => ClientError::Unreachable { host: self.host.clone() }.into(),
            }
        };
        let io: Box<dyn Io> = match &self.endpoint {
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.map_err(connect_error)?),
            Endpoint::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a.as_str()).await.map_err(connect_error)?),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            // Errors surface through the request that hits them.
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Sends `req`; whatever status comes back.
    pub async fn send(&self, req: Req) -> anyhow::Result<Response<Incoming>> {
        let mut sender = self.open().await?;
        let mut b = Request::builder()
            .method(req.method.clone())
            .uri(req.path_and_query(&self.version))
            .header(header::HOST, self.host_header())
            .header(header::USER_AGENT, concat!("balena-engine-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ct) = req.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        for (k, v) in &req.headers {
            b = b.header(*k, v.as_str());
        }
        if req.upgrade {
            b = b.header(header::CONNECTION, "Upgrade").header(header::UPGRADE, "tcp");
        }
        let request = b.body(req.body).context("building the request")?;
        sender.send_request(request).await.map_err(|e| self.transport_error(e))
    }

    /// Sends `req` and turns an error status into [`ClientError::Daemon`] with the daemon's message.
    pub async fn call(&self, req: Req) -> anyhow::Result<Response<Incoming>> {
        let resp = self.send(req).await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED || status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let body = read_limited(resp.into_body(), 1 << 20).await.unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body).trim().to_owned();
                if text.is_empty() {
                    status.to_string()
                } else {
                    text
                }
            });
        Err(ClientError::Daemon { status: status.as_u16(), message }.into())
    }

    /// Sends `req` and parses its JSON answer (an empty body is `null`).
    pub async fn json(&self, req: Req) -> anyhow::Result<Value> {
        let resp = self.call(req).await?;
        body_json(resp).await
    }

    /// Sends `req` and discards the answer's body.
    pub async fn done(&self, req: Req) -> anyhow::Result<StatusCode> {
        let resp = self.call(req).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        while let Some(f) = body.frame().await {
            f?;
        }
        Ok(status)
    }

    /// Sends `req` asking to upgrade the connection (attach): `101`, then the raw stream both ways.
    pub async fn upgrade(&self, mut req: Req) -> anyhow::Result<TokioIo<hyper::upgrade::Upgraded>> {
        req.upgrade = true;
        let resp = self.call(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            anyhow::bail!("the daemon did not upgrade the connection (status {})", resp.status());
        }
        let upgraded = hyper::upgrade::on(resp).await.context("upgrading the connection")?;
        Ok(TokioIo::new(upgraded))
    }
}

/// The whole body, refused past `limit` bytes.
pub async fn read_limited(mut body: Incoming, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("reading the daemon's answer")?.into_data() {
            if out.len() + data.len() > limit {
                anyhow::bail!("the daemon's answer is larger than {limit} bytes");
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

pub async fn body_json(resp: Response<Incoming>) -> anyhow::Result<Value> {
    let bytes = read_limited(resp.into_body(), JSON_LIMIT).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).context("the daemon's answer is not JSON")
}

/// The next chunk of a response body (`None` at its end).
pub async fn next_chunk(body: &mut Incoming) -> anyhow::Result<Option<Bytes>> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(f) => {
                if let Ok(data) = f.context("reading the daemon's answer")?.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(parse_host("unix:///var/run/x.sock").unwrap(), Endpoint::Unix("/var/run/x.sock".into()));
        assert_eq!(parse_host("tcp://127.0.0.1:2376").unwrap(), Endpoint::Tcp("127.0.0.1:2376".into()));
        assert_eq!(parse_host("tcp://localhost").unwrap(), Endpoint::Tcp("localhost:2375".into()));
        assert_eq!(parse_host("tcp://[::1]:80").unwrap(), Endpoint::Tcp("[::1]:80".into()));
        assert!(parse_host("unix://").is_err());
        assert!(parse_host("/var/run/x.sock").is_err());
        assert!(parse_host("ssh://box").is_err());
    }

    #[test]
    fn requests() {
        let r = Req::get("/images/json").flag("all", true).flag("digests", false).query("filters", "{\"a\":1}");
        assert_eq!(r.path_and_query("1.45"), "/v1.45/images/json?all=1&filters=%7B%22a%22%3A1%7D");
        let r = Req::get("/containers/json")
            .filters(&["status=exited".into(), "label=a=b".into(), "status=created".into()])
            .unwrap();
        assert_eq!(r.query[0].1, r#"{"label":{"a=b":true},"status":{"created":true,"exited":true}}"#);
        assert!(Req::get("/x").filters(&["nope".into()]).is_err());
        assert_eq!(seg("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(seg("a b#c?"), "a%20b%23c%3F");
    }
}
