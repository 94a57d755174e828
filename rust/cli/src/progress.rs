//! Progress on stderr for long operations, only when stderr is a terminal.

use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(total: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match total {
        Some(t) => (ProgressBar::new(t), "{spinner} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}"),
        None => (ProgressBar::new_spinner(), "{spinner} {bytes} {bytes_per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

pub struct ProgressReader<R> {
    pub inner: R,
    pub bar: ProgressBar,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

pub struct ProgressWriter<W> {
    pub inner: W,
    pub bar: ProgressBar,
}

impl<W: Write> Write for ProgressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Per-layer progress of a pull or push: one bar per layer on a terminal (docker's display), one line per
/// status change otherwise; progress ticks are shown only on a terminal.
pub struct LayerBars {
    multi: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<std::collections::HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl LayerBars {
    pub fn new(quiet: bool) -> LayerBars {
        let multi = (!quiet && io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        LayerBars { multi, bars: Default::default(), quiet }
    }

    fn bar(&self, multi: &indicatif::MultiProgress, id: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(id.to_owned())
            .or_insert_with(|| {
                let pb = multi.add(ProgressBar::new(0));
                if let Ok(style) = ProgressStyle::with_template("{prefix}: {msg:20} {wide_bar} {bytes}/{total_bytes}") {
                    pb.set_style(style);
                }
                pb.set_prefix(id.to_owned());
                pb
            })
            .clone()
    }

    pub fn status(&self, id: Option<&str>, status: &str) {
        const DONE: [&str; 5] = ["Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from"];
        match (&self.multi, id) {
            (Some(m), Some(id)) if DONE.iter().any(|d| status.starts_with(d)) => {
                let pb = self.bar(m, id);
                if let Ok(style) = ProgressStyle::with_template("{prefix}: {msg}") {
                    pb.set_style(style);
                }
                pb.finish_with_message(status.to_owned());
            }
            (Some(m), Some(id)) if status.starts_with("Pulling from") => {
                let _ = m.println(format!("{id}: {status}"));
            }
            (Some(m), Some(id)) => self.bar(m, id).set_message(status.to_owned()),
            (Some(m), None) => {
                // Below the bars once they are all done (the closing lines), above them while they move.
                let done = self.bars.lock().unwrap_or_else(|e| e.into_inner()).values().all(ProgressBar::is_finished);
                if done {
                    println!("{status}");
                } else {
                    let _ = m.println(status);
                }
            }
            (None, Some(id)) if !self.quiet => eprintln!("{id}: {status}"),
            (None, None) if !self.quiet => println!("{status}"),
            _ => {}
        }
    }

    pub fn progress(&self, id: &str, status: &str, current: u64, total: u64) {
        if let Some(m) = &self.multi {
            let pb = self.bar(m, id);
            pb.set_message(status.to_owned());
            if total > 0 {
                pb.set_length(total);
            }
            pb.set_position(current);
        }
    }
}

impl distribution::progress::Progress for LayerBars {
    fn status(&self, id: Option<&str>, status: &str) {
        LayerBars::status(self, id, status)
    }
    fn progress(&self, id: &str, status: &str, current: u64, total: u64) {
        LayerBars::progress(self, id, status, current, total)
    }
}
