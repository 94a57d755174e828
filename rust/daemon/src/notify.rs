//! systemd's notify protocol (`sd_notify(3)`): one datagram per state change to $NOTIFY_SOCKET (a path, or
//! an abstract socket when it starts with '@'). Outside systemd the variable is unset and nothing is sent.
//! When to feed the service watchdog (`WATCHDOG=1`) is decided by [`crate::watchdog`].
//!
//! A datagram to a receiver whose queue is full (`net.unix.max_dgram_qlen`: 10 by default, 512 under
//! systemd) blocks the sender. These are sent from the async runtime, so no send may block for long: state
//! changes (READY, STOPPING) wait at most [`STATE_WAIT`], watchdog pings and status lines not at all (the
//! next one follows).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

/// The longest a state change waits for room in the notify socket's queue.
pub const STATE_WAIT: Duration = Duration::from_secs(2);

/// Set by [`stopping`]: no WATCHDOG=1 may follow STOPPING=1 (systemd would re-arm the watchdog during the
/// stop and could turn a graceful stop into a watchdog failure). Held while either is sent, so the order is
/// certain.
static STOPPING: Mutex<bool> = Mutex::new(false);

/// The service is up: every listening socket accepts requests.
pub fn ready() {
    send("READY=1\nSTATUS=Processing requests", Some(STATE_WAIT));
}

/// Shutdown has begun.
pub fn stopping() {
    let mut stopping = STOPPING.lock().unwrap_or_else(|e| e.into_inner());
    *stopping = true;
    send("STOPPING=1\nSTATUS=Shutting down", Some(STATE_WAIT));
}

/// Feeds the service watchdog (`WatchdogSec=`): the daemon is alive and its health check passed.
pub fn watchdog() {
    let stopping = STOPPING.lock().unwrap_or_else(|e| e.into_inner());
    if !*stopping {
        send("WATCHDOG=1", None);
    }
}

/// The one-line status `systemctl status` shows.
pub fn status(text: &str) {
    send(&format!("STATUS={}", text.replace('\n', " ")), None);
}

/// Sends one datagram; `wait` bounds the wait for room in the receiver's queue (`None`: no wait).
fn send(state: &str, wait: Option<Duration>) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let target = target.to_string_lossy().into_owned();
    let res = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        match wait {
            Some(w) => sock.set_write_timeout(Some(w))?,
            None => sock.set_nonblocking(true)?,
        }
        let addr = match target.strip_prefix('@') {
            Some(name) => abstract_addr(name)?,
            None => SocketAddr::from_pathname(&target)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    match res {
        Ok(()) => log::debug!("sd_notify {target}: {}", state.replace('\n', " ")),
        Err(e) => log::warn!("sd_notify to {target} failed: {e}"),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &str) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_: &str) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "abstract sockets are Linux-only"))
}
