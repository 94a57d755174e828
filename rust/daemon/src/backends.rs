//! What the image and system endpoints need from the parts of the daemon still to come (containers,
//! volumes). Each part implements its trait and is handed to [`crate::state::Daemon::new`]; until then the
//! `No*` implementations report that there is nothing, which is the truth while those parts do not exist.

use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContainerCounts {
    pub total: usize,
    pub running: usize,
    pub paused: usize,
    pub stopped: usize,
}

/// How many containers use an image (by image ID, `sha256:…`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImageUse {
    pub total: usize,
    pub running: usize,
}

pub trait Containers: Send + Sync {
    fn counts(&self) -> ContainerCounts;
    /// Image ID → its containers: `/system/df` reports them, and image removal refuses an image in use.
    fn image_use(&self) -> HashMap<String, ImageUse>;
    /// The `Containers` array of `/system/df` (docker's container summaries with `SizeRw`/`SizeRootFs`).
    fn disk_usage(&self) -> Vec<Value>;
    /// `SecurityOptions` of `/info`: what the runtime enforces (e.g. `name=seccomp,profile=builtin`).
    fn security_options(&self) -> Vec<String>;
}

pub trait Volumes: Send + Sync {
    fn count(&self) -> usize;
    /// The `Volumes` array of `/system/df` (docker's volumes with `UsageData`).
    fn disk_usage(&self) -> Vec<Value>;
}

pub struct NoContainers;

impl Containers for NoContainers {
    fn counts(&self) -> ContainerCounts {
        ContainerCounts::default()
    }
    fn image_use(&self) -> HashMap<String, ImageUse> {
        HashMap::new()
    }
    fn disk_usage(&self) -> Vec<Value> {
        Vec::new()
    }
    fn security_options(&self) -> Vec<String> {
        Vec::new()
    }
}

pub struct NoVolumes;

impl Volumes for NoVolumes {
    fn count(&self) -> usize {
        0
    }
    fn disk_usage(&self) -> Vec<Value> {
        Vec::new()
    }
}
