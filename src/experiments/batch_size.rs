//! Experiments 1 (§5), 5 (§7) and 6: small vs large batch, with and without
//! weight decay; the trajectories' PCA; direction seeds.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::directions::Normalization;
use crate::analysis::params::ParamSet;
use crate::demo::analyses::pca_plane;
use crate::error::Result;
use crate::report::run_report::SURFACES_DIR;
use crate::store::run::Run;

use super::interpolation::{Interpolation, Minimizers};
use super::surfaces::{filter_plane, plane, slice, Slice, SliceSpec};
use super::train::{Arch, Data, Model, Setup, Trained};
use super::{reports, write_summary, Scale};

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
    scale.validate()?;
    let data = Data::mnist(scale.mnist_train, scale.mnist_test)?;
    let setup = Setup {
        out,
        scale,
        data: &data,
    };
    let arch = Arch::Mlp(vec![784, 100, 100, 10]);
    // Large batch: an eighth of the data (500 of 4,000), so it still takes
    // 8 steps an epoch; small batch: 64 (the paper: 128 vs 8192 of 50,000).
    let (sb, lb) = (64, (scale.mnist_train as i64 / 8).max(2));
    let mut summary = BatchSummary {
        scale: scale.clone(),
        batches: (sb, lb),
        rows: Vec::new(),
        interpolations: Vec::new(),
    };
    let mut run_dirs = Vec::new();
    for weight_decay in [0.0, 5e-4] {
        let run = |label, batch, lr| {
            let setting = Setting {
                label,
                batch,
                lr,
                weight_decay,
            };
            setting.run(&setup, &arch)
        };
        let (small, large) = (run("small", sb, 0.05)?, run("large", lb, 0.2)?);
        let ends = Minimizers {
            weight_decay,
            small_batch: &small.last,
            large_batch: &large.last,
        };
        let out = small
            .dir
            .join(SURFACES_DIR)
            .join("interpolation-to-large-batch");
        let model = Model::new(&arch, &data)?;
        summary
            .interpolations
            .push(ends.interpolate(&model, scale.points_1d, &out)?);
        for r in [small, large] {
            summary.rows.push(r.row);
            run_dirs.push(r.dir);
        }
    }
    reports(out, &run_dirs)?;
    write_summary(out, &summary)?;
    Ok(summary)
}

/// One run of the experiment.
#[derive(Debug, Clone, Copy)]
struct Setting {
    /// `small` or `large`.
    label: &'static str,
    batch: i64,
    lr: f64,
    weight_decay: f64,
}

/// A run's figures, final parameters and directory.
struct BatchRun {
    row: BatchRow,
    last: ParamSet,
    dir: PathBuf,
}

impl Setting {
    /// Trains the run and computes its analyses.
    fn run(&self, setup: &Setup<'_>, arch: &Arch) -> Result<BatchRun> {
        let name = format!("{}-batch-wd{}", self.label, self.weight_decay);
        let cfg = setup.scale.sgd(self.batch, self.lr, self.weight_decay);
        let (run, model) = setup.train(&name, arch, &cfg)?;
        let dir = setup.run_dir(&name);
        let sdir = dir.join(SURFACES_DIR);
        let spec = |norm, seed| SliceSpec {
            name: &name,
            norm,
            seed,
            points: setup.scale.points_1d,
        };
        let (raw, _) = slice(&model, &spec(Normalization::None, 1), &sdir.join("raw-1d"))?;
        let (filter, _) = slice(
            &model,
            &spec(Normalization::Filter, 1),
            &sdir.join("filter-1d"),
        )?;
        let n = setup.scale.points_2d;
        plane(
            &model,
            &filter_plane(&model, 1)?,
            n,
            &sdir.join("filter-2d"),
        )?;
        let seeds = setup.out.join("seeds");
        let seed_widths = (1..=setup.scale.seeds as u64)
            .map(|seed| {
                let out = seeds.join(format!("{name}-{seed}"));
                Ok(slice(&model, &spec(Normalization::Filter, seed), &out)?
                    .0
                    .width)
            })
            .collect::<Result<Vec<f64>>>()?;
        // Trajectory PCA and the loss on its plane with the path (§7).
        let pca = pca_plane(
            &Run::open(&dir)?,
            &model.vs,
            &mut model.evaluator()?,
            n,
            &mut |_, _| {},
        )?;
        let row = BatchRow {
            run,
            raw,
            filter,
            pca_explained_2: pca.explained_variance_ratio.iter().take(2).sum(),
            seed_widths,
        };
        Ok(BatchRun {
            row,
            last: model.params()?,
            dir,
        })
    }
}
