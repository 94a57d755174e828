//! An in-process pipe for streaming between a producer thread and a consumer: bounded (a few chunks in
//! flight), and free of SIGPIPE (a vanished reader is an ordinary `BrokenPipe` error).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

pub struct PipeWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    reader_gone: bool,
}

pub fn pipe() -> (PipeReader, PipeWriter) {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    (PipeReader { rx, current: Vec::new(), pos: 0 }, PipeWriter { tx, buf: Vec::with_capacity(CHUNK), reader_gone: false })
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl PipeWriter {
    /// Whether a write failed because the reader was dropped (its failure, not the writer's, is the cause).
    pub fn reader_gone(&self) -> bool {
        self.reader_gone
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(chunk).map_err(|_| {
            self.reader_gone = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "reader went away")
        })
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_between_threads_and_reports_a_vanished_reader() {
        let (mut r, mut w) = pipe();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let t = std::thread::spawn(move || w.write_all(&data));
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(got, expect);

        let (r, mut w) = pipe();
        drop(r);
        assert_eq!(w.write_all(&[0u8; 3 * CHUNK]).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
