//! The single pass over an image archive. Entries may come in any order (docker writes `manifest.json`
//! last), so every entry is handled as it streams by: small JSON documents are kept in memory, layer blobs
//! are unpacked straight into staging (never stored as a tar), anything else is only hashed.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use super::compression::{decompressor, sniff, Sniffed};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::layer::entry_path::components;
use crate::store::{StagedLayer, Staging};
use crate::tar::{EntryKind, Next, TarError, TarReader, BLOCK};

/// Largest JSON document kept from an archive, and the most kept in all.
const MAX_JSON: u64 = 8 << 20;
const MAX_JSON_TOTAL: u64 = 16 << 20;

pub enum Blob {
    /// Unpacked into staging.
    Staged(StagedLayer),
    /// An uncompressed layer whose DiffID the store already holds: verified, not written again.
    Known(Digest),
}

#[derive(Default)]
pub struct Collected {
    pub json: HashMap<String, Vec<u8>>,
    pub blobs: HashMap<String, Blob>,
    links: HashMap<String, String>,
    seen: HashSet<String>,
    json_total: u64,
}

impl Collected {
    /// Follows archive-internal symlinks (docker-archive dedups layers with them).
    pub fn resolve<'a>(&'a self, path: &'a str) -> Result<String> {
        let mut p = normalize(path)?;
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => return Ok(p),
            }
        }
        Err(Error::bad_archive(format!("symlink loop at {path:?}")))
    }
}

pub fn normalize(path: &str) -> Result<String> {
    let comps = components(path.as_bytes()).map_err(|r| Error::bad_archive(format!("entry {path:?}: {r}")))?;
    let parts: Vec<&str> = comps.iter().map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    Ok(parts.join("/"))
}

/// `blobs/sha256/<hex>` → the digest its name promises.
pub fn blob_name_digest(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/").and_then(|h| Digest::from_hex(h).ok())
}

fn tar_err(e: TarError) -> Error {
    Error::bad_archive(e.to_string())
}

/// Reads the whole archive, unpacking layers into `staging`. `known` holds DiffIDs the store already has.
pub fn collect(input: impl Read, staging: &Staging, known: &HashSet<Digest>) -> Result<Collected> {
    let mut tar = TarReader::new(input);
    let mut c = Collected::default();
    while let Next::Entry(entry) = tar.next_entry().map_err(tar_err)? {
        let raw_path = String::from_utf8(entry.path.clone())
            .map_err(|_| Error::bad_archive(format!("entry {:?}: name is not UTF-8", entry.path_lossy())))?;
        let path = normalize(&raw_path)?;
        if !c.seen.insert(path.clone()) && entry.kind != EntryKind::Directory {
            return Err(Error::bad_archive(format!("duplicate entry {path:?}")));
        }
        match entry.kind {
            EntryKind::File => {
                let mut content = HashingReader::new(tar.content());
                read_file_entry(&mut c, &path, entry.size, &mut content, staging, known)?;
                io::copy(&mut content, &mut io::sink()).map_err(|e| truncated(&path, e))?;
                if let Some(expected) = blob_name_digest(&path) {
                    let actual = content.into_parts().1.finish();
                    if actual != expected {
                        return Err(Error::DigestMismatch {
                            what: format!("blob {path}"),
                            expected: expected.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                }
            }
            EntryKind::Symlink => {
                let target = String::from_utf8(entry.link.clone())
                    .map_err(|_| Error::bad_archive(format!("symlink {path:?}: target is not UTF-8")))?;
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                let joined = resolve_relative(dir, &target)
                    .ok_or_else(|| Error::bad_archive(format!("symlink {path:?} points outside the archive")))?;
                c.links.insert(path, joined);
            }
            EntryKind::HardLink => {
                let target = normalize(&String::from_utf8_lossy(&entry.link))?;
                c.links.insert(path, target);
            }
            _ => {}
        }
    }
    Ok(c)
}

fn truncated(path: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::bad_archive(format!("truncated inside {path:?}"))
    } else {
        Error::Io { context: format!("reading {path:?}"), err: e }
    }
}

fn resolve_relative(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn read_file_entry<R: Read>(
    c: &mut Collected,
    path: &str,
    size: u64,
    content: &mut HashingReader<R>,
    staging: &Staging,
    known: &HashSet<Digest>,
) -> Result<()> {
    let mut head = Vec::with_capacity(BLOCK);
    content.by_ref().take(BLOCK as u64).read_to_end(&mut head).map_err(|e| truncated(path, e))?;
    let kind = sniff(&head);
    match kind {
        Sniffed::Json => {
            if size > MAX_JSON {
                return Err(Error::bad_archive(format!("{path:?} is {size} bytes; metadata is limited to {MAX_JSON}")));
            }
            c.json_total += size;
            if c.json_total > MAX_JSON_TOTAL {
                return Err(Error::bad_archive(format!("archive metadata exceeds {MAX_JSON_TOTAL} bytes")));
            }
            let mut data = head;
            content.read_to_end(&mut data).map_err(|e| truncated(path, e))?;
            c.json.insert(path.to_owned(), data);
        }
        Sniffed::Tar | Sniffed::Gzip | Sniffed::Zstd => {
            if kind == Sniffed::Tar {
                if let Some(d) = blob_name_digest(path).filter(|d| known.contains(d)) {
                    // Already stored: the caller's digest check over the remaining bytes verifies it.
                    c.blobs.insert(path.to_owned(), Blob::Known(d));
                    return Ok(());
                }
            }
            let stream = io::Cursor::new(head).chain(&mut *content);
            let dec = decompressor(kind, stream).map_err(|e| Error::bad_archive(format!("{path:?}: {e}")))?;
            let staged = staging.unpack(DecodeErrors { inner: dec, path }, path)?;
            c.blobs.insert(path.to_owned(), Blob::Staged(staged));
        }
        Sniffed::Other => {}
    }
    Ok(())
}

/// Turns decompression failures into archive errors that name the blob.
struct DecodeErrors<'p, R> {
    inner: R,
    path: &'p str,
}

impl<R: Read> Read for DecodeErrors<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::UnexpectedEof { e.kind() } else { io::ErrorKind::InvalidData };
            io::Error::new(kind, format!("{}: {e}", self.path))
        })
    }
}
