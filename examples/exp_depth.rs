//! Experiment 3 of docs/EXPERIMENTS.md (paper §6): ResNets of depth 8, 14 and
//! 20 with and without skip connections on the digits; filter-normalized 2-D
//! surfaces, sharpness, test error, and |λmin/λmax| maps for the deepest pair.
//!
//! Run: `cargo run --release --example exp_depth -- [OUT_DIR]` (about 10
//! minutes on 2 cores; then open OUT_DIR/compare/index.html).

use std::path::PathBuf;

use tch_landscape::experiments::{depth, print_arch_table, Scale};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/exp-depth"));
    let s = depth(&out, &Scale::full(), 3)?;
    print_arch_table(&s);
    Ok(())
}
