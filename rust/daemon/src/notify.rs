//! systemd's notify protocol (`sd_notify(3)`): one datagram per state change to $NOTIFY_SOCKET (a path, or
//! an abstract socket when it starts with '@'). Outside systemd the variable is unset and nothing is sent.
//! Watchdog feeding (`WATCHDOG=1` every WATCHDOG_USEC/2) is to come here too.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The service is up: every listening socket accepts requests.
pub fn ready() {
    send("READY=1\nSTATUS=Processing requests");
}

/// Shutdown has begun.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=Shutting down");
}

fn send(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let target = target.to_string_lossy().into_owned();
    let res = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
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
