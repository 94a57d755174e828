use std::path::Path;

use engine::store::Access;

use crate::args::TagArgs;

pub fn run(root: &Path, a: &TagArgs) -> anyhow::Result<()> {
    let mut store = super::open(root, Access::Write)?;
    engine::images::tag(&mut store, &a.source, &a.target)?;
    Ok(())
}
