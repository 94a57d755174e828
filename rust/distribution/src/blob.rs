//! One blob, downloaded as a stream that survives a dropping network: a read error, a cut connection or a
//! stall (no byte for `stall_timeout`) reopens the blob with `Range: bytes=<offset>-` and the same hash goes
//! on. A 206 resumes; a server that ignores `Range` (200) has the bytes already delivered skipped; a 416 at
//! the end means there is nothing left. Back-off between attempts doubles up to the configured cap and
//! restarts after progress. The digest and the size are checked at the end; bytes past the size the
//! manifest gives are refused as they arrive.

use std::time::Duration;

use bytes::Bytes;
use engine::digest::{Digest, Hasher};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::error::{transport, Error, Result};
use crate::retry::{sleep, Backoff};
use crate::session::{check, Req, Session};

pub struct BlobDownload<'s, 'r> {
    s: &'s Session<'r>,
    pub digest: Digest,
    pub size: u64,
    offset: u64,
    hasher: Option<Hasher>,
    resp: Option<Response>,
    /// Bytes of the current response to drop (it started before `offset`).
    skip: u64,
    /// The server answered a range with another range: ask for whole bodies from now on.
    no_range: bool,
    backoff: Backoff,
    /// Bytes received from the network, skipped ones included.
    pub transferred: u64,
    pub retries: u32,
}

impl<'s, 'r> BlobDownload<'s, 'r> {
    pub fn new(s: &'s Session<'r>, digest: Digest, size: u64) -> Self {
        let backoff = Backoff::new(s_config(s));
        BlobDownload {
            s,
            digest,
            size,
            offset: 0,
            hasher: Some(Hasher::new()),
            resp: None,
            skip: 0,
            no_range: false,
            backoff,
            transferred: 0,
            retries: 0,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    async fn open(&mut self) -> Result<Response> {
        let mut req = Req::get(format!("/v2/{}/blobs/{}", self.s.repo, self.digest));
        if self.offset > 0 && !self.no_range {
            req = req.header(RANGE, &format!("bytes={}-", self.offset));
        }
        let resp = self.s.send(req).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match start {
                    Some(s) if s <= self.offset => self.skip = self.offset - s,
                    _ => {
                        self.no_range = true;
                        return Err(Error::Transient(format!(
                            "blob {}: the registry sent another range than asked",
                            self.digest
                        )));
                    }
                }
            }
            StatusCode::OK => self.skip = self.offset,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                self.no_range = true;
                return Err(Error::Transient(format!("blob {}: range from {} refused", self.digest, self.offset)));
            }
            _ => return check(resp, &format!("blob {}", self.digest), self.s).await,
        }
        Ok(resp)
    }

    /// The next bytes of the blob, or `None` at its end once the digest matched. Transient failures are
    /// retried here (reported through `on_retry`), for ever unless the configuration limits attempts.
    pub async fn next(
        &mut self,
        cancel: &CancellationToken,
        on_retry: &(dyn Fn(&Error, Duration) + Sync),
    ) -> Result<Option<Bytes>> {
        loop {
            if self.hasher.is_none() {
                return Ok(None);
            }
            if self.offset == self.size && self.resp.is_none() {
                return self.finish().map(|_| None);
            }
            let step = self.step(cancel).await;
            match step {
                Ok(Some(b)) => return Ok(Some(b)),
                Ok(None) => continue,
                Err(e) if e.is_transient() => {
                    self.resp = None;
                    let Some(d) = self.backoff.next_delay() else { return Err(e) };
                    self.retries += 1;
                    log::info!("{e}; resuming at byte {} in {} s", self.offset, d.as_secs_f32());
                    on_retry(&e, d);
                    sleep(d, cancel).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One read (opening the blob first if needed): data, `None` for "look again", or an error.
    async fn step(&mut self, cancel: &CancellationToken) -> Result<Option<Bytes>> {
        if self.resp.is_none() {
            let r = tokio::select! {
                r = self.open() => r?,
                _ = cancel.cancelled() => return Err(Error::Cancelled),
            };
            self.resp = Some(r);
        }
        let Some(resp) = self.resp.as_mut() else { return Ok(None) };
        let chunk = tokio::select! {
            c = resp.chunk() => c.map_err(|e| transport(e, &format!("reading blob {}", self.digest)))?,
            _ = cancel.cancelled() => return Err(Error::Cancelled),
        };
        let Some(mut chunk) = chunk else {
            self.resp = None;
            if self.offset < self.size {
                return Err(Error::Transient(format!(
                    "blob {}: connection ended at byte {} of {}",
                    self.digest, self.offset, self.size
                )));
            }
            return Ok(None);
        };
        self.transferred += chunk.len() as u64;
        if self.skip > 0 {
            let n = self.skip.min(chunk.len() as u64) as usize;
            self.skip -= n as u64;
            chunk = chunk.slice(n..);
            if chunk.is_empty() {
                return Ok(None);
            }
        }
        if self.offset + chunk.len() as u64 > self.size {
            return Err(Error::DigestMismatch {
                what: format!("size of blob {}", self.digest),
                expected: format!("{} bytes", self.size),
                actual: format!("more than {} bytes", self.size),
            });
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&chunk);
        }
        self.offset += chunk.len() as u64;
        self.backoff.reset();
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        let actual = self.hasher.take().map(Hasher::finish);
        match actual {
            Some(a) if a == self.digest => Ok(()),
            Some(a) => Err(Error::DigestMismatch {
                what: format!("blob {}", self.digest),
                expected: self.digest.to_string(),
                actual: a.to_string(),
            }),
            None => Ok(()),
        }
    }
}

fn s_config<'a>(s: &'a Session<'_>) -> &'a crate::config::RegistryConfig {
    s.registries().config()
}

/// Reads a small blob (an image config) whole, verified.
pub async fn fetch_small(
    s: &Session<'_>,
    digest: &Digest,
    size: u64,
    max: usize,
    cancel: &CancellationToken,
) -> Result<Vec<u8>> {
    if size > max as u64 {
        return Err(Error::BadManifest(format!("blob {digest} of {size} bytes (limit {max})")));
    }
    let mut dl = BlobDownload::new(s, digest.clone(), size);
    dl.backoff = Backoff::new(&crate::config::RegistryConfig { max_attempts: Some(1), ..s_config(s).clone() });
    let mut out = Vec::with_capacity(size as usize);
    while let Some(b) = dl.next(cancel, &|_, _| {}).await? {
        out.extend_from_slice(&b);
    }
    Ok(out)
}
