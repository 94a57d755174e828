//! Command-line shape, modelled on docker's so habits carry over.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "balena-engine", version, about = "Container engine for small devices: images, deltas, containers")]
pub struct Cli {
    /// Work directly on the store in this directory (no daemon; for offline use and build-time preloading).
    #[arg(long, global = true, value_name = "DIR", default_value = engine::store::DEFAULT_ROOT)]
    pub data_root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Load images from a tar archive (short for `image load`)
    Load(LoadArgs),
    /// Save images to a tar archive (short for `image save`)
    Save(SaveArgs),
    /// List images (short for `image ls`)
    Images(ListArgs),
    /// Create a tag TARGET that refers to SOURCE (short for `image tag`)
    Tag(TagArgs),
    /// Remove images (short for `image rm`)
    Rmi(RemoveArgs),
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
    Inspect(InspectArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Remove images
    #[command(alias = "remove")]
    Rm(RemoveArgs),
    /// Create a delta image that rebuilds TARGET on a device that has BASE (save it, load it there)
    Delta(DeltaArgs),
}

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
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct ListArgs {
    /// Output format: a table, or one JSON object per line
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show full image IDs
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct InspectArgs {
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
