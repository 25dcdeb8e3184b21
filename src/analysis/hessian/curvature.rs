//! Curvature maps: λmin, λmax and |λmin/λmax| of the Hessian at every point
//! θ* + αδ + βη of a loss surface's grid (Figure 7), computed by a
//! configured [`Surface`] with a Lanczos run per point, so they resume,
//! restore the model, shard and run in parallel as surfaces do.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;

use super::curvature_map::{CurvatureMap, CurvatureSpec};
use super::lanczos::Lanczos;
use super::objective::Objective;
use super::operator::Hessian;
use super::params::check_selection;
use crate::analysis::evaluator::{Evaluator, SplitResult};
use crate::analysis::shard::covers;
use crate::analysis::surface::{Surface, SurfaceResult};
use crate::error::{Error, Result};
use crate::store::curvature::{self as store, CurvatureValues, ShardState};
use crate::store::fsutil::DirLock;
use crate::tensor::Selection;

/// An [`Evaluator`] whose "evaluation" is a Lanczos run at the model's
/// current parameters: it lets [`Surface`] lay curvature over a grid, with
/// its resuming, restoring, parallel replicas and shards. Its rows are the
/// surface rows of [`crate::store::curvature`] (one per quantity).
#[derive(Debug)]
pub(crate) struct CurvatureEvaluator<O> {
    hessian: Hessian<O>,
    lanczos: Lanczos,
}

impl<O: Objective> CurvatureEvaluator<O> {
    /// An evaluator of the Hessian of `objective` with respect to the
    /// variables of `vs` chosen by `selection`, with the Lanczos settings.
    pub(crate) fn new(
        vs: &VarStore,
        objective: O,
        selection: &Selection,
        lanczos: Lanczos,
    ) -> Result<Self> {
        let hessian = Hessian::at(vs, objective, selection)?;
        lanczos.check_dim(hessian.dim())?;
        Ok(CurvatureEvaluator { hessian, lanczos })
    }

    /// The curvature at the model's current parameters.
    pub(crate) fn compute(&mut self) -> Result<CurvatureValues> {
        // The surface code sets points under no_grad; HVPs need autograd.
        let t0 = std::time::Instant::now();
        let s = tch::with_grad(|| self.hessian.eigenvalues(&self.lanczos))?;
        Ok(CurvatureValues::from(&s).timed(t0.elapsed().as_secs_f64()))
    }
}

impl<O: Objective> Evaluator for CurvatureEvaluator<O> {
    fn evaluate(&mut self) -> Result<Vec<SplitResult>> {
        self.compute().map(|v| store::to_rows(&v))
    }

    fn describe(&self) -> String {
        format!(
            "Hessian curvature ({}) of {}",
            self.lanczos,
            self.hessian.describe()
        )
    }
}

/// A configured curvature map: λmin, λmax and |λmin/λmax| of the Hessian at
/// every point of a [`Surface`]'s grid (Figure 7).
///
/// ```no_run
/// # use tch_landscape::analysis::{directions::*, hessian::*, params::ParamSet, surface::Surface};
/// # use tch_landscape::tensor::Selection;
/// # fn main() -> tch_landscape::Result<()> {
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
/// # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
/// let dirs = Directions::random(&ParamSet::from_varstore(&vs)?).seed(123).build()?;
/// let objective = SupervisedObjective::new(&model, &x, &y)?;
/// let surface = Surface::builder(&dirs).grid(-0.5..=0.5, 7, -0.5..=0.5, 7).build()?;
/// let map = Curvature::builder(surface)
///     .selection(Selection::Weights)
///     .lanczos(Lanczos::builder().tol(1e-2).build()?)
///     .build()?
///     .evaluate(&vs, objective, "runs/mlp/curvature")?; // resumable
/// println!("{:?}", map.abs_ratio());
/// # Ok(()) }
/// ```
///
/// The surface brings the grid, shard, flushing and progress settings; its
/// sharpness figures are turned off (the values are not losses). The
/// directory is a surface directory (`surface.json`, `directions.parquet`,
/// `points/`, `surface.parquet` with one row per point and quantity) plus
/// `curvature.parquet` ([`crate::store::curvature`]). A killed computation
/// resumes where it stopped; the model's variables are restored bit-exactly
/// afterwards.
#[derive(Debug)]
pub struct Curvature<'a> {
    surface: Surface<'a>,
    selection: Selection,
    lanczos: Lanczos,
}

/// Builder of [`Curvature`].
#[derive(Debug)]
#[must_use]
pub struct CurvatureBuilder<'a> {
    surface: Surface<'a>,
    selection: Selection,
    lanczos: Lanczos,
}

impl<'a> CurvatureBuilder<'a> {
    /// The parameters the Hessian is taken with respect to (default
    /// [`Selection::Weights`], the reference's choice).
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Lanczos settings (default [`Lanczos::default`]).
    pub fn lanczos(mut self, lanczos: Lanczos) -> Self {
        self.lanczos = lanczos;
        self
    }

    /// Checks the selection (a name list must be non-empty, without
    /// repeats; the tensors are checked against the model when it runs).
    pub fn build(self) -> Result<Curvature<'a>> {
        check_selection(&self.selection)?;
        Ok(Curvature {
            surface: self.surface.without_sharpness(),
            selection: self.selection,
            lanczos: self.lanczos,
        })
    }
}

impl<'a> Curvature<'a> {
    /// A curvature map over the grid (and shard, progress, flushing) of
    /// `surface`.
    pub fn builder(surface: Surface<'a>) -> CurvatureBuilder<'a> {
        CurvatureBuilder {
            surface,
            selection: Selection::default(),
            lanczos: Lanczos::default(),
        }
    }

    /// The parameter selection.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The Lanczos settings.
    pub fn lanczos(&self) -> &Lanczos {
        &self.lanczos
    }

    /// Computes the map with one model: sets each point into the variables of
    /// `vs`, runs Lanczos on the Hessian of `objective` (which must compute
    /// its loss from those variables), writes into `out`. Resumes from what
    /// `out` already holds.
    pub fn evaluate<O: Objective>(
        self,
        vs: &VarStore,
        objective: O,
        out: impl AsRef<Path>,
    ) -> Result<CurvatureMap> {
        let out = out.as_ref();
        let _span = tracing::info_span!("curvature_map", out = %out.display()).entered();
        let mut eval =
            CurvatureEvaluator::new(vs, objective, &self.selection, self.lanczos.clone())?;
        let result = self.surface.evaluate(vs, &mut eval, out)?;
        finish_map(result, self.selection, self.lanczos)
    }

    /// Computes the map where `runner` evaluates surfaces (every rank of an
    /// MPI job: `Mpi::evaluate_curvature`); `None` on processes that do not
    /// write the result.
    #[cfg(feature = "mpi")]
    pub(crate) fn evaluate_on<O: Objective>(
        self,
        runner: &dyn crate::analysis::surface::Runner,
        vs: &VarStore,
        objective: O,
        out: &Path,
    ) -> Result<Option<CurvatureMap>> {
        let _span = tracing::info_span!("curvature_map", out = %out.display()).entered();
        let mut eval =
            CurvatureEvaluator::new(vs, objective, &self.selection, self.lanczos.clone())?;
        match runner.evaluate(&self.surface, vs, &mut eval, out)? {
            Some(result) => finish_map(result, self.selection, self.lanczos).map(Some),
            None => Ok(None),
        }
    }

    /// Computes the map with `replicas` copies of the model, each on its own
    /// thread (see [`Surface::evaluate_parallel`]). `factory` builds one
    /// replica — its VarStore and an objective computing its loss from it —
    /// on the thread that uses it. Set `tch::set_num_threads` to cores /
    /// replicas.
    pub fn evaluate_parallel<F>(
        self,
        replicas: usize,
        factory: F,
        out: impl AsRef<Path>,
    ) -> Result<CurvatureMap>
    where
        F: Fn() -> Result<(VarStore, Box<dyn Objective>)> + Sync,
    {
        let out = out.as_ref();
        let _span = tracing::info_span!("curvature_map", out = %out.display(), replicas).entered();
        let (selection, lanczos) = (&self.selection, &self.lanczos);
        let make = || -> Result<(VarStore, Box<dyn Evaluator>)> {
            let (vs, objective) = factory()?;
            let eval = CurvatureEvaluator::new(&vs, objective, selection, lanczos.clone())?;
            Ok((vs, Box::new(eval) as Box<dyn Evaluator>))
        };
        let result = self.surface.evaluate_parallel(replicas, make, out)?;
        finish_map(result, self.selection, self.lanczos)
    }
}

/// Combines curvature-map shards (computed with a sharded [`Surface`]) into
/// `out`, which then holds what one process computing the whole map writes.
/// Refuses shards of different maps (directions, grid, Hessian settings,
/// parameters, objective), missing or repeated shards, unfinished ones (as
/// [`merge_shards`](crate::analysis::surface::merge_shards) does) and
/// surface shards that are not curvature maps.
pub fn merge_curvature_shards(
    shards: &[impl AsRef<Path>],
    out: impl AsRef<Path>,
) -> Result<CurvatureMap> {
    let mut first: Option<(PathBuf, CurvatureSpec)> = None;
    for dir in shards {
        let dir = dir.as_ref();
        let spec = match store::shard_state::<CurvatureSpec>(dir)? {
            ShardState::Finished(spec) => *spec,
            // merge_shards says so, with its progress.
            ShardState::Unfinished => continue,
            ShardState::NotCurvature => {
                return Err(Error::ShardMismatch {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "is a finished surface without {}: not a curvature map (merge surfaces with merge_shards)",
                        store::CURVATURE_FILE
                    ),
                })
            }
        };
        match &first {
            None => first = Some((dir.to_path_buf(), spec)),
            Some((fdir, f)) => check_same_map(fdir, f, dir, &spec)?,
        }
    }
    let out = out.as_ref();
    let result = crate::analysis::surface::merge_shards(shards, out)?;
    let (_, spec) = first.ok_or_else(|| Error::ShardMismatch {
        path: out.to_path_buf(),
        reason: format!(
            "none of the shards holds {}: they are not curvature maps",
            store::CURVATURE_FILE
        ),
    })?;
    finish_map(result, spec.params, spec.lanczos)
}

/// Refuses two shards of different curvature maps.
fn check_same_map(
    first_dir: &Path,
    first: &CurvatureSpec,
    dir: &Path,
    spec: &CurvatureSpec,
) -> Result<()> {
    if first.lanczos == spec.lanczos && first.params == spec.params {
        return Ok(());
    }
    Err(Error::ShardMismatch {
        path: dir.to_path_buf(),
        reason: format!(
            "{} and {} are shards of different curvature maps: {} / parameters {} vs {} / {}",
            first_dir.display(),
            dir.display(),
            first.lanczos,
            first.params,
            spec.lanczos,
            spec.params
        ),
    })
}

/// Turns the surface rows into curvature points and, when the grid (or
/// shard) is complete, has the store write `curvature.parquet`.
fn finish_map(result: SurfaceResult, params: Selection, lanczos: Lanczos) -> Result<CurvatureMap> {
    let spec = CurvatureSpec {
        format: store::FORMAT.into(),
        schema_version: store::SCHEMA_VERSION,
        directions: result.spec.directions.clone(),
        grid: result.spec.grid,
        lanczos,
        params,
        evaluator: result.spec.evaluator.clone(),
        shard: result.spec.shard,
        created_utc: result.spec.created_utc.clone(),
    };
    let points = store::points_of(&result.dir, &result.points)?;
    let have: HashSet<usize> = points.iter().map(|p| p.index).collect();
    let complete = (0..spec.grid.len())
        .filter(|&i| covers(spec.shard, i))
        .all(|i| have.contains(&i));
    if complete {
        // The surface engine released the directory; hold it again while
        // the map is written.
        let _lock = DirLock::acquire(&result.dir)?;
        store::write(&result.dir, &spec, &points)?;
        tracing::info!(points = points.len(), dir = %result.dir.display(), "curvature map written");
    }
    Ok(CurvatureMap {
        dir: result.dir,
        spec,
        points,
        computed: result.computed,
        seconds: result.seconds,
        complete,
    })
}
