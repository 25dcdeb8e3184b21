//! Trajectory PCA of a recorded run on real data (the UCI digits), §7 of the
//! paper: records the demo's training run with the hook (W1's MLP, 20 epochs,
//! learning-rate drop after epoch 12) on a train split of 1437 digits,
//! computes the PCA of its 21 snapshots (weights only, as the reference),
//! prints the explained variance and the projected path, saves the tables
//! and the PCA plane as directions, and checks how well the plane represents
//! the path: for every snapshot, the loss at θᵢ against the loss at its
//! projection onto the plane, on the train split and the 360 held-out digits.
//!
//! Run: `cargo run --release --example pca_digits -- [OUT_DIR]`
//! Expect: PC1 + PC2 explaining most of the variation (~96 % here; the paper
//! reports 40–90 % for its larger networks), the path ending at the origin,
//! relative residuals small early (the big first moves lie in the plane) and
//! large late (the last, tiny steps are mostly off it), plane train losses
//! below the true ones (the projection drops SGD noise), and plane losses
//! equal to the true losses at the final snapshot. Takes well under a minute
//! on 2 cores.

use std::path::PathBuf;

use anyhow::Result;
use tch::nn::VarStore;
use tch::Device;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::pca::{plane_check, TrajectoryPca, PLANE_CHECK_FILE};
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::{train_digits, TrainConfig};
use tch_landscape::models::{Mlp, W1_SIZES};
use tch_landscape::Run;

fn main() -> Result<()> {
    tch::set_num_threads(2);
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("landscape-pca-digits"));
    let data = Digits::load()?;
    let (train, test) = data.split_at(1437)?;

    // 1. Record a run with the hook.
    let run_dir = out.join("run");
    let cfg = TrainConfig::default();
    let (loss, acc) = train_digits(&run_dir, &train, &cfg)?;
    println!(
        "trained {} epochs (lr drop after {:?}): train loss {loss:.4}, train accuracy {acc:.1} %",
        cfg.epochs, cfg.lr_drops
    );
    let run = Run::open(&run_dir)?;

    // 2. The PCA: two streaming passes over the run.
    let pca = TrajectoryPca::builder().components(2).build()?.fit(&run)?;
    println!(
        "PCA of {} snapshots over {} weights in {:.3} s (rank {})",
        run.len(),
        pca.numel,
        pca.seconds,
        pca.rank
    );
    for (k, r) in pca.explained_variance_ratio.iter().enumerate() {
        println!("  PC{}: {:.2} % of the variance", k + 1, 100.0 * r);
    }
    println!("  PC1 + PC2: {:.2} %", 100.0 * pca.plane_ratio());
    let cum: Vec<String> = pca
        .cumulative_ratio
        .iter()
        .take(6)
        .map(|c| format!("{:.1}", 100.0 * c))
        .collect();
    println!("  cumulative (%): {} ...", cum.join(", "));
    println!("per tensor: own PC1+PC2 ratio, share of PC1 / PC2:");
    for t in &pca.tensors {
        println!(
            "  {:<12} {:>5.1} %   {:>5.1} % / {:>5.1} %",
            t.name,
            100.0 * (t.own_ratio[0] + t.own_ratio[1]),
            100.0 * t.share.first().copied().unwrap_or(0.0),
            100.0 * t.share.get(1).copied().unwrap_or(0.0)
        );
    }
    let pca_dir = out.join("pca");
    let files = pca.save(&run, &pca_dir)?;

    // 3. The plane against the path, on the user's model.
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &train.x, &train.y)?
        .split("test", &test.x, &test.y)?;
    let check = plane_check(&run, &pca, &vs, &mut eval)?;
    check.save(&pca_dir.join(PLANE_CHECK_FILE))?;
    println!("path on the PCA plane (losses: true at θᵢ / at its projection):");
    println!("  snap epoch        x        y  resid   train true/plane     test true/plane");
    for pair in check.rows.chunks(2) {
        let (tr, te) = (&pair[0], &pair[1]);
        println!(
            "  {:>4} {:>5} {:>8.3} {:>8.3} {:>6.3}   {:>7.4} / {:<7.4}   {:>7.4} / {:<7.4}",
            tr.snapshot,
            tr.epoch,
            tr.x,
            tr.y,
            tr.residual,
            tr.true_loss,
            tr.plane_loss,
            te.true_loss,
            te.plane_loss
        );
    }
    println!(
        "tables, summary and directions in {}",
        files.summary.parent().unwrap_or(&pca_dir).display()
    );
    Ok(())
}
