//! `balena-engined`: see the library (`daemon`) for what it does.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = daemon::config::Config::parse();
    match daemon::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        // Already logged by `run`.
        Err(_) => ExitCode::FAILURE,
    }
}
