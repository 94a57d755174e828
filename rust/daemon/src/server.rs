//! Start-up and shutdown. Start: open the store for writing (refusing a data root another daemon holds),
//! write the pidfile, bind the sockets, serve, then tell systemd READY=1. SIGTERM/SIGINT: STOPPING=1, stop
//! accepting, let requests in flight finish (10 s at most; a second signal skips the wait), close the store,
//! remove the sockets and the pidfile, exit 0.

use std::fs;
use std::future::IntoFuture;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::store::{Access, Store};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::listeners::Bound;
use crate::pidfile::PidFile;
use crate::state::Daemon;
use crate::volumes::VolumeStore;
use crate::{activation, api, cgroups, hosts, listeners, logging, notify, watchdog};

/// How long requests in flight may run on after a stop signal.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for a store operation to finish before exiting anyway (the store is crash-safe).
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(5);

pub fn run(config: Config) -> Result<(), String> {
    logging::init(config.log_level);
    let res = start_and_serve(&config);
    if let Err(e) = &res {
        log::error!("{e}");
    }
    res
}

fn start_and_serve(config: &Config) -> Result<(), String> {
    let hosts = config.hosts().iter().map(|h| hosts::parse(h)).collect::<Result<Vec<_>, _>>()?;
    let gid = config.group.as_deref().map(listeners::resolve_group).transpose()?;
    // Before any thread exists: the passed sockets, and the environment they were announced in.
    let activated = activation::take();
    let root = fs::create_dir_all(&config.data_root)
        .and_then(|()| fs::canonicalize(&config.data_root))
        .map_err(|e| format!("creating data root {}: {e}", config.data_root.display()))?;
    let registry = config.registry().map_err(|e| e.to_string())?;
    let store = Store::open(&root, Access::Write).map_err(|e| format!("opening data root: {e}"))?;
    let pidfile = match config.pidfile.as_os_str().is_empty() {
        true => None,
        false => Some(PidFile::create(&config.pidfile)?),
    };
    fs::create_dir_all(&config.exec_root)
        .and_then(|()| fs::set_permissions(&config.exec_root, fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("creating exec root {}: {e}", config.exec_root.display()))?;
    // What containers' limits will lack, each with its fix (as dockerd warns at start).
    cgroups::log_missing(&cgroups::detect());
    let bound = listeners::bind_all(&hosts, activated, gid)?;
    let socket_files: Vec<PathBuf> = bound
        .iter()
        .filter_map(|b| if let Bound::Unix { path: Some(p), .. } = b { Some(p.clone()) } else { None })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("balena-engined")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let res = rt.block_on(serve(store, config.exec_root.clone(), bound, registry));
    // A store operation still running past the grace period is abandoned: the store recovers at next start.
    rt.shutdown_timeout(Duration::from_millis(500));
    for p in socket_files {
        let _ = fs::remove_file(p);
    }
    drop(pidfile);
    if res.is_ok() {
        log::info!("Daemon shutdown complete");
    }
    res
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        let s = |k| signal(k).map_err(|e| format!("installing signal handlers: {e}"));
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            hup: s(SignalKind::hangup())?,
        })
    }

    /// The next stop signal (SIGHUP, which would otherwise kill the daemon, is logged and ignored).
    async fn next_stop(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "terminated",
                _ = self.int.recv() => return "interrupt",
                _ = self.hup.recv() => log::info!("SIGHUP ignored (no configuration to reload)"),
            }
        }
    }
}

async fn serve(
    store: Store,
    exec_root: PathBuf,
    bound: Vec<Bound>,
    registry: distribution::RegistryConfig,
) -> Result<(), String> {
    let mut signals = Signals::new()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let volumes = Arc::new(VolumeStore::open(store.root()).map_err(|e| format!("opening the volume store: {e}"))?);
    let containers = crate::containers::Manager::open(store.root(), volumes.clone())?;
    let daemon = Arc::new(
        Daemon::new(store, exec_root, stop_rx.clone())
            .with_volumes(volumes.clone())
            .with_containers(containers.clone())
            .with_registries(registry),
    );
    volumes.publish_events_to(Arc::downgrade(&daemon));
    containers.bind(&daemon);
    let app =
        api::app(daemon.clone()).layer(axum::Extension(volumes.clone())).layer(axum::Extension(containers.clone()));
    let mut servers = JoinSet::new();
    let watchdog = watchdog::Watchdog::from_env(&bound);
    for b in bound {
        let desc = b.describe();
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let conv = |e: std::io::Error| format!("serving {desc}: {e}");
        match b {
            Bound::Unix { listener, .. } => {
                let l = tokio::net::UnixListener::from_std(listener).map_err(conv)?;
                servers.spawn(axum::serve(l, app.clone()).with_graceful_shutdown(stopped).into_future());
            }
            Bound::Tcp(listener) => {
                let l = tokio::net::TcpListener::from_std(listener).map_err(conv)?;
                servers.spawn(axum::serve(l, app.clone()).with_graceful_shutdown(stopped).into_future());
            }
        }
        log::info!("API listen on {desc}");
    }
    notify::ready();
    watchdog.start(daemon.clone());
    log::info!("Daemon has completed initialization (data root {})", daemon.data_root.display());

    let sig = signals.next_stop().await;
    log::info!("Processing signal '{sig}': stopping");
    notify::stopping();
    let c = containers.clone();
    tokio::select! {
        _ = tokio::task::spawn_blocking(move || c.shutdown()) => {}
        s = signals.next_stop() => log::warn!("second signal ({s}): not waiting for containers to stop"),
    }
    let _ = stop_tx.send(true);
    let drained = tokio::select! {
        r = tokio::time::timeout(GRACE, async { while servers.join_next().await.is_some() {} }) => r.is_ok(),
        s = signals.next_stop() => {
            log::warn!("second signal ({s}): not waiting for requests in flight");
            false
        }
    };
    if !drained {
        log::warn!("exiting with requests still in flight on {} listener(s)", servers.len());
        servers.abort_all();
        // Whatever they were writing is abandoned: the store recovers from it at next start.
        if !daemon.try_close() {
            log::warn!("a store operation is still running: exiting without waiting for it");
        }
        return Ok(());
    }
    // Requests are done; a write a client walked away from (a delta) may still be finishing.
    let d = daemon.clone();
    if tokio::time::timeout(STORE_CLOSE_WAIT, tokio::task::spawn_blocking(move || d.close())).await.is_err() {
        log::warn!("a store operation is still running: exiting without waiting for it");
    }
    Ok(())
}
