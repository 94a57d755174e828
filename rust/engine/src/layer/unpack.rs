//! Unpacks one layer tar into a directory usable as an overlayfs lower dir, recording its tar-split.
//! OCI whiteouts become overlay whiteouts (`.wh.x` → char device 0/0 `x`; `.wh..wh..opq` → the directory's
//! `trusted.overlay.opaque` xattr). Nothing is ever written through a symlink, and each byte is written once.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use rustix::fs::{FileType, Timespec, Timestamps};

use super::entry_path::{components, symlink_stays_inside};
use super::fsops::{ensure_dir_beneath, makedev, open_dir_beneath, set_xattr};
use super::tarsplit::TarSplitWriter;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::tar::{Entry, EntryKind, Next, TarError, TarReader};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    pub entries: u64,
    /// Bytes of regular-file content (written or linked).
    pub file_bytes: u64,
    /// Of those, bytes hard-linked from an identical existing file instead of written.
    pub linked_bytes: u64,
}

/// Tells the unpacker that a file's content is identical to an existing file (delta apply: a file unchanged
/// since the base image), so it can be hard-linked instead of written again.
pub trait LinkSource {
    /// The file whose content is the `size` bytes starting at offset `offset` of the layer stream, if known.
    fn identical_file(&mut self, offset: u64, size: u64) -> Option<File>;
}

struct Unpacker<'a, 'l> {
    root: &'a OwnedFd,
    links: Option<&'l mut dyn LinkSource>,
    layer: &'a str,
    /// Directories whose times are set last (creating children changes them).
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    /// The most recently used parent directory, kept open (entries come grouped by directory).
    parent_cache: Option<(Vec<u8>, OwnedFd)>,
    buf: Vec<u8>,
    linked_bytes: u64,
}

/// Unpacks the uncompressed layer stream `input` into the empty directory `root`, writing its tar-split to
/// `split`. `layer` names the layer in error messages.
pub fn unpack_layer<R: Read, W: Write>(
    input: R,
    root: &OwnedFd,
    split: &mut TarSplitWriter<W>,
    layer: &str,
) -> Result<UnpackStats> {
    unpack_layer_linked(input, root, split, layer, None)
}

/// `unpack_layer`, hard-linking files that `links` knows to be unchanged when their metadata matches too.
pub fn unpack_layer_linked<R: Read, W: Write>(
    input: R,
    root: &OwnedFd,
    split: &mut TarSplitWriter<W>,
    layer: &str,
    links: Option<&mut dyn LinkSource>,
) -> Result<UnpackStats> {
    let mut tar = TarReader::new(HashingReader::new(input));
    let mut u = Unpacker {
        root,
        links,
        layer,
        dir_times: Vec::new(),
        parent_cache: None,
        buf: vec![0u8; 128 * 1024],
        linked_bytes: 0,
    };
    let mut entries = 0u64;
    let mut file_bytes = 0u64;
    let tar_err = |e: TarError| Error::BadArchive(format!("layer {layer}: {e}"));
    loop {
        match tar.next_entry().map_err(tar_err)? {
            Next::Entry(entry) => {
                entries += 1;
                split.raw(&entry.raw).map_err(|e| u.io_err(&entry, "writing tar-split", e))?;
                if let Some(stored) = u.apply(&entry, &mut tar)? {
                    split.file(&stored, entry.size).map_err(|e| u.io_err(&entry, "writing tar-split", e))?;
                    file_bytes += entry.size;
                }
            }
            Next::End(raw) => {
                split.raw(&raw).map_err(|e| Error::Io { context: format!("layer {layer}: tar-split"), err: e })?;
                tar.read_trailer(|b| split.raw(b)).map_err(tar_err)?;
                break;
            }
        }
    }
    u.finish_dirs()?;
    let (_, hasher) = tar.into_inner().into_parts();
    let tar_size = hasher.len();
    Ok(UnpackStats { diff_id: hasher.finish(), tar_size, entries, file_bytes, linked_bytes: u.linked_bytes })
}

// File times: set and read through rustix, never through libc's `time_t`, which is 32 bits on 32-bit glibc
// targets (armv7 Raspberry Pis) unless the whole build opts into `--cfg=libc_unstable_time64` (and nix, socket2
// and filetime do not build with it yet, nix-rust/nix#2778). rustix 1.1.6's linux_raw backend (the one used on
// arm, aarch64 and x86_64 Linux) makes the syscalls itself with 64-bit times everywhere:
// - `Timespec::tv_sec` is `Secs = i64` on every target (src/timespec.rs);
// - `futimens`/`utimensat` call `__NR_utimensat_time64` on 32-bit targets, with a 64-bit `__kernel_timespec`;
//   only on a kernel without it (< 5.1) it falls back to `__NR_utimensat`, failing with EOVERFLOW rather than
//   clamping (src/backend/linux_raw/fs/syscalls.rs, `_utimensat`);
// - `fstat`/`statat` use `statx` on 32-bit targets and fill rustix's own `Stat`, whose `st_mtime` is `i64`
//   (src/backend/linux_raw/fs/syscalls.rs `fstat`, `statx_to_stat`; src/backend/linux_raw/fs/types.rs `Stat`).
//   On 64-bit targets they are the plain `fstat`/`newfstatat` syscalls with the kernel's 64-bit `struct stat`.
// So times are exact on disk on every target, past 2038 and before 1970 (as far as the file system goes).
const _: () = assert!(std::mem::size_of::<rustix::fs::Secs>() == 8, "file times must be 64-bit");

/// A hard link shares the inode, so it is only right when owner, mode, times and (absent) xattrs match.
// The nanoseconds are `u32` in rustix's `Stat` on 32-bit targets, `u64` on 64-bit ones: widen both sides.
#[allow(clippy::useless_conversion)]
fn same_metadata(src: &File, entry: &Entry, uid: u32, gid: u32) -> bool {
    let Ok(st) = rustix::fs::fstat(src) else { return false };
    // Typed, so this stops compiling should the seconds ever be narrower than the tar's.
    let mtime_secs: i64 = st.st_mtime;
    let no_xattrs = nix_listxattr_empty(src);
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_mode & 0o7777 == entry.mode
        && st.st_uid == uid
        && st.st_gid == gid
        && st.st_size as u64 == entry.size
        && mtime_secs == entry.mtime.0
        && u64::from(st.st_mtime_nsec) == u64::from(entry.mtime.1)
        && entry.xattrs.is_empty()
        && no_xattrs
}

fn nix_listxattr_empty(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a size query (NULL buffer, length 0) on a valid fd.
    unsafe { libc::flistxattr(f.as_raw_fd(), std::ptr::null_mut(), 0) == 0 }
}

/// Access and modification times both set to an entry's mtime, exact on every target (see above); the
/// tar-split keeps the header anyway, so the layer reassembles byte for byte whatever the file system stores.
fn timestamps(t: (i64, u32)) -> Timestamps {
    let t = Timespec { tv_sec: t.0, tv_nsec: rustix::fs::Nsecs::from(t.1.min(999_999_999)) };
    Timestamps { last_access: t, last_modification: t }
}

impl Unpacker<'_, '_> {
    fn bad(&self, entry: &Entry, reason: impl Into<String>) -> Error {
        Error::BadLayerEntry { layer: self.layer.to_owned(), entry: entry.path_lossy(), reason: reason.into() }
    }

    fn io_err(&self, entry: &Entry, what: &str, e: impl Into<io::Error>) -> Error {
        let e: io::Error = e.into();
        Error::Io { context: format!("layer {}: {what} {:?}", self.layer, entry.path_lossy()), err: e }
    }

    fn parent(&mut self, entry: &Entry, comps: &[&[u8]]) -> Result<&OwnedFd> {
        let key = comps.join(&b'/');
        let hit = matches!(&self.parent_cache, Some((k, _)) if *k == key);
        if !hit {
            let fd = ensure_dir_beneath(self.root, comps).map_err(|e| match e {
                Errno::ELOOP | Errno::EXDEV => self.bad(entry, "path traverses a symlink"),
                Errno::ENOTDIR => self.bad(entry, "a parent is not a directory"),
                e => self.io_err(entry, "opening parent of", e),
            })?;
            self.parent_cache = Some((key, fd));
        }
        match &self.parent_cache {
            Some((_, fd)) => Ok(fd),
            None => Err(self.bad(entry, "parent directory unavailable")),
        }
    }

    /// Applies one entry; returns the stored relative path when the entry's content went to a file.
    fn apply<R: Read>(&mut self, entry: &Entry, tar: &mut TarReader<HashingReader<R>>) -> Result<Option<Vec<u8>>> {
        let comps = components(&entry.path).map_err(|r| self.bad(entry, r))?;
        for (name, _) in &entry.xattrs {
            if name.starts_with(b"trusted.overlay.") {
                return Err(self.bad(entry, "carries a reserved trusted.overlay xattr"));
            }
        }
        let uid = u32::try_from(entry.uid).map_err(|_| self.bad(entry, "uid out of range"))?;
        let gid = u32::try_from(entry.gid).map_err(|_| self.bad(entry, "gid out of range"))?;
        let Some((name, parent_comps)) = comps.split_last() else {
            // The layer root itself ("./").
            if entry.kind != EntryKind::Directory {
                return Err(self.bad(entry, "the layer root must be a directory"));
            }
            return self.set_dir_meta(entry, &[], uid, gid).map(|_| None);
        };
        let name = OsStr::from_bytes(name);
        let name_b = name.as_bytes();
        if let Some(hidden) = name_b.strip_prefix(WHITEOUT) {
            if entry.kind != EntryKind::File || entry.size != 0 {
                return Err(self.bad(entry, "whiteout must be an empty regular file"));
            }
            if name_b == OPAQUE {
                let parent = self.parent(entry, parent_comps)?;
                set_xattr(parent, b"trusted.overlay.opaque", b"y")
                    .map_err(|e| self.io_err(entry, "marking opaque", e))?;
            } else if !hidden.starts_with(WHITEOUT) && !hidden.is_empty() {
                let parent = self.parent(entry, parent_comps)?;
                mknodat(parent.as_fd(), OsStr::from_bytes(hidden), SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| self.create_err(entry, e))?;
            }
            return Ok(None);
        }
        let depth = parent_comps.len();
        match entry.kind {
            EntryKind::Directory => {
                let full: Vec<&[u8]> = comps.clone();
                let parent = self.parent(entry, parent_comps)?;
                match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st = rustix::fs::statat(parent.as_fd(), name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|e| self.io_err(entry, "inspecting", e))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            return Err(self.bad(entry, "duplicate entry"));
                        }
                    }
                    Err(e) => return Err(self.io_err(entry, "creating directory", e)),
                }
                self.set_dir_meta(entry, &full, uid, gid)?;
                Ok(None)
            }
            EntryKind::File => {
                let first = self.peek_content(entry, tar)?;
                let offset = tar.get_ref().bytes_read() - first as u64;
                if let Some(src) = self.links.as_mut().and_then(|l| l.identical_file(offset, entry.size)) {
                    if same_metadata(&src, entry, uid, gid) {
                        let parent = self.parent(entry, parent_comps)?;
                        linkat(src.as_fd(), "", parent.as_fd(), name, AtFlags::AT_EMPTY_PATH)
                            .map_err(|e| self.create_err(entry, e))?;
                        // The content still streams through, so the layer's DiffID covers it.
                        io::copy(&mut tar.content(), &mut io::sink()).map_err(|e| self.io_err(entry, "reading", e))?;
                        self.linked_bytes += entry.size;
                        return Ok(Some(comps.join(&b'/')));
                    }
                }
                let parent = self.parent(entry, parent_comps)?;
                let fd = openat(
                    parent.as_fd(),
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.create_err(entry, e))?;
                let mut file = File::from(fd);
                file.write_all(&self.buf[..first]).map_err(|e| self.io_err(entry, "writing", e))?;
                self.copy_content(entry, tar, &mut file, first as u64)?;
                nix::unistd::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .map_err(|e| self.io_err(entry, "chown", e))?;
                nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(entry.mode))
                    .map_err(|e| self.io_err(entry, "chmod", e))?;
                for (k, v) in &entry.xattrs {
                    set_xattr(&file, k, v).map_err(|e| self.io_err(entry, "setting xattr on", e))?;
                }
                rustix::fs::futimens(&file, &timestamps(entry.mtime))
                    .map_err(|e| self.io_err(entry, "setting times of", e))?;
                Ok(Some(comps.join(&b'/')))
            }
            EntryKind::Symlink => {
                if !symlink_stays_inside(depth, &entry.link) {
                    return Err(self.bad(entry, "symlink target escapes the layer root"));
                }
                let parent = self.parent(entry, parent_comps)?;
                symlinkat(OsStr::from_bytes(&entry.link), parent.as_fd(), name)
                    .map_err(|e| self.create_err(entry, e))?;
                self.set_owner_times(entry, name, uid, gid)?;
                Ok(None)
            }
            EntryKind::HardLink => {
                let target = components(&entry.link).map_err(|r| self.bad(entry, format!("hard link target: {r}")))?;
                let Some((tname, tparent)) = target.split_last() else {
                    return Err(self.bad(entry, "hard link to the layer root"));
                };
                let tdir = open_dir_beneath(self.root, &tparent.join(&b'/')).map_err(|e| match e {
                    Errno::ENOENT | Errno::ENOTDIR => self.bad(entry, "hard link target is not in this layer"),
                    Errno::ELOOP | Errno::EXDEV => self.bad(entry, "hard link target traverses a symlink"),
                    e => self.io_err(entry, "resolving hard link target of", e),
                })?;
                let parent = self.parent(entry, parent_comps)?;
                linkat(tdir.as_fd(), OsStr::from_bytes(tname), parent.as_fd(), name, AtFlags::empty()).map_err(
                    |e| match e {
                        Errno::ENOENT => self.bad(entry, "hard link target is not in this layer"),
                        Errno::EPERM => self.bad(entry, "hard link target is a directory"),
                        e => self.create_err(entry, e),
                    },
                )?;
                Ok(None)
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                // Root filesystem tarballs (debootstrap, mmdebstrap) carry /dev nodes; the runtime mounts its own
                // /dev, so they are kept only in the tar-split. Anywhere else a device node is refused.
                if comps.first() == Some(&&b"dev"[..]) {
                    Ok(None)
                } else {
                    Err(self.bad(entry, "device node outside /dev"))
                }
            }
            EntryKind::Fifo => {
                let parent = self.parent(entry, parent_comps)?;
                mknodat(parent.as_fd(), name, SFlag::S_IFIFO, Mode::from_bits_truncate(entry.mode), 0)
                    .map_err(|e| self.create_err(entry, e))?;
                let parent = self.parent(entry, parent_comps)?;
                fchmodat(parent.as_fd(), name, Mode::from_bits_truncate(entry.mode), FchmodatFlags::NoFollowSymlink)
                    .or_else(|e| if e == Errno::EOPNOTSUPP { Ok(()) } else { Err(e) })
                    .map_err(|e| self.io_err(entry, "chmod", e))?;
                self.set_owner_times(entry, name, uid, gid)?;
                Ok(None)
            }
        }
    }

    fn create_err(&self, entry: &Entry, e: Errno) -> Error {
        if e == Errno::EEXIST {
            self.bad(entry, "duplicate entry")
        } else {
            self.io_err(entry, "creating", e)
        }
    }

    /// Reads the first chunk of a file's content into `buf` (so a link source learns which file it is).
    fn peek_content<R: Read>(&mut self, entry: &Entry, tar: &mut TarReader<R>) -> Result<usize> {
        let mut content = tar.content();
        loop {
            match content.read(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(Error::BadArchive(format!("layer {}: truncated: {}", self.layer, e)))
                }
                Err(e) => return Err(self.io_err(entry, "reading content of", e)),
            }
        }
    }

    fn copy_content<R: Read>(
        &mut self,
        entry: &Entry,
        tar: &mut TarReader<R>,
        file: &mut File,
        already: u64,
    ) -> Result<()> {
        let mut content = tar.content();
        let mut written = already;
        let mut pushed = 0u64;
        loop {
            if written - pushed >= WRITE_BEHIND {
                start_writeback(file, pushed, written - pushed);
                pushed = written;
            }
            let n = match content.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(Error::BadArchive(format!("layer {}: truncated: {}", self.layer, e)))
                }
                Err(e) => return Err(self.io_err(entry, "reading content of", e)),
            };
            file.write_all(&self.buf[..n]).map_err(|e| self.io_err(entry, "writing", e))?;
            written += n as u64;
        }
    }

    fn set_owner_times(&mut self, entry: &Entry, name: &OsStr, uid: u32, gid: u32) -> Result<()> {
        let comps = components(&entry.path).map_err(|r| self.bad(entry, r))?;
        let parent_comps = &comps[..comps.len().saturating_sub(1)];
        let parent = self.parent(entry, parent_comps)?;
        fchownat(
            parent.as_fd(),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io_err(entry, "chown", e))?;
        let parent = self.parent(entry, parent_comps)?;
        rustix::fs::utimensat(parent.as_fd(), name, &timestamps(entry.mtime), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.io_err(entry, "setting times of", e))
    }

    fn set_dir_meta(&mut self, entry: &Entry, comps: &[&[u8]], uid: u32, gid: u32) -> Result<()> {
        let dir = ensure_dir_beneath(self.root, comps).map_err(|e| match e {
            Errno::ELOOP | Errno::EXDEV => self.bad(entry, "path traverses a symlink"),
            e => self.io_err(entry, "opening directory", e),
        })?;
        nix::unistd::fchown(&dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| self.io_err(entry, "chown", e))?;
        nix::sys::stat::fchmod(&dir, Mode::from_bits_truncate(entry.mode))
            .map_err(|e| self.io_err(entry, "chmod", e))?;
        for (k, v) in &entry.xattrs {
            set_xattr(&dir, k, v).map_err(|e| self.io_err(entry, "setting xattr on", e))?;
        }
        self.dir_times.push((comps.join(&b'/'), timestamps(entry.mtime)));
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        self.parent_cache = None;
        for (path, t) in self.dir_times.iter().rev() {
            let dir = open_dir_beneath(self.root, path).map_err(|e| Error::Io {
                context: format!("layer {}: setting times of {:?}", self.layer, String::from_utf8_lossy(path)),
                err: e.into(),
            })?;
            rustix::fs::futimens(&dir, t).map_err(|e| Error::Io {
                context: format!("layer {}: setting times of {:?}", self.layer, String::from_utf8_lossy(path)),
                err: e.into(),
            })?;
        }
        Ok(())
    }
}

/// Dirty pages of a big file are handed to the disk every this many bytes, so an SD card writes steadily
/// instead of in bursts when memory runs short, and a small device never holds a layer's worth of dirty
/// pages (balenaEngine does the same every 2 MB).
const WRITE_BEHIND: u64 = 4 << 20;

/// Starts writeback of a written range without waiting for it (durability still comes from the syncfs
/// before commit). Best effort: a file system without it simply keeps the pages until then.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for the call.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
