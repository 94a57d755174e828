//! docker's json-file driver, writing side: one JSON object per line in `<id>-json.log`,
//! `{"log":"hello\n","stream":"stdout","time":"2025-01-01T00:00:00.123456789Z"}` (a line cut at 16 KiB, or
//! left unfinished at exit, has no trailing `\n` in `log`), rotated when the next record would make the file
//! larger than `max-size`: `<id>-json.log` → `.1` → `.2` …, the oldest beyond `max-file` dropped
//! (`max-file` 1: the file is emptied instead).
//!
//! A write that fails (a full disk above all) never blocks nor kills the container: the file is cut back to
//! its last whole record, the lines are dropped and counted, one warning says so, and another says when
//! writing works again.
//!
//! Rotation renames files under a lock shared with readers in this process ([`rotation_lock`]), so a reader
//! that lists the files sees them either all before or all after a rotation.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use super::config::MAX_MAX_FILE;
use super::{log_path, rotated_path, STDERR};
use engine::time;

/// Encoded records are written once this many bytes are waiting (and at the end of every read).
const FLUSH_AT: usize = 64 * 1024;

/// The lock that orders a container's rotations against readers listing its files, by live log path.
pub fn rotation_lock(base: &Path) -> Arc<RwLock<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Weak<RwLock<()>>>>> = OnceLock::new();
    let mut map = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(lock) = map.get(base).and_then(Weak::upgrade) {
        return lock;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let lock = Arc::new(RwLock::new(()));
    map.insert(base.to_path_buf(), Arc::downgrade(&lock));
    lock
}

/// Appends one json-file record to `out`. Bytes that are not UTF-8 become U+FFFD, as in docker.
pub fn encode(out: &mut Vec<u8>, stream: u8, time_nanos: i64, line: &[u8], partial: bool) {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if !partial {
        text.push('\n');
    }
    out.extend_from_slice(b"{\"log\":");
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &text);
    out.extend_from_slice(if stream == STDERR { b",\"stream\":\"stderr\",\"time\":\"" } else { b",\"stream\":\"stdout\",\"time\":\"" });
    let secs = time_nanos.div_euclid(1_000_000_000);
    let nanos = time_nanos.rem_euclid(1_000_000_000) as u32;
    out.extend_from_slice(time::rfc3339_nanos(secs, nanos).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// The writing end of one container's json-file log.
pub struct JsonFileWriter {
    dir: PathBuf,
    id: String,
    base: PathBuf,
    max_size: u64,
    max_file: u32,
    file: Option<File>,
    /// Bytes of whole records in the live file.
    size: u64,
    /// Encoded records not yet written, and how many lines they hold.
    buf: Vec<u8>,
    buf_lines: u64,
    lock: Arc<RwLock<()>>,
    written: u64,
    dropped: u64,
    /// Lines dropped since writing last worked (the warning is logged once per such episode).
    dropping: u64,
}

impl JsonFileWriter {
    /// Opens (or creates) `<dir>/<id>-json.log` for appending; rotated files beyond `max_file` (left by an
    /// earlier, larger setting) are removed.
    pub fn open(dir: &Path, id: &str, max_size: u64, max_file: u32) -> io::Result<JsonFileWriter> {
        let base = log_path(dir, id);
        let max_file = max_file.clamp(1, MAX_MAX_FILE);
        let lock = rotation_lock(&base);
        let file = {
            let _g = lock.write().unwrap_or_else(|e| e.into_inner());
            for n in max_file..=MAX_MAX_FILE {
                match fs::remove_file(rotated_path(dir, id, n)) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("removing an old log of container {id}: {e}"),
                    Ok(()) => {}
                }
            }
            open_live(&base)?
        };
        let size = file.metadata()?.len();
        Ok(JsonFileWriter {
            dir: dir.to_path_buf(),
            id: id.to_owned(),
            base,
            max_size: max_size.max(1),
            max_file,
            file: Some(file),
            size,
            buf: Vec::with_capacity(FLUSH_AT + 1024),
            buf_lines: 0,
            lock,
            written: 0,
            dropped: 0,
            dropping: 0,
        })
    }

    /// Adds one line (`partial`: cut at 16 KiB or unfinished at exit, so no trailing newline). Written at
    /// the next [`flush`](Self::flush) at the latest.
    pub fn write_record(&mut self, stream: u8, time_nanos: i64, line: &[u8], partial: bool) {
        let start = self.buf.len();
        encode(&mut self.buf, stream, time_nanos, line, partial);
        let rec_len = (self.buf.len() - start) as u64;
        if self.size + start as u64 + rec_len > self.max_size && self.size + start as u64 > 0 {
            // This record goes to a fresh file: what is before it, to the current one.
            let rec = self.buf.split_off(start);
            self.flush();
            self.rotate();
            self.buf = rec;
        }
        self.buf_lines += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes what is waiting. On failure, the lines are dropped (counted) and the file is cut back to its
    /// last whole record.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let res = match self.file.as_mut() {
            Some(f) => f.write_all(&self.buf),
            None => match open_live(&self.base) {
                Ok(f) => {
                    self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    self.file.insert(f).write_all(&self.buf)
                }
                Err(e) => Err(e),
            },
        };
        let lines = std::mem::take(&mut self.buf_lines);
        match res {
            Ok(()) => {
                self.size += self.buf.len() as u64;
                self.written += lines;
                if self.dropping > 0 {
                    log::warn!("logs of container {}: writing again after dropping {} line(s)", short(&self.id), self.dropping);
                    self.dropping = 0;
                }
            }
            Err(e) => {
                if let Some(f) = self.file.as_ref() {
                    // Cutting back frees space; it cannot fail for want of it.
                    if f.set_len(self.size).is_err() {
                        self.file = None;
                    }
                }
                if self.dropping == 0 {
                    log::warn!(
                        "logs of container {}: cannot write {} ({e}): dropping lines until it works again",
                        short(&self.id),
                        self.base.display()
                    );
                }
                self.dropping += lines;
                self.dropped += lines;
            }
        }
        self.buf.clear();
    }

    /// `<id>-json.log` → `.1` → `.2` …; the oldest beyond `max_file` goes. With `max_file` 1 the file is
    /// emptied instead.
    fn rotate(&mut self) {
        let _g = self.lock.write().unwrap_or_else(|e| e.into_inner());
        if self.max_file <= 1 {
            if let Some(f) = self.file.as_ref() {
                if let Err(e) = f.set_len(0) {
                    log::warn!("logs of container {}: emptying {}: {e}", short(&self.id), self.base.display());
                }
            }
            self.size = 0;
            return;
        }
        let res = (|| -> io::Result<()> {
            remove_if_exists(&rotated_path(&self.dir, &self.id, self.max_file - 1))?;
            for n in (1..self.max_file - 1).rev() {
                rename_if_exists(&rotated_path(&self.dir, &self.id, n), &rotated_path(&self.dir, &self.id, n + 1))?;
            }
            fs::rename(&self.base, rotated_path(&self.dir, &self.id, 1))
        })();
        if let Err(e) = res {
            // Still bounded: the live file keeps growing only by what fails to rotate next time.
            log::warn!("logs of container {}: rotating {}: {e}", short(&self.id), self.base.display());
        }
        self.file = None;
        self.size = 0;
        match open_live(&self.base) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
            }
            Err(e) => log::warn!("logs of container {}: creating {}: {e}", short(&self.id), self.base.display()),
        }
    }

    /// Lines written, and lines dropped because writing failed.
    pub fn counts(&self) -> (u64, u64) {
        (self.written, self.dropped)
    }
}

impl Drop for JsonFileWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

fn open_live(base: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(libc::O_CLOEXEC).open(base)
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::STDOUT;

    fn lines_of(p: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn encodes_like_docker() {
        let mut out = Vec::new();
        encode(&mut out, STDOUT, 1_735_689_600_123_456_789, b"hello \"world\"\t\x01", false);
        encode(&mut out, STDERR, 1_735_689_600_000_000_000, b"bad \xff utf8", true);
        let text = String::from_utf8(out).unwrap();
        let mut l = text.lines();
        assert_eq!(
            l.next().unwrap(),
            r#"{"log":"hello \"world\"\t\u0001\n","stream":"stdout","time":"2025-01-01T00:00:00.123456789Z"}"#
        );
        assert_eq!(l.next().unwrap(), "{\"log\":\"bad \u{fffd} utf8\",\"stream\":\"stderr\",\"time\":\"2025-01-01T00:00:00Z\"}");
    }

    #[test]
    fn rotates_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let id = "c0ffee";
        // Each record is ~70 bytes: three fit in 256.
        let mut w = JsonFileWriter::open(dir.path(), id, 256, 3).unwrap();
        for i in 0..20 {
            w.write_record(STDOUT, 1_700_000_000_000_000_000 + i, format!("line {i:02}").as_bytes(), false);
            w.flush();
        }
        assert_eq!(w.counts(), (20, 0));
        let base = log_path(dir.path(), id);
        let one = rotated_path(dir.path(), id, 1);
        let two = rotated_path(dir.path(), id, 2);
        assert!(!rotated_path(dir.path(), id, 3).exists());
        for p in [&base, &one, &two] {
            let len = fs::metadata(p).unwrap().len();
            assert!(len > 0 && len <= 256, "{}: {len}", p.display());
        }
        // Oldest first, the newest lines survive in order.
        let all: Vec<String> = [&two, &one, &base]
            .iter()
            .flat_map(|p| lines_of(p))
            .map(|v| v["log"].as_str().unwrap().to_owned())
            .collect();
        let n = all.len();
        assert!((6..=12).contains(&n), "{all:?}");
        let want: Vec<String> = (20 - n..20).map(|i| format!("line {i:02}\n")).collect();
        assert_eq!(all, want);
        drop(w);

        // Reopened with a smaller max-file: the extra rotated file goes.
        let w = JsonFileWriter::open(dir.path(), id, 256, 2).unwrap();
        assert!(one.exists() && !two.exists());
        drop(w);
    }

    #[test]
    fn one_file_is_emptied_instead_of_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "x", 200, 1).unwrap();
        for i in 0..10 {
            w.write_record(STDOUT, i, format!("line {i}").as_bytes(), false);
        }
        w.flush();
        let base = log_path(dir.path(), "x");
        assert!(fs::metadata(&base).unwrap().len() <= 200);
        assert!(!rotated_path(dir.path(), "x", 1).exists());
        let lines = lines_of(&base);
        assert_eq!(lines.last().unwrap()["log"], "line 9\n");
    }

    #[test]
    fn a_record_larger_than_max_size_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonFileWriter::open(dir.path(), "big", 100, 2).unwrap();
        w.write_record(STDOUT, 0, b"small", false);
        w.write_record(STDOUT, 1, &[b'x'; 500], true);
        w.flush();
        let base = log_path(dir.path(), "big");
        let one = rotated_path(dir.path(), "big", 1);
        assert_eq!(lines_of(&one)[0]["log"], "small\n");
        assert_eq!(lines_of(&base)[0]["log"].as_str().unwrap().len(), 500);
    }

    /// A small tmpfs at a fresh directory, unmounted on drop; `None` (the test skips, loudly) only when
    /// mounting is not permitted here.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(size: &str) -> Option<Tmpfs> {
            use std::ffi::CString;
            let dir = tempfile::tempdir().unwrap();
            let target = CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            let opts = CString::new(format!("size={size},mode=0755")).unwrap();
            // SAFETY: plain mount(2) with NUL-terminated strings that outlive the call.
            let r = unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, opts.as_ptr().cast()) };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EPERM) {
                    eprintln!("\n*** SKIPPED: cannot mount a tmpfs here ({e}): the full-disk test needs root (CAP_SYS_ADMIN) ***\n");
                    return None;
                }
                panic!("mounting a tmpfs at {}: {e}", dir.path().display());
            }
            Some(Tmpfs(dir))
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let target = std::ffi::CString::new(self.0.path().as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2(2) of the tmpfs this value mounted.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }

    fn all_whole_records(dir: &Path, id: &str) -> usize {
        let mut n = 0;
        for p in [log_path(dir, id), rotated_path(dir, id, 1)] {
            let Ok(text) = fs::read_to_string(&p) else { continue };
            assert!(text.is_empty() || text.ends_with('\n'), "{} ends with a torn record", p.display());
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("torn record ({e}): {l}"));
                assert!(v["log"].is_string());
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_full_disk_drops_lines_counts_them_and_recovers() {
        let Some(fs_) = Tmpfs::mount("256k") else { return };
        let filler = fs_.path().join("filler");
        fs::write(&filler, vec![7u8; 160 * 1024]).unwrap();
        // Limits larger than the file system: only the disk stops the writer.
        let mut w = JsonFileWriter::open(fs_.path(), "full", 10 << 20, 2).unwrap();
        let line = "x".repeat(1000);
        for i in 0..400 {
            w.write_record(STDOUT, i, line.as_bytes(), false);
            if i % 7 == 0 {
                w.flush();
            }
        }
        w.flush();
        let (written, dropped) = w.counts();
        assert!(dropped > 0, "nothing dropped: the disk never filled");
        assert!(written > 0 && written + dropped == 400, "{written} + {dropped}");
        // What is on disk are whole records: a torn write was cut back.
        assert_eq!(all_whole_records(fs_.path(), "full"), written as usize);
        // Space again: writing resumes.
        fs::remove_file(&filler).unwrap();
        w.write_record(STDOUT, 1000, b"after", false);
        w.flush();
        assert_eq!(w.counts(), (written + 1, dropped));
        assert_eq!(all_whole_records(fs_.path(), "full"), written as usize + 1);
    }

    #[test]
    fn a_full_disk_never_blocks_the_container() {
        use crate::logs::{spawn_log_copier, LogConfig};
        use std::io::Write;
        let Some(fs_) = Tmpfs::mount("128k") else { return };
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (err_r, err_w) = nix::unistd::pipe().unwrap();
        let cfg = LogConfig { max_size: 1 << 20, max_file: 2, ..LogConfig::default() };
        let c = spawn_log_copier(fs_.path(), &cfg, out_r, err_r, "chatty").unwrap();
        // The "container": 4 MiB of lines, far more than fits.
        let writer = std::thread::spawn(move || {
            let mut out = std::fs::File::from(out_w);
            let line = format!("{}\n", "y".repeat(1023));
            for _ in 0..4096 {
                out.write_all(line.as_bytes()).unwrap();
            }
            drop(err_w);
        });
        let start = std::time::Instant::now();
        writer.join().unwrap();
        let stats = c.join_stats();
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        assert_eq!(stats.bytes, 4 << 20);
        assert!(stats.dropped > 0 && stats.lines > 0, "{stats:?}");
        assert_eq!(stats.lines + stats.dropped, 4096, "{stats:?}");
        assert_eq!(all_whole_records(fs_.path(), "chatty"), stats.lines as usize);
    }

    #[test]
    fn rotation_locks_are_shared_per_path() {
        let a = rotation_lock(Path::new("/x/a"));
        let b = rotation_lock(Path::new("/x/a"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = rotation_lock(Path::new("/x/c"));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
