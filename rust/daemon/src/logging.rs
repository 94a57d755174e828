//! Log lines on stderr in dockerd's (logrus) text format: `time="…" level=info msg="…"`.

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogLevel;
use engine::time;

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("daemon")
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug | Level::Trace => "debug",
        };
        let msg = r.args().to_string().replace('\\', "\\\\").replace('"', "\\\"");
        eprintln!("time=\"{}\" level={level} msg=\"{msg}\"", time::now_rfc3339_nanos());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

pub fn init(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Error | LogLevel::Fatal => LevelFilter::Error,
    };
    // A second init (tests) keeps the first logger; only the level changes.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}
