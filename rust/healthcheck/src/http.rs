//! `GET /_ping` over a unix socket: one request, one connection, a response of at most [`MAX_RESPONSE`]
//! bytes, every read and write bounded by the caller's deadline. Healthy means status 200 and the body
//! `OK`, whether the server sends it with a `Content-Length`, chunked, or until it closes.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

/// The whole request: HTTP/1.1 (what the engine's server speaks natively) with `Connection: close`, so
/// the server ends the exchange and no connection lingers.
pub const REQUEST: &[u8] =
    b"GET /_ping HTTP/1.1\r\nHost: balena-engine\r\nUser-Agent: balena-engine-healthcheck\r\nConnection: close\r\n\r\n";
/// A `/_ping` response is a few hundred bytes; anything past this is not the engine.
pub const MAX_RESPONSE: usize = 16 * 1024;

#[derive(Debug)]
pub enum PingError {
    Connect(io::Error),
    Send(io::Error),
    Receive(io::Error),
    TimedOut(&'static str),
    Malformed(String),
    Status(u16),
    Body(String),
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingError::Connect(e) => write!(f, "cannot connect: {e}"),
            PingError::Send(e) => write!(f, "sending GET /_ping: {e}"),
            PingError::Receive(e) => write!(f, "reading the answer to GET /_ping: {e}"),
            PingError::TimedOut(what) => write!(f, "timed out {what}"),
            PingError::Malformed(m) => write!(f, "malformed answer to GET /_ping: {m}"),
            PingError::Status(s) => write!(f, "GET /_ping answered status {s}"),
            PingError::Body(b) => write!(f, "GET /_ping answered {b:?} instead of \"OK\""),
        }
    }
}

impl std::error::Error for PingError {}

/// Pings the engine on `socket`; every step must finish before `deadline`.
///
/// `connect(2)` on a unix socket has no timeout of its own: it blocks only while the listener's backlog is
/// full (a hung engine that stopped accepting). The binary bounds that with its own timer.
pub fn ping(socket: &Path, deadline: Instant) -> Result<(), PingError> {
    let mut stream = UnixStream::connect(socket).map_err(PingError::Connect)?;
    stream.set_write_timeout(Some(remaining(deadline, "connecting")?)).map_err(PingError::Send)?;
    stream.write_all(REQUEST).map_err(|e| io_error(e, "sending the request", PingError::Send))?;
    let mut raw = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        stream.set_read_timeout(Some(remaining(deadline, "waiting for the answer")?)).map_err(PingError::Receive)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e, "waiting for the answer", PingError::Receive)),
        };
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_RESPONSE {
            return Err(PingError::Malformed(format!("more than {MAX_RESPONSE} bytes")));
        }
        match parse(&raw, n == 0)? {
            Parsed::Incomplete => {}
            Parsed::Complete { status, body } => return judge(status, &body),
        }
    }
}

/// What the bytes so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    /// A non-200 status completes the response at once: its body does not matter.
    Complete { status: u16, body: Vec<u8> },
}

/// Parses a response received so far; `eof` says the server closed the connection.
pub fn parse(raw: &[u8], eof: bool) -> Result<Parsed, PingError> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return match eof {
            true if raw.is_empty() => Err(PingError::Malformed("connection closed without an answer".into())),
            true => Err(PingError::Malformed("connection closed in the middle of the headers".into())),
            false => Ok(Parsed::Incomplete),
        };
    };
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| PingError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| PingError::Malformed(format!("status line {:?}", truncate(status_line))))?;
    if status != 200 {
        return Ok(Parsed::Complete { status, body: Vec::new() });
    }
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| PingError::Malformed(format!("Content-Length {value:?}")))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = &raw[head_end + 4..];
    let done = |body: &[u8]| Ok(Parsed::Complete { status, body: body.to_vec() });
    if chunked {
        return match dechunk(body)? {
            Some(b) => Ok(Parsed::Complete { status, body: b }),
            None if eof => Err(PingError::Malformed("connection closed in the middle of a chunked body".into())),
            None => Ok(Parsed::Incomplete),
        };
    }
    match length {
        Some(n) if body.len() >= n => done(&body[..n]),
        Some(_) if eof => Err(PingError::Malformed("connection closed before the end of the body".into())),
        Some(_) => Ok(Parsed::Incomplete),
        None if eof => done(body),
        None => Ok(Parsed::Incomplete),
    }
}

/// The body of a chunked encoding, if complete (extensions and trailers are ignored).
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>, PingError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(raw, b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&raw[..eol]).map_err(|_| PingError::Malformed("chunk size is not UTF-8".into()))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| PingError::Malformed(format!("chunk size {:?}", truncate(line))))?;
        if size == 0 {
            return Ok(Some(body));
        }
        let data = eol + 2;
        // `raw` is at most MAX_RESPONSE bytes: no overflow.
        if raw.len() < data + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[data..data + size]);
        raw = &raw[data + size + 2..];
    }
}

fn judge(status: u16, body: &[u8]) -> Result<(), PingError> {
    if status != 200 {
        return Err(PingError::Status(status));
    }
    if body != b"OK" {
        return Err(PingError::Body(truncate(&String::from_utf8_lossy(body)).to_owned()));
    }
    Ok(())
}

fn remaining(deadline: Instant, what: &'static str) -> Result<std::time::Duration, PingError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(PingError::TimedOut(what));
    }
    Ok(left)
}

/// Socket timeouts surface as `WouldBlock` (EAGAIN) on Linux.
fn io_error(e: io::Error, what: &'static str, wrap: fn(io::Error) -> PingError) -> PingError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PingError::TimedOut(what),
        _ => wrap(e),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> (u16, Vec<u8>) {
        match parse(raw, false).unwrap() {
            Parsed::Complete { status, body } => (status, body),
            Parsed::Incomplete => panic!("incomplete: {}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn content_length_completes_without_waiting_for_close() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nOK";
        assert_eq!(complete(raw), (200, b"OK".to_vec()));
        assert_eq!(parse(&raw[..raw.len() - 1], false).unwrap(), Parsed::Incomplete);
        assert!(parse(&raw[..raw.len() - 1], true).is_err());
    }

    #[test]
    fn chunked_and_close_delimited_bodies() {
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n"), (200, b"OK".to_vec()));
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\nO\r\n1\r\nK\r\n0\r\n\r\n"), (200, b"OK".to_vec()));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n", false).unwrap(), Parsed::Incomplete);
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\n\r\nOK", false).unwrap(), Parsed::Incomplete);
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\n\r\nOK", true).unwrap(), Parsed::Complete { status: 200, body: b"OK".to_vec() });
    }

    #[test]
    fn non_200_is_complete_at_the_headers() {
        assert_eq!(complete(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1000\r\n\r\n"), (500, vec![]));
        assert!(matches!(judge(500, b""), Err(PingError::Status(500))));
        assert!(matches!(judge(200, b"NO"), Err(PingError::Body(_))));
        assert!(judge(200, b"OK").is_ok());
    }

    #[test]
    fn garbage_is_malformed() {
        for raw in [&b"SSH-2.0-OpenSSH\r\n\r\n"[..], b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"] {
            assert!(matches!(parse(raw, true), Err(PingError::Malformed(_))), "{}", String::from_utf8_lossy(raw));
        }
        assert!(matches!(parse(b"", true), Err(PingError::Malformed(m)) if m.contains("without an answer")));
    }
}
