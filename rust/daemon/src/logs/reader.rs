//! `docker logs` from json-file logs: the rotated files and the live one, oldest first; `tail` found by
//! reading backwards in blocks from the end (never the whole log in memory); `since`/`until` (lines at
//! `since` or later, at `until` or earlier); `follow`: new lines as they are written, through rotations (and
//! the emptying of a single file), polled every 100 ms until the caller's `stop()` turns true — what was
//! written before that is still read to the end.
//!
//! Memory is bounded: a 64 KiB read buffer, and one record at a time (records longer than 1 MiB, which the
//! writer never makes, are skipped).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::config::MAX_MAX_FILE;
use super::json_file::rotation_lock;
use super::{log_path, rotated_path, STDERR, STDOUT};
use engine::time;

const BLOCK: usize = 64 * 1024;
/// Records longer than this are not log records (the writer's are at most ~100 KiB, 16 KiB escaped).
const MAX_RECORD: usize = 1 << 20;
const POLL: Duration = Duration::from_millis(100);

/// What `docker logs` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Unix nanoseconds: lines at this time or later.
    pub since: Option<i64>,
    /// Unix nanoseconds: lines at this time or earlier; a follow ends when the clock passes it.
    pub until: Option<i64>,
    /// The last N lines (of the selected streams, in the time window) only.
    pub tail: Option<usize>,
    /// Not used by the reader: for [`LogLine::frame`].
    pub timestamps: bool,
}

/// One line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// [`STDOUT`] (1) or [`STDERR`] (2).
    pub stream: u8,
    pub time_nanos: i64,
    /// The line as logged: with its trailing newline, except for pieces of long lines and an unfinished
    /// last line.
    pub bytes: Vec<u8>,
}

impl LogLine {
    /// The line as `GET /containers/{id}/logs` sends it: with `timestamps`, prefixed by the time
    /// (`2006-01-02T15:04:05.000000000Z `, docker's fixed-width form); with `multiplexed` (containers without
    /// a TTY), in docker's stream framing (`[stream, 0, 0, 0, length as big-endian u32]` + payload).
    pub fn frame(&self, timestamps: bool, multiplexed: bool) -> Vec<u8> {
        let stamp = timestamps.then(|| format!("{} ", rfc3339_fixed(self.time_nanos)));
        let len = self.bytes.len() + stamp.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(len + 8);
        if multiplexed {
            out.extend_from_slice(&[self.stream, 0, 0, 0]);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        if let Some(s) = stamp {
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.bytes);
        out
    }
}

/// RFC 3339 with always nine digits of fraction (docker's `RFC3339NanoFixed`).
pub fn rfc3339_fixed(time_nanos: i64) -> String {
    time::rfc3339_fixed(i128::from(time_nanos))
}

/// Nanoseconds since the epoch of an RFC 3339 time with an optional fraction.
pub fn parse_time_nanos(s: &str) -> Option<i64> {
    let secs = time::parse_rfc3339(s)?;
    let nanos = match s.get(19..).and_then(|r| r.strip_prefix('.')) {
        Some(frac) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).take(9).collect();
            if digits.is_empty() {
                0
            } else {
                format!("{digits:0<9}").parse::<i64>().ok()?
            }
        }
        None => 0,
    };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[derive(Deserialize)]
struct Record {
    log: String,
    stream: String,
    time: String,
}

/// A record of the log file, or `None` when it is not one (a torn write, junk).
fn parse_record(raw: &[u8]) -> Option<LogLine> {
    let r: Record = serde_json::from_slice(raw).ok()?;
    let stream = match r.stream.as_str() {
        "stdout" => STDOUT,
        "stderr" => STDERR,
        _ => return None,
    };
    Some(LogLine { stream, time_nanos: parse_time_nanos(&r.time)?, bytes: r.log.into_bytes() })
}

impl LogQuery {
    fn wants_stream(&self, stream: u8) -> bool {
        (stream == STDOUT && self.stdout) || (stream == STDERR && self.stderr)
    }
    fn after_until(&self, t: i64) -> bool {
        self.until.is_some_and(|u| t > u)
    }
    fn before_since(&self, t: i64) -> bool {
        self.since.is_some_and(|s| t < s)
    }
}

/// Reads a container's json-file log; see the module documentation. `stop` is asked between polls when
/// following (the container stopped, the client left, the daemon stops).
pub fn read_logs(dir: &Path, container_id: &str, q: LogQuery, stop: impl Fn() -> bool + Send + 'static) -> LogReader {
    LogReader {
        dir: dir.to_path_buf(),
        id: container_id.to_owned(),
        base: log_path(dir, container_id),
        q,
        stop: Box::new(stop),
        started: false,
        done: false,
        queue: VecDeque::new(),
        cur: None,
        buf: vec![0; BLOCK],
        buf_start: 0,
        buf_end: 0,
        line: Vec::new(),
        skipping: false,
        last_round: false,
    }
}

struct Open {
    file: File,
    /// Offset of `buf_end` in the file.
    pos: u64,
    ino: (u64, u64),
}

impl Open {
    fn new(file: File) -> io::Result<Open> {
        let m = file.metadata()?;
        Ok(Open { file, pos: 0, ino: (m.dev(), m.ino()) })
    }
}

/// The lines of a container's log: `Iterator<Item = io::Result<LogLine>>`, `Send`; ends after an error.
pub struct LogReader {
    dir: PathBuf,
    id: String,
    base: PathBuf,
    q: LogQuery,
    stop: Box<dyn Fn() -> bool + Send>,
    started: bool,
    done: bool,
    /// Files after the current one, oldest first.
    queue: VecDeque<File>,
    cur: Option<Open>,
    buf: Vec<u8>,
    buf_start: usize,
    buf_end: usize,
    /// The record being assembled (when it spans reads).
    line: Vec<u8>,
    /// Inside an over-long record: bytes are dropped up to its newline.
    skipping: bool,
    /// stop() was seen: after what is there now, the follow ends.
    last_round: bool,
}

/// What reading the current file gave.
enum Step {
    Line(Vec<u8>),
    /// End of the current file (an unfinished record stays in `line`).
    Eof,
}

impl LogReader {
    /// The files of the log, oldest first, opened together under the rotation lock (one consistent set).
    fn open_all(&self) -> io::Result<Vec<File>> {
        let lock = rotation_lock(&self.base);
        let _g = lock.read().unwrap_or_else(|e| e.into_inner());
        let mut files = Vec::new();
        let mut paths = Vec::new();
        for n in (1..=MAX_MAX_FILE).rev() {
            paths.push(rotated_path(&self.dir, &self.id, n));
        }
        paths.push(self.base.clone());
        for p in paths {
            match File::open(&p) {
                Ok(f) => files.push(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(files)
    }

    fn start(&mut self) -> io::Result<()> {
        let mut files = self.open_all()?;
        let (first, offset) = match self.q.tail {
            Some(n) => self.find_tail(&mut files, n)?,
            None => (0, 0),
        };
        let mut files: VecDeque<File> = files.into_iter().skip(first).collect();
        if let Some(f) = files.pop_front() {
            let mut open = Open::new(f)?;
            open.file.seek(SeekFrom::Start(offset))?;
            open.pos = offset;
            self.cur = Some(open);
        }
        self.queue = files;
        Ok(())
    }

    /// Where the last `n` wanted lines start: (index of the file, offset), reading backwards in blocks.
    fn find_tail(&self, files: &mut [File], n: usize) -> io::Result<(usize, u64)> {
        if n == 0 {
            // Nothing of the past: start at the end of the newest file.
            return Ok(match files.len() {
                0 => (0, 0),
                len => (len - 1, files[len - 1].metadata()?.len()),
            });
        }
        let mut found = 0usize;
        for idx in (0..files.len()).rev() {
            if let Some(offset) = self.scan_back(&mut files[idx], n, &mut found)? {
                return Ok((idx, offset));
            }
        }
        Ok((0, 0))
    }

    /// Scans one file from its end; `Some(offset)` once `found` reaches `want` (or a line before `since` is
    /// met: nothing earlier can be wanted).
    fn scan_back(&self, file: &mut File, want: usize, found: &mut usize) -> io::Result<Option<u64>> {
        let len = file.metadata()?.len();
        let mut pos = len;
        // The record being assembled backwards (its tail part), and whether it is too long to matter.
        let mut carry: Vec<u8> = Vec::new();
        let mut junk = false;
        let mut block = vec![0u8; BLOCK];
        // Returns Some(start) when this record completes the tail.
        let consider = |rec: &[u8], start: u64, found: &mut usize| -> Option<u64> {
            let line = parse_record(rec)?;
            if self.q.before_since(line.time_nanos) {
                return Some(start + rec.len() as u64 + 1);
            }
            if self.q.wants_stream(line.stream) && !self.q.after_until(line.time_nanos) {
                *found += 1;
                if *found >= want {
                    return Some(start);
                }
            }
            None
        };
        while pos > 0 {
            let n = pos.min(BLOCK as u64) as usize;
            pos -= n as u64;
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut block[..n])?;
            let mut seg_end = n;
            while let Some(i) = block[..seg_end].iter().rposition(|&b| b == b'\n') {
                if !junk && carry.len() + (seg_end - i - 1) <= MAX_RECORD {
                    let start = pos + i as u64 + 1;
                    let res = if carry.is_empty() {
                        consider(&block[i + 1..seg_end], start, found)
                    } else {
                        let mut rec = block[i + 1..seg_end].to_vec();
                        rec.extend_from_slice(&carry);
                        consider(&rec, start, found)
                    };
                    if let Some(off) = res {
                        return Ok(Some(off.min(len)));
                    }
                }
                carry.clear();
                junk = false;
                seg_end = i;
            }
            if !junk {
                if carry.len() + seg_end > MAX_RECORD {
                    junk = true;
                    carry.clear();
                } else {
                    let mut c = block[..seg_end].to_vec();
                    c.extend_from_slice(&carry);
                    carry = c;
                }
            }
        }
        if !junk && !carry.is_empty() {
            if let Some(off) = consider(&carry, 0, found) {
                return Ok(Some(off.min(len)));
            }
        }
        Ok(None)
    }

    /// The next record of the current file, or its end.
    fn step(&mut self) -> io::Result<Step> {
        loop {
            if self.buf_start == self.buf_end {
                let Some(cur) = self.cur.as_mut() else { return Ok(Step::Eof) };
                let n = loop {
                    match cur.file.read(&mut self.buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r?,
                    }
                };
                if n == 0 {
                    return Ok(Step::Eof);
                }
                cur.pos += n as u64;
                self.buf_start = 0;
                self.buf_end = n;
            }
            let avail = &self.buf[self.buf_start..self.buf_end];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let was_skipping = std::mem::take(&mut self.skipping);
                    let out = if was_skipping || self.line.len() + i > MAX_RECORD {
                        None
                    } else if self.line.is_empty() {
                        Some(avail[..i].to_vec())
                    } else {
                        self.line.extend_from_slice(&avail[..i]);
                        Some(std::mem::take(&mut self.line))
                    };
                    self.line.clear();
                    self.buf_start += i + 1;
                    if let Some(rec) = out {
                        return Ok(Step::Line(rec));
                    }
                }
                None => {
                    if !self.skipping {
                        if self.line.len() + avail.len() > MAX_RECORD {
                            self.skipping = true;
                            self.line = Vec::new();
                        } else {
                            self.line.extend_from_slice(avail);
                        }
                    }
                    self.buf_start = self.buf_end;
                }
            }
        }
    }

    fn reset_buffer(&mut self) {
        self.buf_start = 0;
        self.buf_end = 0;
        self.line.clear();
        self.skipping = false;
    }

    /// Moves to the next file of the queue; false when there is none.
    fn next_file(&mut self) -> io::Result<bool> {
        let Some(mut f) = self.queue.pop_front() else { return Ok(false) };
        // A record left unfinished at the end of a rotated file is a torn write: dropped.
        self.reset_buffer();
        // The tail scan may have moved it.
        f.seek(SeekFrom::Start(0))?;
        self.cur = Some(Open::new(f)?);
        Ok(true)
    }

    /// At the end of the newest file while following: queues what was written since (a rotation: the files
    /// newer than ours; no file yet: the live one) and rewinds a file that was emptied. True if there is
    /// something new to read.
    fn catch_up(&mut self) -> io::Result<bool> {
        let Some(cur) = self.cur.as_mut() else {
            // No log yet (a container not started): wait for the live file.
            return match File::open(&self.base) {
                Ok(f) => {
                    self.cur = Some(Open::new(f)?);
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            };
        };
        let len = cur.file.metadata()?.len();
        if len < cur.pos {
            // Emptied (max-file 1): read it again from the start.
            cur.file.seek(SeekFrom::Start(0))?;
            cur.pos = 0;
            self.reset_buffer();
            return Ok(len > 0);
        }
        if len > cur.pos {
            return Ok(true);
        }
        let live = match fs::metadata(&self.base) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if live.is_none() || live == Some(cur.ino) {
            return Ok(false);
        }
        // Rotated: our file is now `.k` (or gone); what follows it is `.k-1` … `.1` and the live file.
        let ours = cur.ino;
        let files = self.open_all()?;
        let mut newer = Vec::new();
        for f in files {
            let m = f.metadata()?;
            if (m.dev(), m.ino()) == ours {
                newer.clear();
            } else {
                // Not found at all: ours is gone, and every file there is was created after it.
                newer.push(f);
            }
        }
        // Our file may have grown just before it was renamed: it is read to its end before these.
        let grew = self.cur_has_more()?;
        let found = !newer.is_empty();
        self.queue.extend(newer);
        Ok(found || grew)
    }

    fn next_line(&mut self) -> io::Result<Option<LogLine>> {
        loop {
            match self.step()? {
                Step::Line(raw) => {
                    let Some(line) = parse_record(&raw) else { continue };
                    if self.q.after_until(line.time_nanos) {
                        return Ok(None);
                    }
                    if self.q.before_since(line.time_nanos) || !self.q.wants_stream(line.stream) {
                        continue;
                    }
                    return Ok(Some(line));
                }
                Step::Eof => {
                    if self.next_file()? {
                        continue;
                    }
                    if !self.q.follow {
                        // A last record without its newline is one being written: left out.
                        return Ok(None);
                    }
                    if self.last_round {
                        return Ok(None);
                    }
                    // Asked before looking again, so whatever was written before stop() turned true is read
                    // (one more round: a container that keeps writing does not hold the reader forever).
                    let stopping = (self.stop)() || self.q.until.is_some_and(|u| now_nanos() > u);
                    self.last_round = stopping;
                    if self.catch_up()? {
                        // Data may be in our file (grown or rewound) or in queued newer files.
                        if !self.cur_has_more()? {
                            self.next_file()?;
                        }
                        continue;
                    }
                    if stopping {
                        return Ok(None);
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    /// Whether the current file has bytes past what was read.
    fn cur_has_more(&self) -> io::Result<bool> {
        match self.cur.as_ref() {
            Some(c) => Ok(c.file.metadata()?.len() > c.pos),
            None => Ok(false),
        }
    }
}

fn now_nanos() -> i64 {
    let (s, n) = time::now();
    s * 1_000_000_000 + i64::from(n)
}

impl Iterator for LogReader {
    type Item = io::Result<LogLine>;

    fn next(&mut self) -> Option<io::Result<LogLine>> {
        if self.done {
            return None;
        }
        let res = (|| {
            if !self.started {
                self.started = true;
                self.start()?;
            }
            self.next_line()
        })();
        match res {
            Ok(Some(line)) => Some(Ok(line)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::json_file::JsonFileWriter;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const T0: i64 = 1_700_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn q() -> LogQuery {
        LogQuery { stdout: true, stderr: true, ..LogQuery::default() }
    }

    fn texts(r: impl Iterator<Item = io::Result<LogLine>>) -> Vec<String> {
        r.map(|l| String::from_utf8(l.unwrap().bytes).unwrap()).collect()
    }

    /// `n` lines "line i\n", line i at T0 + i s; stderr for multiples of 3.
    fn write_lines(w: &mut JsonFileWriter, range: std::ops::Range<i64>) {
        for i in range {
            let stream = if i % 3 == 0 { STDERR } else { STDOUT };
            w.write_record(stream, T0 + i * SEC, format!("line {i}").as_bytes(), false);
            w.flush();
        }
    }

    fn want(range: impl Iterator<Item = i64>) -> Vec<String> {
        range.map(|i| format!("line {i}\n")).collect()
    }

    fn never() -> impl Fn() -> bool + Send + 'static {
        || false
    }

    #[test]
    fn reads_across_rotated_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "c", 400, 3).unwrap();
        write_lines(&mut w, 0..30);
        assert!(rotated_path(dir.path(), "c", 2).exists());
        let all = texts(read_logs(dir.path(), "c", q(), never()));
        let first: i64 = all[0].trim_end().strip_prefix("line ").unwrap().parse().unwrap();
        assert!(first > 0, "oldest lines should be rotated away");
        assert_eq!(all, want(first..30));
        // Streams.
        let out = texts(read_logs(dir.path(), "c", LogQuery { stderr: false, ..q() }, never()));
        assert_eq!(out, want((first..30).filter(|i| i % 3 != 0)));
        let err = texts(read_logs(dir.path(), "c", LogQuery { stdout: false, ..q() }, never()));
        assert_eq!(err, want((first..30).filter(|i| i % 3 == 0)));
        assert!(texts(read_logs(dir.path(), "nope", q(), never())).is_empty());
    }

    #[test]
    fn tail_counts_from_the_end_across_files() {
        let dir = tempfile::tempdir().unwrap();
        // Small blocks of the log spread over 5 files; the backward scan crosses file boundaries.
        let mut w = JsonFileWriter::open(dir.path(), "t", 300, 5).unwrap();
        write_lines(&mut w, 0..40);
        let all = texts(read_logs(dir.path(), "t", q(), never()));
        let kept = all.len();
        assert!(kept > 10, "{kept}");
        for n in [0, 1, 2, 3, 5, 7, 10, kept - 1, kept, kept + 5, 1000] {
            let got = texts(read_logs(dir.path(), "t", LogQuery { tail: Some(n), ..q() }, never()));
            assert_eq!(got, all[all.len() - n.min(kept)..], "tail {n}");
        }
        // Tail counts the selected stream only.
        let got = texts(read_logs(dir.path(), "t", LogQuery { tail: Some(4), stdout: false, ..q() }, never()));
        assert_eq!(got, want([30, 33, 36, 39].into_iter()));
        // With until: the last lines up to it.
        let until = Some(T0 + 35 * SEC);
        let got = texts(read_logs(dir.path(), "t", LogQuery { tail: Some(3), until, ..q() }, never()));
        assert_eq!(got, want(33..36));
    }

    #[test]
    fn tail_reads_backwards_over_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "b", 1 << 30, 2).unwrap();
        // Records of ~5 KiB: many straddle the 64 KiB blocks.
        for i in 0..100 {
            let text = format!("{i:03}{}", "x".repeat(5000));
            w.write_record(STDOUT, T0 + i, text.as_bytes(), false);
        }
        w.flush();
        for n in [1, 12, 13, 14, 50, 99, 100] {
            let got: Vec<String> = read_logs(dir.path(), "b", LogQuery { tail: Some(n), ..q() }, never())
                .map(|l| String::from_utf8(l.unwrap().bytes[..3].to_vec()).unwrap())
                .collect();
            let w: Vec<String> = (100 - n..100).map(|i| format!("{i:03}")).collect();
            assert_eq!(got, w, "tail {n}");
        }
    }

    #[test]
    fn since_and_until() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "s", 500, 4).unwrap();
        write_lines(&mut w, 0..30);
        let all = texts(read_logs(dir.path(), "s", q(), never()));
        let first: i64 = all[0].trim_end().strip_prefix("line ").unwrap().parse().unwrap();
        let got = texts(read_logs(dir.path(), "s", LogQuery { since: Some(T0 + 20 * SEC), ..q() }, never()));
        assert_eq!(got, want(20..30));
        let got = texts(read_logs(dir.path(), "s", LogQuery { until: Some(T0 + 25 * SEC), ..q() }, never()));
        assert_eq!(got, want(first..26));
        let got = texts(read_logs(dir.path(), "s", LogQuery { since: Some(T0 + 22 * SEC), until: Some(T0 + 24 * SEC), ..q() }, never()));
        assert_eq!(got, want(22..25));
        // since with tail: the tail of the window (stops scanning back at since).
        let got = texts(read_logs(dir.path(), "s", LogQuery { since: Some(T0 + 27 * SEC), tail: Some(10), ..q() }, never()));
        assert_eq!(got, want(27..30));
        let got = texts(read_logs(dir.path(), "s", LogQuery { since: Some(T0 + 99 * SEC), ..q() }, never()));
        assert!(got.is_empty());
        let got = texts(read_logs(dir.path(), "s", LogQuery { since: Some(T0 + 2 * SEC), tail: Some(2), ..q() }, never()));
        assert_eq!(got, want(28..30));
    }

    #[test]
    fn skips_junk_and_long_records() {
        let dir = tempfile::tempdir().unwrap();
        let base = log_path(dir.path(), "j");
        let mut text = String::new();
        text.push_str(&format!("{{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"{}\"}}\n", rfc3339_fixed(T0)));
        text.push_str("not json\n");
        text.push_str(&format!("{{\"log\":\"{}\",\"stream\":\"stdout\",\"time\":\"{}\"}}\n", "y".repeat(MAX_RECORD + 10), rfc3339_fixed(T0)));
        text.push_str(&format!("{{\"log\":\"b\\n\",\"stream\":\"weird\",\"time\":\"{}\"}}\n", rfc3339_fixed(T0)));
        text.push_str(&format!("{{\"log\":\"c\\n\",\"stream\":\"stderr\",\"time\":\"{}\"}}\n", rfc3339_fixed(T0 + 1)));
        text.push_str("{\"log\":\"torn");
        fs::write(&base, text).unwrap();
        let lines: Vec<LogLine> = read_logs(dir.path(), "j", q(), never()).map(Result::unwrap).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], LogLine { stream: STDOUT, time_nanos: T0, bytes: b"a\n".to_vec() });
        assert_eq!(lines[1], LogLine { stream: STDERR, time_nanos: T0 + 1, bytes: b"c\n".to_vec() });
        let tail: Vec<LogLine> = read_logs(dir.path(), "j", LogQuery { tail: Some(2), ..q() }, never()).map(Result::unwrap).collect();
        assert_eq!(tail, lines);
    }

    /// A reader following in a thread, sending what it reads.
    fn follow(dir: &Path, id: &str, q: LogQuery) -> (Arc<AtomicBool>, std::sync::mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let r = read_logs(dir, id, LogQuery { follow: true, ..q }, move || s.load(Ordering::SeqCst));
        let t = std::thread::spawn(move || {
            for l in r {
                if tx.send(String::from_utf8(l.unwrap().bytes).unwrap()).is_err() {
                    return;
                }
            }
        });
        (stop, rx, t)
    }

    fn recv_n(rx: &std::sync::mpsc::Receiver<String>, n: usize) -> Vec<String> {
        (0..n).map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("follow did not deliver")).collect()
    }

    #[test]
    fn follow_picks_up_appended_lines_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "f", 350, 5).unwrap();
        write_lines(&mut w, 0..3);
        let (stop, rx, t) = follow(dir.path(), "f", LogQuery { tail: Some(2), ..q() });
        assert_eq!(recv_n(&rx, 2), want(1..3));
        // Appended, one at a time and then many across several rotations (each file holds ~4 lines; a
        // rotation between two polls loses nothing as long as the file being read is not dropped before the
        // reader gets there: five files leave it ~600 ms).
        write_lines(&mut w, 3..5);
        assert_eq!(recv_n(&rx, 2), want(3..5));
        for i in 5..40 {
            write_lines(&mut w, i..i + 1);
            if i % 2 == 0 {
                std::thread::sleep(Duration::from_millis(60));
            }
        }
        assert_eq!(recv_n(&rx, 35), want(5..40));
        assert!(rotated_path(dir.path(), "f", 4).exists());
        // Lines written just before stop() are still delivered, then the reader ends.
        write_lines(&mut w, 40..42);
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
        let rest: Vec<String> = rx.try_iter().collect();
        assert_eq!(rest, want(40..42));
    }

    #[test]
    fn follow_waits_for_a_log_to_appear_and_survives_emptying() {
        let dir = tempfile::tempdir().unwrap();
        let (stop, rx, t) = follow(dir.path(), "e", q());
        std::thread::sleep(Duration::from_millis(150));
        // max-file 1: the file is emptied when full.
        let mut w = JsonFileWriter::open(dir.path(), "e", 300, 1).unwrap();
        for i in 0..12 {
            write_lines(&mut w, i..i + 1);
            std::thread::sleep(Duration::from_millis(120));
        }
        assert_eq!(recv_n(&rx, 12), want(0..12));
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn follow_until_ends_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "u", 1 << 20, 2).unwrap();
        w.write_record(STDOUT, now_nanos(), b"now", false);
        w.flush();
        let until = now_nanos() + 300_000_000;
        let r = read_logs(dir.path(), "u", LogQuery { follow: true, until: Some(until), ..q() }, never());
        let start = std::time::Instant::now();
        assert_eq!(texts(r), ["now\n"]);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn frames_like_docker() {
        let l = LogLine { stream: STDERR, time_nanos: 1_735_689_600_120_000_000, bytes: b"hi\n".to_vec() };
        assert_eq!(l.frame(false, false), b"hi\n");
        assert_eq!(l.frame(false, true), b"\x02\0\0\0\0\0\0\x03hi\n");
        assert_eq!(l.frame(true, false), b"2025-01-01T00:00:00.120000000Z hi\n");
        let f = l.frame(true, true);
        assert_eq!(&f[..8], b"\x02\0\0\0\0\0\0\x22");
        assert_eq!(parse_time_nanos("2025-01-01T00:00:00.12Z"), Some(1_735_689_600_120_000_000));
        assert_eq!(parse_time_nanos("2025-01-01T00:00:00Z"), Some(1_735_689_600_000_000_000));
        assert_eq!(parse_time_nanos("2025-01-01T01:00:00.000000001+01:00"), Some(1_735_689_600_000_000_001));
        assert_eq!(parse_time_nanos(&rfc3339_fixed(-1)), Some(-1));
    }
}
