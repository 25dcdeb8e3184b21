//! Experiment 3 of docs/EXPERIMENTS.md (paper §6): ResNets of depth 8, 14 and
//! 20 with and without skip connections on the digits; filter-normalized 2-D
//! surfaces, sharpness, test error, and |λmin/λmax| maps for the deepest pair.
//!
//! Run: `cargo run --release --example exp_depth -- [OUT_DIR [BLOCKS]]`
//! (about 12 minutes on 2 cores; BLOCKS per stage, default `1,2,3`, `9` gives
//! ResNet-56; then open OUT_DIR/compare/index.html).

use std::path::PathBuf;

use tch_landscape::experiments::{depth, Scale};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/exp-depth"));
    // Blocks per stage, e.g. `9` for ResNet-56 (default 1,2,3: depths 8, 14, 20).
    let blocks: Vec<usize> = match std::env::args().nth(2) {
        Some(list) => list
            .split(',')
            .map(|b| b.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("blocks per stage: expected e.g. 1,2,3 ({e})"))?,
        None => vec![1, 2, 3],
    };
    let s = depth(&out, &Scale::full(), &blocks)?;
    print!("{}", s.markdown());
    Ok(())
}
