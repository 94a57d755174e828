//! The healthcheck writes nothing to storage: its `/proc/PID/io`, read after it exited and before it was
//! reaped, shows `write_bytes` 0 (no page of any file dirtied) and no `write(2)`-family call but its one
//! stderr line when unhealthy (`wchar`, `syscw`). The request goes out with `send(2)`, which the I/O
//! accounting does not count as `wchar`; were it a `write(2)`, `wchar` would be exactly its length.
//!
//! The engine's socket and pidfile are on tmpfs, as on a device (`/run`): see `common::runtime_dir`.

mod common;

use common::{run, strings, Engine};
use healthcheck::http::REQUEST;

#[test]
fn a_healthy_run_writes_only_its_request() {
    let e = Engine::start();
    for _ in 0..20 {
        let o = run(&e.args());
        assert!(o.status.success(), "{}", o.stderr);
        let io = o.io;
        eprintln!("healthy run: {io:?}");
        assert_eq!(io.write_bytes, 0, "{io:?}");
        assert_eq!(io.cancelled_write_bytes, 0, "{io:?}");
        assert!(io.wchar == 0 || io.wchar == REQUEST.len() as u64, "bytes written other than the request: {io:?}");
        assert!(io.syscw <= 1, "{io:?}");
    }
}

#[test]
fn an_unhealthy_run_writes_only_its_request_and_one_line() {
    let e = Engine::start();
    let pid = e.child.id() as i32;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = run(&e.args());
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(stopped.status.code(), Some(1));
    // Refused from procfs: nothing sent, one line written.
    assert_eq!(stopped.io.write_bytes, 0, "{:?}", stopped.io);
    assert_eq!(stopped.io.wchar, stopped.stderr.len() as u64, "{:?}", stopped.io);

    std::fs::remove_file(&e.sock).unwrap();
    let gone = run(&e.args());
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(gone.io.write_bytes, 0, "{:?}", gone.io);
    assert_eq!(gone.io.wchar, gone.stderr.len() as u64, "{:?}", gone.io);

    let dir = common::runtime_dir();
    let sock = common::fake_server(dir.path(), |s| {
        let _ = std::io::Write::write_all(s, b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    });
    let refused = run(&strings(&["-H", sock.to_str().unwrap(), "--pidfile", ""]));
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(refused.io.write_bytes, 0, "{:?}", refused.io);
    let line = refused.stderr.len() as u64;
    assert!(refused.io.wchar == line || refused.io.wchar == line + REQUEST.len() as u64, "{:?}", refused.io);
}
