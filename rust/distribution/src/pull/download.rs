//! The layers a pull needs: each blob streamed from the network (on the runtime) into the unpacker (on a
//! thread of its own) through a bounded channel, a few at once; the first failure stops the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::import::stage_layer;
use engine::store::{StagedLayer, Staging};
use tokio_util::sync::CancellationToken;

use super::Ctx;
use crate::blob::BlobDownload;
use crate::bridge;
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::progress::short_id;
use crate::session::Session;

/// Downloads and unpacks the layers `todo` (indices into `layers`), up to the configured number at once.
/// Returns the staged layers by index and the bytes received.
pub(super) fn download_all(
    ctx: &Ctx<'_>,
    session: &Session<'_>,
    layers: &[Descriptor],
    todo: &[usize],
    staging: &Staging,
) -> Result<(Vec<(usize, StagedLayer)>, u64)> {
    let (reg, cancel) = (ctx.reg, ctx.cancel);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, StagedLayer)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let transferred = std::sync::atomic::AtomicU64::new(0);
    let stop = cancel.child_token();
    let workers = reg.config().download_workers().min(todo.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = todo.get(k) else { break };
                if stop.is_cancelled() {
                    break;
                }
                match download_one(ctx, session, &layers[i], staging, &stop) {
                    Ok((s, n)) => {
                        transferred.fetch_add(n, Ordering::Relaxed);
                        results.lock().unwrap_or_else(|e| e.into_inner()).push((i, s));
                    }
                    Err(e) => {
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        // The first real failure wins over the cancellations it causes in the others.
                        if first.is_none() || matches!(*first, Some(Error::Cancelled)) {
                            *first = Some(e);
                        }
                        stop.cancel();
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    Ok((results.into_inner().unwrap_or_else(|e| e.into_inner()), transferred.into_inner()))
}

/// How often a layer's byte count is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How much more of a blob is read, after the unpacker found its bytes bad, to learn whether its digest fails.
const VERIFY_TAIL: u64 = 1 << 20;
const VERIFY_TAIL_WAIT: Duration = Duration::from_secs(5);

/// One layer: the network side runs on `rt` and feeds chunks to this thread, which unpacks them.
fn download_one(
    ctx: &Ctx<'_>,
    session: &Session<'_>,
    desc: &Descriptor,
    staging: &Staging,
    cancel: &CancellationToken,
) -> Result<(StagedLayer, u64)> {
    let (rt, progress) = (ctx.rt, ctx.progress);
    let id = short_id(&desc.digest);
    let (tx, reader, failure) = bridge::channel();
    // The network side stops when the unpacker does, even in the middle of a retry or a stall.
    let net_cancel = cancel.child_token();
    let (id_ref, net_cancel_ref) = (&id, &net_cancel);
    let (staged, transferred) = std::thread::scope(|scope| {
        // `tx` moves into the network thread: its end closes the channel, which is the reader's EOF.
        let net = scope.spawn(move || {
            let (id, cancel) = (id_ref, net_cancel_ref);
            rt.block_on(async {
                let mut dl = BlobDownload::new(session, desc.digest.clone(), desc.size);
                let mut last = Instant::now() - PROGRESS_EVERY;
                let on_retry = |e: &Error, d: Duration| {
                    // docker's wording exactly (clients match on it); the cause is in the daemon's log.
                    log::info!("layer {id}: {e}");
                    progress.status(Some(id), &format!("Retrying in {} seconds", d.as_secs().max(1)));
                };
                loop {
                    match dl.next(cancel, &on_retry).await {
                        Ok(Some(b)) => {
                            if last.elapsed() >= PROGRESS_EVERY {
                                last = Instant::now();
                                progress.progress(id, "Downloading", dl.offset(), desc.size);
                            }
                            if tx.send(Ok(b)).await.is_err() {
                                break; // the unpacker stopped; its error is the one to report
                            }
                        }
                        Ok(None) => {
                            progress.progress(id, "Downloading", dl.offset(), desc.size);
                            progress.status(Some(id), "Verifying Checksum");
                            progress.status(Some(id), "Download complete");
                            break;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            break;
                        }
                    }
                }
                dl.transferred
            })
        });
        let mut reader = reader;
        let staged = stage_layer(staging, &mut reader, &desc.digest.to_string());
        // Bad bytes (gzip's CRC notices a flipped byte at the blob's end, before the blob digest is known):
        // read on a little so that a corrupt blob is reported as the digest mismatch it is.
        // Only for a while: a download stuck in a retry must not hold the error back.
        if matches!(staged, Err(engine::error::Error::BadArchive(_))) {
            let give_up = net_cancel.clone();
            let timer = rt.spawn(async move {
                tokio::time::sleep(VERIFY_TAIL_WAIT).await;
                give_up.cancel();
            });
            let _ = std::io::copy(&mut std::io::Read::take(&mut reader, VERIFY_TAIL), &mut std::io::sink());
            timer.abort();
        }
        drop(reader);
        net_cancel.cancel();
        (staged, net.join().unwrap_or(0))
    });
    let download_error = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    let staged = match (staged, download_error) {
        // The download was stopped here because the unpacker had failed: that failure is the cause.
        (Err(e), Some(Error::Cancelled)) if !cancel.is_cancelled() => return Err(e.into()),
        (_, Some(e)) => return Err(e),
        (Err(e), None) if cancel.is_cancelled() => {
            log::debug!("layer {id} stopped: {e}");
            return Err(Error::Cancelled);
        }
        (r, None) => r?,
    };
    progress.progress(&id, "Extracting", desc.size, desc.size);
    progress.status(Some(&id), "Pull complete");
    Ok((staged, transferred))
}
