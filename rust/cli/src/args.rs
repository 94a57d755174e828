//! Command-line shape, modelled on docker's so habits carry over.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::format::{parse_format, Format};
use crate::opts::{parse_memory, parse_restart, parse_ulimit, RestartPolicy, Ulimit};

#[derive(Parser)]
#[command(
    name = "balena-engine",
    version,
    about = "Container engine for small devices: images, deltas, containers",
    after_help = "Commands talk to the daemon (balena-engined) at -H, $BALENA_ENGINE_HOST, $DOCKER_HOST or \
                  unix:///var/run/balena-engine.sock.\nWith --data-root DIR, image commands work on that data root \
                  directly, without the daemon (offline use, build-time preloading)."
)]
pub struct Cli {
    /// Daemon socket to connect to: unix:///PATH or tcp://HOST:PORT
    /// [default: $BALENA_ENGINE_HOST, $DOCKER_HOST, unix:///var/run/balena-engine.sock]
    #[arg(short = 'H', long = "host", global = true, value_name = "ADDR", conflicts_with = "data_root")]
    pub host: Option<String>,
    /// Work directly on the image store in DIR, without the daemon (offline use and build-time preloading;
    /// image commands only)
    #[arg(long, global = true, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage the engine
    #[command(subcommand)]
    System(SystemCommand),

    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(ContainersArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(RestartArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Return low-level information on containers, images or volumes
    Inspect(InspectArgs),

    /// Load images from a tar archive (short for `image load`)
    Load(LoadArgs),
    /// Download an image from a registry (short for `image pull`)
    Pull(PullArgs),
    /// Upload an image to a registry (short for `image push`)
    Push(PushArgs),
    /// Save images to a tar archive (short for `image save`)
    Save(SaveArgs),
    /// List images (short for `image ls`)
    Images(ListArgs),
    /// Create a tag TARGET that refers to SOURCE (short for `image tag`)
    Tag(TagArgs),
    /// Remove images (short for `image rm`)
    Rmi(RemoveArgs),

    /// Get real-time events from the engine
    Events(EventsArgs),
    /// Show the client's and the engine's versions
    Version(VersionArgs),
    /// Display system-wide information
    Info(InfoArgs),
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Load images from a tar archive (docker-archive or OCI layout; layers plain, gzip or zstd)
    Load(LoadArgs),
    /// Save images to a tar archive that docker, podman and skopeo load
    Save(SaveArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show details of images as JSON
    Inspect(ImageInspectArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Remove images
    #[command(alias = "remove")]
    Rm(RemoveArgs),
    /// Create a delta image that rebuilds TARGET on a device that has BASE (save it, load it there)
    Delta(DeltaArgs),
    /// Download an image from a registry (a delta image is applied against its base on the way)
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(ContainersArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(RestartArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// List containers
    #[command(aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Show details of containers as JSON
    Inspect(ObjectInspectArgs),
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Show details of volumes as JSON
    Inspect(ObjectInspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused volumes
    Prune(VolumePruneArgs),
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show the engine's disk usage
    Df(DfArgs),
    /// Display system-wide information
    Info(InfoArgs),
    /// Get real-time events from the engine
    Events(EventsArgs),
}

fn format_arg(s: &str) -> Result<Format, String> {
    parse_format(s)
}

// ---------------------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------------------

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this tar archive instead of standard input
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress the progress output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct PullArgs {
    /// NAME[:TAG|@DIGEST]
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Platform to pull when the image has several (os/arch[/variant], e.g. linux/arm/v7)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Print only the final lines
    #[arg(short, long)]
    pub quiet: bool,
    /// Registry reached over plain HTTP or TLS without verification (direct mode; loopback is by default)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

#[derive(Args)]
pub struct PushArgs {
    /// NAME[:TAG] (every tag of NAME when no tag is given)
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print only the final lines
    #[arg(short, long)]
    pub quiet: bool,
    /// Registry reached over plain HTTP or TLS without verification (direct mode; loopback is by default)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct ListArgs {
    /// Output format: table, json (one object per line), or a template ('{{.Repository}}:{{.Tag}}')
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = format_arg)]
    pub format: Format,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show full image IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter the list (dangling=true, reference=app:*, label=k=v, before=IMAGE, since=IMAGE); daemon only
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Args)]
pub struct ImageInspectArgs {
    /// Format the output with a template ('{{.Id}}', '{{json .Config}}')
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE")]
    pub source: String,
    #[arg(value_name = "TARGET")]
    pub target: String,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Remove the image even when it has several tags
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct DeltaArgs {
    /// The image the device already has
    #[arg(value_name = "BASE")]
    pub base: String,
    /// The image the device should end up with
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Tag the delta image
    #[arg(short, long, value_name = "TAG")]
    pub tag: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------------------

/// What `create` and `run` share: docker's flags for the container's config and host config.
#[derive(Args, Clone)]
pub struct ContainerOpts {
    /// Assign a name to the container
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this shell's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Mount a volume: NAME:/path[:ro], /host/path:/path[:ro], or /path for an anonymous volume
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    pub volumes: Vec<String>,
    /// Mount a tmpfs: /path[:size=64m,mode=1777]
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (16m, 1g)
    #[arg(short, long, value_name = "BYTES", value_parser = parse_memory)]
    pub memory: Option<i64>,
    /// Limit the number of processes (-1 for unlimited)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Set a resource limit: NAME=SOFT[:HARD] (nofile=1024:2048, core=-1)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimits: Vec<Ulimit>,
    /// Restart policy: no, always, unless-stopped, on-failure[:max-retries]
    #[arg(long, value_name = "POLICY", value_parser = parse_restart)]
    pub restart: Option<RestartPolicy>,
    /// Network: host or none (the default)
    #[arg(long = "network", alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// Overwrite the image's entrypoint
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name|uid[:group|gid]
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Container host name
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Add a Linux capability
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Set a label: KEY=VALUE or KEY
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Logging driver: json-file (the default), journald, none
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Logging driver option (max-size=10m, max-file=3)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    /// Signal to stop the container (SIGTERM by default)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the container to stop before killing it
    #[arg(long = "stop-timeout", value_name = "SECONDS", allow_negative_numbers = true)]
    pub stop_timeout: Option<i64>,
    /// The image, then the command to run and its arguments
    #[arg(value_name = "IMAGE [COMMAND] [ARG...]", required = true, num_args = 1.., trailing_var_arg = true)]
    pub image_and_command: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run the container in the background and print its ID
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub opts: ContainerOpts,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
}

#[derive(Args)]
pub struct ContainersArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short, long = "time", value_name = "SECONDS", allow_negative_numbers = true)]
    pub time: Option<i64>,
    /// Signal to send (the container's stop signal by default)
    #[arg(short, long, value_name = "SIGNAL")]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing the container
    #[arg(short, long = "time", value_name = "SECONDS", allow_negative_numbers = true)]
    pub time: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short, long, value_name = "SIGNAL", default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the anonymous volumes of the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (running only by default)
    #[arg(short, long)]
    pub all: bool,
    /// Only show container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter the list (status=exited, name=web, label=k=v, ancestor=IMAGE, exited=0, id=…, volume=…)
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Don't truncate IDs and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the N last created containers (all states)
    #[arg(short = 'n', long = "last", value_name = "N", allow_negative_numbers = true)]
    pub last: Option<i64>,
    /// Show the latest created container (all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Output format: table, json (one object per line), or a template ('{{.Names}}')
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = format_arg)]
    pub format: Format,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow the log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the log ("all" by default)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Show logs since a time (2024-05-01T12:00:00Z) or for a duration (10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Show logs before a time or a duration ago
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectType {
    Container,
    Image,
    Volume,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Only look for objects of this type
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<ObjectType>,
    /// Format the output with a template ('{{.State.Status}}', '{{json .Config}}')
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct ObjectInspectArgs {
    /// Format the output with a template ('{{.State.Status}}', '{{json .Config}}')
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Volumes
// ---------------------------------------------------------------------------------------------------------

#[derive(Args)]
pub struct VolumeCreateArgs {
    /// The volume's name (a random one when none is given)
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
    /// The volume's name
    #[arg(long, value_name = "NAME", conflicts_with = "volume")]
    pub name: Option<String>,
    /// Volume driver
    #[arg(short, long, value_name = "DRIVER", default_value = "local")]
    pub driver: String,
    /// Set a label: KEY=VALUE or KEY
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Driver option KEY=VALUE
    #[arg(short, long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
}

#[derive(Args)]
pub struct VolumeLsArgs {
    /// Only show volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter the list (dangling=true, name=…, label=k=v, driver=local)
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Output format: table, json (one object per line), or a template ('{{.Name}}')
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = format_arg)]
    pub format: Format,
}

#[derive(Args)]
pub struct VolumeRmArgs {
    /// Do not fail when a volume does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Args)]
pub struct VolumePruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Remove all unused volumes, not only anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Only prune the volumes that match (label=k=v, label!=k)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

// ---------------------------------------------------------------------------------------------------------
// System
// ---------------------------------------------------------------------------------------------------------

#[derive(Args)]
pub struct EventsArgs {
    /// Show events since a time (2024-05-01T12:00:00Z, 1714564800) or for a duration (10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stream events until this time (or a duration ago)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Filter events (type=container, event=start, container=web, image=app:1, label=k=v)
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Output format: json (one object per line) or a template ('{{.Type}} {{.Action}}')
    #[arg(long, value_name = "FORMAT", value_parser = format_arg)]
    pub format: Option<Format>,
}

#[derive(Args)]
pub struct VersionArgs {
    /// Output format: json, or a template ('{{.Server.Version}}')
    #[arg(short, long, value_name = "FORMAT", value_parser = format_arg)]
    pub format: Option<Format>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Output format: json, or a template ('{{.Images}}')
    #[arg(short, long, value_name = "FORMAT", value_parser = format_arg)]
    pub format: Option<Format>,
}

#[derive(Args)]
pub struct DfArgs {
    /// Output format: table, json (one object per line), or a template ('{{.Type}} {{.Size}}')
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = format_arg)]
    pub format: Format,
}
