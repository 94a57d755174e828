//! `balena-engine`: the command-line interface. Today it works directly on the store (`--data-root`).

mod args;
mod commands;
mod human;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, ImageCommand};

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = &cli.data_root;
    match cli.command {
        Command::Image(ImageCommand::Load(a)) | Command::Load(a) => commands::load::run(root, &a),
        Command::Image(ImageCommand::Save(a)) | Command::Save(a) => commands::save::run(root, &a),
        Command::Image(ImageCommand::Ls(a)) | Command::Images(a) => commands::list::run(root, &a),
        Command::Image(ImageCommand::Inspect(a)) => commands::inspect::run(root, &a),
        Command::Image(ImageCommand::Tag(a)) | Command::Tag(a) => commands::tag::run(root, &a),
        Command::Image(ImageCommand::Rm(a)) | Command::Rmi(a) => commands::remove::run(root, &a),
        Command::Image(ImageCommand::Delta(a)) => commands::delta::run(root, &a),
    }
}

fn main() -> ExitCode {
    // A closed pipe (`… save | head`) ends the program quietly instead of with a panic.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
