//! Device side: rebuilds a target layer's tar from a `bedelta/1` payload and the base image's files, as a
//! stream for the ordinary unpacker (the archive path, reused). Memory is bounded by three small zstd
//! windows and a few buffers, whatever the image size; unchanged files are announced to the unpacker so it
//! hard-links them instead of writing them again.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::base_files::BaseLayers;
use super::bsdiff;
use super::format::{self, read_source, read_varint, Header, MAX_RAW, OP_COPY, OP_END, OP_LITERAL, OP_PATCH, OP_RAW};
use crate::error::{Error, IoContext, Result};
use crate::layer::LinkSource;
use crate::store::{StagedLayer, Staging};

/// Largest decoder window accepted (the encoder uses 4 MiB); bounds the device's memory.
const WINDOW_LOG_MAX: u32 = 23;
/// Largest bsdiff control block of one file.
const MAX_CONTROL: u64 = 64 << 20;

/// A payload that cannot be applied is bad input (the archive's), not a damaged store.
fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::BadArchive(format!("delta payload: {what}"))
}

/// The payload's own reading errors (header) as bad input too.
pub(crate) fn payload_error(e: Error) -> Error {
    match e {
        Error::Corrupt(m) => Error::BadArchive(m),
        e => e,
    }
}

/// Reads a byte range of a file by `pread`, so several readers share one file.
struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

type Section<'f> = zstd::stream::read::Decoder<'static, io::BufReader<RangeReader<'f>>>;

fn open_section(file: &File, start: u64, len: u64) -> Result<Section<'_>> {
    let end = start.checked_add(len).ok_or_else(|| corrupt("section bounds overflow"))?;
    let mut d = zstd::stream::read::Decoder::new(RangeReader { file, pos: start, end })
        .ctx(|| "opening delta section".into())?;
    d.window_log_max(WINDOW_LOG_MAX).ctx(|| "opening delta section".into())?;
    Ok(d)
}

/// Files the producer copied whole from the base, by stream offset, for the unpacker to hard-link.
#[derive(Default)]
pub struct LinkHints {
    queue: Mutex<VecDeque<(u64, u64, File)>>,
}

impl LinkHints {
    fn push(&self, offset: u64, size: u64, file: File) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back((offset, size, file));
        }
    }
}

pub struct HintedLinks(pub Arc<LinkHints>);

impl LinkSource for HintedLinks {
    fn identical_file(&mut self, offset: u64, size: u64) -> Option<File> {
        let mut q = self.0.queue.lock().ok()?;
        while q.front().is_some_and(|h| h.0 < offset) {
            q.pop_front();
        }
        match q.front() {
            Some(h) if h.0 == offset && h.1 == size => q.pop_front().map(|h| h.2),
            _ => None,
        }
    }
}

struct Counting<'w, W> {
    inner: &'w mut W,
    n: u64,
    /// A write failed: errors from here on are the output's, not the payload's.
    failed: bool,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b).inspect_err(|_| self.failed = true)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn copy_exact<W: Write>(r: &mut impl Read, len: u64, out: &mut Counting<'_, W>, what: &str) -> Result<()> {
    let n = io::copy(&mut r.take(len), out).map_err(|e| {
        if out.failed {
            Error::Io { context: "writing the rebuilt layer".into(), err: e }
        } else {
            corrupt(format!("{what}: {e}"))
        }
    })?;
    if n != len {
        return Err(corrupt(format!("{what}: section ends early")));
    }
    Ok(())
}

fn at_end(r: &mut impl Read, what: &str) -> Result<()> {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt(format!("trailing data in the {what} section"))),
        Err(e) => Err(corrupt(format!("{what} section: {e}"))),
    }
}

fn open_base(base: &BaseLayers, layer: u32, path: &[u8], expect: u64) -> Result<File> {
    let name = String::from_utf8_lossy(path);
    // The payload names it: a path that cannot be opened below the base layer (`..`, a symlink, absent) is
    // the payload's fault, or the base's files changed on disk.
    let f = base.open_file(layer, path).map_err(|e| match e {
        Error::Corrupt(m) => corrupt(format!("base layer {layer}: {m}")),
        e => e,
    })?;
    let meta = f.metadata().ctx(|| "inspecting base file".into())?;
    if !meta.is_file() {
        return Err(corrupt(format!("base layer {layer}: {name:?} is not a regular file")));
    }
    let len = meta.len();
    if len != expect {
        return Err(Error::Corrupt(format!(
            "base file {name:?} has {len} bytes, the delta expects {expect}: the base image's files changed on disk, \
             or the delta is damaged"
        )));
    }
    Ok(f)
}

/// Writes the target layer's tar to `out`. Returns its size.
pub fn write_target_tar(
    payload: &File,
    header: &Header,
    start: u64,
    base: &BaseLayers,
    out: &mut impl Write,
    hints: &LinkHints,
) -> Result<u64> {
    let [ops_len, data_len, diff_len] = header.sections;
    let data_start = start.checked_add(ops_len).ok_or_else(|| corrupt("section bounds overflow"))?;
    let diff_start = data_start.checked_add(data_len).ok_or_else(|| corrupt("section bounds overflow"))?;
    let mut ops = open_section(payload, start, ops_len)?;
    let mut data = open_section(payload, data_start, data_len)?;
    let mut diff = open_section(payload, diff_start, diff_len)?;
    let mut out = Counting { inner: out, n: 0, failed: false };
    let bad = |e: io::Error| corrupt(format!("ops section: {e}"));
    loop {
        let mut op = [0u8; 1];
        ops.read_exact(&mut op).map_err(bad)?;
        match op[0] {
            OP_RAW => {
                let len = read_varint(&mut ops).map_err(bad)?;
                if len > MAX_RAW {
                    return Err(corrupt("raw run too long"));
                }
                copy_exact(&mut ops, len, &mut out, "raw run")?;
            }
            OP_COPY => {
                let (layer, path) = read_source(&mut ops).map_err(bad)?;
                let size = read_varint(&mut ops).map_err(bad)?;
                let mut f = open_base(base, layer, &path, size)?;
                hints.push(out.n, size, f.try_clone().ctx(|| "duplicating base file handle".into())?);
                copy_exact(&mut f, size, &mut out, "base file")?;
            }
            OP_PATCH => {
                let (layer, path) = read_source(&mut ops).map_err(bad)?;
                let old_size = read_varint(&mut ops).map_err(bad)?;
                let size = read_varint(&mut ops).map_err(bad)?;
                let control_len = read_varint(&mut ops).map_err(bad)?;
                if control_len > MAX_CONTROL {
                    return Err(corrupt("patch control too long"));
                }
                let old = open_base(base, layer, &path, old_size)?;
                let mut control = (&mut ops).take(control_len);
                let patched = bsdiff::apply(&old, old_size, &mut control, &mut diff, &mut data, size, &mut out);
                let n = patched.map_err(|e| match e {
                    e if out.failed => e,
                    Error::Corrupt(m) => corrupt(format!("patch of {:?}: {m}", String::from_utf8_lossy(&path))),
                    e => corrupt(format!("patch of {:?}: {e}", String::from_utf8_lossy(&path))),
                })?;
                if n != size || control.limit() != 0 {
                    return Err(corrupt(format!("patch of {:?} is inconsistent", String::from_utf8_lossy(&path))));
                }
            }
            OP_LITERAL => {
                let size = read_varint(&mut ops).map_err(bad)?;
                copy_exact(&mut data, size, &mut out, "literal")?;
            }
            OP_END => {
                let total = read_varint(&mut ops).map_err(bad)?;
                if total != out.n || total != header.target_size {
                    return Err(corrupt(format!("rebuilt {} bytes, expected {}", out.n, header.target_size)));
                }
                at_end(&mut ops, "ops")?;
                at_end(&mut data, "data")?;
                at_end(&mut diff, "diff")?;
                out.flush().ctx(|| "writing layer".into())?;
                return Ok(total);
            }
            other => return Err(corrupt(format!("unknown op {other}"))),
        }
    }
}

/// Rebuilds the target layer of the payload file `payload` into a new staged layer, verifying its DiffID.
pub fn apply_payload(staging: &Staging, payload: &Path, base: &BaseLayers) -> Result<(Header, StagedLayer)> {
    let file = File::open(payload).ctx(|| format!("opening {}", payload.display()))?;
    let (header, start) = format::read_header(&mut &file).map_err(payload_error)?;
    let hints = Arc::new(LinkHints::default());
    let mut links = HintedLinks(hints.clone());
    // The unpacker names the layer in its errors (a rebuilt stream that is not a valid tar, a full disk).
    let name = format!("{} rebuilt from the delta", header.target_diff_id);
    let staged = staging
        .unpack_produced(&name, Some(&mut links), |w| write_target_tar(&file, &header, start, base, w, &hints))?;
    if staged.record.diff_id != header.target_diff_id {
        return Err(Error::DigestMismatch {
            what: format!(
                "layer {} rebuilt from the delta (the delta is damaged, or the base image's files changed on disk)",
                header.target_index
            ),
            expected: header.target_diff_id.to_string(),
            actual: staged.record.diff_id.to_string(),
        });
    }
    Ok((header, staged))
}

#[cfg(test)]
mod tests {
    //! The whole delta path in process (no binary, no root needed beyond the unpacker's): two stores, a
    //! delta made on one and applied on the other. Runs on 32-bit ARM too (`scripts/test-armv7.sh`).

    use std::io::Cursor;

    use crate::archive::{load, save, SaveRequest};
    use crate::delta::create::create;
    use crate::digest::Digest;
    use crate::images::resolve;
    use crate::store::{Access, Store};

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// A layer tar of regular files (path, content, mode, mtime) and symlinks (path, target).
    fn layer(files: &[(&str, &[u8], u32, u64)], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode, mtime) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_mtime(*mtime);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_link_name(target).unwrap();
            h.set_mode(0o777);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A docker-archive of one image.
    fn archive(tag: &str, layers: &[Vec<u8>], created: &str) -> Vec<u8> {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of_bytes(l).to_string()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "arm", "os": "linux", "created": created, "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        let mut names = Vec::new();
        for l in layers {
            let name = format!("{}/layer.tar", Digest::of_bytes(l).hex());
            add(&name, l);
            names.push(name);
        }
        let config_name = format!("{}.json", Digest::of_bytes(&config).hex());
        add(&config_name, &config);
        let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": names}]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        b.into_inner().unwrap()
    }

    fn save_bytes(store: &Store, image: &str) -> Vec<u8> {
        let id = resolve(store, image).unwrap();
        save(store, &[SaveRequest { id, tags: vec![] }], Vec::new()).unwrap()
    }

    #[test]
    fn delta_round_trips_between_stores() {
        const T: u64 = 1_700_000_000;
        // Past 2038: exact on disk on every target (the unpacker's times are 64-bit), and in the tar-split.
        const LATE: u64 = 4_000_000_000;
        let big = noise(1, 600_000);
        let mut big2 = big.clone();
        big2[1000..1016].copy_from_slice(b"edited edited ed");
        big2.splice(300_000..300_000, noise(2, 200));
        let lib = noise(3, 40_000);
        let mut lib2 = lib.clone();
        lib2[20_000] ^= 1;
        let bottom =
            layer(&[("bin/sh", &noise(4, 3000), 0o755, T), ("etc/late", b"late\n", 0o644, LATE)], &[("bin/ash", "sh")]);
        let base_top = layer(
            &[
                ("opt/big", &big, 0o644, T),
                ("lib/libfoo.so.1.2.3", &lib, 0o755, T),
                ("opt/same", &noise(5, 9000), 0o644, T),
            ],
            &[],
        );
        let target_top = layer(
            &[
                ("opt/big", &big2, 0o644, T),
                ("lib/libfoo.so.1.2.4", &lib2, 0o755, T),
                ("opt/same", &noise(5, 9000), 0o644, T),
                ("opt/same-late", &noise(5, 9000), 0o644, LATE),
                ("opt/new", &noise(6, 5000), 0o644, T),
            ],
            &[("lib/libfoo.so", "libfoo.so.1.2.4")],
        );
        let base = archive("app:1", &[bottom.clone(), base_top], "2024-01-01T00:00:00Z");
        let target = archive("app:2", &[bottom, target_top], "2024-02-01T00:00:00Z");

        let server_dir = tempfile::tempdir().unwrap();
        let mut server = Store::open(server_dir.path(), Access::Write).unwrap();
        load(&mut server, Cursor::new(&base)).unwrap();
        load(&mut server, Cursor::new(&target)).unwrap();
        let report = create(&mut server, "app:1", "app:2", Some("app:delta")).unwrap();
        assert_eq!(report.layers.len(), 1);
        assert!(report.delta_bytes < 20_000, "{report:?}");
        let delta = save_bytes(&server, "app:delta");
        let target_save = save_bytes(&server, "app:2");

        let device_dir = tempfile::tempdir().unwrap();
        let mut device = Store::open(device_dir.path(), Access::Write).unwrap();
        load(&mut device, Cursor::new(&base)).unwrap();
        let loaded = load(&mut device, Cursor::new(&delta)).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, report.target);
        assert_eq!(loaded[0].delta_base, Some(report.base.clone()));
        assert_eq!(loaded[0].tags, vec!["app:2".to_string()]);
        assert!(save_bytes(&device, "app:2") == target_save, "the rebuilt target differs");
        assert!(save_bytes(&device, "app:1") == save_bytes(&server, "app:1"));
        assert_eq!(device.metadata().images.len(), 2, "the delta image is not kept");
    }
}
