//! Your own tch model, start to finish: a small CNN with BatchNorm written
//! here (not one of the crate's reference models), trained on the UCI digits
//! with the recording hook attached (three lines), then every analysis of the
//! library on its run, written where the report finds them:
//!
//! - `RUN/surfaces/filter-2d`: a 2-D filter-normalized surface around the
//!   final model, BatchNorm statistics recalibrated at each point;
//! - `RUN/surfaces/interpolation`: the 1-D interpolation θ₀ → θ_final;
//! - `RUN/pca`: the trajectory PCA;
//! - λmax / λmin of the Hessian at the final model (Lanczos), and
//!   `RUN/curvature/filter-2d`, a small |λmin/λmax| map (recalibrated);
//! - `RUN/report/index.html`, the report of all of it.
//!
//! Run: `cargo run --release --example own_model -- [RUN_DIR]` (default
//! `runs/own-model`; a directory that already holds a run is refused, by
//! the recorder: remove it or pass another).
//! Expect the train loss to fall from ~2.3 at θ₀ to ~0.01 at θ*, rising by
//! up to ~4.4 on the plane, PC1 + PC2 explaining ~98 % of the path, λmax ≈ 2
//! with a small negative λmin, and the report's path. About two minutes on
//! two cores, most of it the recalibrated surface and the curvature map.

use std::path::PathBuf;

use anyhow::Result;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch_landscape::analysis::bn::BnRecalibration;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::hessian::{Curvature, Hessian, Lanczos, SupervisedObjective};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::pca::TrajectoryPca;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::data::digits::Digits;
use tch_landscape::report::{write_report, ReportOptions};
use tch_landscape::tensor::Selection;
use tch_landscape::{Recorder, Run};

/// The user's model: conv–BN–ReLU twice, then a linear layer, on 8×8 digits.
fn cnn(p: &nn::Path) -> impl ModuleT {
    let conv = |stride| nn::ConvConfig {
        stride,
        padding: 1,
        ..Default::default()
    };
    nn::seq_t()
        .add_fn(|x| x.view([-1, 1, 8, 8]))
        .add(nn::conv2d(p / "conv1", 1, 8, 3, conv(1)))
        .add(nn::batch_norm2d(p / "bn1", 8, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(p / "conv2", 8, 16, 3, conv(2)))
        .add(nn::batch_norm2d(p / "bn2", 16, Default::default()))
        .add_fn(|x| x.relu().flatten(1, -1))
        .add(nn::linear(p / "fc", 16 * 4 * 4, 10, Default::default()))
}

fn main() -> Result<()> {
    let run_dir = PathBuf::from(std::env::args().nth(1).unwrap_or("runs/own-model".into()));
    let (train, test) = Digits::load()?.split_at(1437)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = cnn(&vs.root());
    let mut opt = nn::sgd(0.9, 0.0, 0.0, false).build(&vs, 0.05)?;

    // Training, with the hook: build, on_epoch_end, finish.
    let mut rec = Recorder::builder(&run_dir).build(&vs)?;
    for epoch in 1..=8 {
        let mut losses = Vec::new();
        for (x, y) in tch::data::Iter2::new(&train.x, &train.y, 64).shuffle() {
            let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            losses.push(loss.double_value(&[]));
        }
        let mean = losses.iter().sum::<f64>() / losses.len() as f64;
        rec.on_epoch_end(epoch, &[("train_loss", mean)])?;
    }
    rec.finish()?;

    // Surfaces, with BN statistics re-estimated at each point.
    let (run, bn) = (Run::open(&run_dir)?, BnRecalibration::default());
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &train.x, &train.y)?
        .split("test", &test.x, &test.y)?
        .recalibrate_bn(&vs, &train.x, bn)?;
    let (first, last) = (ParamSet::from_run(&run, 0)?, ParamSet::from_varstore(&vs)?);
    let plane = Directions::random(&last).seed(123).build()?;
    let square = |h: f64, n| Surface::builder(&plane).grid(-h..=h, n, -h..=h, n).build();
    let s = square(1.0, 11)?.evaluate(&vs, &mut eval, run_dir.join("surfaces/filter-2d"))?;
    let line = Directions::interpolation(&first, &last)?;
    let interpolation = Surface::builder(&line).line(-0.5..=1.5, 41).build()?;
    let i = interpolation.evaluate(&vs, &mut eval, run_dir.join("surfaces/interpolation"))?;

    // Trajectory PCA; curvature at θ* and as a small map (recalibrated).
    let pca = TrajectoryPca::builder().build()?.fit(&run)?;
    pca.save(&run, &run_dir.join("pca"))?;
    let lanczos = Lanczos::builder().tol(1e-2).build()?;
    let mut objective = SupervisedObjective::new(&model, &train.x, &train.y)?.batch(1437)?;
    let spectrum = Hessian::at(&vs, &mut objective, &Selection::Weights)?.eigenvalues(&lanczos)?;
    let objective = objective.recalibrate_bn(&vs, &train.x, bn)?;
    let map = square(0.5, 3)?;
    let curvature = Curvature::builder(map).lanczos(lanczos).build()?;
    curvature.evaluate(&vs, objective, run_dir.join("curvature/filter-2d"))?;
    let report = write_report(&run_dir, &ReportOptions::default())?;

    let (l, c, h) = (i.loss("train"), &s.sharpness[0], &spectrum);
    println!(
        "train loss {:.3} at θ₀, {:.4} at θ*, rising by up to {:.2} on the plane; PC1 + PC2: {:.1} %; λmax {:.4}, λmin {:.4}; report: {}",
        l[10], c.reference_loss, c.max_increase, 100.0 * pca.plane_ratio(), h.lambda_max, h.lambda_min, report.display()
    );
    Ok(())
}
