//! docker's two stream formats: the JSON message stream (`{"stream":…}`, `{"status":…}`, errors as
//! `{"errorDetail":…}`; load, delta) and the multiplexed stream of logs and attach (frames with an 8-byte
//! header: stream type, three zero bytes, payload size as a big-endian u32). Both are decoded as the bytes
//! arrive, in bounded memory.

use std::io::{self, Write};

use anyhow::bail;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::next_chunk;

/// A JSON message longer than this is refused (docker's messages are a few hundred bytes).
const MAX_LINE: usize = 16 << 20;

/// Splits a body into lines (`\n`, `\r\n`), each at most [`MAX_LINE`] bytes.
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    pub fn new(body: Incoming) -> Lines {
        Lines { body, buf: Vec::new(), done: false }
    }

    /// The next non-empty line, without its end of line.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.done {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            match next_chunk(&mut self.body).await? {
                Some(chunk) => {
                    self.buf.extend_from_slice(&chunk);
                    if self.buf.len() > MAX_LINE && !self.buf.contains(&b'\n') {
                        bail!("the daemon sent a message longer than {MAX_LINE} bytes");
                    }
                }
                None => self.done = true,
            }
        }
    }
}

impl Lines {
    /// The next line as a JSON message.
    pub async fn next_json(&mut self) -> anyhow::Result<Option<Value>> {
        let Some(line) = self.next().await? else { return Ok(None) };
        match serde_json::from_slice(&line) {
            Ok(v) => Ok(Some(v)),
            Err(_) => bail!("unexpected answer from the daemon: {}", String::from_utf8_lossy(&line)),
        }
    }
}

/// What one JSON message asks the terminal to show.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// Output text (`stream`), printed as is.
    Text(String),
    /// A status line (`status`, with `id: ` before it when the message is about one item).
    Status { id: Option<String>, status: String, progress: bool },
    /// The operation failed (`errorDetail` / `error`).
    Error(String),
    /// Anything else (`aux`, …).
    Other,
}

pub fn classify(v: &Value) -> Message {
    if let Some(msg) = v["errorDetail"]["message"].as_str().or_else(|| v["error"].as_str()) {
        return Message::Error(msg.to_owned());
    }
    if let Some(s) = v["stream"].as_str() {
        return Message::Text(s.to_owned());
    }
    if let Some(s) = v["status"].as_str() {
        let id = v["id"].as_str().filter(|i| !i.is_empty()).map(str::to_owned);
        let progress = v.get("progressDetail").is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
            || v.get("progress").is_some();
        return Message::Status { id, status: s.to_owned(), progress };
    }
    Message::Other
}

/// Prints a JSON message stream: `stream` text and status lines to stdout, per-item status lines (progress
/// of one layer) to stderr; an `errorDetail` ends it with that error. Returns the status lines.
pub async fn print_messages(body: Incoming) -> anyhow::Result<Vec<String>> {
    let mut lines = Lines::new(body);
    let mut statuses = Vec::new();
    let stdout = io::stdout();
    while let Some(v) = lines.next_json().await? {
        match classify(&v) {
            Message::Error(m) => bail!("{m}"),
            Message::Text(t) => {
                let mut out = stdout.lock();
                out.write_all(t.as_bytes())?;
                out.flush()?;
            }
            Message::Status { id: Some(id), status, progress } => {
                if !progress {
                    eprintln!("{id}: {status}");
                }
            }
            Message::Status { id: None, status, .. } => {
                println!("{status}");
                statuses.push(status);
            }
            Message::Other => {}
        }
    }
    Ok(statuses)
}

/// Shows a pull's or push's JSON message stream through `bars` (bars per layer on a terminal); an
/// `errorDetail` ends it with that error.
pub async fn show_progress(body: Incoming, bars: &crate::progress::LayerBars) -> anyhow::Result<()> {
    let mut lines = Lines::new(body);
    while let Some(v) = lines.next_json().await? {
        match classify(&v) {
            Message::Error(m) => bail!("{m}"),
            Message::Text(t) => print!("{t}"),
            Message::Status { id: Some(id), status, progress: true } => {
                let n = |k: &str| v["progressDetail"][k].as_u64().unwrap_or(0);
                bars.progress(&id, &status, n("current"), n("total"));
            }
            Message::Status { id, status, .. } => bars.status(id.as_deref(), &status),
            Message::Other => {}
        }
    }
    Ok(())
}

/// Stream types of the multiplexed stream.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const SYSTEMERR: u8 = 3;

/// A decoder of the multiplexed stream fed with chunks as they arrive: payload bytes pass through without
/// being collected into whole frames.
#[derive(Default)]
pub struct Demux {
    header: [u8; 8],
    have: usize,
    stream: u8,
    remaining: usize,
}

impl Demux {
    /// Feeds `data`; `out(stream, bytes)` receives each piece of payload.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(u8, &[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        while !data.is_empty() {
            if self.remaining == 0 {
                let n = (8 - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have < 8 {
                    return Ok(());
                }
                self.have = 0;
                self.stream = self.header[0];
                if self.stream > SYSTEMERR {
                    bail!("bad stream from the daemon: unknown stream type {}", self.stream);
                }
                self.remaining = u32::from_be_bytes([self.header[4], self.header[5], self.header[6], self.header[7]]) as usize;
                continue;
            }
            let n = self.remaining.min(data.len());
            out(self.stream, &data[..n])?;
            self.remaining -= n;
            data = &data[n..];
        }
        Ok(())
    }

    /// True between frames (a stream that ends elsewhere was cut).
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }
}

/// Writes demultiplexed output to this process's stdout and stderr; a `systemerr` frame (the daemon's own
/// error) is collected and returned as an error at the end.
pub struct Terminal {
    system_error: Vec<u8>,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal { system_error: Vec::new() }
    }

    pub fn write(&mut self, stream: u8, data: &[u8]) -> anyhow::Result<()> {
        match stream {
            STDIN | STDOUT => {
                let mut o = io::stdout().lock();
                o.write_all(data)?;
                o.flush()?;
            }
            STDERR => {
                let mut e = io::stderr().lock();
                e.write_all(data)?;
                e.flush()?;
            }
            _ => {
                if self.system_error.len() < 64 * 1024 {
                    self.system_error.extend_from_slice(data);
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        if !self.system_error.is_empty() {
            bail!("{}", String::from_utf8_lossy(&self.system_error).trim());
        }
        Ok(())
    }
}

/// Copies a multiplexed response body to stdout/stderr until it ends.
pub async fn demux_body(mut body: Incoming) -> anyhow::Result<()> {
    let mut d = Demux::default();
    let mut t = Terminal::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        d.feed(&chunk, &mut |s, b| t.write(s, b))?;
    }
    if !d.at_boundary() {
        bail!("the output stream ended in the middle of a frame");
    }
    t.finish()
}

/// Copies a raw (TTY) response body to stdout until it ends.
pub async fn raw_body(mut body: Incoming) -> anyhow::Result<()> {
    while let Some(chunk) = next_chunk(&mut body).await? {
        let mut o = io::stdout().lock();
        o.write_all(&chunk)?;
        o.flush()?;
    }
    Ok(())
}

/// Copies a multiplexed stream read from `r` (an upgraded attach connection) until it ends.
pub async fn demux_reader(mut r: impl AsyncRead + Unpin) -> anyhow::Result<()> {
    let mut d = Demux::default();
    let mut t = Terminal::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // The daemon closes the attach connection abruptly once the container is gone.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset || e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(anyhow::Error::new(e).context("reading the container's output")),
        };
        d.feed(&buf[..n], &mut |s, b| t.write(s, b))?;
    }
    if !d.at_boundary() {
        bail!("the container's output stream ended in the middle of a frame");
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn demuxes_across_any_chunking() {
        let mut all = frame(STDOUT, b"hello\n");
        all.extend(frame(STDERR, b"oops\n"));
        all.extend(frame(STDOUT, b""));
        all.extend(frame(STDOUT, &vec![b'x'; 70_000]));
        for size in [1, 3, 7, 8, 9, 4096, all.len()] {
            let mut d = Demux::default();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            for chunk in all.chunks(size) {
                d.feed(chunk, &mut |s, b| {
                    match s {
                        STDOUT => out.extend_from_slice(b),
                        STDERR => err.extend_from_slice(b),
                        _ => panic!("stream {s}"),
                    }
                    Ok(())
                })
                .unwrap();
            }
            assert!(d.at_boundary());
            assert_eq!(&out[..6], b"hello\n", "chunk size {size}");
            assert_eq!(out.len(), 6 + 70_000);
            assert_eq!(err, b"oops\n");
        }
        let mut d = Demux::default();
        assert!(d.feed(&[9, 0, 0, 0, 0, 0, 0, 1, b'x'], &mut |_, _| Ok(())).is_err());
    }

    #[test]
    fn classifies_messages() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(classify(&v(r#"{"stream":"Loaded image: a:1\n"}"#)), Message::Text("Loaded image: a:1\n".into()));
        assert_eq!(
            classify(&v(r#"{"status":"Created delta: sha256:ab"}"#)),
            Message::Status { id: None, status: "Created delta: sha256:ab".into(), progress: false }
        );
        assert_eq!(
            classify(&v(r#"{"status":"Loading","progressDetail":{"current":5},"id":"archive"}"#)),
            Message::Status { id: Some("archive".into()), status: "Loading".into(), progress: true }
        );
        assert_eq!(
            classify(&v(r#"{"status":"Waiting","progressDetail":{},"id":"abc"}"#)),
            Message::Status { id: Some("abc".into()), status: "Waiting".into(), progress: false }
        );
        assert_eq!(classify(&v(r#"{"errorDetail":{"message":"bad"},"error":"bad"}"#)), Message::Error("bad".into()));
        assert_eq!(classify(&v(r#"{"aux":{"ID":"x"}}"#)), Message::Other);
    }
}
