//! The daemon's shared state, handed to every handler: the image store, the event bus, the other parts'
//! backends, and the shutdown signal.
//!
//! The store is opened for writing once, for the daemon's lifetime (so the CLI's direct mode finds the data
//! root "in use"), and writers (load, tag, rm, delta) take turns on it. Readers (list, inspect, save, df)
//! open their own read-only handle on the committed state instead, so they never wait for a long load.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use engine::store::{Access, Store};
use tokio::sync::watch;

use crate::api::error::ApiError;
use crate::backends::{Containers, NoContainers, NoVolumes, Volumes};
use crate::events::EventBus;

pub struct Daemon {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    writer: Mutex<Option<Store>>,
    pub events: EventBus,
    pub containers: Arc<dyn Containers>,
    pub volumes: Arc<dyn Volumes>,
    pub registries: Arc<distribution::Registries>,
    shutdown: watch::Receiver<bool>,
}

impl Daemon {
    /// `store` must be opened with [`Access::Write`]; `shutdown` turns true when the daemon begins to stop.
    pub fn new(store: Store, exec_root: PathBuf, shutdown: watch::Receiver<bool>) -> Daemon {
        Daemon {
            data_root: store.root().to_path_buf(),
            exec_root,
            writer: Mutex::new(Some(store)),
            events: EventBus::default(),
            containers: Arc::new(NoContainers),
            volumes: Arc::new(NoVolumes),
            registries: Arc::new(distribution::Registries::new(distribution::RegistryConfig::default())),
            shutdown,
        }
    }

    pub fn with_registries(mut self, r: distribution::RegistryConfig) -> Daemon {
        self.registries = Arc::new(distribution::Registries::new(r));
        self
    }

    pub fn with_containers(mut self, c: Arc<dyn Containers>) -> Daemon {
        self.containers = c;
        self
    }

    pub fn with_volumes(mut self, v: Arc<dyn Volumes>) -> Daemon {
        self.volumes = v;
        self
    }

    /// Runs `f` on the writable store; blocks while another writer works. Call from a blocking thread.
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let store = guard.as_mut().ok_or_else(ApiError::shutting_down)?;
        f(store)
    }

    /// Runs `f` on a read-only snapshot of the committed state. Call from a blocking thread.
    pub fn with_reader<T>(&self, f: impl FnOnce(&Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let store = Store::open(&self.data_root, Access::Read)?;
        f(&store)
    }

    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let d = self.clone();
        blocking(move || d.with_writer(f)).await
    }

    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let d = self.clone();
        blocking(move || d.with_reader(f)).await
    }

    /// Removes what a commit could not collect while a reader was active; skipped if a writer is busy
    /// (its own commit collects).
    pub fn collect_garbage(&self) {
        if let Ok(guard) = self.writer.try_lock() {
            if let Some(store) = guard.as_ref() {
                if let Err(e) = store.collect_garbage() {
                    log::warn!("collecting unreferenced layers: {e}");
                }
            }
        }
    }

    /// Turns true when shutdown begins: long-lived streams (events) end then.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Closes the store (releasing the data root) after any write in progress. Blocking.
    pub fn close(&self) {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        guard.take();
    }

    /// Closes the store unless a write is in progress; true if it was closed.
    pub fn try_close(&self) -> bool {
        match self.writer.try_lock() {
            Ok(mut guard) => {
                guard.take();
                true
            }
            Err(_) => false,
        }
    }
}

/// Pulls and pushes reach the store through the daemon: the writer only to commit, readers otherwise.
impl distribution::store_access::StoreAccess for Daemon {
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> engine::error::Result<T>) -> distribution::Result<T> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let store =
            guard.as_mut().ok_or_else(|| engine::error::Error::Conflict("the daemon is shutting down".into()))?;
        Ok(f(store)?)
    }
    fn read<T>(&self, f: impl FnOnce(&Store) -> engine::error::Result<T>) -> distribution::Result<T> {
        let store = Store::open(&self.data_root, Access::Read)?;
        Ok(f(&store)?)
    }
    fn collect_garbage(&self) {
        Daemon::collect_garbage(self)
    }
}

/// Runs blocking work (store access, archive streaming) off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(ApiError::internal(format!("worker failed: {e}"))))
}
