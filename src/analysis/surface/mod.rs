//! Loss surfaces: f(α, β) = L(θ* + αδ + βη) over a grid (§3 of the paper),
//! 1-D slices and 2-D planes, resumable and streamed to disk.
//!
//! ```no_run
//! # use tch_landscape::analysis::{directions::*, evaluator::*, params::ParamSet, surface::Surface};
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
//! # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
//! let dirs = Directions::random(&ParamSet::from_varstore(&vs)?).seed(123).build()?;
//! let mut eval = ClassifierEvaluator::new(&model).split("train", &x, &y)?;
//! let surface = Surface::builder(&dirs)
//!     .grid(-1.0..=1.0, 51, -1.0..=1.0, 51)
//!     .build()?;
//! let result = surface.evaluate(&vs, &mut eval, "runs/mlp/surface-filter")?; // resumable
//! # Ok(()) }
//! ```
//!
//! A built [`Surface`] is evaluated with one model
//! ([`Surface::evaluate`]), with replicas on threads
//! ([`Surface::evaluate_parallel`]), or over MPI (`Mpi::evaluate_surface`,
//! cargo feature `mpi`); as shards for batch schedulers
//! ([`SurfaceBuilder::shard`], then [`merge_shards`]); and stopped early
//! and resumed ([`SurfaceBuilder::cancel_on`]).
//!
//! Output directory (`schemas/surface_points.json`, written by
//! [`store::surface`](crate::store::surface)):
//! - `surface.json`: the specification (directions id and settings, grid,
//!   evaluator); a resumed computation must match it;
//! - `directions.parquet`: centre and directions ([`Directions::save`](crate::analysis::directions::Directions::save));
//! - `points/NNNNNN.arrow`: finished points, flushed as they complete, each
//!   segment written atomically, so a killed computation loses at most the
//!   points of one unflushed segment and resumes where it stopped;
//! - `surface.parquet`: all points, one row per point and split, written when
//!   the grid is complete; `sharpness.json`.
//!
//! Every point is set from the stored θ* (never by accumulating steps), and
//! the model's variables are restored bit-exactly afterwards, also on error.

mod builder;
mod engine;
mod merge;
mod parallel;
mod spec;

pub use builder::{Surface, SurfaceBuilder};
// The engine's point exchange, for distributing points over processes.
#[cfg(feature = "mpi")]
pub(crate) use engine::{evaluate_points, Exchange, Queue, Sink};
pub use merge::merge_shards;
pub use spec::{SurfaceResult, SurfaceSpec, MAX_SHARPNESS_EPSILON};

// The file format's names and the record of one point, defined with the format.
pub use crate::store::surface::{
    points_schema, result_schema, PointValue, DIRECTIONS_FILE, POINTS_DIR, RESULT_FILE,
    SHARPNESS_FILE, SPEC_FILE, SURFACE_META_KEY,
};

/// Where a built surface is evaluated with one model per process: this
/// process, or every rank of an MPI job. Analyses built on surfaces (e.g.
/// curvature maps) take one, so they run wherever a surface runs without
/// depending on how.
#[cfg(feature = "mpi")]
pub(crate) trait Runner {
    /// Evaluates `surface` with the model of `vs` and `eval` into `out`;
    /// `None` on processes that do not write the result.
    fn evaluate(
        &self,
        surface: &Surface<'_>,
        vs: &tch::nn::VarStore,
        eval: &mut dyn crate::analysis::evaluator::Evaluator,
        out: &std::path::Path,
    ) -> crate::error::Result<Option<SurfaceResult>>;
}
