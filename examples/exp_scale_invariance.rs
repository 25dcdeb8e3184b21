//! Experiment 2 of docs/EXPERIMENTS.md (paper §4): rescaling a ReLU network's
//! layer by 10 and the next by 1/10 keeps its predictions but changes its
//! un-normalized loss slices; filter-normalized slices stay the same.
//!
//! Run: `cargo run --release --example exp_scale_invariance -- [OUT_DIR]` (seconds).

use std::path::PathBuf;

use tch_landscape::experiments::{scale_invariance, Scale};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/exp-scale-invariance"));
    let s = scale_invariance(&out, &Scale::full())?;
    println!(
        "MLP 64-100-100-10 on the digits: test error {:.2} %; rescaled (fc1 ×10, fc2 ×1/10): max relative logit difference {:.2e}",
        s.run.test_error(),
        s.max_rel_logit_diff
    );
    for (label, (a, b), d) in [
        ("un-normalized", &s.raw, s.raw_max_diff),
        ("filter-normalized", &s.filter, s.filter_max_diff),
    ] {
        println!(
            "{label:>17}: width {:.3} vs {:.3}, curvature {:.3} vs {:.3}, max |ΔL| along the slice {:.2e}",
            a.width, b.width, a.curvature, b.curvature, d
        );
    }
    Ok(())
}
