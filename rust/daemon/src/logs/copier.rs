//! The copier: one thread per pipe (stdout, stderr) reads what the container writes, cuts it into lines and
//! hands them to the driver. Lines are cut at each newline and, as docker does, every 16 KiB of a longer
//! line (such pieces, and an unfinished last line, are "partial": stored without a newline), so memory stays
//! bounded whatever the container writes. The pipes are always drained, whatever the driver does (even
//! `none`), so a container never blocks on a full pipe because of its logs.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::config::{LogConfig, LogDriver};
use super::journald::{JournaldWriter, JOURNAL_SOCKET};
use super::json_file::{short, JsonFileWriter};
use super::{STDERR, STDOUT};

/// The longest piece of a line stored as one record (docker's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;
const READ_BUF: usize = 32 * 1024;
const THREAD_STACK: usize = 128 * 1024;

/// Where lines go.
pub(crate) trait Sink: Send {
    fn record(&mut self, stream: u8, time_nanos: i64, line: &[u8], partial: bool);
    /// Called after each read: nothing read so far may wait longer.
    fn flush(&mut self);
    /// (lines written, lines dropped)
    fn counts(&self) -> (u64, u64);
}

impl Sink for JsonFileWriter {
    fn record(&mut self, stream: u8, time_nanos: i64, line: &[u8], partial: bool) {
        self.write_record(stream, time_nanos, line, partial);
    }
    fn flush(&mut self) {
        JsonFileWriter::flush(self);
    }
    fn counts(&self) -> (u64, u64) {
        JsonFileWriter::counts(self)
    }
}

/// The `none` driver: everything is read and dropped.
struct Discard(u64);

impl Sink for Discard {
    fn record(&mut self, _: u8, _: i64, _: &[u8], _: bool) {
        self.0 += 1;
    }
    fn flush(&mut self) {}
    fn counts(&self) -> (u64, u64) {
        (self.0, 0)
    }
}

/// What a copier did, once both pipes are closed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Lines (and 16 KiB pieces of longer lines) handed to the driver and written.
    pub lines: u64,
    /// Lines the driver could not write (a full disk, a journal not answering): dropped, not waited for.
    pub dropped: u64,
    /// Bytes read from the two pipes.
    pub bytes: u64,
}

/// The threads copying one container's output.
pub struct LogCopier {
    threads: Vec<JoinHandle<()>>,
    sink: Arc<Mutex<Box<dyn Sink>>>,
    bytes: Arc<AtomicU64>,
}

impl LogCopier {
    /// Returns once both pipes reached end-of-file and everything read is written.
    pub fn join(self) {
        self.join_stats();
    }

    /// As [`join`](Self::join), with what was copied and dropped.
    pub fn join_stats(self) -> CopyStats {
        for t in self.threads {
            let _ = t.join();
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.flush();
        let (lines, dropped) = sink.counts();
        CopyStats { lines, dropped, bytes: self.bytes.load(Ordering::Relaxed) }
    }
}

/// Starts copying a container's stdout and stderr (the read ends of its pipes, or a pty master as stdout)
/// to the driver of `cfg`; json-file logs go to `<dir>/<id>-json.log`. Fails when the driver cannot start
/// (journald without a journal socket, a log file that cannot be created): the container must not start.
pub fn spawn_log_copier(dir: &Path, cfg: &LogConfig, stdout: OwnedFd, stderr: OwnedFd, container_id: &str) -> io::Result<LogCopier> {
    spawn_log_copier_named(dir, cfg, stdout, stderr, container_id, "")
}

/// As [`spawn_log_copier`], with the container's name (without the leading `/`) for journald's
/// `CONTAINER_NAME`; empty: not sent.
pub fn spawn_log_copier_named(
    dir: &Path,
    cfg: &LogConfig,
    stdout: OwnedFd,
    stderr: OwnedFd,
    container_id: &str,
    container_name: &str,
) -> io::Result<LogCopier> {
    let sink: Box<dyn Sink> = match cfg.driver {
        LogDriver::JsonFile => Box::new(JsonFileWriter::open(dir, container_id, cfg.max_size, cfg.max_file)?),
        LogDriver::Journald => Box::new(JournaldWriter::connect(Path::new(JOURNAL_SOCKET), container_id, container_name)?),
        LogDriver::None => Box::new(Discard(0)),
    };
    spawn_with_sink(sink, stdout, stderr, container_id)
}

pub(crate) fn spawn_with_sink(sink: Box<dyn Sink>, stdout: OwnedFd, stderr: OwnedFd, container_id: &str) -> io::Result<LogCopier> {
    let sink = Arc::new(Mutex::new(sink));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::with_capacity(2);
    for (fd, stream, tag) in [(stdout, STDOUT, "out"), (stderr, STDERR, "err")] {
        set_blocking(&fd);
        let (sink, bytes) = (sink.clone(), bytes.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("log-{}-{tag}", short(container_id)))
            .stack_size(THREAD_STACK)
            .spawn(move || copy(fd, stream, &sink, &bytes));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // The pipe already handed to a thread is drained by it; join it so nothing is left behind.
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }
    Ok(LogCopier { threads, sink, bytes })
}

/// The copier reads blocking: a descriptor inherited non-blocking would make it spin.
fn set_blocking(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
}

fn now_nanos() -> i64 {
    let (s, n) = engine::time::now();
    s * 1_000_000_000 + i64::from(n)
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes.
pub(crate) struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    pub(crate) fn new() -> Splitter {
        Splitter { pending: Vec::with_capacity(MAX_LINE) }
    }

    /// Calls `emit(line, partial)` for every line `data` completes (without its newline) and every full
    /// 16 KiB piece; keeps the rest for later.
    pub(crate) fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.pending.is_empty() {
                        emit(&window[..i], false);
                    } else {
                        self.pending.extend_from_slice(&window[..i]);
                        emit(&self.pending, false);
                        self.pending.clear();
                    }
                    data = &data[i + 1..];
                }
                None => {
                    if window.len() == room {
                        if self.pending.is_empty() {
                            emit(window, true);
                        } else {
                            self.pending.extend_from_slice(window);
                            emit(&self.pending, true);
                            self.pending.clear();
                        }
                    } else {
                        self.pending.extend_from_slice(window);
                    }
                    data = &data[window.len()..];
                }
            }
        }
    }

    /// At end of input: the unfinished last line, if any (partial).
    pub(crate) fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            emit(&self.pending, true);
            self.pending.clear();
        }
    }
}

fn copy(fd: OwnedFd, stream: u8, sink: &Mutex<Box<dyn Sink>>, bytes: &AtomicU64) {
    let mut file = std::fs::File::from(fd);
    let mut buf = vec![0u8; READ_BUF];
    let mut split = Splitter::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A pty master reads EIO once the container's side is closed: that is its end-of-file.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                log::warn!("reading a container's output: {e}");
                break;
            }
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let time = now_nanos();
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        split.feed(&buf[..n], &mut |line, partial| s.record(stream, time, line, partial));
        s.flush();
    }
    let time = now_nanos();
    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
    split.finish(&mut |line, partial| s.record(stream, time, line, partial));
    s.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::log_path;
    use std::io::Write;

    fn split_all(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut s = Splitter::new();
        for c in chunks {
            s.feed(c, &mut |l, p| out.push((l.to_vec(), p)));
        }
        s.finish(&mut |l, p| out.push((l.to_vec(), p)));
        out
    }

    #[test]
    fn splits_at_newlines_and_16k() {
        let l = |s: &str, p| (s.as_bytes().to_vec(), p);
        assert_eq!(split_all(&[b"a\nbb\n", b"c", b"c\n\n", b"tail"]), [l("a", false), l("bb", false), l("cc", false), l("", false), l("tail", true)]);
        assert_eq!(split_all(&[b""]), []);
        // 40000 bytes then a newline: 16384 + 16384 partial, 7232 whole.
        let long = vec![b'x'; 40_000];
        let out = split_all(&[&long[..1000], &long[1000..], b"\nnext\n"]);
        let shape: Vec<(usize, bool)> = out.iter().map(|(b, p)| (b.len(), *p)).collect();
        assert_eq!(shape, [(16_384, true), (16_384, true), (7232, false), (4, false)]);
        // Exactly 16 KiB then a newline: one partial piece, then an empty whole line (as docker).
        let out = split_all(&[&vec![b'y'; MAX_LINE], b"\n"]);
        let shape: Vec<(usize, bool)> = out.iter().map(|(b, p)| (b.len(), *p)).collect();
        assert_eq!(shape, [(16_384, true), (0, false)]);
    }

    fn pipe() -> (OwnedFd, std::fs::File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (r, std::fs::File::from(w))
    }

    #[test]
    fn copies_both_streams_to_json_file() {
        let dir = tempfile::tempdir().unwrap();
        let (out_r, mut out_w) = pipe();
        let (err_r, mut err_w) = pipe();
        let cfg = LogConfig::default();
        let c = spawn_log_copier(dir.path(), &cfg, out_r, err_r, "abc").unwrap();
        out_w.write_all(b"hello\nwor").unwrap();
        err_w.write_all(b"oops\n").unwrap();
        out_w.write_all(b"ld\n").unwrap();
        let long = vec![b'z'; 20_000];
        out_w.write_all(&long).unwrap();
        out_w.write_all(b"\nno newline at exit").unwrap();
        drop(out_w);
        drop(err_w);
        let stats = c.join_stats();
        assert_eq!((stats.lines, stats.dropped), (6, 0));
        let text = std::fs::read_to_string(log_path(dir.path(), "abc")).unwrap();
        let recs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let out: Vec<String> =
            recs.iter().filter(|r| r["stream"] == "stdout").map(|r| r["log"].as_str().unwrap().to_owned()).collect();
        assert_eq!(out[0], "hello\n");
        assert_eq!(out[1], "world\n");
        assert_eq!(out[2].len(), 16_384);
        assert!(!out[2].ends_with('\n'));
        assert_eq!(out[3].len(), 20_000 - 16_384 + 1);
        assert_eq!(out[4], "no newline at exit");
        let err: Vec<&serde_json::Value> = recs.iter().filter(|r| r["stream"] == "stderr").collect();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0]["log"], "oops\n");
        assert!(err[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn none_driver_drains_the_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let (out_r, mut out_w) = pipe();
        let (err_r, err_w) = pipe();
        let cfg = LogConfig { driver: LogDriver::None, ..LogConfig::default() };
        let c = spawn_log_copier(dir.path(), &cfg, out_r, err_r, "n").unwrap();
        // More than a pipe holds: a writer would block if nobody read.
        let chunk = vec![b'a'; 1 << 20];
        out_w.write_all(&chunk).unwrap();
        drop(out_w);
        drop(err_w);
        let stats = c.join_stats();
        assert_eq!(stats.bytes, 1 << 20);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "none wrote files");
    }

    #[test]
    fn a_log_file_that_cannot_be_created_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (out_r, _w1) = pipe();
        let (err_r, _w2) = pipe();
        let missing = dir.path().join("no/such/dir");
        assert!(spawn_log_copier(&missing, &LogConfig::default(), out_r, err_r, "x").is_err());
    }
}
