//! Measures applying a balenaEngine-format (rdiff) delta through `BaseStream`: index build time, apply
//! time, index memory and peak RSS.
//!
//!     cargo run --release --example rdiff_apply -- DATA_ROOT BASE_IMAGE DELTA [OUT] [--expect sha256:…] [--no-hash]
//!
//! BASE_IMAGE is an image ID (`sha256:…` or its hex) or a tag of the store at DATA_ROOT. The delta is made
//! against the base image's concatenated layer tars, e.g.
//!
//!     rdiff signature -R rollsum -H blake2 -b 512 -S 32 base-layers.tar sig
//!     rdiff delta sig new-layer.tar delta
//!
//! The output's sha256 is printed (and checked with `--expect`); OUT, when given, receives the result.
//! `--no-hash` times the patching alone (output discarded, not hashed).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use engine::delta::base_stream::BaseStream;
use engine::delta::rdiff::apply;
use engine::digest::{Digest, HashingWriter};
use engine::store::{Access, Store};

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let expect = match args.iter().position(|a| a == "--expect") {
        Some(i) if i + 1 < args.len() => {
            let v = args.remove(i + 1);
            args.remove(i);
            Some(v)
        }
        _ => None,
    };
    let no_hash = args.iter().any(|a| a == "--no-hash");
    args.retain(|a| a != "--no-hash");
    if args.len() < 3 || args.len() > 4 {
        eprintln!("usage: rdiff_apply DATA_ROOT BASE_IMAGE DELTA [OUT] [--expect sha256:HEX] [--no-hash]");
        std::process::exit(2);
    }
    let root = PathBuf::from(&args[0]);
    let store = Store::open(&root, Access::Read)?;
    let meta = store.metadata();
    let id = if let Some(id) = meta.tags.get(&args[1]) {
        id.clone()
    } else {
        let hex = args[1].strip_prefix("sha256:").unwrap_or(&args[1]);
        Digest::from_hex(hex)?
    };

    let rss_before = vm_kib("VmRSS:");
    let t0 = Instant::now();
    let base = BaseStream::open(&store, &id)?;
    let t_open = t0.elapsed();
    let rss_index = vm_kib("VmRSS:");

    let delta = BufReader::new(File::open(&args[2])?);
    let delta_len = std::fs::metadata(&args[2])?.len();
    let t1 = Instant::now();
    let (n, digest) = match args.get(3) {
        _ if no_hash => (apply(delta, &base, &mut std::io::sink())?, Digest::of_bytes(b"")),
        Some(out) => {
            let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, File::create(out)?));
            let n = apply(delta, &base, &mut w)?;
            let (mut inner, h) = w.into_parts();
            inner.flush()?;
            (n, h.finish())
        }
        None => {
            let mut w = HashingWriter::new(std::io::sink());
            let n = apply(delta, &base, &mut w)?;
            (n, w.into_parts().1.finish())
        }
    };
    let t_apply = t1.elapsed();

    println!("base image      {id}");
    println!("base stream     {} bytes, {} segments", base.len(), base.segments());
    println!("index heap      {} KiB", base.heap_bytes() / 1024);
    println!("index build     {:.3} s (RSS {} -> {} KiB)", t_open.as_secs_f64(), rss_before, rss_index);
    println!("delta           {delta_len} bytes");
    println!(
        "apply           {:.3} s, {} bytes out ({:.0} MiB/s)",
        t_apply.as_secs_f64(),
        n,
        n as f64 / 1048576.0 / t_apply.as_secs_f64()
    );
    if !no_hash {
        println!("result          {digest}");
    }
    println!("peak RSS        {} KiB", vm_kib("VmHWM:"));
    if let Some(e) = expect.filter(|_| !no_hash) {
        if e != digest.to_string() && e != digest.hex() {
            eprintln!("MISMATCH: expected {e}");
            std::process::exit(1);
        }
        println!("matches         --expect");
    }
    Ok(())
}
