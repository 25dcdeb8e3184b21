//! The paper's experiments at small scale on real data (UCI digits, 10,000
//! MNIST digits), shared by the `exp_*` examples (full size, minutes on 2
//! cores) and the test suite (smoke size, seconds). Every function trains
//! its runs with the recording hook, computes its analyses with the library,
//! writes the runs' reports and a comparison report, and returns the numbers
//! it printed (also saved as `summary.json`), so docs/EXPERIMENTS.md quotes
//! only what the code measured.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

use crate::analysis::directions::{Directions, Ignore, Normalization};
use crate::analysis::evaluator::ClassifierEvaluator;
use crate::analysis::hessian::{Curvature, LanczosOptions, SupervisedObjective};
use crate::analysis::params::ParamSet;
use crate::analysis::pca::TrajectoryPca;
use crate::analysis::sharpness::{width_1d, Sharpness};
use crate::analysis::surface::{Surface, SurfaceResult};
use crate::data::digits::Digits;
use crate::demo::{batch_loss, evaluate, sgd, TrainConfig};
use crate::error::{Error, Result};
use crate::models::{CifarResNet, Mlp};
use crate::recorder::Recorder;
use crate::report::run_report::{
    write_report, ReportOptions, CURVATURE_DIR, PCA_DIR, SURFACES_DIR,
};
use crate::store::run::Run;

/// A data set split into train and test, with the image shape for conv nets.
#[derive(Debug)]
pub struct Data {
    /// Name used in metadata and tables.
    pub name: String,
    /// Training split.
    pub train: Digits,
    /// Held-out split.
    pub test: Digits,
    /// (channels, height, width) of one image.
    pub image: (i64, i64, i64),
}

impl Data {
    /// The UCI digits: 1437 train, 360 test, 1 × 8 × 8.
    pub fn digits() -> Result<Data> {
        let (train, test) = Digits::load()?.split_at(1437)?;
        Ok(Data {
            name: "uci-digits".into(),
            train,
            test,
            image: (1, 8, 8),
        })
    }

    /// The first `n_train` MNIST digits for training and the last `n_test`
    /// for testing, 1 × 28 × 28.
    pub fn mnist(n_train: usize, n_test: usize) -> Result<Data> {
        let all = crate::data::mnist::load()?;
        let total = all.len();
        if n_train + n_test > total || n_train == 0 || n_test == 0 {
            return Err(Error::invalid(
                "MNIST split",
                format!("{n_train} + {n_test} samples requested, {total} available"),
            ));
        }
        Ok(Data {
            name: format!("mnist-{n_train}"),
            train: all.range(0, n_train),
            test: all.range(total - n_test, n_test),
            image: (1, 28, 28),
        })
    }

    /// Inputs shaped for `arch` (flat for MLPs, images for conv nets).
    fn inputs(&self, arch: &Arch, x: &Tensor) -> Tensor {
        match arch {
            Arch::Mlp(_) => x.shallow_clone(),
            Arch::ResNet { .. } => {
                let (c, h, w) = self.image;
                x.reshape([-1, c, h, w])
            }
        }
    }
}

/// A network of the experiments (defined in [`crate::models`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Arch {
    /// ReLU MLP with these layer sizes (input first).
    Mlp(Vec<i64>),
    /// CIFAR-style ResNet: `n` blocks per stage (depth 6n + 2), channel
    /// multiplier `width`, skip connections on or off.
    ResNet {
        /// Blocks per stage.
        n: usize,
        /// Width multiplier (16, 32, 64 channels × width).
        width: i64,
        /// Skip connections.
        skip: bool,
    },
}

impl Arch {
    /// Short name, e.g. `resnet-14` or `resnet-14-noshort-w2`.
    pub fn name(&self) -> String {
        match self {
            Arch::Mlp(s) => format!(
                "mlp-{}",
                s.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            ),
            Arch::ResNet { n, width, skip } => format!(
                "resnet-{}{}{}",
                6 * n + 2,
                if *skip { "" } else { "-noshort" },
                if *width > 1 {
                    format!("-w{width}")
                } else {
                    String::new()
                }
            ),
        }
    }

    /// Builds the network in `vs` for `data`.
    pub fn build(&self, vs: &VarStore, data: &Data) -> Box<dyn ModuleT> {
        match self {
            Arch::Mlp(sizes) => Box::new(Mlp::new(&vs.root(), sizes)),
            Arch::ResNet { n, width, skip } => Box::new(CifarResNet::with_input(
                &vs.root(),
                data.image.0,
                *n,
                *width,
                *skip,
                10,
            )),
        }
    }
}

/// How a trained run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trained {
    /// Run name.
    pub name: String,
    /// Network.
    pub arch: String,
    /// Training settings.
    pub train: TrainConfig,
    /// Final loss and accuracy (%) on the train split (eval mode).
    pub train_loss: f64,
    /// Final train accuracy (%).
    pub train_acc: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Final test accuracy (%).
    pub test_acc: f64,
    /// L2 norm of all parameters at the end.
    pub weight_norm: f64,
}

impl Trained {
    /// Test error (%).
    pub fn test_error(&self) -> f64 {
        100.0 - self.test_acc
    }
}

/// A trained model ready for analyses: its VarStore, network and inputs.
pub struct Model {
    /// Variables, at the final snapshot.
    pub vs: VarStore,
    /// The network.
    pub net: Box<dyn ModuleT>,
    /// Train inputs shaped for the network.
    pub train_x: Tensor,
    /// Test inputs shaped for the network.
    pub test_x: Tensor,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").finish_non_exhaustive()
    }
}

impl Model {
    /// An evaluator of train and test loss/accuracy on `data`.
    pub fn evaluator<'a>(&'a self, data: &Data) -> Result<ClassifierEvaluator<'a>> {
        ClassifierEvaluator::new(self.net.as_ref())
            .split("train", &self.train_x, &data.train.y)?
            .split("test", &self.test_x, &data.test.y)?
            .batch(512)
    }
}

/// Trains `arch` on `data` with the recorder writing `run_dir` (θ₀ and one
/// snapshot per epoch, with train/test loss and accuracy and the learning
/// rate as metrics), and returns the final figures and the trained model.
pub fn train(
    run_dir: &Path,
    name: &str,
    arch: &Arch,
    data: &Data,
    cfg: &TrainConfig,
) -> Result<(Trained, Model)> {
    tch::manual_seed(cfg.seed);
    let vs = VarStore::new(Device::Cpu);
    let net = arch.build(&vs, data);
    let (train_x, test_x) = (
        data.inputs(arch, &data.train.x),
        data.inputs(arch, &data.test.x),
    );
    let mut rec = Recorder::builder(run_dir)
        .overwrite(true)
        .metadata("model", arch.name())
        .metadata("data", data.name.clone())
        .metadata("experiment_run", name)
        .metadata("train", serde_json::to_string(cfg).unwrap_or_default())
        .build(&vs)?;
    sgd(
        &vs,
        cfg,
        data.train.len(),
        |idx| batch_loss(net.as_ref(), &train_x, &data.train.y, idx),
        |_, _| Ok(()),
        |epoch, lr| {
            let (tl, ta) = evaluate(net.as_ref(), &train_x, &data.train.y, 256)?;
            let (vl, va) = evaluate(net.as_ref(), &test_x, &data.test.y, 256)?;
            let metrics = [
                ("train_loss", tl),
                ("train_acc", ta),
                ("test_loss", vl),
                ("test_acc", va),
                ("lr", lr),
            ];
            rec.on_epoch_end(epoch, &metrics).map(|_| ())
        },
    )?;
    rec.finish()?;
    let (train_loss, train_acc) = evaluate(net.as_ref(), &train_x, &data.train.y, 256)?;
    let (test_loss, test_acc) = evaluate(net.as_ref(), &test_x, &data.test.y, 256)?;
    let trained = Trained {
        name: name.to_string(),
        arch: arch.name(),
        train: cfg.clone(),
        train_loss,
        train_acc,
        test_loss,
        test_acc,
        weight_norm: ParamSet::from_varstore(&vs)?.norm(),
    };
    tracing::info!(?trained, "trained");
    Ok((
        trained,
        Model {
            vs,
            net,
            train_x,
            test_x,
        },
    ))
}

/// Half-width of the sub-level set {L < L(c) + ε} around index `c` of a
/// 1-D curve with coordinates `xs` (see [`width_1d`]; reaching the end counts
/// as the end).
pub fn flat_width(xs: &[f64], loss: &[f64], c: usize, eps: f64) -> f64 {
    0.5 * width_1d(xs, loss, c, loss[c] + eps).0
}

/// Sharpness figures of a 1-D slice around its centre, train split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    /// Run or model name.
    pub name: String,
    /// Seed of the direction.
    pub seed: u64,
    /// Normalization of the direction.
    pub normalization: String,
    /// Train loss at the centre.
    pub centre_loss: f64,
    /// Half-width of {L < L* + ε}, ε = 0.1.
    pub width: f64,
    /// Second-difference curvature of the train loss at the centre.
    pub curvature: f64,
}

fn slice(
    model: &Model,
    data: &Data,
    name: &str,
    norm: Normalization,
    seed: u64,
    points: usize,
    out: &Path,
) -> Result<(Slice, SurfaceResult)> {
    let dirs = Directions::random_line(
        &ParamSet::from_varstore(&model.vs)?,
        seed,
        norm,
        Ignore::BiasAndBn,
    )?
    .with_description(format!("final {name}"));
    let mut eval = model.evaluator(data)?;
    let r = Surface::builder(&dirs)
        .line(-1.0..=1.0, points)
        .build()?
        .evaluate(&model.vs, &mut eval, out)?;
    let s = train_sharpness(&r)?;
    Ok((
        Slice {
            name: name.to_string(),
            seed,
            normalization: format!("{norm:?}").to_lowercase(),
            centre_loss: s.centre_loss,
            width: 0.5 * s.width.unwrap_or(f64::NAN),
            curvature: s.curvature_x.unwrap_or(f64::NAN),
        },
        r,
    ))
}

/// The surface's own sharpness figures (ε = 0.1) of the train split.
fn train_sharpness(r: &SurfaceResult) -> Result<&Sharpness> {
    r.sharpness
        .iter()
        .find(|s| s.split == "train")
        .ok_or_else(|| Error::invalid("surface", "no sharpness for the train split"))
}

fn plane(model: &Model, data: &Data, seed: u64, n: usize, out: &Path) -> Result<SurfaceResult> {
    let dirs = Directions::random_plane(
        &ParamSet::from_varstore(&model.vs)?,
        seed,
        Normalization::Filter,
        Ignore::BiasAndBn,
    )?;
    let mut eval = model.evaluator(data)?;
    let surface = Surface::builder(&dirs)
        .grid(-1.0..=1.0, n, -1.0..=1.0, n)
        .build()?;
    surface.evaluate(&model.vs, &mut eval, out)
}

fn write_summary<T: Serialize>(out: &Path, value: &T) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    let path = out.join("summary.json");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, bytes).map_err(|e| Error::io("writing", &path, e))
}

fn reports(out: &Path, runs: &[PathBuf]) -> Result<PathBuf> {
    for r in runs {
        write_report(r, &ReportOptions::default())?;
    }
    crate::report::compare::write_comparison(runs, &out.join("compare"), &ReportOptions::default())
}

/// Sizes of an experiment: `full` for the examples, `smoke` for the tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scale {
    /// Training epochs.
    pub epochs: u64,
    /// Points of 1-D slices and interpolations.
    pub points_1d: usize,
    /// Points per axis of 2-D surfaces.
    pub points_2d: usize,
    /// Training samples of MNIST (experiments 1, 5, 6).
    pub mnist_train: usize,
    /// Test samples of MNIST.
    pub mnist_test: usize,
    /// Direction seeds for experiment 6.
    pub seeds: usize,
}

impl Scale {
    /// The examples' size (minutes on 2 cores).
    pub fn full() -> Scale {
        Scale {
            epochs: 40,
            points_1d: 41,
            points_2d: 21,
            mnist_train: 4000,
            mnist_test: 1000,
            seeds: 5,
        }
    }

    /// The tests' size (seconds).
    pub fn smoke() -> Scale {
        Scale {
            // 3 epochs: the trajectory PCA needs two non-zero differences.
            epochs: 3,
            points_1d: 5,
            points_2d: 3,
            mnist_train: 300,
            mnist_test: 100,
            seeds: 2,
        }
    }
}

// ---------------------------------------------------------------------------
// Experiment 1 (§5) and 5 (§7), 6: small vs large batch, with/without weight decay.

/// One row of experiment 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRow {
    /// The run.
    pub run: Trained,
    /// Un-normalized random direction (seed 1): 1-D sharpness.
    pub raw: Slice,
    /// Filter-normalized random direction (seed 1): 1-D sharpness.
    pub filter: Slice,
    /// PC1 + PC2 explained variance of the trajectory (experiment 5).
    pub pca_explained_2: f64,
    /// Filter-normalized widths over the seeds (experiment 6).
    pub seed_widths: Vec<f64>,
}

/// Experiment 1 for one weight decay: the interpolation between the
/// small-batch (α = 0) and large-batch (α = 1) minimizers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interpolation {
    /// Weight decay of both runs.
    pub weight_decay: f64,
    /// Half-width of {L < L + 0.1} around the small-batch minimizer (α units).
    pub width_small_batch: f64,
    /// The same around the large-batch minimizer.
    pub width_large_batch: f64,
    /// Second-difference curvature of the train loss at α = 0 (α units).
    pub curvature_small_batch: f64,
    /// The same at α = 1.
    pub curvature_large_batch: f64,
    /// Largest train loss between the two minimizers (0 ≤ α ≤ 1): the barrier.
    pub max_between: f64,
}

/// Results of experiments 1, 5 and 6.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    /// Sizes used.
    pub scale: Scale,
    /// Small and large batch sizes.
    pub batches: (i64, i64),
    /// One row per run (SB/LB × weight decay 0 / 5e-4).
    pub rows: Vec<BatchRow>,
    /// The interpolations, per weight decay.
    pub interpolations: Vec<Interpolation>,
}

/// Experiments 1 (§5), 5 (§7) and 6: an MLP 784-100-100-10 on MNIST with
/// small (64, lr 0.05) and large (an eighth of the split, lr 0.2) batches, weight decay 0
/// and 5e-4, a learning-rate drop at 2/3 of the epochs. Per run: 1-D slices
/// along an un-normalized and a filter-normalized direction, a 2-D
/// filter-normalized surface, the trajectory PCA and its plane, filter-
/// normalized widths over `scale.seeds` direction seeds; per weight decay
/// the 1-D interpolation from the small-batch to the large-batch minimizer.
pub fn batch_size(out: &Path, scale: &Scale) -> Result<BatchSummary> {
    let data = Data::mnist(scale.mnist_train, scale.mnist_test)?;
    let arch = Arch::Mlp(vec![784, 100, 100, 10]);
    // Large batch: an eighth of the data (500 of 4,000), so it still takes
    // 8 steps an epoch; small batch: 64 (the paper: 128 vs 8192 of 50,000).
    let (sb, lb) = (64, (scale.mnist_train as i64 / 8).max(2));
    let drop = scale.epochs * 2 / 3;
    let mut rows = Vec::new();
    let mut interpolations = Vec::new();
    let mut run_dirs = Vec::new();
    for wd in [0.0, 5e-4] {
        let mut finals = Vec::new();
        for (label, batch, lr) in [("small", sb, 0.05), ("large", lb, 0.2)] {
            let name = format!("{label}-batch-wd{wd}");
            let run_dir = out.join(&name);
            let cfg = TrainConfig {
                seed: 0,
                epochs: scale.epochs,
                batch,
                lr,
                momentum: 0.9,
                weight_decay: wd,
                lr_drops: vec![drop.max(1)],
            };
            let (trained, model) = train(&run_dir, &name, &arch, &data, &cfg)?;
            let sdir = run_dir.join(SURFACES_DIR);
            let (raw, _) = slice(
                &model,
                &data,
                &name,
                Normalization::None,
                1,
                scale.points_1d,
                &sdir.join("raw-1d"),
            )?;
            let (filter, _) = slice(
                &model,
                &data,
                &name,
                Normalization::Filter,
                1,
                scale.points_1d,
                &sdir.join("filter-1d"),
            )?;
            plane(&model, &data, 1, scale.points_2d, &sdir.join("filter-2d"))?;
            let mut seed_widths = Vec::new();
            for seed in 1..=scale.seeds as u64 {
                let (s, _) = slice(
                    &model,
                    &data,
                    &name,
                    Normalization::Filter,
                    seed,
                    scale.points_1d,
                    &out.join("seeds").join(format!("{name}-{seed}")),
                )?;
                seed_widths.push(s.width);
            }
            // Trajectory PCA and the loss on its plane with the path (§7).
            let run = Run::open(&run_dir)?;
            let pca = TrajectoryPca::builder().build()?.fit(&run)?;
            pca.save(&run, &run_dir.join(PCA_DIR))?;
            let ev = &pca.explained_variance_ratio;
            let pca_explained_2 = ev.iter().take(2).sum::<f64>();
            let pdirs = pca.directions(&run, false)?;
            let (xs, ys): (Vec<f64>, Vec<f64>) = pca.path.iter().map(|p| (p.x(), p.y())).unzip();
            let span = |v: &[f64]| {
                let (lo, hi) = v
                    .iter()
                    .fold((0.0f64, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
                let m = 0.15 * (hi - lo).max(1e-3);
                (lo - m)..=(hi + m)
            };
            let mut eval = model.evaluator(&data)?;
            Surface::builder(&pdirs)
                .grid(span(&xs), scale.points_2d, span(&ys), scale.points_2d)
                .with_sharpness(false)
                .build()?
                .evaluate(&model.vs, &mut eval, sdir.join("pca-plane"))?;
            finals.push(ParamSet::from_varstore(&model.vs)?);
            rows.push(BatchRow {
                run: trained,
                raw,
                filter,
                pca_explained_2,
                seed_widths,
            });
            run_dirs.push(run_dir);
        }
        // Interpolation from the small-batch (α = 0) to the large-batch (α = 1) minimizer.
        let dirs = Directions::interpolation(&finals[0], &finals[1])?
            .with_description(format!("small batch → large batch, wd {wd}"));
        let tmp_vs = VarStore::new(Device::Cpu);
        let net = arch.build(&tmp_vs, &data);
        let model = Model {
            vs: tmp_vs,
            net,
            train_x: data.inputs(&arch, &data.train.x),
            test_x: data.inputs(&arch, &data.test.x),
        };
        // α = 0 and α = 1 fall on grid points.
        let n = 2 * (scale.points_1d - 1) + 1;
        let mut eval = model.evaluator(&data)?;
        let r = Surface::builder(&dirs)
            .line(-0.5..=1.5, n)
            .build()?
            .evaluate(
                &model.vs,
                &mut eval,
                run_dirs[run_dirs.len() - 2]
                    .join(SURFACES_DIR)
                    .join("interpolation-to-large-batch"),
            )?;
        let xs = r.spec.grid.x.values();
        let loss = r.loss("train");
        let at = |a: f64| {
            xs.iter()
                .enumerate()
                .min_by(|p, q| (p.1 - a).abs().total_cmp(&(q.1 - a).abs()))
                .map_or(0, |p| p.0)
        };
        let h = r.spec.grid.x.step();
        let curv = |c: usize| (loss[c - 1] - 2.0 * loss[c] + loss[c + 1]) / (h * h);
        let (a0, a1) = (at(0.0), at(1.0));
        interpolations.push(Interpolation {
            weight_decay: wd,
            width_small_batch: flat_width(&xs, &loss, a0, 0.1),
            width_large_batch: flat_width(&xs, &loss, a1, 0.1),
            curvature_small_batch: curv(a0),
            curvature_large_batch: curv(a1),
            max_between: loss[a0..=a1].iter().copied().fold(f64::MIN, f64::max),
        });
    }
    reports(out, &run_dirs)?;
    let s = BatchSummary {
        scale: scale.clone(),
        batches: (sb, lb),
        rows,
        interpolations,
    };
    write_summary(out, &s)?;
    Ok(s)
}

// ---------------------------------------------------------------------------
// Experiment 2 (§4): scale invariance.

/// Results of experiment 2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleSummary {
    /// The trained run.
    pub run: Trained,
    /// Largest |logit difference| between the original and the rescaled net
    /// over the test split, relative to the largest |logit|.
    pub max_rel_logit_diff: f64,
    /// Un-normalized slices (same seed): original, rescaled.
    pub raw: (Slice, Slice),
    /// Filter-normalized slices (same seed): original, rescaled.
    pub filter: (Slice, Slice),
    /// Largest |difference| of the train-loss curves, un-normalized.
    pub raw_max_diff: f64,
    /// Largest |difference| of the train-loss curves, filter-normalized.
    pub filter_max_diff: f64,
}

/// Experiment 2 (§4): an MLP 64-100-100-10 trained on the digits; fc1 (weights
/// and bias) is multiplied by 10 and fc2's weights by 1/10 (its bias kept),
/// which leaves a ReLU network's function unchanged. Compares 1-D slices of
/// both along an un-normalized and a filter-normalized direction (seed 7).
pub fn scale_invariance(out: &Path, scale: &Scale) -> Result<ScaleSummary> {
    let data = Data::digits()?;
    let arch = Arch::Mlp(vec![64, 100, 100, 10]);
    let cfg = TrainConfig {
        seed: 0,
        epochs: scale.epochs,
        batch: 64,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        lr_drops: vec![],
    };
    let run_dir = out.join("original");
    let (trained, model) = train(&run_dir, "original", &arch, &data, &cfg)?;
    let vs2 = VarStore::new(Device::Cpu);
    let net2 = arch.build(&vs2, &data);
    tch::no_grad(|| -> Result<()> {
        let src = model.vs.variables();
        for (name, mut t) in vs2.variables() {
            let factor = match name.as_str() {
                "fc1.weight" | "fc1.bias" => 10.0,
                "fc2.weight" => 0.1,
                _ => 1.0,
            };
            t.f_copy_(&(&src[&name] * factor))
                .map_err(|e| Error::torch(format!("rescaling {name}"), e))?;
        }
        Ok(())
    })?;
    let rescaled = Model {
        vs: vs2,
        net: net2,
        train_x: model.train_x.shallow_clone(),
        test_x: model.test_x.shallow_clone(),
    };
    let max_rel_logit_diff = tch::no_grad(|| {
        let a = model.net.forward_t(&model.test_x, false);
        let b = rescaled.net.forward_t(&rescaled.test_x, false);
        (a.shallow_clone() - b).abs().max().double_value(&[]) / a.abs().max().double_value(&[])
    });
    let n = 2 * scale.points_1d + 1;
    let s = out.join("slices");
    let pair = |norm: Normalization, tag: &str| -> Result<(Slice, Slice, f64)> {
        let (a, ra) = slice(
            &model,
            &data,
            "original",
            norm,
            7,
            n,
            &s.join(format!("original-{tag}")),
        )?;
        let (b, rb) = slice(
            &rescaled,
            &data,
            "rescaled",
            norm,
            7,
            n,
            &s.join(format!("rescaled-{tag}")),
        )?;
        let d = ra
            .loss("train")
            .iter()
            .zip(rb.loss("train"))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        Ok((a, b, d))
    };
    let (ra, rb, raw_max_diff) = pair(Normalization::None, "raw")?;
    let (fa, fb, filter_max_diff) = pair(Normalization::Filter, "filter")?;
    write_report(&run_dir, &ReportOptions::default())?;
    let summary = ScaleSummary {
        run: trained,
        max_rel_logit_diff,
        raw: (ra, rb),
        filter: (fa, fb),
        raw_max_diff,
        filter_max_diff,
    };
    write_summary(out, &summary)?;
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Experiments 3 and 4 (§6): depth, skip connections, width.

/// One network of experiments 3 and 4.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchRow {
    /// The run.
    pub run: Trained,
    /// Filter-normalized 2-D sharpness (train split): curvature x, y and
    /// the area of {L < L* + 0.1} in the [-1, 1]² plane (4 = the whole grid).
    pub curvature: (f64, f64),
    /// Area of the sub-level set.
    pub area: f64,
    /// Largest loss increase over the grid.
    pub max_increase: f64,
    /// Mean |λmin/λmax| over the curvature map (deepest pair only).
    pub mean_abs_ratio: Option<f64>,
}

/// Results of experiments 3 or 4.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchSummary {
    /// Sizes used.
    pub scale: Scale,
    /// One row per network.
    pub rows: Vec<ArchRow>,
}

fn arch_runs(
    out: &Path,
    scale: &Scale,
    archs: &[Arch],
    curvature_for: &[usize],
) -> Result<ArchSummary> {
    let data = Data::digits()?;
    let mut rows = Vec::new();
    let mut dirs = Vec::new();
    for (k, arch) in archs.iter().enumerate() {
        let name = arch.name();
        let run_dir = out.join(&name);
        let cfg = TrainConfig {
            seed: 0,
            epochs: scale.epochs,
            batch: 64,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            lr_drops: vec![(scale.epochs * 2 / 3).max(1)],
        };
        let (trained, model) = train(&run_dir, &name, arch, &data, &cfg)?;
        let r = plane(
            &model,
            &data,
            1,
            scale.points_2d,
            &run_dir.join(SURFACES_DIR).join("filter-2d"),
        )?;
        let s = train_sharpness(&r)?;
        let mean_abs_ratio = if curvature_for.contains(&k) {
            let dirs2 = Directions::random_plane(
                &ParamSet::from_varstore(&model.vs)?,
                1,
                Normalization::Filter,
                Ignore::BiasAndBn,
            )?;
            let sub = 256.min(data.train.len() as i64);
            let objective = SupervisedObjective::new(
                model.net.as_ref(),
                &model.train_x.narrow(0, 0, sub),
                &data.train.y.narrow(0, 0, sub),
            )?;
            let m = Curvature::new(&dirs2)
                .grid(-1.0..=1.0, 3, -1.0..=1.0, 3)
                .lanczos(LanczosOptions {
                    tol: 1e-2,
                    ..Default::default()
                })
                .evaluate(
                    &model.vs,
                    objective,
                    run_dir.join(CURVATURE_DIR).join("filter-2d"),
                )?;
            let v = m.abs_ratio();
            Some(v.iter().sum::<f64>() / v.len() as f64)
        } else {
            None
        };
        rows.push(ArchRow {
            run: trained,
            curvature: (
                s.curvature_x.unwrap_or(f64::NAN),
                s.curvature_y.unwrap_or(f64::NAN),
            ),
            area: s.area.unwrap_or(f64::NAN),
            max_increase: s.max_increase,
            mean_abs_ratio,
        });
        dirs.push(run_dir);
    }
    reports(out, &dirs)?;
    let s = ArchSummary {
        scale: scale.clone(),
        rows,
    };
    write_summary(out, &s)?;
    Ok(s)
}

/// Experiment 3 (§6): conv ResNets of depth 8, 14 and 20 (or others) on the digits
/// (1 × 8 × 8), with and without skip connections; filter-normalized 2-D
/// surfaces around each minimizer, and |λmin/λmax| maps (3 × 3, 256
/// samples) for the deepest pair. `blocks`: blocks per stage of each depth
/// (depth 6n + 2; `[1, 2, 3]` for 8, 14, 20).
pub fn depth(out: &Path, scale: &Scale, blocks: &[usize]) -> Result<ArchSummary> {
    if blocks.is_empty() || blocks.contains(&0) {
        return Err(Error::invalid("blocks", "expected one or more counts ≥ 1"));
    }
    let mut archs = Vec::new();
    for &n in blocks {
        for skip in [true, false] {
            archs.push(Arch::ResNet { n, width: 1, skip });
        }
    }
    let deepest = [archs.len() - 2, archs.len() - 1];
    arch_runs(out, scale, &archs, &deepest)
}

/// Experiment 4 (§6): the depth-8 ResNet at width ×1, ×2, ×4 (with skip
/// connections), as experiment 3.
pub fn width(out: &Path, scale: &Scale, widths: &[i64]) -> Result<ArchSummary> {
    let archs: Vec<Arch> = widths
        .iter()
        .map(|&width| Arch::ResNet {
            n: 1,
            width,
            skip: true,
        })
        .collect();
    arch_runs(out, scale, &archs, &[])
}

/// Prints experiments 3/4 as a Markdown table.
pub fn print_arch_table(s: &ArchSummary) {
    println!("| network | test error % | train loss | curvature x / y | area(L < L*+0.1) of 4 | max ΔL | mean abs(λmin/λmax) |");
    println!("|---|---|---|---|---|---|---|");
    for r in &s.rows {
        println!(
            "| {} | {:.2} | {:.4} | {:.2} / {:.2} | {:.3} | {:.2} | {} |",
            r.run.arch,
            r.run.test_error(),
            r.run.train_loss,
            r.curvature.0,
            r.curvature.1,
            r.area,
            r.max_increase,
            r.mean_abs_ratio.map_or("–".into(), |v| format!("{v:.3}"))
        );
    }
}

/// Median and (min, max) of `v`.
pub fn median_spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        0.5 * (s[s.len() / 2 - 1] + s[s.len() / 2])
    };
    (m, s[0], s[s.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_width_interpolates_the_crossing() {
        let xs: Vec<f64> = (0..5).map(|i| i as f64 - 2.0).collect();
        let loss = [1.0, 0.2, 0.0, 0.05, 1.0];
        // Left: crosses 0.1 between x=-1 (0.2) and x=0 (0.0) at x=-0.5.
        // Right: between x=1 (0.05) and x=2 (1.0) at 1 + 0.05/0.95.
        let w = flat_width(&xs, &loss, 2, 0.1);
        assert!((w - 0.5 * (0.5 + 1.0 + 0.05 / 0.95)).abs() < 1e-12, "{w}");
        assert_eq!(median_spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
    }
}
