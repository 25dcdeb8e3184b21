//! Evaluating a built surface (or curvature map) on every rank.

use std::path::Path;

use tch::nn::VarStore;

use super::protocol::{Coordinator, CoordinatorExchange, WorkerExchange};
use super::Mpi;
use crate::analysis::evaluator::Evaluator;
use crate::analysis::hessian::{Curvature, CurvatureMap, Objective};
use crate::analysis::surface::{evaluate_points, Queue, Runner, Surface, SurfaceResult};
use crate::error::Result;

impl Mpi {
    /// Computes `surface` with every MPI rank evaluating a share: call it on
    /// every rank with the same directions, grid and evaluator (each rank's
    /// own model and data, e.g. on [`Mpi::device`]). Rank 0 writes `out`
    /// (resuming from it as [`Surface::evaluate`] does) and gets
    /// `Some(result)`; the other ranks get `None` once rank 0 is done. Every
    /// rank returns the error when any rank fails.
    ///
    /// ```no_run
    /// # use tch_landscape::analysis::{directions::*, evaluator::*, params::ParamSet, surface::Surface};
    /// # fn main() -> tch_landscape::Result<()> {
    /// let mpi = tch_landscape::distributed::Mpi::init()?;
    /// # let vs = tch::nn::VarStore::new(mpi.device());
    /// # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
    /// # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
    /// let dirs = Directions::random(&ParamSet::from_varstore(&vs)?).seed(123).build()?;
    /// let mut eval = ClassifierEvaluator::new(&model).split("train", &x, &y)?;
    /// let surface = Surface::builder(&dirs).grid(-1.0..=1.0, 51, -1.0..=1.0, 51).build()?;
    /// if let Some(result) = mpi.evaluate_surface(&surface, &vs, &mut eval, "runs/mlp/surface")? {
    ///     println!("{} points computed", result.computed); // rank 0
    /// }
    /// # Ok(()) }
    /// ```
    pub fn evaluate_surface<E: Evaluator + ?Sized>(
        &self,
        surface: &Surface<'_>,
        vs: &VarStore,
        eval: &mut E,
        out: impl AsRef<Path>,
    ) -> Result<Option<SurfaceResult>> {
        let out = out.as_ref();
        let description = eval.describe();
        let digest = format!(
            "directions {}, grid {:?}, evaluator '{description}', shard {:?}",
            surface.directions().meta.id,
            surface.grid(),
            surface.shard().map(|s| s.to_string())
        );
        self.agree(out, &digest)?;
        if self.is_writer() {
            self.coordinate(surface, vs, eval, out).map(Some)
        } else {
            self.work(surface, vs, eval).map(|()| None)
        }
    }

    /// Computes a curvature map with every MPI rank evaluating a share (see
    /// [`Mpi::evaluate_surface`]): rank 0 writes `out` and gets
    /// `Some(map)`, the other ranks `None`.
    pub fn evaluate_curvature<O: Objective>(
        &self,
        curvature: Curvature<'_>,
        vs: &VarStore,
        objective: O,
        out: impl AsRef<Path>,
    ) -> Result<Option<CurvatureMap>> {
        curvature.evaluate_on(self, vs, objective, out.as_ref())
    }

    /// A worker's share: points from rank 0 until it says stop, then rank
    /// 0's verdict.
    fn work<E: Evaluator + ?Sized>(
        &self,
        surface: &Surface<'_>,
        vs: &VarStore,
        eval: &mut E,
    ) -> Result<()> {
        let mut exchange = WorkerExchange::new(self);
        let r = evaluate_points(
            surface.directions(),
            surface.grid(),
            vs,
            eval,
            &mut exchange,
        );
        match r {
            Ok(()) => self.outcome(),
            Err(e) => {
                self.report_failure(&e);
                Err(e)
            }
        }
    }

    /// Rank 0's share: the surface engine on `out`, its points evaluated
    /// here and by the workers.
    fn coordinate<E: Evaluator + ?Sized>(
        &self,
        surface: &Surface<'_>,
        vs: &VarStore,
        eval: &mut E,
        out: &Path,
    ) -> Result<SurfaceResult> {
        let (dirs, grid) = (surface.directions(), *surface.grid());
        let mut coord = Coordinator::new(self, grid);
        let result = surface.run(out, eval.describe(), |queue, sink| {
            let mut exchange = CoordinatorExchange {
                coord: &mut coord,
                queue,
                sink: &mut *sink,
            };
            let r = evaluate_points(dirs, &grid, vs, eval, &mut exchange);
            if r.is_err() {
                queue.stop();
            }
            coord.finish(queue, sink);
            let worker_error = coord.take_error();
            r?;
            worker_error.map_or(Ok(()), Err)
        });
        // Workers not yet served (when rank 0 failed before computing) are stopped.
        coord.finish(&Queue::new(Vec::new(), None), &mut |_| Ok(()));
        coord.conclude(&result);
        result
    }
}

impl Runner for Mpi {
    fn evaluate(
        &self,
        surface: &Surface<'_>,
        vs: &VarStore,
        eval: &mut dyn Evaluator,
        out: &Path,
    ) -> Result<Option<SurfaceResult>> {
        self.evaluate_surface(surface, vs, eval, out)
    }
}
