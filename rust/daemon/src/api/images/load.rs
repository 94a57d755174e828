//! POST `/images/load?quiet=`: the request body (a tar, possibly gzip/zstd) is streamed into the engine on a
//! blocking thread; memory stays bounded whatever its size. The answer is docker's JSON message stream
//! (`{"stream":"Loaded image: x\n"}`), with `load`, `tag` and `untag` events.

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures_util::TryStreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::stream::{streamed, Messages};
use crate::state::Daemon;

const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Reports how much of the archive has arrived (when the client did not ask for `quiet`), and remembers a
/// failure to read the request body (the client's fault, not the archive's or ours).
struct Progress<'a, R> {
    inner: R,
    msgs: Option<&'a Messages>,
    read: u64,
    last: Instant,
    body_error: Option<String>,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| self.body_error = Some(e.to_string()))?;
        self.read += n as u64;
        if let Some(m) = self.msgs {
            if self.last.elapsed() >= PROGRESS_EVERY {
                self.last = Instant::now();
                m.progress("archive", "Loading", Some(self.read), None);
            }
        }
        Ok(n)
    }
}

pub async fn load(State(d): State<Arc<Daemon>>, p: Params, body: Body) -> Response {
    // dockerd's default is quiet; the docker CLI asks for progress only on a terminal.
    let quiet = p.get("quiet").is_none() || p.flag("quiet");
    let stream = body.into_data_stream().map_err(io::Error::other);
    let input = SyncIoBridge::new(StreamReader::new(stream));
    streamed(move |msgs| {
        let mut input = BufReader::with_capacity(
            256 * 1024,
            Progress { inner: input, msgs: (!quiet).then_some(msgs), read: 0, last: Instant::now(), body_error: None },
        );
        let res = d.with_writer(|s| Ok(engine::archive::load(s, &mut input)?));
        if res.is_err() {
            // Read the rest so the client finishes sending and reads the error, instead of a broken pipe.
            let _ = io::copy(&mut input, &mut io::sink());
        }
        if let (Err(_), Some(e)) = (&res, &input.get_ref().body_error) {
            return Err(ApiError::bad_request(format!("reading the request body: {e}")));
        }
        for img in res? {
            let id = img.id.to_string();
            for (tag, old) in &img.retagged_from {
                msgs.stream(&format!(
                    "The image {tag} already exists, renaming the old one with ID {old} to empty string\n"
                ));
                d.events.image("untag", &old.to_string(), tag);
            }
            if let Some(base) = &img.delta_base {
                msgs.stream(&format!("Applied delta: rebuilt {id} from base {base}\n"));
            }
            d.events.image("load", &id, &id);
            if img.tags.is_empty() {
                msgs.stream(&format!("Loaded image ID: {id}\n"));
            }
            for t in &img.tags {
                d.events.image("tag", &id, t);
                msgs.stream(&format!("Loaded image: {t}\n"));
            }
        }
        Ok(())
    })
    .await
}
