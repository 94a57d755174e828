use std::path::Path;

use engine::store::Access;

use crate::args::InspectArgs;

pub fn run(root: &Path, a: &InspectArgs) -> anyhow::Result<()> {
    let store = super::open(root, Access::Read)?;
    let ids = super::resolve_all(&store, &a.images)?;
    let docs = ids.iter().map(|id| engine::images::inspect(&store, id)).collect::<Result<Vec<_>, _>>()?;
    println!("{}", serde_json::to_string_pretty(&docs)?);
    Ok(())
}
