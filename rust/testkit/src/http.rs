//! A tiny blocking HTTP/1.1 client on `std::net`, enough for tests to talk to a local registry or to a
//! [`FaultProxy`](crate::fault_proxy::FaultProxy) and to see exactly what arrived: a response cut short is
//! returned with `complete == false` instead of an error, so a test can count the bytes it got.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Upper bound of a response head (status line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// A response as received.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Header names and values in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as far as it arrived (chunked framing removed).
    pub body: Vec<u8>,
    /// False when the connection ended before the body was complete.
    pub complete: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection to `addr` ("127.0.0.1:PORT"), sending requests one after another.
pub struct Conn {
    host: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connects with a read/write timeout of 30 s.
    pub fn connect(addr: &str) -> io::Result<Conn> {
        Conn::connect_timeout(addr, Duration::from_secs(30))
    }

    pub fn connect_timeout(addr: &str, timeout: Duration) -> io::Result<Conn> {
        let sa = addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        let stream = TcpStream::connect_timeout(&sa, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn { host: addr.to_string(), reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends one request and reads its response. `Host` is added unless `headers` has one; a body is sent with
    /// `Content-Length`. Errors only when no response head could be read.
    pub fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Response> {
        let req = format_request(&self.host, method, target, headers, body);
        self.writer.write_all(&req)?;
        read_response(&mut self.reader, method.eq_ignore_ascii_case("HEAD"))
    }
}

/// One request on a fresh connection with `Connection: close`.
pub fn request(addr: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Response> {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        h.push(("Connection", "close"));
    }
    Conn::connect(addr)?.send(method, target, &h, body)
}

/// `GET target` on a fresh connection.
pub fn get(addr: &str, target: &str) -> io::Result<Response> {
    request(addr, "GET", target, &[], &[])
}

/// The bytes of a request: request line, `Host` (unless given), the headers, `Content-Length` when there is
/// a body or the method usually has one, and the body.
pub fn format_request(host: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads one response (skipping 1xx interim responses) from `r`. The body is framed by `Transfer-Encoding:
/// chunked`, `Content-Length` or the end of the stream; `head_request` means there is none.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<Response> {
    loop {
        let lines = read_head(r)?.ok_or_else(|| eof("connection closed before a response"))?;
        let status_line = &lines[0];
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")))?;
        let headers = parse_headers(&lines[1..])?;
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = Response { status, headers, body: Vec::new(), complete: true };
        if head_request || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.complete = read_chunked(r, &mut resp.body)?;
        } else if let Some(len) = resp.header("content-length") {
            let len: u64 =
                len.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
            r.take(len).read_to_end(&mut resp.body).or_else(tolerate_cut)?;
            resp.complete = resp.body.len() as u64 == len;
        } else {
            r.read_to_end(&mut resp.body).or_else(tolerate_cut)?;
        }
        return Ok(resp);
    }
}

/// A connection reset mid-body counts as a short body, not as a failed request.
fn tolerate_cut(e: io::Error) -> io::Result<usize> {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => Ok(0),
        _ => Err(e),
    }
}

fn eof(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.to_string())
}

/// Reads a head (start line and header lines, without the final empty line). `None` on a clean end of the
/// stream before its first byte.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.by_ref().take((MAX_HEAD - total + 1) as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return if lines.is_empty() && total == 0 { Ok(None) } else { Err(eof("connection closed in a head")) };
        }
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        if !line.ends_with(b"\n") {
            return Err(eof("connection closed in a head"));
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if lines.is_empty() {
                continue; // tolerated: an empty line before the start line
            }
            return Ok(Some(lines));
        }
        let line = String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "head not UTF-8"))?;
        lines.push(line);
    }
}

/// `Name: value` lines into pairs.
pub fn parse_headers(lines: &[String]) -> io::Result<Vec<(String, String)>> {
    lines
        .iter()
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad header line {l:?}")))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Parses a chunk-size line ("1a2b;ext=1").
pub fn parse_chunk_size(line: &str) -> io::Result<u64> {
    let hex = line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))
}

/// Decodes a chunked body into `out`; false when the stream ended early.
fn read_chunked(r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let mut line = String::new();
        if r.by_ref().take(4096).read_line(&mut line).or_else(tolerate_cut)? == 0 || !line.ends_with('\n') {
            return Ok(false);
        }
        let size = parse_chunk_size(&line)?;
        if size == 0 {
            // trailers up to the empty line
            loop {
                let mut t = String::new();
                if r.by_ref().take(4096).read_line(&mut t).or_else(tolerate_cut)? == 0 {
                    return Ok(true);
                }
                if t.trim().is_empty() {
                    return Ok(true);
                }
            }
        }
        let got = r.by_ref().take(size).read_to_end(out).or_else(tolerate_cut)?;
        if (got as u64) < size {
            return Ok(false);
        }
        let mut crlf = [0u8; 2];
        if r.read_exact(&mut crlf).is_err() {
            return Ok(false);
        }
    }
}

/// Standard base64 (for `Authorization: Basic`).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn parses_chunked_and_cut_responses() {
        let raw = concat!(
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
        )
        .as_bytes();
        let r = read_response(&mut &raw[..], false).unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.complete), (200, &b"abcde"[..], true));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let r = read_response(&mut &raw[..], false).unwrap();
        assert_eq!((r.body.as_slice(), r.complete), (&b"abc"[..], false));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        let r = read_response(&mut &raw[..], false).unwrap();
        assert_eq!((r.body.as_slice(), r.complete), (&b"ab"[..], false));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let r = read_response(&mut &raw[..], true).unwrap();
        assert!(r.body.is_empty() && r.complete);
        assert!(read_response(&mut &b"garbage\r\n\r\n"[..], false).is_err());
    }
}
