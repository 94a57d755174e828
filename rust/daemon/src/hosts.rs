//! `-H` values: where the API listens.

use std::os::fd::RawFd;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A unix socket the daemon creates (mode 0660).
    Unix(PathBuf),
    /// Sockets passed by systemd (socket activation): all of them, or the one with this fd number.
    Fd(Option<RawFd>),
    /// A TCP address, only when asked for explicitly: there is no TLS and no authentication.
    Tcp(String),
}

pub fn parse(spec: &str) -> Result<Host, String> {
    let bad = |why: &str| format!("invalid -H {spec:?}: {why}");
    if let Some(path) = spec.strip_prefix("unix://") {
        let path = if path.is_empty() { "/var/run/balena-engine.sock" } else { path };
        if !path.starts_with('/') {
            return Err(bad("the socket path must be absolute"));
        }
        return Ok(Host::Unix(PathBuf::from(path)));
    }
    if let Some(fd) = spec.strip_prefix("fd://") {
        if fd.is_empty() || fd == "*" {
            return Ok(Host::Fd(None));
        }
        return fd.parse::<RawFd>().ok().filter(|n| *n >= 3).map(|n| Host::Fd(Some(n))).ok_or_else(|| bad("expected fd:// or fd://N with N >= 3"));
    }
    if let Some(addr) = spec.strip_prefix("tcp://") {
        let addr = addr.trim_end_matches('/');
        if addr.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err(bad("expected tcp://HOST:PORT"));
        }
        return Ok(Host::Tcp(addr.to_owned()));
    }
    Err(bad("expected unix://PATH, fd://[N] or tcp://HOST:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_hosts() {
        assert_eq!(parse("unix:///run/x.sock"), Ok(Host::Unix("/run/x.sock".into())));
        assert_eq!(parse("fd://"), Ok(Host::Fd(None)));
        assert_eq!(parse("fd://3"), Ok(Host::Fd(Some(3))));
        assert_eq!(parse("tcp://127.0.0.1:2375"), Ok(Host::Tcp("127.0.0.1:2375".into())));
        for bad in ["/run/x.sock", "unix://rel", "fd://1", "tcp://nohost", "tcp://:1", "http://x:1"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
