use std::path::Path;

use engine::store::Access;
use serde_json::Value;

use crate::args::ImageInspectArgs;

pub fn run(root: &Path, a: &ImageInspectArgs) -> anyhow::Result<()> {
    let store = super::open(root, Access::Read)?;
    let ids = super::resolve_all(&store, &a.images)?;
    let docs: Vec<Value> = ids.iter().map(|id| engine::images::inspect(&store, id)).collect::<Result<_, _>>()?;
    crate::remote::print_inspect(&docs, a.format.as_deref())
}
