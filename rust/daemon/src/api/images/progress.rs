//! A pull's or push's progress as docker's JSON message stream.

use distribution::progress::Progress;
use tokio_util::sync::CancellationToken;

use crate::api::stream::Messages;
use crate::state::Daemon;

/// Cancels `token` when the daemon begins to shut down: a pull or push (which may be waiting out a registry
/// that is down, for ever by default) ends at once with an in-band error instead of holding the shutdown for
/// its whole grace period and then being cut off. Call from a thread of the daemon's runtime.
pub fn cancel_on_shutdown(d: &Daemon, token: CancellationToken) {
    let mut shutdown = d.shutdown_signal();
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        h.spawn(async move {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => token.cancel(),
                _ = token.cancelled() => {}
            }
        });
    }
}

pub struct JsonProgress<'a>(pub &'a Messages);

impl Progress for JsonProgress<'_> {
    fn status(&self, id: Option<&str>, status: &str) {
        match id {
            Some(id) => self.0.item_status(id, status),
            None => self.0.status(status),
        };
    }

    fn progress(&self, id: &str, status: &str, current: u64, total: u64) {
        self.0.progress(id, status, Some(current), (total > 0).then_some(total));
    }
}
