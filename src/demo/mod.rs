//! The demo: trains benchmark W1's MLP on the real digits data with the
//! recording hook attached, exports the run to Parquet, computes its
//! landscape (surfaces, trajectory PCA, a curvature map) and writes the
//! report. The training helpers ([`TrainConfig`], [`train_digits`],
//! [`evaluate`]) are shared with the experiments, the tests and the
//! benchmarks.

pub(crate) mod analyses;
mod train;

pub use train::{evaluate, train_digits, TrainConfig, DIGITS_MLP_MODEL};
// The experiments train their runs with the demo's loop.
#[cfg(feature = "experiments")]
pub(crate) use train::{train_recorded, TrainJob};

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Device;

use crate::analysis::directions::Directions;
use crate::analysis::evaluator::ClassifierEvaluator;
use crate::analysis::hessian::SupervisedObjective;
use crate::analysis::params::ParamSet;
use crate::analysis::surface::{Surface, SurfaceBuilder};
use crate::data::digits::Digits;
use crate::error::{Error, Result};
use crate::models::{Mlp, W1_SIZES};
use crate::report::run_report::{
    write_report, ReportOptions, CURVATURE_DIR, PCA_DIR, SURFACES_DIR,
};
use crate::store::export::{export_parquet, ExportSummary, DEFAULT_CHUNK};
use crate::store::fsutil::{create_dir_in, DirLock};
use crate::store::manifest::Manifest;
use crate::store::run::Run;

use analyses::{pca_plane, RatioMap, PCA_PLANE};

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
    /// Replace a run already recorded in the output directory (refused
    /// otherwise).
    pub overwrite: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            train: TrainConfig::default(),
            grid_2d: 25,
            grid_1d: 101,
            grid_curvature: 5,
            overwrite: false,
        }
    }
}

/// Training samples of the demo (the remaining 360 digits are held out).
const TRAIN_SAMPLES: usize = 1437;

/// Runs the demo into `out` (the run goes to `out/mlp-digits`): trains with
/// the hook on 1437 digits (360 held out), exports Parquet, computes the
/// interpolation from the first to the last snapshot, 1-D and 2-D
/// filter-normalized slices around the final model (train and test), the
/// trajectory PCA with the loss on the PCA plane, a small |λmin/λmax| map,
/// and writes the report. `progress(stage, done, total)` is called as points finish.
///
/// `out` is locked for the whole demo (a second demo into it is refused
/// with the first one's pid), and a run recorded there before is replaced
/// only when `cfg.overwrite` is set ([`Error::AlreadyExists`] otherwise).
pub fn run(
    out: &Path,
    cfg: &DemoConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<DemoSummary> {
    let _lock = DirLock::create(out)?;
    let run_dir = out.join("mlp-digits");
    create_dir_in(out, &run_dir)?;
    if Manifest::path_in(&run_dir).exists() && !cfg.overwrite {
        return Err(Error::AlreadyExists { path: run_dir });
    }
    let (train, test) = Digits::load()?.split_at(TRAIN_SAMPLES)?;
    clear_analyses(&run_dir)?;
    let (final_loss, final_accuracy) = train_digits(&run_dir, &train, &cfg.train)?;
    let run = Run::open(&run_dir)?;
    let export = export_parquet(&run, &run_dir.join("export"), DEFAULT_CHUNK)?;
    let surfaces = landscape(&run, [&train, &test], cfg, progress)?;
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

/// Removes the analyses of an earlier demo in `run_dir`: a fresh run gets
/// fresh analyses (their centre changes).
fn clear_analyses(run_dir: &Path) -> Result<()> {
    for sub in [SURFACES_DIR, PCA_DIR, CURVATURE_DIR] {
        let dir = run_dir.join(sub);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("removing", &dir, e))?;
        }
    }
    Ok(())
}

/// The demo's analyses of the final model of `run` on the train and test
/// splits `data`; returns the surfaces with their directories.
fn landscape(
    run: &Run,
    data: [&Digits; 2],
    cfg: &DemoConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<(String, PathBuf)>> {
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    let last = run
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::NoSuchSnapshot {
            path: run.dir().to_path_buf(),
            index: 0,
            count: 0,
        })?;
    run.load_into(last, &vs)?;
    let [train, test] = data;
    let eval = ClassifierEvaluator::new(&model)
        .split("train", &train.x, &train.y)?
        .split("test", &test.x, &test.y)?;
    let mut stages = Stages {
        vs: &vs,
        eval,
        dir: run.dir().join(SURFACES_DIR),
        progress,
        done: Vec::new(),
    };
    let (first_set, last_set) = (ParamSet::from_run(run, 0)?, ParamSet::from_run(run, last)?);
    let run_id = run.manifest().run_id.clone();
    let interp = Directions::interpolation(&first_set, &last_set)?
        .with_description(format!("snapshot 0 → snapshot {last}"))
        .with_reference(
            [1.0, 0.0],
            format!("the trained model (snapshot {last}), α = 1"),
        )
        .with_run_id(&run_id);
    let theta_star = format!("θ* = the trained model (snapshot {last})");
    stages.surface(
        "interpolation",
        Surface::builder(&interp).line(-0.5..=1.5, cfg.grid_1d),
    )?;
    let about = format!("final snapshot {last}");
    let line = Directions::random(&last_set)
        .dims(1)
        .seed(123)
        .build()?
        .with_description(about.clone())
        .with_reference([0.0, 0.0], &theta_star)
        .with_run_id(&run_id);
    stages.surface(
        "filter-1d",
        Surface::builder(&line).line(-1.0..=1.0, cfg.grid_1d),
    )?;
    let plane = Directions::random(&last_set)
        .seed(123)
        .build()?
        .with_description(about)
        .with_reference([0.0, 0.0], &theta_star)
        .with_run_id(&run_id);
    let (n, r) = (cfg.grid_2d, -1.0..=1.0);
    stages.surface(
        "filter-2d",
        Surface::builder(&plane).grid(r.clone(), n, r, n),
    )?;
    stages.pca_plane(run, cfg.grid_2d)?;
    // A small |λmin/λmax| map around the final model (Fig. 7), train split.
    let objective = SupervisedObjective::new(&model, &train.x, &train.y)?.batch(512)?;
    let map = RatioMap {
        dirs: &plane,
        half: 0.5,
        points: cfg.grid_curvature,
    };
    let progress = &mut *stages.progress;
    map.evaluate(&vs, objective, run.dir(), &mut |d, t| {
        progress("curvature", d, t)
    })?;
    Ok(stages.done)
}

/// Computes the demo's surfaces of one model into one directory, reporting
/// progress by surface name.
struct Stages<'a, 'p> {
    vs: &'a VarStore,
    eval: ClassifierEvaluator<'a>,
    /// `RUN/surfaces`.
    dir: PathBuf,
    progress: &'p mut dyn FnMut(&str, usize, usize),
    /// The surfaces computed so far, with their directories.
    done: Vec<(String, PathBuf)>,
}

impl Stages<'_, '_> {
    /// Computes `surface` into `RUN/surfaces/NAME`.
    fn surface(&mut self, name: &str, surface: SurfaceBuilder<'_>) -> Result<()> {
        let (out, progress) = (self.dir.join(name), &mut *self.progress);
        surface
            .on_progress(|d, t| progress(name, d, t))
            .build()?
            .evaluate(self.vs, &mut self.eval, &out)?;
        self.done.push((name.to_string(), out));
        Ok(())
    }

    /// The trajectory PCA and the loss on its plane with the path (Fig. 9).
    fn pca_plane(&mut self, run: &Run, points: usize) -> Result<()> {
        let progress = &mut *self.progress;
        pca_plane(run, self.vs, &mut self.eval, points, &mut |d, t| {
            progress(PCA_PLANE, d, t)
        })?;
        self.done
            .push((PCA_PLANE.to_string(), self.dir.join(PCA_PLANE)));
        Ok(())
    }
}
