//! Loss landscape of a recorded run on real data (the UCI digits):
//! records a training run with the hook, then computes
//! - the 1-D linear interpolation between the first and the last snapshot
//!   (α ∈ [-0.5, 1.5], 401 points, the reference default), and
//! - a 2-D filter-normalized surface around the final snapshot
//!   (21 × 21 on [-1, 1]², seed 123, biases ignored),
//!
//! on a train split (1437 digits) and a held-out test split (360 digits).
//!
//! Run: `cargo run --release --example surface_digits -- [OUT_DIR]`
//! Expect: train accuracy ~100 %, the interpolation loss rising from ~0 at
//! α = 1 (the final model) to ~2.3 at α = 0 (initialization), and sharpness
//! figures for both splits. Takes well under a minute on 2 cores.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tch::nn::VarStore;
use tch::Device;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::{Surface, SurfaceResult};
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::{train_digits, TrainConfig};
use tch_landscape::models::{Mlp, W1_SIZES};
use tch_landscape::Run;

fn bar(title: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>14} [{bar:40}] {pos}/{len} points ({per_sec}, eta {eta})",
        )
        .unwrap(),
    );
    pb.set_message(title.to_string());
    pb
}

fn report(name: &str, r: &SurfaceResult) {
    println!(
        "{name}: {} points in {:.2} s ({:.1} points/s) -> {}",
        r.computed,
        r.seconds,
        r.computed as f64 / r.seconds.max(1e-9),
        r.dir.display()
    );
    for s in &r.sharpness {
        println!(
            "  {:<5} L0 = {:.4}  curvature x {:.3}{}  {} = {:.3}{}",
            s.split,
            s.reference_loss,
            s.curvature_x.unwrap_or(f64::NAN),
            s.curvature_y
                .map(|c| format!(", y {c:.3}"))
                .unwrap_or_default(),
            if s.area.is_some() {
                "area(L < L*+0.1)"
            } else {
                "width(L < L*+0.1)"
            },
            s.area.or(s.width).unwrap_or(f64::NAN),
            if s.bounded {
                ""
            } else {
                " (reaches the grid edge)"
            }
        );
    }
}

fn main() -> Result<()> {
    tch::set_num_threads(2);
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("landscape-surface-digits"));
    let data = Digits::load()?;
    let (train, test) = data.split_at(1437)?;

    // 1. Record a run with the hook (20 epochs, lr drop after epoch 12).
    let run_dir = out.join("run");
    let (loss, acc) = train_digits(&run_dir, &train, &TrainConfig::default())?;
    println!("trained: train loss {loss:.4}, train accuracy {acc:.1} %");
    let run = Run::open(&run_dir)?;
    let (first, last) = (
        ParamSet::from_run(&run, 0)?,
        ParamSet::from_run(&run, run.len() - 1)?,
    );

    // The user's model and data; its variables are set at each point and
    // restored afterwards.
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    run.load_into(run.len() - 1, &vs)?;
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &train.x, &train.y)?
        .split("test", &test.x, &test.y)?;

    // 2. 1-D interpolation θ(α) = (1-α)·θ₀ + α·θ_final.
    let interp = Directions::interpolation(&first, &last)?.with_description(format!(
        "snapshot 0 → {} of {}",
        run.len() - 1,
        run_dir.display()
    ));
    let pb = bar("interpolation");
    let r = Surface::builder(&interp)
        .line(-0.5..=1.5, 401)
        .on_progress(|d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64)
        })
        .build()?
        .evaluate(&vs, &mut eval, out.join("interpolation"))?;
    pb.finish_and_clear();
    report("interpolation", &r);
    let l = r.loss("train");
    println!(
        "  train loss at α=0 (θ₀): {:.4}, at α=1 (θ_final): {:.4}",
        l[100], l[300]
    );

    // 3. 2-D filter-normalized surface around the final snapshot.
    let dirs = Directions::random(&last)
        .seed(123)
        .build()?
        .with_description(format!("final snapshot of {}", run_dir.display()));
    let pb = bar("2-D surface");
    let r = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 21, -1.0..=1.0, 21)
        .on_progress(|d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64)
        })
        .build()?
        .evaluate(&vs, &mut eval, out.join("surface-filter"))?;
    pb.finish_and_clear();
    report("2-D surface", &r);
    Ok(())
}
