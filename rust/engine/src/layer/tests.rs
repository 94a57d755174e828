//! Unpacking and reassembling layers: whiteout conversion, and byte-exact round trips of tars using the
//! extensions real layers carry (pax and GNU long names, hard links, xattrs, sub-second times, times past 2038).

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{reassemble, unpack_layer_linked, LinkSource, TarSplitWriter, UnpackStats};
use crate::digest::Digest;
use crate::error::{Error, Result};

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Layer {
        Layer { b: tar::Builder::new(Vec::new()) }
    }
    fn dir(&mut self, path: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Directory, 0o755);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        let mut h = header(tar::EntryType::Regular, 0o644);
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }
    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Link, 0o644);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    /// A pax extended header ('x') for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + 1;
            while len != base + len.to_string().len() {
                len = base + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeaders.0/next").unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data.as_slice()).unwrap();
        self
    }
    /// Appends a raw, already complete header (and no content).
    fn raw(&mut self, h: &tar::Header) -> &mut Self {
        self.b.append(h, &[][..]).unwrap();
        self
    }
    fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

struct Unpacked {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    split: Vec<u8>,
    stats: UnpackStats,
}

fn unpack(tar: &[u8]) -> Result<Unpacked> {
    unpack_with(tar, None)
}

fn unpack_with(tar: &[u8], links: Option<&mut dyn LinkSource>) -> Result<Unpacked> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("diff");
    fs::create_dir(&root).unwrap();
    let fd: OwnedFd = File::open(&root).unwrap().into();
    let mut split = TarSplitWriter::new(Vec::new()).unwrap();
    let stats = unpack_layer_linked(tar, &fd, &mut split, "test", links)?;
    let split = split.finish(stats.tar_size).unwrap();
    Ok(Unpacked { _dir: dir, root, split, stats })
}

fn reassembled(u: &Unpacked) -> Vec<u8> {
    let fd: OwnedFd = File::open(&u.root).unwrap().into();
    let mut out = Vec::new();
    let n = reassemble(u.split.as_slice(), &fd, &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

/// Unpacks, reassembles, and checks the rebuilt tar is the original byte for byte.
fn round_trip(tar: &[u8]) -> Unpacked {
    let u = unpack(tar).unwrap();
    assert_eq!(u.stats.diff_id, Digest::of_bytes(tar));
    assert_eq!(u.stats.tar_size, tar.len() as u64);
    let out = reassembled(&u);
    assert!(out == tar, "reassembled tar differs ({} vs {} bytes)", out.len(), tar.len());
    u
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        None
    } else {
        buf.truncate(rc as usize);
        Some(buf)
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let mut l = Layer::new();
    l.dir("a/")
        .file("a/.wh.x", b"")
        .dir("b/")
        .file("b/.wh..wh..opq", b"")
        .file("b/keep", b"kept")
        .file(".wh.top", b"")
        .dir("c/")
        .dir("c/d/")
        .file("c/d/.wh..wh..opq", b"");
    let tar = l.finish();
    let u = round_trip(&tar);

    for p in ["a/x", "top"] {
        let m = fs::symlink_metadata(u.root.join(p)).unwrap();
        assert!(m.file_type().is_char_device(), "{p} is not a char device");
        assert_eq!(m.rdev(), 0, "{p} is not device 0/0");
    }
    for p in ["a/.wh.x", ".wh.top", "b/.wh..wh..opq", "c/d/.wh..wh..opq"] {
        assert!(fs::symlink_metadata(u.root.join(p)).is_err(), "{p} was created");
    }
    assert_eq!(xattr(&u.root.join("b"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&u.root.join("c/d"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&u.root.join("a"), "trusted.overlay.opaque"), None);
    assert_eq!(xattr(&u.root.join("c"), "trusted.overlay.opaque"), None);
    assert_eq!(fs::read(u.root.join("b/keep")).unwrap(), b"kept");
    // Whiteouts are not content: only b/keep's 4 bytes were written as a file.
    assert_eq!(u.stats.file_bytes, 4);
}

#[test]
fn whiteout_with_content_or_of_another_kind_is_refused() {
    let mut l = Layer::new();
    l.dir("a/").file("a/.wh.x", b"not empty");
    assert!(matches!(unpack(&l.finish()), Err(Error::BadLayerEntry { reason, .. }) if reason.contains("whiteout")));

    let mut l = Layer::new();
    l.dir("a/").dir("a/.wh.x/");
    assert!(matches!(unpack(&l.finish()), Err(Error::BadLayerEntry { reason, .. }) if reason.contains("whiteout")));

    let mut l = Layer::new();
    l.symlink(".wh.x", "y");
    assert!(matches!(unpack(&l.finish()), Err(Error::BadLayerEntry { reason, .. }) if reason.contains("whiteout")));
}

#[test]
fn layer_with_long_names_hard_links_and_xattrs_round_trips() {
    let deep = format!("{}/", (0..12).map(|i| format!("directory-{i:02}")).collect::<Vec<_>>().join("/"));
    let long_file = format!("{deep}{}", "f".repeat(120));
    let pax_name = format!("{deep}pax-{}", "p".repeat(150));
    let long_target = format!("../{}", "t".repeat(140));
    let mut l = Layer::new();
    l.dir("./");
    // Every parent of the deep path, as real layers list them.
    let mut parent = String::new();
    for c in deep.trim_end_matches('/').split('/') {
        parent.push_str(c);
        parent.push('/');
        l.dir(&parent);
    }
    // GNU long name ('L') for a file, GNU long link ('K') for a symlink target.
    l.file(&long_file, &vec![7u8; 1000]);
    l.symlink(&format!("{deep}long-link"), &long_target);
    // pax path, sub-second mtime and xattrs (user.* and a binary security.capability-like value).
    l.pax(&[
        ("path", pax_name.as_bytes()),
        ("mtime", b"1700000000.123456789"),
        ("SCHILY.xattr.user.comment", b"hello"),
        ("SCHILY.xattr.user.bin", b"\x00\x01\x02\xff"),
    ])
    .file("placeholder-name", &vec![1u8; 512]);
    // Xattrs on a directory.
    l.pax(&[("SCHILY.xattr.user.dir", b"d")]).dir("xdir/");
    // Hard links: to a short name, to the GNU long name, and a hard link whose own name is long.
    l.dir("bin/").file("bin/busybox", b"#!busybox\n");
    l.hardlink("bin/sh", "bin/busybox");
    l.hardlink("bin/long-alias", &long_file);
    l.hardlink(&format!("{deep}{}", "h".repeat(110)), "bin/busybox");
    // pax linkpath for a hard link.
    l.pax(&[("linkpath", b"bin/busybox")]).hardlink("bin/ash", "ignored");
    // A global pax header (kept, not applied), a fifo, an empty file, an owner and a restrictive mode.
    let mut g = tar::Header::new_ustar();
    g.set_entry_type(tar::EntryType::XGlobalHeader);
    g.set_path("pax_global_header").unwrap();
    let gdata = b"18 comment=global\n";
    g.set_size(gdata.len() as u64);
    g.set_cksum();
    l.b.append(&g, &gdata[..]).unwrap();
    let mut fifo = header(tar::EntryType::Fifo, 0o600);
    fifo.set_path("run-fifo").unwrap();
    fifo.set_cksum();
    l.raw(&fifo);
    l.file("empty", b"");
    let mut owned = header(tar::EntryType::Regular, 0o4750);
    owned.set_uid(1000);
    owned.set_gid(1001);
    owned.set_size(3);
    l.b.append_data(&mut owned, "bin/suid", &b"abc"[..]).unwrap();
    let mut tar = l.finish();
    // GNU tar pads the archive to a 10 KiB record: the trailer must survive too.
    tar.resize(tar.len().div_ceil(10240) * 10240, 0);

    // The stream really carries every extension (read raw, with an independent reader).
    let mut a = tar::Archive::new(tar.as_slice());
    let kinds: Vec<u8> = a.entries().unwrap().raw(true).map(|e| e.unwrap().header().entry_type().as_byte()).collect();
    for k in [b'L', b'K', b'x', b'g', b'1', b'2', b'6'] {
        assert!(kinds.contains(&k), "no {:?} entry in the test layer", k as char);
    }

    let u = round_trip(&tar);
    let r = &u.root;
    assert_eq!(fs::read(r.join(&long_file)).unwrap(), vec![7u8; 1000]);
    assert_eq!(
        fs::read_link(r.join(format!("{deep}long-link"))).unwrap().as_os_str().as_bytes(),
        long_target.as_bytes()
    );
    assert_eq!(fs::read(r.join(&pax_name)).unwrap(), vec![1u8; 512]);
    assert!(fs::symlink_metadata(r.join("placeholder-name")).is_err());
    let m = fs::metadata(r.join(&pax_name)).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert_eq!(xattr(&r.join(&pax_name), "user.comment").as_deref(), Some(&b"hello"[..]));
    assert_eq!(xattr(&r.join(&pax_name), "user.bin").as_deref(), Some(&b"\x00\x01\x02\xff"[..]));
    assert_eq!(xattr(&r.join("xdir"), "user.dir").as_deref(), Some(&b"d"[..]));
    let ino = |p: &str| fs::symlink_metadata(r.join(p)).unwrap().ino();
    assert_eq!(ino("bin/sh"), ino("bin/busybox"));
    assert_eq!(ino("bin/ash"), ino("bin/busybox"));
    assert_eq!(ino(&format!("{deep}{}", "h".repeat(110))), ino("bin/busybox"));
    assert_eq!(ino("bin/long-alias"), ino(&long_file));
    assert_eq!(fs::metadata(r.join("bin/busybox")).unwrap().nlink(), 4);
    assert!(fs::symlink_metadata(r.join("run-fifo")).unwrap().file_type().is_fifo());
    let suid = fs::metadata(r.join("bin/suid")).unwrap();
    assert_eq!((suid.uid(), suid.gid(), suid.mode() & 0o7777), (1000, 1001, 0o4750));
    // Hard links are not stored twice: only the content of regular files counts.
    assert_eq!(u.stats.file_bytes, 1000 + 512 + 10 + 3);
}

#[test]
fn reassembly_notices_changed_files() {
    let mut l = Layer::new();
    l.dir("etc/").file("etc/a", b"original");
    let tar = l.finish();
    let u = round_trip(&tar);
    fs::write(u.root.join("etc/a"), b"original plus more").unwrap();
    let fd: OwnedFd = File::open(&u.root).unwrap().into();
    let err = reassemble(u.split.as_slice(), &fd, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("longer than recorded"), "{err}");
    fs::remove_file(u.root.join("etc/a")).unwrap();
    let err = reassemble(u.split.as_slice(), &fd, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

/// 2040-01-01T00:00:00Z: past the signed 32-bit `time_t` limit (2038-01-19T03:14:07Z).
const Y2040: i64 = 2_208_988_800;
/// 2106-02-07T06:28:17Z: past the unsigned 32-bit limit too (a wrap, not only a sign flip).
const PAST_U32: i64 = (1 << 32) + 1;

// These run on every target, 32-bit glibc (armv7 Raspberry Pis, where libc's `time_t` is 32 bits) included:
// the unpacker sets and reads file times through rustix, 64-bit everywhere (see layer/unpack.rs), and a
// compile-time assertion there keeps its time type 64-bit. `scripts/test-armv7.sh -- layer::` runs them
// under qemu-arm.

/// (seconds, nanoseconds) of `path`'s own mtime, read through std (statx) and through rustix's `lstat` (like
/// the unpacker's `fstat`): both must agree.
// The nanoseconds are `u32` on 32-bit targets, `u64` on 64-bit ones.
#[allow(clippy::useless_conversion)]
fn mtime_of(path: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(path).unwrap();
    let st = rustix::fs::lstat(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let nsec = i64::try_from(u64::from(st.st_mtime_nsec)).unwrap();
    let via_rustix: (i64, i64) = (st.st_mtime, nsec);
    assert_eq!((m.mtime(), m.mtime_nsec()), via_rustix, "std and rustix disagree on {}", path.display());
    via_rustix
}

#[test]
fn times_past_2038_survive_unpack_and_reassembly() {
    let mut l = Layer::new();
    let mut h = header(tar::EntryType::Directory, 0o755);
    h.set_mtime(Y2040 as u64);
    l.b.append_data(&mut h, "late/", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o644);
    h.set_mtime(PAST_U32 as u64);
    h.set_size(4);
    l.b.append_data(&mut h, "late/file", &b"data"[..]).unwrap();
    // pax time with nanoseconds.
    l.pax(&[("mtime", format!("{Y2040}.123456789").as_bytes())]).file("late/pax", b"pax");
    // And before 1970 (1969-12-31T00:00:00Z), which only pax can say.
    l.pax(&[("mtime", b"-86400")]).file("late/1969", b"old");
    let mut h = header(tar::EntryType::Symlink, 0o777);
    h.set_mtime(Y2040 as u64 + 1);
    l.b.append_link(&mut h, "late/link", "file").unwrap();
    let mut h = header(tar::EntryType::Fifo, 0o600);
    h.set_mtime(Y2040 as u64 + 2);
    h.set_path("late/fifo").unwrap();
    h.set_cksum();
    l.raw(&h);
    let tar = l.finish();

    // Unpacked (futimens on files and directories, utimensat on symlinks and fifos), then reassembled from
    // the tar-split byte for byte (what `image save` and delta creation read).
    let u = round_trip(&tar);
    let r = &u.root;
    assert_eq!(mtime_of(&r.join("late/file")), (PAST_U32, 0));
    assert_eq!(mtime_of(&r.join("late/pax")), (Y2040, 123_456_789));
    assert_eq!(mtime_of(&r.join("late/1969")), (-86_400, 0));
    assert_eq!(mtime_of(&r.join("late/link")), (Y2040 + 1, 0));
    assert_eq!(mtime_of(&r.join("late/fifo")), (Y2040 + 2, 0));
    assert_eq!(mtime_of(&r.join("late")), (Y2040, 0));
}

/// Serves one existing file as identical content (as delta apply does for files unchanged since the base).
struct SameFile(PathBuf);

impl LinkSource for SameFile {
    fn identical_file(&mut self, _offset: u64, _size: u64) -> Option<File> {
        File::open(&self.0).ok()
    }
}

#[test]
fn unchanged_file_past_2038_is_hard_linked() {
    let mut l = Layer::new();
    let mut h = header(tar::EntryType::Regular, 0o644);
    h.set_mtime(Y2040 as u64);
    h.set_size(9);
    l.b.append_data(&mut h, "late", &b"unchanged"[..]).unwrap();
    let tar = l.finish();
    let base = round_trip(&tar);
    // The link decision compares the source's fstat with the entry: exact times, no EOVERFLOW.
    let mut links = SameFile(base.root.join("late"));
    let u = unpack_with(&tar, Some(&mut links)).unwrap();
    assert_eq!(u.stats.linked_bytes, 9, "not hard-linked");
    let ino = |r: &Path| fs::metadata(r.join("late")).unwrap().ino();
    assert_eq!(ino(&u.root), ino(&base.root));
    assert!(reassembled(&u) == tar);
}
