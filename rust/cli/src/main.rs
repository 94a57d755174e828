//! `balena-engine`: the command-line interface. Every command is a client of the daemon (`balena-engined`,
//! the Docker Engine API on a unix socket); with `--data-root DIR`, image commands work on that data root
//! directly instead, for offline use and for preloading images into a device image at build time.

mod args;
mod client;
mod commands;
mod format;
mod human;
mod opts;
mod progress;
mod registry_auth;
mod remote;

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;

use args::{Cli, Command, ImageCommand, ImageInspectArgs, ObjectType};
use client::{ClientError, DEFAULT_HOST};
use remote::Exit;

/// `-H`, else `$BALENA_ENGINE_HOST`, else `$DOCKER_HOST`, else the default socket.
fn daemon_host(flag: Option<String>) -> String {
    if let Some(h) = flag {
        return h;
    }
    for var in ["BALENA_ENGINE_HOST", "DOCKER_HOST"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return v.trim().to_owned();
            }
        }
    }
    DEFAULT_HOST.to_owned()
}

/// Image commands on the store itself; anything else needs the daemon.
fn direct(root: &Path, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Image(ImageCommand::Load(a)) | Command::Load(a) => commands::load::run(root, &a),
        Command::Image(ImageCommand::Save(a)) | Command::Save(a) => commands::save::run(root, &a),
        Command::Image(ImageCommand::Ls(a)) | Command::Images(a) => commands::list::run(root, &a),
        Command::Image(ImageCommand::Inspect(a)) => commands::inspect::run(root, &a),
        Command::Inspect(a) if a.kind.is_none_or(|k| k == ObjectType::Image) => {
            commands::inspect::run(root, &ImageInspectArgs { format: a.format, images: a.names })
        }
        Command::Image(ImageCommand::Tag(a)) | Command::Tag(a) => commands::tag::run(root, &a),
        Command::Image(ImageCommand::Rm(a)) | Command::Rmi(a) => commands::remove::run(root, &a),
        Command::Image(ImageCommand::Delta(a)) => commands::delta::run(root, &a),
        Command::Image(ImageCommand::Pull(a)) | Command::Pull(a) => commands::registry::pull(root, &a),
        Command::Image(ImageCommand::Push(a)) | Command::Push(a) => commands::registry::push(root, &a),
        other => bail!("`balena-engine {}` needs the daemon; --data-root works on images only", remote::name(&other)),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.data_root {
        Some(root) => direct(root, cli.command),
        None => remote::run(&daemon_host(cli.host), cli.command),
    }
}

/// How an error reads: the daemon's and connection errors as docker prints them, others after `Error: `.
pub fn render(e: &anyhow::Error) -> String {
    if e.downcast_ref::<ClientError>().is_some() {
        format!("{e:#}")
    } else {
        format!("Error: {e:#}")
    }
}

fn main() -> ExitCode {
    // A closed pipe (`… save | head`) ends the program quietly instead of with a panic.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(x) = e.downcast_ref::<Exit>() {
                if let Some(m) = &x.message {
                    eprintln!("{m}");
                }
                return ExitCode::from(x.code);
            }
            eprintln!("{}", render(&e));
            ExitCode::FAILURE
        }
    }
}
