//! A fault-injecting HTTP/1.1 reverse proxy for registry tests: listens on `127.0.0.1`, forwards every request
//! to one plain-HTTP upstream (`host:port` on loopback) and counts the response body bytes it forwards. Faults
//! are [`Rule`]s added at run time; each applies to the first request(s) that match it.
//!
//! It speaks HTTP/1.1 framing (request bodies by `Content-Length` or chunked, responses by `Content-Length`,
//! chunked or the end of the connection), keeps client connections alive with one upstream connection per
//! client connection, answers `Expect: 100-continue` itself, and rewrites `Location` headers that point at the
//! upstream so that they point at the proxy. Blocking IO, one thread per connection; dropping the proxy
//! closes its listener and every connection and joins its threads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::http::{parse_chunk_size, parse_headers, read_head};

/// A client connection idle longer than this is closed; an upstream silent this long fails the request.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
const BUF: usize = 64 * 1024;

/// What to do to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward the response head and the first `n` body bytes, then close the connection (a FIN, no reset);
    /// a response not longer than `n` is forwarded whole, and the connection closed all the same.
    CutAfter(u64),
    /// After `after` body bytes, send nothing for `for_` (the socket stays open), then close the connection
    /// (a response shorter than `after` is forwarded whole, without the stall, and the connection closed).
    Stall { after: u64, for_: Duration },
    /// Drop the request's `Range` (and `If-Range`) header: the upstream answers 200 with the whole body.
    IgnoreRange,
    /// Flip the body byte at this offset (XOR 0xff); the length is kept.
    FlipByte(u64),
    /// Answer this status with a small JSON body without contacting the upstream (401 comes with
    /// `WWW-Authenticate: Basic realm="x"`).
    Status(u16),
    /// Answer 307 with `Location: PREFIX + the request's path and query`.
    RedirectTo(String),
    /// Answer 200 with 1 KiB of random bytes (`Content-Length` set; a manifest's content type for manifest paths).
    Garbage,
}

/// A fault for the requests whose target (path and query) contains `path_contains` and, if set, whose method
/// is `method`; applied `times` times (`None`: forever), to the first matching requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub path_contains: String,
    pub method: Option<String>,
    pub times: Option<u32>,
    pub fault: Fault,
}

impl Rule {
    /// `fault` once, for any method.
    pub fn new(path_contains: impl Into<String>, fault: Fault) -> Rule {
        Rule { path_contains: path_contains.into(), method: None, times: Some(1), fault }
    }

    /// Only for requests with this method.
    pub fn method(mut self, method: impl Into<String>) -> Rule {
        self.method = Some(method.into());
        self
    }

    /// For the first `n` matching requests.
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }

    /// For every matching request.
    pub fn forever(mut self) -> Rule {
        self.times = None;
        self
    }
}

struct Shared {
    upstream: String,
    upstream_addr: SocketAddr,
    proxy_addr: String,
    stop: AtomicBool,
    rules: Mutex<Vec<Rule>>,
    bytes: AtomicU64,
    log: Mutex<Vec<(String, String, u16)>>,
    /// Method and target of each request that carried an `Authorization` header.
    authorized: Mutex<Vec<(String, String)>>,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Tracks a socket so that stopping can shut it down; shut at once if already stopping.
    fn register(&self, s: &TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conns = locked(&self.conns);
        if let Ok(c) = s.try_clone() {
            if self.stop.load(Ordering::SeqCst) {
                let _ = c.shutdown(Shutdown::Both);
            }
            conns.insert(id, c);
        }
        id
    }

    fn unregister(&self, id: u64) {
        if let Some(s) = locked(&self.conns).remove(&id) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn take_fault(&self, method: &str, target: &str) -> Option<Fault> {
        let mut rules = locked(&self.rules);
        rules.retain(|r| r.times != Some(0));
        let i = rules.iter().position(|r| {
            target.contains(&r.path_contains) && r.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        let fault = rules[i].fault.clone();
        if let Some(n) = &mut rules[i].times {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(fault)
    }

    fn record(&self, method: &str, target: &str, status: u16) {
        locked(&self.log).push((method.to_string(), target.to_string(), status));
    }

    /// Sleeps `d` or until stopping.
    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

/// The proxy; stops on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on `127.0.0.1:0` in front of `upstream` (`host:port`, loopback); panics on failure.
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::bind("127.0.0.1:0", upstream).unwrap_or_else(|e| panic!("fault proxy for {upstream}: {e}"))
    }

    /// A proxy listening on `listen` (a loopback `ip:port`) in front of `upstream` (`host:port`, loopback).
    pub fn bind(listen: &str, upstream: &str) -> io::Result<FaultProxy> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let listen_addr: SocketAddr = listen.parse().map_err(|e| invalid(format!("listen address {listen}: {e}")))?;
        if !listen_addr.ip().is_loopback() {
            return Err(invalid(format!("listen address {listen} is not loopback")));
        }
        let upstream_addr = upstream
            .to_socket_addrs()?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| invalid(format!("upstream {upstream} is not a loopback address")))?;
        let listener = TcpListener::bind(listen_addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            upstream_addr,
            proxy_addr: addr.to_string(),
            stop: AtomicBool::new(false),
            rules: Mutex::new(Vec::new()),
            bytes: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            authorized: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept =
            thread::Builder::new().name("fault-proxy-accept".into()).spawn(move || accept_loop(&s, listener))?;
        Ok(FaultProxy { shared, addr, accept: Some(accept) })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The upstream `host:port`.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Adds a rule after those already there (the first matching rule applies).
    pub fn add_rule(&self, rule: Rule) {
        locked(&self.shared.rules).push(rule);
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        locked(&self.shared.rules).clear();
    }

    /// The rules not yet used up.
    pub fn rules(&self) -> Vec<Rule> {
        locked(&self.shared.rules).iter().filter(|r| r.times != Some(0)).cloned().collect()
    }

    /// Response body bytes forwarded from the upstream to clients (payload, without chunk framing; answers
    /// made by the proxy itself are not counted).
    pub fn body_bytes_forwarded(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Every request answered so far: method, target (path and query) and the status sent to the client
    /// (502 when the upstream failed before its response head).
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        locked(&self.shared.log).clone()
    }

    /// The requests (method, target) that carried an `Authorization` header, whatever was answered.
    pub fn authorized_requests(&self) -> Vec<(String, String)> {
        locked(&self.shared.authorized).clone()
    }

    /// Zeroes the byte counter and empties the request logs.
    pub fn reset_counters(&self) {
        self.shared.bytes.store(0, Ordering::SeqCst);
        locked(&self.shared.log).clear();
        locked(&self.shared.authorized).clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for (_, s) in locked(&self.shared.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let workers: Vec<_> = locked(&self.shared.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else {
            thread::sleep(Duration::from_millis(10)); // e.g. EMFILE: do not spin
            continue;
        };
        let s = shared.clone();
        let spawned = thread::Builder::new().name("fault-proxy-conn".into()).spawn(move || serve_client(&s, conn));
        let mut workers = locked(&shared.workers);
        workers.retain(|w| !w.is_finished());
        if let Ok(w) = spawned {
            workers.push(w);
        }
    }
}

struct Upstream {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    id: u64,
    /// Whether it has carried a request already (a reused connection may have been closed by the upstream).
    used: bool,
}

impl Upstream {
    fn connect(shared: &Shared) -> io::Result<Upstream> {
        let s = TcpStream::connect_timeout(&shared.upstream_addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        let id = shared.register(&s);
        Ok(Upstream { reader: BufReader::with_capacity(BUF, s.try_clone()?), writer: s, id, used: false })
    }
}

/// What happens to the client connection after a request.
enum Next {
    KeepAlive,
    Close,
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn serve_client(shared: &Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let id = shared.register(&stream);
    let Ok(reader) = stream.try_clone() else {
        shared.unregister(id);
        return;
    };
    let mut client = Client { reader: BufReader::with_capacity(BUF, reader), writer: stream };
    let mut up: Option<Upstream> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let head = match read_head(&mut client.reader) {
            Ok(Some(h)) => h,
            _ => break,
        };
        match handle(shared, &head, &mut client, &mut up) {
            Ok(Next::KeepAlive) => continue,
            Ok(Next::Close) | Err(_) => break,
        }
    }
    if let Some(u) = up.take() {
        shared.unregister(u.id);
    }
    shared.unregister(id);
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn request_framing(headers: &[(String, String)]) -> io::Result<Framing> {
    if let Some(te) = header(headers, "transfer-encoding") {
        return if te.to_ascii_lowercase().trim_end().ends_with("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "unsupported Transfer-Encoding"))
        };
    }
    match header(headers, "content-length") {
        Some(v) => v
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length")),
        None => Ok(Framing::None),
    }
}

fn response_framing(method: &str, status: u16, headers: &[(String, String)]) -> Framing {
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::None;
    }
    if header(headers, "transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        return Framing::Chunked;
    }
    match header(headers, "content-length").and_then(|v| v.trim().parse().ok()) {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    }
}

fn format_head(start: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = String::with_capacity(256);
    s.push_str(start);
    s.push_str("\r\n");
    for (k, v) in headers {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    }
}

/// Copies a request body from the client to `out` (`io::sink()` to discard it), keeping its framing.
fn copy_request_body(framing: Framing, from: &mut BufReader<TcpStream>, out: &mut impl Write) -> io::Result<()> {
    match framing {
        Framing::None | Framing::UntilClose => Ok(()),
        Framing::Length(n) => {
            let copied = io::copy(&mut from.by_ref().take(n), out)?;
            if copied < n {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request body cut short"));
            }
            Ok(())
        }
        Framing::Chunked => loop {
            let line = read_line(from)?;
            out.write_all(line.as_bytes())?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                loop {
                    let t = read_line(from)?;
                    out.write_all(t.as_bytes())?;
                    if t.trim().is_empty() {
                        return Ok(());
                    }
                }
            }
            let copied = io::copy(&mut from.by_ref().take(size + 2), out)?;
            if copied < size + 2 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request chunk cut short"));
            }
        },
    }
}

/// One line including its "\r\n" (at most 4 KiB).
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    r.by_ref().take(4096).read_line(&mut line)?;
    if !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "line cut short or too long"));
    }
    Ok(line)
}

/// A request as read from the client (its body still to come).
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    framing: Framing,
    keep_alive: bool,
}

/// Answers a request locally (Status, RedirectTo, Garbage).
fn answer_locally(shared: &Shared, fault: &Fault, req: &Request, client: &mut Client) -> io::Result<Next> {
    let (method, target) = (req.method.as_str(), req.target.as_str());
    // A client waiting for "100 Continue" does not send its body: answer and close instead of reading it.
    let keep_alive = if has_token(&req.headers, "expect", "100-continue") {
        false
    } else {
        copy_request_body(req.framing, &mut client.reader, &mut io::sink())?;
        req.keep_alive
    };
    let mut h: Vec<(String, String)> = Vec::new();
    let (status, body) = match fault {
        Fault::Status(code) => {
            if *code == 401 {
                h.push(("WWW-Authenticate".into(), "Basic realm=\"x\"".into()));
            }
            h.push(("Content-Type".into(), "application/json".into()));
            let body =
                format!("{{\"errors\":[{{\"code\":\"FAULT\",\"message\":\"status {code} from the fault proxy\"}}]}}\n");
            (*code, body.into_bytes())
        }
        Fault::RedirectTo(prefix) => {
            h.push(("Location".into(), format!("{prefix}{target}")));
            (307, Vec::new())
        }
        Fault::Garbage => {
            let ct = if target.contains("/manifests/") {
                "application/vnd.docker.distribution.manifest.v2+json"
            } else {
                "application/octet-stream"
            };
            h.push(("Content-Type".into(), ct.into()));
            let seed = shared.next_id.fetch_add(1, Ordering::Relaxed) ^ 0x6a72_6261_6765;
            (200, crate::noise(seed, 1024))
        }
        _ => unreachable!("forwarded faults"),
    };
    h.push(("Docker-Distribution-Api-Version".into(), "registry/2.0".into()));
    let body = if method.eq_ignore_ascii_case("HEAD") { Vec::new() } else { body };
    h.push(("Content-Length".into(), body.len().to_string()));
    if !keep_alive {
        h.push(("Connection".into(), "close".into()));
    }
    let mut out = format_head(&format!("HTTP/1.1 {status} {}", reason(status)), &h);
    out.extend_from_slice(&body);
    shared.record(method, target, status);
    client.writer.write_all(&out)?;
    Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
}

fn bad_gateway(shared: &Shared, method: &str, target: &str, client: &mut Client, why: &str) -> io::Result<Next> {
    let body = format!("fault proxy: upstream {}: {why}\n", shared.upstream);
    let mut out = format_head(
        "HTTP/1.1 502 Bad Gateway",
        &[
            ("Content-Type".into(), "text/plain".into()),
            ("Content-Length".into(), body.len().to_string()),
            ("Connection".into(), "close".into()),
        ],
    );
    out.extend_from_slice(body.as_bytes());
    shared.record(method, target, 502);
    client.writer.write_all(&out)?;
    Ok(Next::Close)
}

fn handle(shared: &Arc<Shared>, head: &[String], client: &mut Client, up: &mut Option<Upstream>) -> io::Result<Next> {
    let mut parts = head[0].split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") => (m.to_string(), t.to_string(), v.to_string()),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request line")),
    };
    let headers = parse_headers(&head[1..])?;
    if header(&headers, "authorization").is_some() {
        locked(&shared.authorized).push((method.clone(), target.clone()));
    }
    let framing = request_framing(&headers)?;
    let keep_alive = if version == "HTTP/1.0" {
        has_token(&headers, "connection", "keep-alive")
    } else {
        !has_token(&headers, "connection", "close")
    };
    let fault = shared.take_fault(&method, &target);
    let req = Request { method, target, headers, framing, keep_alive };
    if let Some(f @ (Fault::Status(_) | Fault::RedirectTo(_) | Fault::Garbage)) = &fault {
        return answer_locally(shared, f, &req, client);
    }
    let Request { method, target, mut headers, .. } = req;
    if fault == Some(Fault::IgnoreRange) {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("range") && !k.eq_ignore_ascii_case("if-range"));
    }
    // "100 Continue" comes from here; the upstream gets the body without waiting.
    if has_token(&headers, "expect", "100-continue") {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("expect"));
        client.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let req_head = format_head(&format!("{method} {target} {version}"), &headers);

    // Send the request; a reused upstream connection that turns out closed is replaced once (bodiless
    // requests only: a body cannot be read twice).
    let mut attempt = 0;
    let (status_line, mut resp_headers) = loop {
        attempt += 1;
        if up.is_none() {
            match Upstream::connect(shared) {
                Ok(u) => *up = Some(u),
                Err(e) => {
                    copy_request_body(framing, &mut client.reader, &mut io::sink())?;
                    return bad_gateway(shared, &method, &target, client, &e.to_string());
                }
            }
        }
        let u = up.as_mut().expect("upstream");
        let reused = u.used;
        u.used = true;
        let sent = u.writer.write_all(&req_head);
        let sent = match sent {
            Ok(()) => copy_request_body(framing, &mut client.reader, &mut u.writer).map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };
        let got = match sent {
            Ok(()) => read_response_head(&mut u.reader),
            Err((e, true)) => return Err(e), // the client's body failed: nothing sensible to answer
            Err((e, false)) => Err(e),
        };
        match got {
            Ok(h) => break h,
            Err(e) => {
                shared.unregister(u.id);
                *up = None;
                if reused && attempt == 1 && framing == Framing::None {
                    continue;
                }
                return bad_gateway(shared, &method, &target, client, &e.to_string());
            }
        }
    };
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(502);
    let upstream_prefix = format!("http://{}", shared.upstream);
    for (k, v) in resp_headers.iter_mut() {
        if k.eq_ignore_ascii_case("location") {
            if let Some(rest) = v.strip_prefix(&upstream_prefix) {
                *v = format!("http://{}{rest}", shared.proxy_addr);
            }
        }
    }
    let rframing = response_framing(&method, status, &resp_headers);
    let upstream_closes = has_token(&resp_headers, "connection", "close")
        || (status_line.starts_with("HTTP/1.0") && !has_token(&resp_headers, "connection", "keep-alive"))
        || rframing == Framing::UntilClose;
    // Recorded (and counted, below) before the client can see it, so that a test reads them after its response.
    shared.record(&method, &target, status);
    client.writer.write_all(&format_head(&status_line, &resp_headers))?;

    let u = up.as_mut().expect("upstream");
    let mut body = BodyFault::new(fault);
    let outcome = forward_body(shared, rframing, &mut u.reader, &mut client.writer, &mut body);
    match outcome {
        Ok(true) if !upstream_closes => Ok(if keep_alive { Next::KeepAlive } else { Next::Close }),
        Ok(true) => {
            shared.unregister(u.id);
            *up = None;
            Ok(Next::Close)
        }
        // Cut by a fault, or an IO failure on either side: the response is incomplete, both go.
        Ok(false) | Err(_) => {
            let _ = client.writer.flush();
            let _ = client.writer.shutdown(Shutdown::Both);
            shared.unregister(u.id);
            *up = None;
            Ok(Next::Close)
        }
    }
}

/// The response head (skipping 1xx interim responses: the proxy answered "100 Continue" itself).
fn read_response_head(r: &mut BufReader<TcpStream>) -> io::Result<(String, Vec<(String, String)>)> {
    for _ in 0..16 {
        let lines = read_head(r)?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed"))?;
        if !lines[0].starts_with("HTTP/1.") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {:?}", lines[0])));
        }
        let status: u16 = lines[0]
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {:?}", lines[0])))?;
        if status == 101 {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "protocol upgrades are not proxied"));
        }
        if (100..200).contains(&status) {
            continue;
        }
        return Ok((lines[0].clone(), parse_headers(&lines[1..])?));
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "too many interim responses"))
}

/// The fault applied to a response body as it streams, by payload offset.
struct BodyFault {
    fault: Option<Fault>,
    pos: u64,
}

impl BodyFault {
    fn new(fault: Option<Fault>) -> BodyFault {
        BodyFault { fault, pos: 0 }
    }

    /// The offset at which the body stops (CutAfter, Stall).
    fn limit(&self) -> Option<u64> {
        match self.fault {
            Some(Fault::CutAfter(n)) | Some(Fault::Stall { after: n, .. }) => Some(n),
            _ => None,
        }
    }

    /// At the limit: stalls if asked, and says to stop.
    fn at_limit(&self, shared: &Shared, out: &mut TcpStream) -> bool {
        match (&self.fault, self.limit()) {
            (Some(Fault::Stall { for_, .. }), Some(l)) if self.pos >= l => {
                let _ = out.flush();
                shared.sleep(*for_);
                true
            }
            (_, Some(l)) => self.pos >= l,
            _ => false,
        }
    }

    /// Writes `data` (faults applied); false when the body must stop here.
    fn emit(&mut self, shared: &Shared, out: &mut TcpStream, data: &mut [u8]) -> io::Result<bool> {
        if self.at_limit(shared, out) {
            return Ok(false);
        }
        let len = data.len() as u64;
        if let Some(Fault::FlipByte(off)) = self.fault {
            if off >= self.pos && off < self.pos + len {
                data[(off - self.pos) as usize] ^= 0xff;
            }
        }
        let take = self.limit().map_or(len, |l| len.min(l - self.pos)) as usize;
        shared.bytes.fetch_add(take as u64, Ordering::SeqCst);
        if let Err(e) = out.write_all(&data[..take]) {
            shared.bytes.fetch_sub(take as u64, Ordering::SeqCst);
            return Err(e);
        }
        self.pos += take as u64;
        if (take as u64) < len {
            self.at_limit(shared, out);
            return Ok(false);
        }
        Ok(true)
    }
}

/// Streams a response body; true when it was forwarded whole, false when a fault cut it.
fn forward_body(
    shared: &Shared,
    framing: Framing,
    from: &mut BufReader<TcpStream>,
    to: &mut TcpStream,
    fault: &mut BodyFault,
) -> io::Result<bool> {
    let mut buf = vec![0u8; BUF];
    let whole = match framing {
        Framing::None => true,
        Framing::Length(n) => copy_body(shared, Some(n), from, to, fault, &mut buf)?,
        Framing::UntilClose => copy_body(shared, None, from, to, fault, &mut buf)?,
        Framing::Chunked => loop {
            let line = read_line(from)?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                to.write_all(b"0\r\n")?;
                loop {
                    let t = read_line(from)?;
                    to.write_all(t.as_bytes())?;
                    if t.trim().is_empty() {
                        break;
                    }
                }
                break true;
            }
            to.write_all(format!("{size:x}\r\n").as_bytes())?;
            if !copy_body(shared, Some(size), from, to, fault, &mut buf)? {
                break false;
            }
            let mut crlf = [0u8; 2];
            from.read_exact(&mut crlf)?;
            to.write_all(b"\r\n")?;
        },
    };
    // CutAfter and Stall end the connection even when the body was not longer than their offset (a Stall
    // whose offset is the body's end stalls there).
    if whole && fault.limit().is_some() {
        fault.at_limit(shared, to);
        return Ok(false);
    }
    Ok(whole)
}

/// Copies `n` payload bytes (`None`: up to the end of the stream) through the fault; false when cut.
fn copy_body(
    shared: &Shared,
    n: Option<u64>,
    from: &mut BufReader<TcpStream>,
    to: &mut TcpStream,
    fault: &mut BodyFault,
    buf: &mut [u8],
) -> io::Result<bool> {
    let mut left = n;
    loop {
        if left == Some(0) {
            return Ok(true);
        }
        let want = left.map_or(buf.len(), |l| l.min(buf.len() as u64) as usize);
        let got = from.read(&mut buf[..want])?;
        if got == 0 {
            return if left.is_none() {
                Ok(true)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upstream body cut short"))
            };
        }
        if !fault.emit(shared, to, &mut buf[..got])? {
            return Ok(false);
        }
        if let Some(l) = &mut left {
            *l -= got as u64;
        }
    }
}
