//! Experiment 4 of docs/EXPERIMENTS.md (paper §6): the depth-8 ResNet at
//! width ×1, ×2 and ×4 on the digits; filter-normalized 2-D surfaces,
//! sharpness and test error.
//!
//! Run: `cargo run --release --example exp_width -- [OUT_DIR]` (a few minutes).

use std::path::PathBuf;

use tch_landscape::experiments::{width, Scale};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/exp-width"));
    let s = width(&out, &Scale::full(), &[1, 2, 4])?;
    print!("{}", s.markdown());
    Ok(())
}
