//! The journald driver: each line is one datagram in systemd's native journal protocol
//! (`systemd.journal-fields(7)`, "Native Journal Protocol") on `/run/systemd/journal/socket`, with docker's
//! fields: `MESSAGE`, `CONTAINER_ID` (12 characters), `CONTAINER_ID_FULL`, `CONTAINER_NAME`, `PRIORITY` (6 for
//! stdout, 3 for stderr), `SYSLOG_IDENTIFIER` (the short ID, docker's default tag) and
//! `CONTAINER_PARTIAL_MESSAGE=true` on a line cut at 16 KiB.
//!
//! A field is `NAME=value\n`, or, when the value holds a newline, `NAME\n` + its length as 64-bit
//! little-endian + the value + `\n`, so any byte can travel. Reading back (`docker logs`) is not supported.
//! A journal that does not take a message within a second loses it (counted, warned once) rather than block
//! the container.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::copier::Sink;
use super::json_file::short;
use super::STDERR;

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Appends one field in the native protocol: `NAME=value\n`, or the length-prefixed form when `value` holds
/// a newline.
pub fn encode_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

pub struct JournaldWriter {
    sock: UnixDatagram,
    path: PathBuf,
    id: String,
    name: String,
    buf: Vec<u8>,
    sent: u64,
    dropped: u64,
    dropping: u64,
}

impl JournaldWriter {
    /// Connects to the journal at `socket`; a clear error when there is none (the container must not start).
    pub fn connect(socket: &Path, container_id: &str, container_name: &str) -> io::Result<JournaldWriter> {
        let sock = connect(socket).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("journald logging driver: cannot reach the journal at {} ({e}): is systemd-journald running?", socket.display()),
            )
        })?;
        Ok(JournaldWriter {
            sock,
            path: socket.to_path_buf(),
            id: container_id.to_owned(),
            name: container_name.trim_start_matches('/').to_owned(),
            buf: Vec::with_capacity(super::copier::MAX_LINE + 512),
            sent: 0,
            dropped: 0,
            dropping: 0,
        })
    }

    /// The datagram for one line.
    pub fn message(&self, out: &mut Vec<u8>, stream: u8, line: &[u8], partial: bool) {
        out.clear();
        encode_field(out, "MESSAGE", line);
        encode_field(out, "CONTAINER_ID", short(&self.id).as_bytes());
        encode_field(out, "CONTAINER_ID_FULL", self.id.as_bytes());
        if !self.name.is_empty() {
            encode_field(out, "CONTAINER_NAME", self.name.as_bytes());
        }
        encode_field(out, "PRIORITY", if stream == STDERR { b"3" } else { b"6" });
        encode_field(out, "SYSLOG_IDENTIFIER", short(&self.id).as_bytes());
        if partial {
            encode_field(out, "CONTAINER_PARTIAL_MESSAGE", b"true");
        }
    }

    fn send(&mut self) -> io::Result<()> {
        match self.sock.send(&self.buf) {
            Ok(_) => Ok(()),
            // journald restarted: its socket is a new one.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ENOENT)) => {
                self.sock = connect(&self.path)?;
                self.sock.send(&self.buf).map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(sock)
}

impl Sink for JournaldWriter {
    fn record(&mut self, stream: u8, _time_nanos: i64, line: &[u8], partial: bool) {
        let mut buf = std::mem::take(&mut self.buf);
        self.message(&mut buf, stream, line, partial);
        self.buf = buf;
        match self.send() {
            Ok(()) => {
                self.sent += 1;
                if self.dropping > 0 {
                    log::warn!("logs of container {}: journal reachable again after {} dropped line(s)", short(&self.id), self.dropping);
                    self.dropping = 0;
                }
            }
            Err(e) => {
                if self.dropping == 0 {
                    log::warn!("logs of container {}: sending to the journal failed ({e}): dropping lines until it works again", short(&self.id));
                }
                self.dropping += 1;
                self.dropped += 1;
            }
        }
    }
    fn flush(&mut self) {}
    fn counts(&self) -> (u64, u64) {
        (self.sent, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::copier::spawn_with_sink;
    use std::collections::BTreeMap;
    use std::io::Write;

    /// Parses a native-protocol datagram back into fields (both forms).
    fn parse(mut d: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        while !d.is_empty() {
            let eol = d.iter().position(|&b| b == b'\n').expect("field without newline");
            let head = &d[..eol];
            if let Some(eq) = head.iter().position(|&b| b == b'=') {
                out.insert(String::from_utf8(head[..eq].to_vec()).unwrap(), head[eq + 1..].to_vec());
                d = &d[eol + 1..];
            } else {
                let name = String::from_utf8(head.to_vec()).unwrap();
                let len = u64::from_le_bytes(d[eol + 1..eol + 9].try_into().unwrap()) as usize;
                let value = d[eol + 9..eol + 9 + len].to_vec();
                assert_eq!(d[eol + 9 + len], b'\n', "binary field not newline-terminated");
                out.insert(name, value);
                d = &d[eol + 10 + len..];
            }
        }
        out
    }

    #[test]
    fn encodes_fields_both_ways() {
        let mut out = Vec::new();
        encode_field(&mut out, "MESSAGE", b"plain = text");
        assert_eq!(out, b"MESSAGE=plain = text\n");
        out.clear();
        encode_field(&mut out, "MESSAGE", b"two\nlines\0\xff");
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&11u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\0\xff\n");
        assert_eq!(out, want);
        assert_eq!(parse(&out)["MESSAGE"], b"two\nlines\0\xff");
    }

    #[test]
    fn sends_lines_to_the_journal_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let journal = UnixDatagram::bind(&path).unwrap();
        journal.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let mut w = JournaldWriter::connect(&path, id, "/web").unwrap();

        // A field holding a newline, straight through the writer.
        w.record(crate::logs::STDOUT, 0, b"multi\nline", false);
        let mut buf = vec![0u8; 70_000];
        let n = journal.recv(&mut buf).unwrap();
        let f = parse(&buf[..n]);
        assert_eq!(f["MESSAGE"], b"multi\nline");

        // Through the copier: lines from both pipes, a 16 KiB cut, binary bytes.
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (err_r, err_w) = nix::unistd::pipe().unwrap();
        let c = spawn_with_sink(Box::new(w), out_r, err_r, id).unwrap();
        let (mut out_w, mut err_w) = (std::fs::File::from(out_w), std::fs::File::from(err_w));
        out_w.write_all(b"hello \x00\xfe world\n").unwrap();
        out_w.flush().unwrap();
        let n = journal.recv(&mut buf).unwrap();
        let f = parse(&buf[..n]);
        assert_eq!(f["MESSAGE"], b"hello \x00\xfe world");
        assert_eq!(f["CONTAINER_ID"], b"0123456789ab");
        assert_eq!(f["CONTAINER_ID_FULL"], id.as_bytes());
        assert_eq!(f["CONTAINER_NAME"], b"web");
        assert_eq!(f["PRIORITY"], b"6");
        assert_eq!(f["SYSLOG_IDENTIFIER"], b"0123456789ab");
        assert!(!f.contains_key("CONTAINER_PARTIAL_MESSAGE"));

        err_w.write_all(b"bad thing\n").unwrap();
        let n = journal.recv(&mut buf).unwrap();
        let f = parse(&buf[..n]);
        assert_eq!((f["MESSAGE"].as_slice(), f["PRIORITY"].as_slice()), (&b"bad thing"[..], &b"3"[..]));

        out_w.write_all(&vec![b'q'; 20_000]).unwrap();
        out_w.write_all(b"\n").unwrap();
        let n = journal.recv(&mut buf).unwrap();
        let f = parse(&buf[..n]);
        assert_eq!(f["MESSAGE"].len(), 16_384);
        assert_eq!(f["CONTAINER_PARTIAL_MESSAGE"], b"true");
        let n = journal.recv(&mut buf).unwrap();
        let f = parse(&buf[..n]);
        assert_eq!(f["MESSAGE"].len(), 20_000 - 16_384);
        assert!(!f.contains_key("CONTAINER_PARTIAL_MESSAGE"));

        drop((out_w, err_w));
        let stats = c.join_stats();
        assert_eq!((stats.lines, stats.dropped), (5, 0));
    }

    #[test]
    fn no_journal_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = JournaldWriter::connect(&dir.path().join("absent.sock"), "abc", "").err().unwrap();
        assert!(e.to_string().contains("journald logging driver: cannot reach the journal at"), "{e}");
        assert!(e.to_string().contains("absent.sock"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_journal_that_went_away_loses_lines_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sock");
        let journal = UnixDatagram::bind(&path).unwrap();
        let mut w = JournaldWriter::connect(&path, "abc", "").unwrap();
        drop(journal);
        std::fs::remove_file(&path).unwrap();
        w.record(crate::logs::STDOUT, 0, b"lost", false);
        w.record(crate::logs::STDOUT, 0, b"lost too", false);
        assert_eq!(w.counts(), (0, 2));
        // Back: the writer reconnects.
        let journal = UnixDatagram::bind(&path).unwrap();
        w.record(crate::logs::STDOUT, 0, b"found", false);
        assert_eq!(w.counts(), (1, 2));
        let mut buf = [0u8; 512];
        let n = journal.recv(&mut buf).unwrap();
        assert_eq!(parse(&buf[..n])["MESSAGE"], b"found");
    }
}
