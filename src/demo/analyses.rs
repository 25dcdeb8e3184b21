//! Analyses of a trained model that the demo and the experiments both run,
//! written where the run's report looks for them.

use std::ops::RangeInclusive;
use std::path::Path;

use tch::nn::VarStore;

use crate::analysis::directions::Directions;
use crate::analysis::evaluator::Evaluator;
use crate::analysis::hessian::{Curvature, CurvatureMap, Lanczos, Objective};
use crate::analysis::pca::{PcaResult, TrajectoryPca};
use crate::analysis::surface::Surface;
use crate::error::Result;
use crate::report::run_report::{CURVATURE_DIR, PCA_DIR, SURFACES_DIR};
use crate::store::run::Run;

/// The name of the PCA-plane surface under `RUN/surfaces`.
pub(crate) const PCA_PLANE: &str = "pca-plane";

/// The name of the |λmin/λmax| map under `RUN/curvature`.
pub(crate) const RATIO_MAP: &str = "ratio-filter-2d";

/// Fits the trajectory PCA of `run`, saves it under `RUN/pca` and computes
/// the loss on the PCA plane with the path (Fig. 9) into
/// `RUN/surfaces/pca-plane`: `points` per axis over the path's extent (and
/// the origin) plus a 15 % margin, with the model of `vs` and `eval`.
pub(crate) fn pca_plane<E: Evaluator + ?Sized>(
    run: &Run,
    vs: &VarStore,
    eval: &mut E,
    points: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PcaResult> {
    let pca = TrajectoryPca::builder().build()?.fit(run)?;
    pca.save(run, &run.dir().join(PCA_DIR))?;
    let dirs = pca.directions(run, false)?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = pca.path.iter().map(|p| (p.x(), p.y())).unzip();
    let builder = Surface::builder(&dirs);
    let builder = if dirs.len() < 2 {
        // A trajectory of rank 1 (two snapshots, or a straight path): the
        // loss along PC1 instead of a plane.
        tracing::warn!(
            rank = pca.rank,
            "the trajectory spans one direction; the PCA surface is a line"
        );
        builder.line(span(&xs), points)
    } else {
        builder.grid(span(&xs), points, span(&ys), points)
    };
    builder
        .with_sharpness(false)
        .on_progress(progress)
        .build()?
        .evaluate(vs, eval, run.dir().join(SURFACES_DIR).join(PCA_PLANE))?;
    Ok(pca)
}

/// The range covering the origin and every value of `v`, with a margin of
/// 15 % of its length (at least 1e-3) on both sides.
fn span(v: &[f64]) -> RangeInclusive<f64> {
    let (lo, hi) = v
        .iter()
        .fold((0.0f64, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    let m = 0.15 * (hi - lo).max(1e-3);
    (lo - m)..=(hi + m)
}

/// A small |λmin/λmax| map (Fig. 7) on the square [-half, half]² of the
/// plane `dirs`, `points` per axis.
pub(crate) struct RatioMap<'a> {
    /// The plane (filter-normalized random directions).
    pub(crate) dirs: &'a Directions,
    /// Half the side of the square.
    pub(crate) half: f64,
    /// Points per axis.
    pub(crate) points: usize,
}

impl RatioMap<'_> {
    /// Computes the map of the Hessian of `objective` (over the variables of
    /// `vs`) into `RUN_DIR/curvature/ratio-filter-2d`, at the reference's Lanczos
    /// tolerance (1e-2: enough for a ratio map, and quick).
    pub(crate) fn evaluate<O: Objective>(
        &self,
        vs: &VarStore,
        objective: O,
        run_dir: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<CurvatureMap> {
        let (h, n) = (self.half, self.points);
        let surface = Surface::builder(self.dirs)
            .grid(-h..=h, n, -h..=h, n)
            .on_progress(progress)
            .build()?;
        // The reference's tolerance: enough for a ratio map, and quick.
        Curvature::builder(surface)
            .lanczos(Lanczos::builder().tol(1e-2).build()?)
            .build()?
            .evaluate(vs, objective, run_dir.join(CURVATURE_DIR).join(RATIO_MAP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_covers_the_origin_and_the_path_with_a_margin() {
        let r = span(&[0.5, 2.0, 1.0]);
        // Extent [0, 2] (the origin included), margin 0.3 on both sides.
        assert!((r.start() + 0.3).abs() < 1e-12 && (r.end() - 2.3).abs() < 1e-12);
        let r = span(&[]);
        assert!((r.start() + 1.5e-4).abs() < 1e-15 && (r.end() - 1.5e-4).abs() < 1e-15);
    }
}
