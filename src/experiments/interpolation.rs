//! Experiment 1's 1-D interpolation between two minimizers (Goodfellow et
//! al.'s method, paper §5): the train loss along θ(α) = (1 − α)·θ_small +
//! α·θ_large for α in [-0.5, 1.5], with the flatness of each end.

use std::path::Path;

use serde::Serialize;

use crate::analysis::directions::Directions;
use crate::analysis::params::ParamSet;
use crate::analysis::surface::{Surface, SurfaceResult};
use crate::error::{Error, Result};

use super::surfaces::flat_width;
use super::train::Model;

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

/// The two minimizers of one weight decay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Minimizers<'a> {
    /// Weight decay of both runs.
    pub(crate) weight_decay: f64,
    /// The small-batch minimizer (α = 0).
    pub(crate) small_batch: &'a ParamSet,
    /// The large-batch minimizer (α = 1).
    pub(crate) large_batch: &'a ParamSet,
}

impl Minimizers<'_> {
    /// Evaluates the interpolation with `model`'s network (its variables are
    /// overwritten) over `2·(points_1d − 1) + 1` points into `out`, so that
    /// α = 0 and α = 1 fall on grid points, and measures it.
    pub(crate) fn interpolate(
        &self,
        model: &Model,
        points_1d: usize,
        out: &Path,
    ) -> Result<Interpolation> {
        let wd = self.weight_decay;
        let dirs = Directions::interpolation(self.small_batch, self.large_batch)?
            .with_description(format!("small batch → large batch, wd {wd}"));
        let n = 2 * (points_1d - 1) + 1;
        let mut eval = model.evaluator()?;
        let r = Surface::builder(&dirs)
            .line(-0.5..=1.5, n)
            .build()?
            .evaluate(&model.vs, &mut eval, out)?;
        measure(wd, &r)
    }
}

/// The figures of an interpolation curve (train split).
fn measure(weight_decay: f64, r: &SurfaceResult) -> Result<Interpolation> {
    let xs = r.spec.grid.x.values();
    let loss = r.loss("train");
    if loss.len() != xs.len() || xs.len() < 3 {
        return Err(Error::corrupt(
            &r.dir,
            format!(
                "{} train losses for {} grid points; expected at least 3",
                loss.len(),
                xs.len()
            ),
        ));
    }
    let h = r.spec.grid.x.step();
    let (a0, a1) = (nearest(&xs, 0.0), nearest(&xs, 1.0));
    Ok(Interpolation {
        weight_decay,
        width_small_batch: flat_width(&xs, &loss, a0, 0.1),
        width_large_batch: flat_width(&xs, &loss, a1, 0.1),
        curvature_small_batch: second_difference(&loss, a0, h),
        curvature_large_batch: second_difference(&loss, a1, h),
        max_between: loss[a0..=a1].iter().copied().fold(f64::MIN, f64::max),
    })
}

/// The index of the value of `xs` nearest to `a` (0 for none).
fn nearest(xs: &[f64], a: f64) -> usize {
    xs.iter()
        .enumerate()
        .min_by(|p, q| (p.1 - a).abs().total_cmp(&(q.1 - a).abs()))
        .map_or(0, |p| p.0)
}

/// The central second difference of `loss` at index `c` with step `h`;
/// NaN at either end.
fn second_difference(loss: &[f64], c: usize, h: f64) -> f64 {
    match (c.checked_sub(1), loss.get(c + 1)) {
        (Some(prev), Some(next)) => (loss[prev] - 2.0 * loss[c] + next) / (h * h),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_difference_of_a_parabola_and_the_nearest_point() {
        // L(x) = 3x² on x = -1, -0.5, …, 1: d²L/dx² = 6 exactly.
        let xs: Vec<f64> = (0..5).map(|i| -1.0 + 0.5 * i as f64).collect();
        let loss: Vec<f64> = xs.iter().map(|x| 3.0 * x * x).collect();
        assert!((second_difference(&loss, 2, 0.5) - 6.0).abs() < 1e-12);
        assert!(second_difference(&loss, 0, 0.5).is_nan());
        assert!(second_difference(&loss, 4, 0.5).is_nan());
        assert_eq!(nearest(&xs, 0.3), 3);
        assert_eq!(nearest(&xs, -7.0), 0);
    }
}
