//! `inspect`: containers, images and volumes as the daemon describes them (docker's JSON), one array for
//! all the names; `--type` narrows the search, which otherwise tries container, image, then volume.

use serde_json::Value;

use super::{print_inspect, Failures};
use crate::args::{InspectArgs, ObjectType};
use crate::client::{seg, Client, ClientError, Req};

fn path(kind: ObjectType, name: &str) -> String {
    match kind {
        ObjectType::Container => format!("/containers/{}/json", seg(name)),
        ObjectType::Image => format!("/images/{}/json", seg(name)),
        ObjectType::Volume => format!("/volumes/{}", seg(name)),
    }
}

async fn of_kind(c: &Client, kind: ObjectType, names: &[String], template: Option<&str>) -> anyhow::Result<()> {
    let mut failures = Failures::default();
    let mut docs = Vec::new();
    for n in names {
        docs.extend(failures.record(c.json(Req::get(path(kind, n))).await));
    }
    print_inspect(&docs, template)?;
    failures.finish()
}

pub async fn containers(c: &Client, names: &[String], template: Option<&str>) -> anyhow::Result<()> {
    of_kind(c, ObjectType::Container, names, template).await
}

pub async fn images(c: &Client, names: &[String], template: Option<&str>) -> anyhow::Result<()> {
    of_kind(c, ObjectType::Image, names, template).await
}

pub async fn volumes(c: &Client, names: &[String], template: Option<&str>) -> anyhow::Result<()> {
    of_kind(c, ObjectType::Volume, names, template).await
}

/// The first kind of object that has this name.
async fn find(c: &Client, name: &str) -> anyhow::Result<Value> {
    for kind in [ObjectType::Container, ObjectType::Image, ObjectType::Volume] {
        match c.json(Req::get(path(kind, name))).await {
            Ok(v) => return Ok(v),
            Err(e) if ClientError::status(&e) == Some(404) => continue,
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("No such object: {name}")
}

pub async fn any(c: &Client, a: &InspectArgs) -> anyhow::Result<()> {
    if let Some(kind) = a.kind {
        return of_kind(c, kind, &a.names, a.format.as_deref()).await;
    }
    let mut failures = Failures::default();
    let mut docs = Vec::new();
    for n in &a.names {
        docs.extend(failures.record(find(c, n).await));
    }
    print_inspect(&docs, a.format.as_deref())?;
    failures.finish()
}
