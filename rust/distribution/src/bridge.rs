//! From the async download to the blocking unpacker: a bounded channel of chunks read as `std::io::Read`.
//! The download's error is kept aside so that it, not the unpacker's "unexpected end of stream", is what
//! the user is told.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use crate::error::Error;

/// Chunks in flight per layer: bounded memory whatever the blob's size.
pub const CHUNKS: usize = 16;

pub struct ChunkReader {
    rx: mpsc::Receiver<Result<Bytes, Error>>,
    cur: Bytes,
    failure: Failure,
}

/// Where the download's error waits for the unpacker's side to report it.
pub type Failure = Arc<Mutex<Option<Error>>>;

/// The sending half for the download task, the reading half for the unpacker, and the download's error.
pub fn channel() -> (mpsc::Sender<Result<Bytes, Error>>, ChunkReader, Failure) {
    let (tx, rx) = mpsc::channel(CHUNKS);
    let failure = Arc::new(Mutex::new(None));
    (tx, ChunkReader { rx, cur: Bytes::new(), failure: failure.clone() }, failure)
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return Err(io::Error::other(msg));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}
