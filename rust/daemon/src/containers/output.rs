//! A running container's output: one loop reads its stdout and stderr pipes, passes every chunk to the
//! log driver (through its own pipes) and to the `attach` clients, framed as docker's multiplexed
//! stream. A slow client slows the container down, as with dockerd; a client that went away is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{lock, Ctr};

/// One attach client: the frames it wants, as they come.
pub struct Subscriber {
    pub stdout: bool,
    pub stderr: bool,
    pub tx: mpsc::Sender<Bytes>,
}

/// docker's frame: `[stream, 0, 0, 0, size (u32 big-endian)]` then the payload.
pub fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    Bytes::from(v)
}

fn broadcast(ctr: &Ctr, stream: u8, data: &[u8]) {
    let subs: Vec<(mpsc::Sender<Bytes>, bool)> = {
        let s = lock(&ctr.subscribers);
        if s.is_empty() {
            return;
        }
        s.iter().map(|x| (x.tx.clone(), if stream == 1 { x.stdout } else { x.stderr })).collect()
    };
    let f = frame(stream, data);
    let mut gone = false;
    for (tx, wants) in subs {
        if wants && tx.blocking_send(f.clone()).is_err() {
            gone = true;
        }
    }
    if gone {
        lock(&ctr.subscribers).retain(|s| !s.tx.is_closed());
    }
}

/// Copies until both pipes end; closes the log pipes then (the log copier sees end of file).
pub fn tee(ctr: &Ctr, out: OwnedFd, err: OwnedFd, log_out: OwnedFd, log_err: OwnedFd) {
    let mut files = [File::from(out), File::from(err)];
    let mut logs = [Some(File::from(log_out)), Some(File::from(log_err))];
    let mut open = [true, true];
    let mut buf = vec![0u8; 32 * 1024];
    while open.iter().any(|o| *o) {
        let mut fds = [0, 1].map(|i| libc::pollfd {
            fd: if open[i] { files[i].as_raw_fd() } else { -1 },
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two valid pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for i in 0..2 {
            if !open[i] || fds[i].revents == 0 {
                continue;
            }
            match files[i].read(&mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) => {
                    if let Some(l) = logs[i].as_mut() {
                        if l.write_all(&buf[..n]).is_err() {
                            logs[i] = None;
                        }
                    }
                    broadcast(ctr, i as u8 + 1, &buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => open[i] = false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_like_docker() {
        assert_eq!(&frame(2, b"hi\n")[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }
}
