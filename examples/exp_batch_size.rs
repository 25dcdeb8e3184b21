//! Experiments 1, 5 and 6 of docs/EXPERIMENTS.md (paper §5 and §7): small vs
//! large batch, with and without weight decay, on 4,000 MNIST digits.
//!
//! 1. the 1-D interpolation between the small- and large-batch minimizers,
//!    un-normalized and filter-normalized 1-D sharpness, weight norms (the
//!    runs' reports show weight-norm curves and histograms);
//! 5. PC1 + PC2 explained variance of each trajectory and the path over the
//!    PCA-plane contours (learning-rate drop marked) in each report;
//! 6. filter-normalized widths over 5 direction seeds: median and spread.
//!
//! Run: `cargo run --release --example exp_batch_size -- [OUT_DIR]`
//! (about 2 minutes on 2 cores; then open OUT_DIR/compare/index.html).

use std::path::PathBuf;

use tch_landscape::experiments::{batch_size, median_spread, Scale};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/exp-batch-size"));
    let s = batch_size(&out, &Scale::full())?;
    println!(
        "MLP 784-100-100-10 on {} MNIST digits, batches {} / {}",
        s.scale.mnist_train, s.batches.0, s.batches.1
    );
    println!("| run | test error % | ‖θ‖ | raw 1-D width | filter 1-D width | filter widths over {} seeds: median [min, max] | PC1+PC2 % |", s.scale.seeds);
    println!("|---|---|---|---|---|---|---|");
    for r in &s.rows {
        let (m, lo, hi) = median_spread(&r.seed_widths);
        println!(
            "| {} | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} [{:.3}, {:.3}] | {:.1} |",
            r.run.name,
            r.run.test_error(),
            r.run.weight_norm,
            r.raw.width,
            r.filter.width,
            m,
            lo,
            hi,
            100.0 * r.pca_explained_2
        );
    }
    for i in &s.interpolations {
        println!(
            "interpolation small → large batch, wd {}: width around small batch {:.3}, around large batch {:.3} (α units)",
            i.weight_decay, i.width_small_batch, i.width_large_batch
        );
    }
    println!(
        "comparison report: {}",
        out.join("compare/index.html").display()
    );
    Ok(())
}
