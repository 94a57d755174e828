//! A pull's or push's progress as docker's JSON message stream.

use distribution::progress::Progress;

use crate::api::stream::Messages;

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
