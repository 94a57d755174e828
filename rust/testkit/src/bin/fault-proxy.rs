//! `fault-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--stats-file F]`: the test kit's HTTP/1.1
//! proxy in pass-through mode, for benchmarks. It counts the response body bytes it forwards and keeps
//! `F` updated with that count (one decimal number and a newline, replaced atomically at most every 100 ms,
//! and once more on SIGTERM or SIGINT, when it exits).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use testkit::fault_proxy::FaultProxy;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const USAGE: &str = "usage: fault-proxy --listen 127.0.0.1:PORT --upstream HOST:PORT [--stats-file FILE]";

fn write_stats(path: &Path, bytes: u64) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, format!("{bytes}\n")).and_then(|()| std::fs::rename(&tmp, path)).is_err() {
        eprintln!("fault-proxy: cannot write {}", path.display());
    }
}

fn main() -> ExitCode {
    let (mut listen, mut upstream, mut stats) = (None, None, None::<PathBuf>);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--listen" => listen = value(),
            "--upstream" => upstream = value(),
            "--stats-file" => stats = value().map(PathBuf::from),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("fault-proxy: unknown argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let proxy = match FaultProxy::bind(&listen, &upstream) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fault-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("fault-proxy: {} -> {upstream}", proxy.addr());
    let mut written = None;
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let n = proxy.body_bytes_forwarded();
        if let Some(path) = &stats {
            if written != Some(n) {
                write_stats(path, n);
                written = Some(n);
            }
        }
    }
    let n = proxy.body_bytes_forwarded();
    if let Some(path) = &stats {
        write_stats(path, n);
    }
    drop(proxy);
    eprintln!("fault-proxy: {n} body bytes forwarded");
    ExitCode::SUCCESS
}
