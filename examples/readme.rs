//! The README's Rust examples, compiled and run: every ```rust block of
//! README.md stands here verbatim inside a function that provides its
//! context (`tests/readme.rs` checks that they match line for line). Running
//! it executes them on the bundled digits at a tiny scale, in a temporary
//! directory:
//!
//! ```sh
//! cargo run --release --features data --example readme
//! ```

use tch::nn::{Module, OptimizerConfig, VarStore};
use tch::Device;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::data::digits::Digits;
use tch_landscape::models::Mlp;
use tch_landscape::{Error, Result};

/// The quick start: the hook in a training loop.
#[rustfmt::skip]
fn quick_start(data: &Digits) -> Result<()> {
    let (vs, model) = mlp();
    let (epochs, lr) = (2u64, 0.05);
    let mut opt = tch::nn::Sgd::default()
        .build(&vs, lr)
        .map_err(|e| Error::torch("building the optimizer", e))?;
    let train_one_epoch = |opt: &mut tch::nn::Optimizer| {
        let loss = model.forward(&data.x).cross_entropy_for_logits(&data.y);
        opt.backward_step(&loss);
        (loss.double_value(&[]), f64::NAN)
    };
    // README: quick start
    use tch_landscape::Recorder;

    let mut rec = Recorder::builder("runs/mlp").build(&vs)?;   // snapshots θ₀
    for epoch in 1..=epochs {
        let (l, a) = train_one_epoch(&mut opt);                // your own training code
        rec.on_epoch_end(epoch, &[("train_loss", l), ("test_acc", a), ("lr", lr)])?;
    }
    rec.finish()?;
    Ok(())
}

/// Loss surfaces along filter-normalized random directions.
#[rustfmt::skip]
fn surfaces(data: &Digits) -> Result<Directions> {
    let (vs, model) = mlp();
    let (x_train, y_train) = (data.x.narrow(0, 0, 1000), data.y.narrow(0, 0, 1000));
    let (x_test, y_test) = (data.x.narrow(0, 1000, 797), data.y.narrow(0, 1000, 797));
    // README: loss surfaces
    use tch_landscape::analysis::{directions::Directions, evaluator::ClassifierEvaluator};
    use tch_landscape::analysis::{params::ParamSet, surface::Surface};

    let dirs = Directions::random(&ParamSet::from_varstore(&vs)?)   // filter-normalized, biases and BN ignored
        .seed(123)
        .build()?;
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x_train, &y_train)?
        .split("test", &x_test, &y_test)?;
    let surface = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 5, -1.0..=1.0, 5)          // any nx × ny, any ranges
        .build()?;                                    // every option is checked here
    let result = surface.evaluate(&vs, &mut eval, "runs/mlp/surfaces/filter-2d")?;   // resumable
    println!("surface: {} points", result.points.len());
    drop(surface);
    Ok(dirs)
}

/// Hessian eigenvalues, trace and a curvature map.
#[rustfmt::skip]
fn curvature(data: &Digits, dirs: Directions) -> Result<()> {
    let (vs, model) = mlp();
    let (x, y) = (data.x.shallow_clone(), data.y.shallow_clone());
    let objective2 = tch_landscape::analysis::hessian::SupervisedObjective::new(&model, &x, &y)?;
    // README: curvature
    use tch_landscape::analysis::hessian::*;
    use tch_landscape::tensor::Selection;

    let objective = SupervisedObjective::new(&model, &x, &y)?.batch(128)?;
    let mut h = Hessian::at(&vs, objective, &Selection::Weights)?;         // weights, as the reference
    let spectrum = h.eigenvalues(&Lanczos::builder().tol(1e-3).build()?)?; // λmax and λmin
    let trace = h.trace(&Hutchinson::builder().probes(100).build()?)?;     // Hutchinson ± standard error
    let surface = Surface::builder(&dirs).grid(-0.5..=0.5, 3, -0.5..=0.5, 3).build()?;
    let map = Curvature::builder(surface).build()?.evaluate(&vs, objective2, "runs/mlp/curvature/ratio-filter-2d")?;
    println!(
        "λmax {:.4}, λmin {:.4}, trace {:.2} ± {:.2}, |λmin/λmax| {:?}",
        spectrum.lambda_max,
        spectrum.lambda_min,
        trace.estimate,
        trace.std_error,
        map.abs_ratio()
    );
    Ok(())
}

/// One shard of a surface (for batch schedulers).
#[rustfmt::skip]
fn shard(data: &Digits, dirs: Directions) -> Result<()> {
    let (vs, model) = mlp();
    let mut eval = ClassifierEvaluator::new(&model).split("train", &data.x, &data.y)?;
    let (i, n) = (0, 2);
    // README: shards
    use tch_landscape::analysis::shard::Shard;

    let surface = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 5, -1.0..=1.0, 5)
        .shard(Shard::new(i, n)?)                // or Shard::from_slurm_env()?
        .build()?;
    surface.evaluate(&vs, &mut eval, format!("runs/mlp/shards/filter-2d.{i}"))?;
    Ok(())
}

/// The surface over MPI (cargo feature `mpi`; run under mpirun).
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[rustfmt::skip]
fn mpi(data: &Digits, theta_star: &std::path::Path) -> Result<()> {
    let model_at_theta_star_and_directions = |vs: &VarStore| -> Result<(Mlp, Directions)> {
        let model = Mlp::new(&vs.root(), &[64, 32, 10]);
        tch_landscape::Run::open(theta_star)?.load_into(0, vs)?;
        let centre = tch_landscape::analysis::params::ParamSet::from_varstore(vs)?;
        Ok((model, Directions::random(&centre).seed(123).build()?))
    };
    let (x, y) = (data.x.shallow_clone(), data.y.shallow_clone());
    // README: MPI
    let mpi = tch_landscape::distributed::Mpi::init()?;
    let vs = VarStore::new(mpi.device());
    let (model, dirs) = model_at_theta_star_and_directions(&vs)?;   // exactly as in one process
    let mut eval = ClassifierEvaluator::new(&model).split("train", &x, &y)?;
    let surface = Surface::builder(&dirs).grid(-1.0..=1.0, 51, -1.0..=1.0, 51).build()?;
    if let Some(result) = mpi.evaluate_surface(&surface, &vs, &mut eval, "runs/x/surfaces/filter-2d")? {
        // rank 0 only: the result, written to disk
        println!("{} points", result.points.len());
    }
    Ok(())
}

/// A fresh VarStore with the small MLP used by every example here.
fn mlp() -> (VarStore, Mlp) {
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &[64, 32, 10]);
    (vs, model)
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tch-landscape-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    std::env::set_current_dir(&dir).map_err(|e| Error::io("entering", &dir, e))?;
    tch::manual_seed(0);
    let data = Digits::load()?;
    quick_start(&data)?;
    let dirs = surfaces(&data)?;
    curvature(&data, dirs.clone())?;
    shard(&data, dirs)?;
    println!("the README's examples ran in {}", dir.display());
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
