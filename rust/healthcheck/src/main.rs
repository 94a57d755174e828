//! `balena-engine-healthcheck`: exit 0 when the engine is healthy, 1 with one line on stderr when it is
//! not, 2 on a usage error. See the library (`healthcheck`) for what is checked.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use healthcheck::{http, process, DEFAULT_PIDFILE, DEFAULT_SOCKET, DEFAULT_TIMEOUT, ENGINE_COMM};

const USAGE: &str = "\
Usage: balena-engine-healthcheck [OPTIONS]

Exits 0 when the balena engine is healthy: its process (from the pidfile) exists, is balena-engined, is
neither a zombie nor stopped, and GET /_ping on its socket answers 200 \"OK\". Otherwise exits 1 with one
line on stderr (2 on a usage error). Writes no file.

Options:
  -H, --host ADDR        the engine's socket: unix:///PATH or /PATH [default: unix:///run/balena-engine.sock]
  -p, --pidfile FILE     the daemon's pidfile; \"\" skips the process check [default: /run/balena-engine.pid]
      --pid PID          check this process instead of the pidfile's
      --comm NAME        the process name to expect; \"\" accepts any [default: balena-engined]
  -t, --timeout DURATION for the whole check: 5, 2.5s, 500ms [default: 5s]
  -h, --help             print this help
  -V, --version          print the version";

/// What the check was doing when the backstop timer fired.
static STAGE: AtomicU8 = AtomicU8::new(0);
const STAGES: [&str; 3] = ["checking the process", "connecting to", "talking to"];

struct Options {
    socket: PathBuf,
    pidfile: Option<PathBuf>,
    pid: Option<u32>,
    comm: Option<String>,
    timeout: Duration,
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "balena-engine-healthcheck: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let deadline = started + opts.timeout;
    backstop(opts.timeout, opts.socket.display().to_string());
    match check(&opts, deadline) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => unhealthy(&e),
    }
}

fn check(opts: &Options, deadline: Instant) -> Result<(), String> {
    let pid = match (opts.pid, &opts.pidfile) {
        (Some(pid), _) => Some(pid),
        (None, Some(file)) => Some(process::read_pidfile(file).map_err(|e| e.to_string())?),
        (None, None) => None,
    };
    if let Some(pid) = pid {
        process::check(pid, opts.comm.as_deref()).map_err(|e| e.to_string())?;
    }
    STAGE.store(1, Ordering::Relaxed);
    let socket = &opts.socket;
    let res = http::ping(socket, deadline);
    STAGE.store(2, Ordering::Relaxed);
    res.map_err(|e| format!("{}: {e}", socket.display()))
}

/// A timer for the steps that cannot take a timeout: `connect(2)` blocks while a hung engine's listen
/// backlog is full, and procfs reads can stall. Socket reads and writes have the deadline themselves and
/// report first; this fires a little later and only when something is stuck.
fn backstop(timeout: Duration, socket: String) {
    let _ = std::thread::Builder::new().name("backstop".into()).spawn(move || {
        std::thread::sleep(timeout + Duration::from_millis(100));
        let stage = STAGES[usize::from(STAGE.load(Ordering::Relaxed)).min(STAGES.len() - 1)];
        let what = if stage == STAGES[0] { stage.to_owned() } else { format!("{stage} {socket}") };
        unhealthy(&format!("no result within {:?}: stuck {what}", timeout));
        std::process::exit(1);
    });
}

fn unhealthy(reason: &str) -> ExitCode {
    // One line, one write(2).
    let line = format!("balena-engine-healthcheck: unhealthy: {}\n", reason.replace('\n', " "));
    let _ = std::io::stderr().write_all(line.as_bytes());
    ExitCode::FAILURE
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        socket: PathBuf::from(DEFAULT_SOCKET),
        pidfile: Some(PathBuf::from(DEFAULT_PIDFILE)),
        pid: None,
        comm: Some(ENGINE_COMM.to_owned()),
        timeout: DEFAULT_TIMEOUT,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("balena-engine-healthcheck {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-H" | "--host" => o.socket = parse_host(&value()?)?,
            "-p" | "--pidfile" => o.pidfile = Some(value()?).filter(|v| !v.is_empty()).map(PathBuf::from),
            "--pid" => o.pid = Some(value()?.parse::<u32>().ok().filter(|&p| p > 0).ok_or("--pid: not a PID")?),
            "--comm" => o.comm = Some(value()?).filter(|v| !v.is_empty()),
            "-t" | "--timeout" => o.timeout = parse_duration(&value()?)?,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Some(o))
}

fn parse_host(v: &str) -> Result<PathBuf, String> {
    let path = v.strip_prefix("unix://").unwrap_or(v);
    if !path.starts_with('/') {
        return Err(format!("-H {v}: a unix socket (unix:///PATH or /PATH) is expected"));
    }
    Ok(PathBuf::from(path))
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    let (num, scale) = match v {
        _ if v.ends_with("ms") => (&v[..v.len() - 2], 1e-3),
        _ if v.ends_with('s') => (&v[..v.len() - 1], 1.0),
        _ => (v, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n * scale <= 3600.0 => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("--timeout {v}: a duration between 1ms and 1h is expected (5, 2.5s, 500ms)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_args(args.iter().map(|s| s.to_string())).map(|o| o.unwrap())
    }

    #[test]
    fn defaults_and_flags() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.socket, PathBuf::from("/run/balena-engine.sock"));
        assert_eq!(o.pidfile, Some(PathBuf::from("/run/balena-engine.pid")));
        assert_eq!(o.comm.as_deref(), Some("balena-engined"));
        assert_eq!(o.timeout, Duration::from_secs(5));
        let o = parse(&["-H", "unix:///tmp/x.sock", "--pidfile=", "--comm", "", "-t", "250ms", "--pid", "7"]).unwrap();
        assert_eq!(o.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!((o.pidfile, o.comm, o.pid), (None, None, Some(7)));
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert_eq!(parse(&["--timeout=2.5s"]).unwrap().timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_flags() {
        for args in [&["-H", "tcp://1.2.3.4:2375"][..], &["--timeout", "0"], &["--timeout", "x"], &["--pid", "0"], &["--bogus"], &["-H"]] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
