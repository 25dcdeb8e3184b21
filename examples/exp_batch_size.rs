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
    println!("| run | train loss | test error % | ‖θ‖ | raw 1-D width | filter 1-D width | filter 1-D curvature | filter widths over {} seeds: median [min, max] | PC1+PC2 % |", s.scale.seeds);
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &s.rows {
        let (m, lo, hi) = median_spread(&r.seed_widths);
        println!(
            "| {} | {:.4} | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} [{:.3}, {:.3}] | {:.1} |",
            r.run.name,
            r.run.train_loss,
            r.run.test_error(),
            r.run.weight_norm,
            r.raw.width,
            r.filter.width,
            r.filter.curvature,
            m,
            lo,
            hi,
            100.0 * r.pca_explained_2
        );
    }
    for i in &s.interpolations {
        println!(
            "interpolation small → large batch, wd {}: width around small batch {:.3}, around large batch {:.3} (α units); curvature {:.3} vs {:.3}; highest train loss between them {:.4}",
            i.weight_decay,
            i.width_small_batch,
            i.width_large_batch,
            i.curvature_small_batch,
            i.curvature_large_batch,
            i.max_between
        );
    }
    // Experiment 6: the same direction seeds for both runs, so the widths pair up.
    for pair in s.rows.chunks(2) {
        let d: Vec<f64> = pair[0]
            .seed_widths
            .iter()
            .zip(&pair[1].seed_widths)
            .map(|(a, b)| a - b)
            .collect();
        let (m, lo, hi) = median_spread(&d);
        println!(
            "filter width {} − {} per seed: {:?}; median {:.3} [{:.3}, {:.3}]; same sign for every seed: {}",
            pair[0].run.name,
            pair[1].run.name,
            d.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            m,
            lo,
            hi,
            d.iter().all(|v| *v > 0.0) || d.iter().all(|v| *v < 0.0)
        );
    }
    println!(
        "comparison report: {}",
        out.join("compare/index.html").display()
    );
    Ok(())
}
