//! The commands as a client of the daemon. One tokio runtime on this thread (`current_thread`): a command is
//! a few requests in sequence, with streams (archives, logs, events) copied as they arrive.

pub mod containers;
pub mod images;
pub mod inspect;
mod registry;
pub mod system;
pub mod volumes;

use std::fmt;

use serde_json::Value;

use crate::args::{Command, ContainerCommand, ImageCommand, SystemCommand, VolumeCommand};
use crate::client::Client;
use crate::format;

/// Ends the program with `code`, printing `message` (if any) on stderr: a container's exit code, or the
/// failure of some of several targets (each already reported).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl Exit {
    pub fn silent(code: u8) -> anyhow::Error {
        Exit { code, message: None }.into()
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{m}"),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// Reports each failure of a command over several targets as it happens, and fails at the end if any did
/// (as docker: `docker rm a b` removes b even when a is missing).
#[derive(Default)]
pub struct Failures(usize);

impl Failures {
    pub fn record<T>(&mut self, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("{}", crate::render(&e));
                self.0 += 1;
                None
            }
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        if self.0 > 0 {
            return Err(Exit::silent(1));
        }
        Ok(())
    }
}

/// `inspect`'s output: a JSON array (four-space indent), or one rendered template per object.
pub fn print_inspect(docs: &[Value], template: Option<&str>) -> anyhow::Result<()> {
    match template.map(|t| t.replace("\\t", "\t").replace("\\n", "\n")) {
        Some(t) if t.trim() == "json" => println!("{}", Value::Array(docs.to_vec())),
        Some(t) => {
            for d in docs {
                println!("{}", format::render(&t, d)?);
            }
        }
        None => println!("{}", format::pretty(&Value::Array(docs.to_vec()))?),
    }
    Ok(())
}

/// The command as typed, for messages.
pub fn name(c: &Command) -> &'static str {
    match c {
        Command::Image(i) => match i {
            ImageCommand::Load(_) => "image load",
            ImageCommand::Save(_) => "image save",
            ImageCommand::Ls(_) => "image ls",
            ImageCommand::Inspect(_) => "image inspect",
            ImageCommand::Tag(_) => "image tag",
            ImageCommand::Rm(_) => "image rm",
            ImageCommand::Delta(_) => "image delta",
            ImageCommand::Pull(_) => "image pull",
            ImageCommand::Push(_) => "image push",
        },
        Command::Container(c) => match c {
            ContainerCommand::Run(_) => "container run",
            ContainerCommand::Create(_) => "container create",
            ContainerCommand::Start(_) => "container start",
            ContainerCommand::Stop(_) => "container stop",
            ContainerCommand::Restart(_) => "container restart",
            ContainerCommand::Kill(_) => "container kill",
            ContainerCommand::Wait(_) => "container wait",
            ContainerCommand::Rm(_) => "container rm",
            ContainerCommand::Ls(_) => "container ls",
            ContainerCommand::Logs(_) => "container logs",
            ContainerCommand::Inspect(_) => "container inspect",
        },
        Command::Volume(v) => match v {
            VolumeCommand::Create(_) => "volume create",
            VolumeCommand::Ls(_) => "volume ls",
            VolumeCommand::Inspect(_) => "volume inspect",
            VolumeCommand::Rm(_) => "volume rm",
            VolumeCommand::Prune(_) => "volume prune",
        },
        Command::System(s) => match s {
            SystemCommand::Df(_) => "system df",
            SystemCommand::Info(_) => "system info",
            SystemCommand::Events(_) => "system events",
        },
        Command::Run(_) => "run",
        Command::Create(_) => "create",
        Command::Start(_) => "start",
        Command::Stop(_) => "stop",
        Command::Restart(_) => "restart",
        Command::Kill(_) => "kill",
        Command::Wait(_) => "wait",
        Command::Rm(_) => "rm",
        Command::Ps(_) => "ps",
        Command::Logs(_) => "logs",
        Command::Inspect(_) => "inspect",
        Command::Load(_) => "load",
        Command::Pull(_) => "pull",
        Command::Push(_) => "push",
        Command::Save(_) => "save",
        Command::Images(_) => "images",
        Command::Tag(_) => "tag",
        Command::Rmi(_) => "rmi",
        Command::Events(_) => "events",
        Command::Version(_) => "version",
        Command::Info(_) => "info",
    }
}

/// Runs `command` against the daemon at `host`.
pub fn run(host: &str, command: Command) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(dispatch(host, command))
}

async fn dispatch(host: &str, command: Command) -> anyhow::Result<()> {
    // `version` shows the client's part even when the daemon is unreachable; `run` fails with docker's 125.
    match command {
        Command::Version(a) => return system::version(host, &a).await,
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            let c = Client::connect(host).await.map_err(containers::run_failure)?;
            return containers::run(&c, &a).await;
        }
        _ => {}
    }
    let c = Client::connect(host).await?;
    match command {
        Command::Image(ImageCommand::Load(a)) | Command::Load(a) => images::load(&c, &a).await,
        Command::Image(ImageCommand::Save(a)) | Command::Save(a) => images::save(&c, &a).await,
        Command::Image(ImageCommand::Ls(a)) | Command::Images(a) => images::list(&c, &a).await,
        Command::Image(ImageCommand::Inspect(a)) => inspect::images(&c, &a.images, a.format.as_deref()).await,
        Command::Image(ImageCommand::Tag(a)) | Command::Tag(a) => images::tag(&c, &a).await,
        Command::Image(ImageCommand::Rm(a)) | Command::Rmi(a) => images::remove(&c, &a).await,
        Command::Image(ImageCommand::Delta(a)) => images::delta(&c, &a).await,
        Command::Image(ImageCommand::Pull(a)) | Command::Pull(a) => registry::pull(&c, &a).await,
        Command::Image(ImageCommand::Push(a)) | Command::Push(a) => registry::push(&c, &a).await,

        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => containers::create(&c, &a).await,
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => containers::start(&c, &a).await,
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => containers::stop(&c, &a).await,
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => containers::restart(&c, &a).await,
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => containers::kill(&c, &a).await,
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => containers::wait(&c, &a).await,
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => containers::remove(&c, &a).await,
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => containers::list(&c, &a).await,
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => containers::logs(&c, &a).await,
        Command::Container(ContainerCommand::Inspect(a)) => {
            inspect::containers(&c, &a.names, a.format.as_deref()).await
        }
        Command::Inspect(a) => inspect::any(&c, &a).await,

        Command::Volume(VolumeCommand::Create(a)) => volumes::create(&c, &a).await,
        Command::Volume(VolumeCommand::Ls(a)) => volumes::list(&c, &a).await,
        Command::Volume(VolumeCommand::Inspect(a)) => inspect::volumes(&c, &a.names, a.format.as_deref()).await,
        Command::Volume(VolumeCommand::Rm(a)) => volumes::remove(&c, &a).await,
        Command::Volume(VolumeCommand::Prune(a)) => volumes::prune(&c, &a).await,

        Command::Events(a) | Command::System(SystemCommand::Events(a)) => system::events(&c, &a).await,
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => system::info(&c, &a).await,
        Command::System(SystemCommand::Df(a)) => system::disk_usage(&c, &a).await,
        Command::Version(_) | Command::Run(_) | Command::Container(ContainerCommand::Run(_)) => {
            unreachable!("handled above")
        }
    }
}
