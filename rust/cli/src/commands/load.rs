use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use engine::store::Access;

use crate::args::LoadArgs;
use crate::progress::{bar, ProgressReader};

pub fn run(root: &Path, a: &LoadArgs) -> anyhow::Result<()> {
    let (input, total): (Box<dyn Read>, Option<u64>) = match &a.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        }
        None => (Box::new(io::stdin().lock()), None),
    };
    let mut store = super::open(root, Access::Write)?;
    let pb = bar(total, a.quiet);
    let reader = BufReader::with_capacity(256 * 1024, ProgressReader { inner: input, bar: pb.clone() });
    let loaded = engine::archive::load(&mut store, reader);
    pb.finish_and_clear();
    for img in loaded? {
        for (tag, old) in &img.retagged_from {
            println!("The image {tag} already exists, renaming the old one with ID {old} to empty string");
        }
        if let Some(base) = &img.delta_base {
            println!("Applied delta: rebuilt {} from base {}", img.id, base);
        }
        if img.tags.is_empty() {
            println!("Loaded image ID: {}", img.id);
        }
        for t in &img.tags {
            println!("Loaded image: {t}");
        }
    }
    Ok(())
}
