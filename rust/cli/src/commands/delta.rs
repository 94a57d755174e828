use std::path::Path;

use engine::store::Access;

use crate::args::DeltaArgs;
use crate::human;

pub fn run(root: &Path, a: &DeltaArgs) -> anyhow::Result<()> {
    let mut store = super::open(root, Access::Write)?;
    let r = engine::delta::create::create(&mut store, &a.base, &a.target, a.tag.as_deref())?;
    let ratio = if r.delta_bytes == 0 { f64::INFINITY } else { r.target_bytes as f64 / r.delta_bytes as f64 };
    println!(
        "Normal size: {}, Delta size: {}, {:.2}x improvement",
        human::size(r.target_bytes),
        human::size(r.delta_bytes),
        ratio
    );
    for (i, l) in r.layers.iter().enumerate() {
        eprintln!(
            "layer {i}: {} unchanged, {} patched, {} new -> {}",
            human::size(l.copied_bytes),
            human::size(l.patched_bytes),
            human::size(l.literal_bytes),
            human::size(l.payload_bytes)
        );
    }
    println!("Created delta: {}", r.id);
    if let Some(t) = &a.tag {
        println!("Successfully tagged {}", engine::reference::normalize(t)?);
    }
    Ok(())
}
