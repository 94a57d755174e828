//! Resource limits (`setrlimit`), with core dumps off unless the caller asks for them.

use std::fmt;
use std::str::FromStr;

/// A resource limit; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub kind: RlimitKind,
    pub soft: u64,
    pub hard: u64,
}

/// The limits docker's `--ulimit` knows, parsed from `nofile` or `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RlimitKind {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

const ALL: [(RlimitKind, &str); 16] = [
    (RlimitKind::As, "as"),
    (RlimitKind::Core, "core"),
    (RlimitKind::Cpu, "cpu"),
    (RlimitKind::Data, "data"),
    (RlimitKind::Fsize, "fsize"),
    (RlimitKind::Locks, "locks"),
    (RlimitKind::Memlock, "memlock"),
    (RlimitKind::Msgqueue, "msgqueue"),
    (RlimitKind::Nice, "nice"),
    (RlimitKind::Nofile, "nofile"),
    (RlimitKind::Nproc, "nproc"),
    (RlimitKind::Rss, "rss"),
    (RlimitKind::Rtprio, "rtprio"),
    (RlimitKind::Rttime, "rttime"),
    (RlimitKind::Sigpending, "sigpending"),
    (RlimitKind::Stack, "stack"),
];

impl RlimitKind {
    /// Docker's short name (`nofile`).
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(k, _)| *k == self).map_or("?", |(_, n)| n)
    }

    /// The kernel's resource number.
    pub(crate) fn resource(self) -> libc::c_int {
        (match self {
            RlimitKind::As => libc::RLIMIT_AS,
            RlimitKind::Core => libc::RLIMIT_CORE,
            RlimitKind::Cpu => libc::RLIMIT_CPU,
            RlimitKind::Data => libc::RLIMIT_DATA,
            RlimitKind::Fsize => libc::RLIMIT_FSIZE,
            RlimitKind::Locks => libc::RLIMIT_LOCKS,
            RlimitKind::Memlock => libc::RLIMIT_MEMLOCK,
            RlimitKind::Msgqueue => libc::RLIMIT_MSGQUEUE,
            RlimitKind::Nice => libc::RLIMIT_NICE,
            RlimitKind::Nofile => libc::RLIMIT_NOFILE,
            RlimitKind::Nproc => libc::RLIMIT_NPROC,
            RlimitKind::Rss => libc::RLIMIT_RSS,
            RlimitKind::Rtprio => libc::RLIMIT_RTPRIO,
            RlimitKind::Rttime => libc::RLIMIT_RTTIME,
            RlimitKind::Sigpending => libc::RLIMIT_SIGPENDING,
            RlimitKind::Stack => libc::RLIMIT_STACK,
        }) as libc::c_int
    }
}

impl fmt::Display for RlimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RLIMIT_{}", self.name().to_ascii_uppercase())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rlimit {0:?}")]
pub struct UnknownRlimit(pub String);

impl FromStr for RlimitKind {
    type Err = UnknownRlimit;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let short = lower.strip_prefix("rlimit_").unwrap_or(&lower);
        ALL.iter().find(|(_, n)| *n == short).map(|(k, _)| *k).ok_or_else(|| UnknownRlimit(s.to_string()))
    }
}

/// The limits to apply: the caller's, plus `core` 0/0 when the caller did not set it.
pub(crate) fn effective(requested: &[Rlimit]) -> Vec<Rlimit> {
    let mut out = requested.to_vec();
    if !out.iter().any(|r| r.kind == RlimitKind::Core) {
        out.push(Rlimit { kind: RlimitKind::Core, soft: 0, hard: 0 });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_and_kernel_names() {
        assert_eq!("nofile".parse::<RlimitKind>().unwrap(), RlimitKind::Nofile);
        assert_eq!("RLIMIT_CORE".parse::<RlimitKind>().unwrap(), RlimitKind::Core);
        assert!("bogus".parse::<RlimitKind>().is_err());
        assert_eq!(RlimitKind::Nofile.to_string(), "RLIMIT_NOFILE");
    }

    #[test]
    fn core_defaults_to_zero() {
        let got = effective(&[Rlimit { kind: RlimitKind::Nofile, soft: 10, hard: 20 }]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Rlimit { kind: RlimitKind::Core, soft: 0, hard: 0 });
        let core = Rlimit { kind: RlimitKind::Core, soft: 5, hard: u64::MAX };
        assert_eq!(effective(&[core]), vec![core]);
    }
}
