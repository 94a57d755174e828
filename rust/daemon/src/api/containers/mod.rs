//! `/containers/…`: create, lifecycle (start, stop, kill, restart, wait, remove, prune), list and inspect,
//! logs and attach. The handlers find the container manager as a request extension (installed around the
//! router in `server::serve`) and the daemon (events, store) as state.

pub mod attach;
pub mod create;
pub mod lifecycle;
pub mod list;
pub mod logs;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::containers::Manager;
use crate::state::Daemon;

/// The manager, as handlers extract it.
pub type Mgr = axum::Extension<Arc<Manager>>;

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/containers/create", post(create::create))
        .route("/containers/json", get(list::list))
        .route("/containers/prune", post(lifecycle::prune))
        .route("/containers/{id}/json", get(list::inspect))
        .route("/containers/{id}/start", post(lifecycle::start))
        .route("/containers/{id}/stop", post(lifecycle::stop))
        .route("/containers/{id}/kill", post(lifecycle::kill))
        .route("/containers/{id}/restart", post(lifecycle::restart))
        .route("/containers/{id}/wait", post(lifecycle::wait))
        .route("/containers/{id}/logs", get(logs::logs))
        .route("/containers/{id}/attach", post(attach::attach))
        .route("/containers/{id}", delete(lifecycle::remove))
}
