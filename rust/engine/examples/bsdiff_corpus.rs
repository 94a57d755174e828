//! Measures `engine::delta::bsdiff` on real files: patch sizes after zstd -19, diff and apply time
//! and peak RSS (each measured in a child process of its own).
//!
//! ```text
//! cargo run --release -p balena-engine-core --example bsdiff_corpus -- file OLD NEW
//! cargo run --release -p balena-engine-core --example bsdiff_corpus -- tree OLD_DIR NEW_DIR [quick]
//! ```
//! `file` diffs one pair (e.g. the corpus' ruff-0.6.0.bin → ruff-0.6.1.bin), compresses the three
//! streams (and the interleaved single stream) at windowLog 21/22/23 without long mode, and
//! applies the result from the compressed files through streaming zstd decoders, checking the
//! output's SHA-256. `tree` diffs every regular file present in both trees with different content
//! and sums the patch sizes, per file and with the streams concatenated across files (`quick`:
//! concatenated at windowLog 23 only).

use std::error::Error;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use engine::delta::bsdiff::{self, PatchStreams};
use sha2::{Digest, Sha256};
use zstd::zstd_safe::CParameter;

type Res<T> = Result<T, Box<dyn Error>>;

const LEVEL: i32 = 19;
const WINDOW_LOGS: [u32; 3] = [21, 22, 23];
const NAMES: [&str; 3] = ["control", "diff", "extra"];

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument; see the doc comment");
    match arg(1)? {
        "file" => file(Path::new(arg(2)?), Path::new(arg(3)?)),
        "tree" => tree(Path::new(arg(2)?), Path::new(arg(3)?), arg(4).is_ok_and(|a| a == "quick")),
        "diff-child" => diff_child(Path::new(arg(2)?), Path::new(arg(3)?), Path::new(arg(4)?)),
        "apply-child" => apply_child(Path::new(arg(2)?), Path::new(arg(3)?), arg(4)?, arg(5)?.parse()?, arg(6)?),
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

/// Peak resident set size of this process, in MB (VmHWM: unlike getrusage's ru_maxrss it is not
/// inherited from the parent across fork and exec).
fn peak_rss_mb() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn mb(n: usize) -> String {
    format!("{:.3} MB", n as f64 / 1e6)
}

fn compress(data: &[u8], window_log: u32) -> Res<Vec<u8>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = zstd::bulk::Compressor::new(LEVEL)?;
    c.set_parameter(CParameter::WindowLog(window_log))?;
    c.set_parameter(CParameter::EnableLongDistanceMatching(false))?;
    Ok(c.compress(data)?)
}

/// Runs this program again with `args`; returns the last line it printed.
fn child(args: &[&str]) -> Res<String> {
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    io::stderr().write_all(&out.stderr)?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status).into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    Ok(stdout.lines().last().unwrap_or_default().to_string())
}

fn file(old: &Path, new: &Path) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().ok_or("temp path")?;
    let line = child(&["diff-child", old.to_str().ok_or("path")?, new.to_str().ok_or("path")?, d])?;
    let (diff_s, diff_rss) = line.split_once(' ').ok_or("bad child output")?;
    let new_bytes = fs::read(new)?;
    let new_len = new_bytes.len();
    let sha = hex::encode(Sha256::digest(&new_bytes));
    drop(new_bytes);
    let p = PatchStreams {
        control: fs::read(dir.path().join("control"))?,
        diff: fs::read(dir.path().join("diff"))?,
        extra: fs::read(dir.path().join("extra"))?,
    };
    let one = p.interleave()?;
    println!("{} → {} ({} → {})", old.display(), new.display(), mb(fs::metadata(old)?.len() as usize), mb(new_len));
    println!("diff: {diff_s} s, peak RSS {diff_rss} MB");
    println!(
        "raw streams: control {} ({} triples), diff {} ({} non-zero), extra {}",
        mb(p.control.len()),
        p.control.iter().filter(|&&b| b & 0x80 == 0).count() / 3,
        mb(p.diff.len()),
        p.diff.iter().filter(|&&b| b != 0).count(),
        mb(p.extra.len())
    );
    let streams = [&p.control, &p.diff, &p.extra];
    let mut best = [(usize::MAX, 0u32); 3];
    let mut best_one = (usize::MAX, 0u32);
    for wlog in WINDOW_LOGS {
        let t = Instant::now();
        let sizes: Vec<usize> = streams.iter().map(|s| compress(s, wlog).map(|c| c.len())).collect::<Res<_>>()?;
        let one_size = compress(&one, wlog)?.len();
        let total: usize = sizes.iter().sum();
        println!(
            "zstd -{LEVEL} wlog {wlog}: control {} + diff {} + extra {} = {}   | interleaved one stream {}   ({:.0} s)",
            mb(sizes[0]),
            mb(sizes[1]),
            mb(sizes[2]),
            mb(total),
            mb(one_size),
            t.elapsed().as_secs_f64()
        );
        for i in 0..3 {
            if sizes[i] < best[i].0 {
                best[i] = (sizes[i], wlog);
            }
        }
        if one_size < best_one.0 {
            best_one = (one_size, wlog);
        }
    }
    let total: usize = best.iter().map(|b| b.0).sum();
    println!(
        "best per stream: {} (windowLogs {}/{}/{}); interleaved best {} (windowLog {})",
        mb(total),
        best[0].1,
        best[1].1,
        best[2].1,
        mb(best_one.0),
        best_one.1
    );

    // Apply from the compressed files, each stream at its best windowLog.
    for (i, name) in NAMES.iter().enumerate() {
        fs::write(dir.path().join(format!("{name}.zst")), compress(streams[i], best[i].1)?)?;
    }
    fs::write(dir.path().join("one.zst"), compress(&one, best_one.1)?)?;
    let new_len_s = new_len.to_string();
    for mode in ["three", "one"] {
        let line = child(&["apply-child", old.to_str().ok_or("path")?, d, mode, &new_len_s, &sha])?;
        println!("apply ({mode} stream{}): {line}", if mode == "one" { "" } else { "s" });
    }
    Ok(())
}

fn diff_child(old: &Path, new: &Path, dir: &Path) -> Res<()> {
    let old = fs::read(old)?;
    let new = fs::read(new)?;
    let t = Instant::now();
    let p = bsdiff::diff(&old, &new);
    let secs = t.elapsed().as_secs_f64();
    let rss = peak_rss_mb();
    fs::write(dir.join("control"), &p.control)?;
    fs::write(dir.join("diff"), &p.diff)?;
    fs::write(dir.join("extra"), &p.extra)?;
    println!("{secs:.2} {rss:.1}");
    Ok(())
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn decoder(path: PathBuf) -> Res<zstd::stream::read::Decoder<'static, BufReader<fs::File>>> {
    let mut d = zstd::stream::read::Decoder::new(fs::File::open(path)?)?;
    d.window_log_max(23)?;
    Ok(d)
}

fn apply_child(old: &Path, dir: &Path, mode: &str, new_len: u64, sha: &str) -> Res<()> {
    let old_file = fs::File::open(old)?;
    let old_len = old_file.metadata()?.len();
    let mut out = HashWriter(Sha256::new());
    let t = Instant::now();
    let n = if mode == "one" {
        let mut one = decoder(dir.join("one.zst"))?;
        bsdiff::apply_interleaved(&old_file, old_len, &mut one, new_len, &mut out)?
    } else {
        // An empty stream is stored as an empty file, not as a zstd frame.
        let open = |name: &str| -> Res<Box<dyn Read>> {
            let path = dir.join(format!("{name}.zst"));
            if fs::metadata(&path)?.len() == 0 {
                Ok(Box::new(io::empty()))
            } else {
                Ok(Box::new(decoder(path)?))
            }
        };
        let (mut c, mut d, mut e) = (open("control")?, open("diff")?, open("extra")?);
        bsdiff::apply(&old_file, old_len, &mut c, &mut d, &mut e, new_len, &mut out)?
    };
    let secs = t.elapsed().as_secs_f64();
    let ok = n == new_len && hex::encode(out.0.finalize()) == sha;
    println!("{secs:.2} s, peak RSS {:.1} MB, output {}", peak_rss_mb(), if ok { "matches" } else { "DIFFERS" });
    if !ok {
        return Err("apply output differs from the new file".into());
    }
    Ok(())
}

/// Regular files under `root`, as paths relative to it.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let path = rel.join(entry.file_name());
        if ty.is_dir() {
            walk(root, &path, out)?;
        } else if ty.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn tree(old_root: &Path, new_root: &Path, quick: bool) -> Res<()> {
    let mut files = Vec::new();
    walk(new_root, Path::new(""), &mut files)?;
    files.sort();
    let mut cat = PatchStreams::default();
    let mut one_cat = Vec::new();
    let mut new_cat = Vec::new();
    let (mut count, mut old_total, mut new_total) = (0usize, 0usize, 0usize);
    let (mut per_file, mut per_file_one, mut patch_from) = (0usize, 0usize, 0usize);
    let mut diff_secs = 0f64;
    let mut slowest = (0f64, PathBuf::new());
    for rel in &files {
        let old_path = old_root.join(rel);
        match fs::symlink_metadata(&old_path) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        let old = fs::read(&old_path)?;
        let new = fs::read(new_root.join(rel))?;
        if old == new {
            continue;
        }
        count += 1;
        old_total += old.len();
        new_total += new.len();
        let t = Instant::now();
        let p = bsdiff::diff(&old, &new);
        let secs = t.elapsed().as_secs_f64();
        diff_secs += secs;
        if secs > slowest.0 {
            slowest = (secs, rel.clone());
        }
        let one = p.interleave()?;
        if !quick {
            for s in [&p.control, &p.diff, &p.extra] {
                per_file += compress(s, 23)?.len();
            }
            per_file_one += compress(&one, 23)?.len();
            patch_from += zstd_patch_from(&old, &new)?;
        }
        cat.control.extend_from_slice(&p.control);
        cat.diff.extend_from_slice(&p.diff);
        cat.extra.extend_from_slice(&p.extra);
        one_cat.extend_from_slice(&one);
        new_cat.extend_from_slice(&new);
    }
    println!(
        "{count} changed files: old {} → new {}; diff time {diff_secs:.2} s total (slowest {:.2} s: {}); peak RSS {:.1} MB",
        mb(old_total),
        mb(new_total),
        slowest.0,
        slowest.1.display(),
        peak_rss_mb()
    );
    println!(
        "raw streams: control {}, diff {}, extra {}",
        mb(cat.control.len()),
        mb(cat.diff.len()),
        mb(cat.extra.len())
    );
    if !quick {
        println!("per file, zstd -{LEVEL} wlog 23: three streams {} | interleaved {}", mb(per_file), mb(per_file_one));
        println!("per file, zstd -{LEVEL} --patch-from (reference): {}", mb(patch_from));
    }
    for &wlog in if quick { &WINDOW_LOGS[2..] } else { &WINDOW_LOGS[..] } {
        let sizes: Vec<usize> =
            [&cat.control, &cat.diff, &cat.extra].iter().map(|s| compress(s, wlog).map(|c| c.len())).collect::<Res<_>>()?;
        println!(
            "concatenated, zstd -{LEVEL} wlog {wlog}: control {} + diff {} + extra {} = {}   | interleaved one stream {}",
            mb(sizes[0]),
            mb(sizes[1]),
            mb(sizes[2]),
            mb(sizes.iter().sum()),
            mb(compress(&one_cat, wlog)?.len())
        );
    }
    if !quick {
        println!("no delta: the new files concatenated, zstd -{LEVEL} wlog 23: {}", mb(compress(&new_cat, 23)?.len()));
    }
    Ok(())
}

/// Size of `zstd -19 --patch-from=old new` (window large enough to reach all of old).
fn zstd_patch_from(old: &[u8], new: &[u8]) -> Res<usize> {
    let need = (old.len() + new.len()).max(1 << 10).next_power_of_two().trailing_zeros().clamp(10, 27);
    let mut e = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), LEVEL, old)?;
    e.set_parameter(CParameter::WindowLog(need))?;
    e.set_parameter(CParameter::EnableLongDistanceMatching(false))?;
    e.write_all(new)?;
    Ok(e.finish()?.len())
}
