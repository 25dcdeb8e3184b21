//! The demo: trains benchmark W1's MLP on the real digits data with the
//! recording hook attached, then exports the run to Parquet.

use std::path::{Path, PathBuf};

use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::analysis::supervised::{self, loss_of, Data, LossKind};
use crate::data::digits::Digits;
use crate::error::{Error, Result};
use crate::models::{Mlp, W1_SIZES};
use crate::recorder::Recorder;
use crate::store::export::{export_parquet, ExportSummary, DEFAULT_CHUNK};
use crate::store::run::Run;

/// The `model` metadata of runs recorded by [`train_digits`]; `landscape
/// surface` computes surfaces for runs that carry it.
pub const DIGITS_MLP_MODEL: &str = "mlp 64-256-256-10 relu";

/// Settings of a training run (the demo's and the experiments').
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainConfig {
    /// Seed for initialization and batch order.
    pub seed: i64,
    /// Number of epochs.
    pub epochs: u64,
    /// Mini-batch size.
    pub batch: i64,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Epochs after which the learning rate is multiplied by 0.1.
    pub lr_drops: Vec<u64>,
}

impl Default for TrainConfig {
    /// The demo's run: W1's optimizer (SGD 0.1, momentum 0.9, batch 64, seed 0)
    /// for 20 epochs with a learning-rate drop after epoch 12.
    fn default() -> Self {
        TrainConfig {
            seed: 0,
            epochs: 20,
            batch: 64,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            lr_drops: vec![12],
        }
    }
}

/// Loss (mean cross-entropy) and accuracy (%) over all of `x`, `y`, in batches
/// of `batch`, weighted by batch size, computed by the evaluation core
/// ([`supervised`](crate::analysis::supervised)).
/// The model runs in evaluation mode (BatchNorm uses its running statistics).
pub fn evaluate(model: &dyn ModuleT, x: &Tensor, y: &Tensor, batch: i64) -> Result<(f64, f64)> {
    let data = Data::new("evaluation data", x, y)?;
    let (loss, acc) =
        supervised::evaluate(model, &data, batch, LossKind::CrossEntropy, "the data")?;
    Ok((loss, acc.unwrap_or(f64::NAN)))
}

/// The mean cross-entropy of `model` (training mode) on the samples `idx`
/// of `x`, `y`: the mini-batch loss of the training helpers.
pub fn batch_loss(model: &dyn ModuleT, x: &Tensor, y: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let err = |e| Error::torch("computing a mini-batch loss", e);
    let xb = x.f_index_select(0, idx).map_err(err)?;
    let yb = y.f_index_select(0, idx).map_err(err)?;
    loss_of(&model.forward_t(&xb, true), &yb, LossKind::CrossEntropy).map_err(err)
}

/// Runs SGD on the variables of `vs` as `cfg` says (momentum, weight decay,
/// learning-rate drops): each epoch visits the `n` samples in a fresh random
/// order (libtorch's generator) in mini-batches; `loss(indices)` gives the
/// mini-batch loss, `on_step(epoch, step)` runs after each step and
/// `on_epoch(epoch, lr)` after each epoch, before any learning-rate drop.
pub fn sgd(
    vs: &nn::VarStore,
    cfg: &TrainConfig,
    n: usize,
    mut loss: impl FnMut(&Tensor) -> Result<Tensor>,
    mut on_step: impl FnMut(u64, u64) -> Result<()>,
    mut on_epoch: impl FnMut(u64, f64) -> Result<()>,
) -> Result<()> {
    let mut opt = nn::Sgd {
        momentum: cfg.momentum,
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(vs, cfg.lr)
    .map_err(|e| Error::torch("building the optimizer", e))?;
    let n = n as i64;
    let mut lr = cfg.lr;
    let mut step = 0u64;
    for epoch in 1..=cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let mut start = 0;
        while start < n {
            let len = cfg.batch.min(n - start);
            opt.backward_step(&loss(&perm.narrow(0, start, len))?);
            step += 1;
            on_step(epoch, step)?;
            start += len;
        }
        on_epoch(epoch, lr)?;
        if cfg.lr_drops.contains(&epoch) {
            lr *= 0.1;
            opt.set_lr(lr);
        }
    }
    Ok(())
}

/// Trains W1's MLP on `data` with the recorder writing to `run_dir`.
/// Returns the final (loss, accuracy) over the full data.
pub fn train_digits(run_dir: &Path, data: &Digits, cfg: &TrainConfig) -> Result<(f64, f64)> {
    tch::manual_seed(cfg.seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    let rec = std::cell::RefCell::new(
        Recorder::builder(run_dir)
            .overwrite(true)
            .metadata("model", DIGITS_MLP_MODEL)
            .metadata("data", "uci digits (1797 x 64) / 16")
            .metadata("seed", cfg.seed.to_string())
            .build(&vs)?,
    );
    sgd(
        &vs,
        cfg,
        data.len(),
        |idx| batch_loss(&model, &data.x, &data.y, idx),
        |epoch, step| rec.borrow_mut().on_step_end(epoch, step, &[]).map(|_| ()),
        |epoch, lr| {
            let (loss, acc) = evaluate(&model, &data.x, &data.y, 128)?;
            tracing::info!(epoch, loss, acc, lr, "epoch done");
            rec.borrow_mut()
                .on_epoch_end(
                    epoch,
                    &[("train_loss", loss), ("train_acc", acc), ("lr", lr)],
                )
                .map(|_| ())
        },
    )?;
    rec.into_inner().finish()?;
    evaluate(&model, &data.x, &data.y, 128)
}

/// What the demo produced.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSummary {
    /// The recorded run.
    pub run_dir: PathBuf,
    /// The Parquet export.
    pub export: ExportSummary,
    /// Number of snapshots recorded.
    pub snapshots: usize,
    /// Final loss on the training split.
    pub final_loss: f64,
    /// Final accuracy on the training split (%).
    pub final_accuracy: f64,
    /// Surfaces computed, with their directories.
    pub surfaces: Vec<(String, PathBuf)>,
    /// The HTML report.
    pub report: PathBuf,
}

/// Demo settings beyond training.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Training.
    pub train: TrainConfig,
    /// Points per axis of the 2-D surfaces.
    pub grid_2d: usize,
    /// Points of the 1-D slices.
    pub grid_1d: usize,
    /// Points per axis of the curvature map.
    pub grid_curvature: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            train: TrainConfig::default(),
            grid_2d: 25,
            grid_1d: 101,
            grid_curvature: 5,
        }
    }
}

/// Runs the demo into `out` (the run goes to `out/mlp-digits`): trains with
/// the hook on 1437 digits (360 held out), exports Parquet, computes the
/// interpolation from the first to the last snapshot, 1-D and 2-D
/// filter-normalized slices around the final model (train and test), the
/// trajectory PCA with the loss on the PCA plane, a small |λmin/λmax| map,
/// and writes the report. `progress(stage, done, total)` is called as points finish.
pub fn run(
    out: &Path,
    cfg: &DemoConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<DemoSummary> {
    use crate::analysis::directions::{Directions, Ignore, Normalization};
    use crate::analysis::evaluator::ClassifierEvaluator;
    use crate::analysis::params::ParamSet;
    use crate::analysis::surface::Surface;
    use crate::report::run_report::{write_report, ReportOptions, SURFACES_DIR};

    let data = Digits::load()?;
    let (train, test) = data.split_at(1437)?;
    let run_dir = out.join("mlp-digits");
    for sub in [
        SURFACES_DIR,
        crate::report::run_report::PCA_DIR,
        crate::report::run_report::CURVATURE_DIR,
    ] {
        // A fresh run gets fresh analyses (their centre changes).
        if run_dir.join(sub).exists() {
            std::fs::remove_dir_all(run_dir.join(sub))
                .map_err(|e| Error::io("removing", run_dir.join(sub), e))?;
        }
    }
    let (final_loss, final_accuracy) = train_digits(&run_dir, &train, &cfg.train)?;
    let run = Run::open(&run_dir)?;
    let export = export_parquet(&run, &run_dir.join("export"), DEFAULT_CHUNK)?;

    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    let last = run.len() - 1;
    run.load_into(last, &vs)?;
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &train.x, &train.y)?
        .split("test", &test.x, &test.y)?;
    let first_set = ParamSet::from_run(&run, 0)?;
    let last_set = ParamSet::from_run(&run, last)?;
    let sdir = run_dir.join(SURFACES_DIR);
    let mut surfaces = Vec::new();

    let interp = Directions::interpolation(&first_set, &last_set)?
        .with_description(format!("snapshot 0 → snapshot {last}"));
    let name = "interpolation";
    Surface::builder(&interp)
        .line(-0.5..=1.5, cfg.grid_1d)
        .on_progress(|d, t| progress(name, d, t))
        .build()?
        .evaluate(&vs, &mut eval, sdir.join(name))?;
    surfaces.push((name.to_string(), sdir.join(name)));

    let line = Directions::random_line(&last_set, 123, Normalization::Filter, Ignore::BiasAndBn)?
        .with_description(format!("final snapshot {last}"));
    let name = "filter-1d";
    Surface::builder(&line)
        .line(-1.0..=1.0, cfg.grid_1d)
        .on_progress(|d, t| progress(name, d, t))
        .build()?
        .evaluate(&vs, &mut eval, sdir.join(name))?;
    surfaces.push((name.to_string(), sdir.join(name)));

    let plane = Directions::random_plane(&last_set, 123, Normalization::Filter, Ignore::BiasAndBn)?
        .with_description(format!("final snapshot {last}"));
    let name = "filter-2d";
    Surface::builder(&plane)
        .grid(-1.0..=1.0, cfg.grid_2d, -1.0..=1.0, cfg.grid_2d)
        .on_progress(|d, t| progress(name, d, t))
        .build()?
        .evaluate(&vs, &mut eval, sdir.join(name))?;
    surfaces.push((name.to_string(), sdir.join(name)));

    // Trajectory PCA, and the loss on the PCA plane with the path (Fig. 9).
    let pca = crate::analysis::pca::TrajectoryPca::builder()
        .build()?
        .fit(&run)?;
    pca.save(&run, &run_dir.join(crate::report::run_report::PCA_DIR))?;
    let pca_dirs = pca.directions(&run, false)?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = pca.path.iter().map(|p| (p.x(), p.y())).unzip();
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((0.0f64, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let m = 0.15 * (hi - lo).max(1e-3);
        (lo - m)..=(hi + m)
    };
    let name = "pca-plane";
    Surface::builder(&pca_dirs)
        .grid(range(&xs), cfg.grid_2d, range(&ys), cfg.grid_2d)
        .with_sharpness(false)
        .on_progress(|d, t| progress(name, d, t))
        .build()?
        .evaluate(&vs, &mut eval, sdir.join(name))?;
    surfaces.push((name.to_string(), sdir.join(name)));

    // A small |λmin/λmax| map around the final model (Fig. 7), train split.
    let name = "filter-2d";
    let objective = crate::analysis::hessian::SupervisedObjective::new(&model, &train.x, &train.y)?
        .batch(512)?;
    let cdir = run_dir
        .join(crate::report::run_report::CURVATURE_DIR)
        .join(name);
    crate::analysis::hessian::Curvature::new(&plane)
        .grid(
            -0.5..=0.5,
            cfg.grid_curvature,
            -0.5..=0.5,
            cfg.grid_curvature,
        )
        // The reference's tolerance: enough for a ratio map, and quick.
        .lanczos(crate::analysis::hessian::LanczosOptions {
            tol: 1e-2,
            ..Default::default()
        })
        .on_progress(|d, t| progress("curvature", d, t))
        .evaluate(&vs, objective, &cdir)?;

    let report = write_report(&run_dir, &ReportOptions::default())?;
    Ok(DemoSummary {
        run_dir,
        export,
        snapshots: run.len(),
        final_loss,
        final_accuracy,
        surfaces,
        report,
    })
}
