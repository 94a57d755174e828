//! The daemon's process, from procfs: it exists, it is the engine, and it can run (not a zombie, not
//! stopped). A stopped engine (SIGSTOP, a debugger) or a dead one whose pidfile stayed behind would
//! otherwise make the ping wait for its whole timeout; this answers at once and says why.

use std::fmt;
use std::io;
use std::path::Path;

#[derive(Debug)]
pub enum ProcessError {
    Pidfile { path: String, error: io::Error },
    BadPidfile { path: String, content: String },
    Gone(u32),
    Proc { pid: u32, error: io::Error },
    BadStat(u32),
    NotTheEngine { pid: u32, comm: String, expected: String },
    State { pid: u32, state: char },
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Pidfile { path, error } => write!(f, "pidfile {path}: {error}"),
            ProcessError::BadPidfile { path, content } => write!(f, "pidfile {path} holds {content:?}, not a PID"),
            ProcessError::Gone(pid) => write!(f, "process {pid} does not exist"),
            ProcessError::Proc { pid, error } => write!(f, "/proc/{pid}/stat: {error}"),
            ProcessError::BadStat(pid) => write!(f, "/proc/{pid}/stat: unexpected format"),
            ProcessError::NotTheEngine { pid, comm, expected } => write!(f, "process {pid} is {comm:?}, not {expected}"),
            ProcessError::State { pid, state } => write!(f, "process {pid} is {} (state {state})", describe(*state)),
        }
    }
}

impl std::error::Error for ProcessError {}

fn describe(state: char) -> &'static str {
    match state {
        'Z' => "a zombie",
        'X' | 'x' => "dead",
        'T' => "stopped",
        't' => "stopped by a debugger",
        _ => "not running",
    }
}

/// The fields of `/proc/PID/stat` that matter here.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    /// The process name, at most 15 bytes (it may contain spaces and parentheses).
    pub comm: String,
    pub state: char,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ...`. `comm` may contain anything, including `) `: the
/// state follows the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let state = text.get(close + 1..)?.trim_start().chars().next()?;
    Some(Stat { comm, state })
}

pub fn stat(pid: u32) -> Result<Stat, ProcessError> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ProcessError::Gone(pid)),
        Err(error) => return Err(ProcessError::Proc { pid, error }),
    };
    parse_stat(&text).ok_or(ProcessError::BadStat(pid))
}

/// Zombies, dead processes and stopped ones cannot answer. `D` (uninterruptible sleep) is not condemned
/// here: it is normal for a moment during I/O, and the ping tells whether it lasts.
pub fn runnable(state: char) -> bool {
    !matches!(state, 'Z' | 'X' | 'x' | 'T' | 't')
}

/// Checks process `pid`; `expected_comm` (the engine's name) guards against a pidfile left by a dead
/// daemon whose PID now belongs to something else.
pub fn check(pid: u32, expected_comm: Option<&str>) -> Result<(), ProcessError> {
    let st = stat(pid)?;
    if let Some(expected) = expected_comm {
        if st.comm != expected {
            return Err(ProcessError::NotTheEngine { pid, comm: st.comm, expected: expected.to_owned() });
        }
    }
    if !runnable(st.state) {
        return Err(ProcessError::State { pid, state: st.state });
    }
    Ok(())
}

/// The PID in a pidfile (decimal, surrounding whitespace allowed).
pub fn read_pidfile(path: &Path) -> Result<u32, ProcessError> {
    let shown = || path.display().to_string();
    let mut buf = [0u8; 32];
    // One read of a small file: a pidfile is "1234\n"; more than 32 bytes is not a pidfile.
    let n = std::fs::File::open(path)
        .and_then(|mut f| io::Read::read(&mut f, &mut buf))
        .map_err(|error| ProcessError::Pidfile { path: shown(), error })?;
    let content = String::from_utf8_lossy(&buf[..n]);
    match content.trim().parse::<u32>() {
        Ok(pid) if pid > 0 && n < buf.len() => Ok(pid),
        _ => Err(ProcessError::BadPidfile { path: shown(), content: content.chars().take(32).collect() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_names() {
        let st = parse_stat("1234 (balena-engined) S 1 1234 1234 0 -1 4194560 ...").unwrap();
        assert_eq!(st, Stat { comm: "balena-engined".into(), state: 'S' });
        let st = parse_stat("99 (a) Z (b) T 1 2 3").unwrap();
        assert_eq!(st, Stat { comm: "a) Z (b".into(), state: 'T' });
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x)").is_none());
    }

    #[test]
    fn states() {
        for s in ['R', 'S', 'D', 'I'] {
            assert!(runnable(s), "{s}");
        }
        for s in ['Z', 'X', 'T', 't'] {
            assert!(!runnable(s), "{s}");
        }
    }

    #[test]
    fn own_process_is_sane() {
        let me = std::process::id();
        assert!(check(me, None).is_ok());
        let comm = stat(me).unwrap().comm;
        assert!(check(me, Some(&comm)).is_ok());
        assert!(matches!(check(me, Some("balena-engined")), Err(ProcessError::NotTheEngine { .. })));
    }

    #[test]
    fn pidfiles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pid");
        std::fs::write(&p, "4242\n").unwrap();
        assert_eq!(read_pidfile(&p).unwrap(), 4242);
        for bad in ["", "0", "-1", "12ab", &"9".repeat(40)] {
            std::fs::write(&p, bad).unwrap();
            assert!(matches!(read_pidfile(&p), Err(ProcessError::BadPidfile { .. })), "{bad:?}");
        }
        assert!(matches!(read_pidfile(&dir.path().join("none")), Err(ProcessError::Pidfile { .. })));
    }
}
