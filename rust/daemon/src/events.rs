//! The event bus behind `GET /events`: every part of the daemon (images now, containers and volumes later)
//! publishes here. The last events are kept so `since` can replay them, as dockerd keeps its last 256.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use engine::time;

const HISTORY: usize = 256;
const LIVE_BUFFER: usize = 1024;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in the API's shape (with the deprecated `status`/`id`/`from` that dockerd still fills for
/// container and image events).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i128,
}

impl Event {
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let (secs, nanos) = time::now();
        let legacy = kind == "container" || kind == "image";
        let from = if kind == "container" { attributes.get("image").cloned() } else { None };
        Event {
            status: legacy.then(|| action.to_owned()),
            id: legacy.then(|| id.to_owned()),
            from,
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: Actor { id: id.to_owned(), attributes },
            scope: "local".into(),
            time: secs,
            time_nano: i128::from(secs) * 1_000_000_000 + i128::from(nanos),
        }
    }
}

pub struct EventBus {
    history: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { history: Mutex::new(VecDeque::with_capacity(HISTORY)), live: broadcast::channel(LIVE_BUFFER).0 }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        log::debug!("event {} {} {}", event.kind, event.action, event.actor.id);
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(event.clone());
        // Under the history lock, so a subscriber sees each event exactly once (replayed or live).
        let _ = self.live.send(event);
    }

    /// Shorthand for image events: `name` is the reference (or ID) the action was about.
    pub fn image(&self, action: &str, id: &str, name: &str) {
        let attributes = BTreeMap::from([("name".to_owned(), name.to_owned())]);
        self.publish(Event::new("image", action, id, attributes));
    }

    /// The kept events, and a receiver of every later one.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (h.iter().cloned().collect(), self.live.subscribe())
    }

    /// Clients currently streaming events (`NEventsListener` in `/info`).
    pub fn listeners(&self) -> usize {
        self.live.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_then_streams() {
        let bus = EventBus::default();
        for i in 0..300 {
            bus.image("tag", "sha256:1", &format!("app:{i}"));
        }
        let (past, mut live) = bus.subscribe();
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past[0].actor.attributes["name"], "app:44");
        bus.image("delete", "sha256:1", "sha256:1");
        let e = live.try_recv().unwrap();
        assert_eq!((e.status.as_deref(), e.action.as_str()), (Some("delete"), "delete"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["Type"], "image");
        assert_eq!(json["Actor"]["ID"], "sha256:1");
        assert!(json.get("from").is_none());
    }
}
