//! Streaming bodies fed from blocking threads through bounded channels (memory stays bounded whatever the
//! size of what is streamed), and docker's JSON message stream (`{"status":…}` lines, errors as
//! `{"errorDetail":…}`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;

const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, io::Error>;

/// A body whose bytes come from `rx`; an `Err` chunk aborts the response (the client sees a truncated
/// transfer, never a silently short one).
pub fn body_from(mut rx: mpsc::Receiver<Chunk>) -> Body {
    Body::from_stream(stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// `std::io::Write` for a blocking producer (an archive writer) into an HTTP body.
pub struct BodyWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

pub fn body_channel() -> (BodyWriter, Body) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    (BodyWriter { tx, buf: Vec::with_capacity(CHUNK) }, body_from(rx))
}

impl BodyWriter {
    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        self.tx.blocking_send(chunk).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Ends the body with an error after what was written so far.
    pub fn fail(mut self, message: String) {
        let _ = self.flush();
        let _ = self.send(Err(io::Error::other(message)));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.send(Ok(chunk))
    }
}

/// The sending side of a JSON message stream, used from a blocking thread.
#[derive(Clone)]
pub struct Messages {
    tx: mpsc::Sender<Bytes>,
    sent: Arc<AtomicBool>,
}

impl Messages {
    /// Sends one message; false once the client has gone.
    pub fn send(&self, msg: &Value) -> bool {
        let mut line = Bytes::from(format!("{msg}\r\n"));
        // Not `blocking_send`: pulls report progress from inside `Handle::block_on` on their own threads, where
        // tokio forbids it. Waiting for room in small sleeps works from any non-async thread.
        let ok = loop {
            match self.tx.try_send(line) {
                Ok(()) => break true,
                Err(mpsc::error::TrySendError::Closed(_)) => break false,
                Err(mpsc::error::TrySendError::Full(l)) => {
                    line = l;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        };
        self.sent.store(true, Ordering::SeqCst);
        ok
    }

    /// Cancels `token` when the client goes away (closing the connection cancels a pull or push). Call from a
    /// thread of the daemon's runtime (a blocking worker is one).
    pub fn cancel_when_closed(&self, token: tokio_util::sync::CancellationToken) {
        let tx = self.tx.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                tokio::select! {
                    _ = tx.closed() => token.cancel(),
                    _ = token.cancelled() => {}
                }
            });
        }
    }

    /// One status line about item `id` (a layer), without byte counts.
    pub fn item_status(&self, id: &str, status: &str) -> bool {
        self.send(&json!({ "status": status, "progressDetail": {}, "id": id }))
    }

    pub fn status(&self, text: &str) -> bool {
        self.send(&json!({ "status": text }))
    }

    /// A line of output, as `docker load` prints ("Loaded image: x\n").
    pub fn stream(&self, text: &str) -> bool {
        self.send(&json!({ "stream": text }))
    }

    /// A progress line for one item (`id`): the docker CLI redraws it in place on a terminal.
    pub fn progress(&self, id: &str, status: &str, current: Option<u64>, total: Option<u64>) -> bool {
        let mut detail = serde_json::Map::new();
        if let Some(c) = current {
            detail.insert("current".into(), c.into());
        }
        if let Some(t) = total {
            detail.insert("total".into(), t.into());
        }
        self.send(&json!({ "status": status, "progressDetail": detail, "id": id }))
    }
}

pub fn error_message(message: &str) -> Value {
    json!({ "errorDetail": { "message": message }, "error": message })
}

fn json_stream(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs `job` on a blocking thread and answers with its messages. As dockerd does, an error before the first
/// message is an ordinary HTTP error; after it, the stream (status 200) ends with an `errorDetail` message.
pub async fn streamed(job: impl FnOnce(&Messages) -> Result<(), ApiError> + Send + 'static) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let msgs = Messages { tx, sent: Arc::new(AtomicBool::new(false)) };
    let handle = tokio::task::spawn_blocking(move || {
        let res = job(&msgs);
        match res {
            Err(e) if msgs.sent.load(Ordering::SeqCst) => {
                log::info!("streamed request failed: {}", e.message);
                msgs.send(&error_message(&e.message));
                Ok(())
            }
            other => other,
        }
    });
    let Some(first) = rx.recv().await else {
        // The job ended without a message: its result decides the status.
        return match handle.await {
            Ok(Ok(())) => json_stream(Body::empty()),
            Ok(Err(e)) => e.into_response(),
            Err(e) => ApiError::internal(format!("worker failed: {e}")).into_response(),
        };
    };
    let rest = stream::poll_fn(move |cx| rx.poll_recv(cx));
    let all = stream::once(async move { first }).chain(rest).map(Ok::<_, io::Error>);
    json_stream(Body::from_stream(all))
}
