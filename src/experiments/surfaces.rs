//! The surfaces the experiments compute around a trained model: 1-D slices
//! with their sharpness figures, filter-normalized planes, curvature maps.

use std::path::Path;

use serde::Serialize;

use crate::analysis::directions::{Directions, Normalization};
use crate::analysis::hessian::SupervisedObjective;
use crate::analysis::sharpness::{width_1d, Sharpness};
use crate::analysis::surface::{Surface, SurfaceResult};
use crate::demo::analyses::RatioMap;
use crate::error::{Error, Result};

use super::train::Model;

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

/// A 1-D slice through a model along a random direction, over [-1, 1].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SliceSpec<'a> {
    /// Run or model name (recorded in the figures and the directions).
    pub(crate) name: &'a str,
    /// Normalization of the direction.
    pub(crate) norm: Normalization,
    /// Seed of the direction.
    pub(crate) seed: u64,
    /// Points along the slice.
    pub(crate) points: usize,
}

/// Computes the slice `spec` of `model` into `out`; returns its figures
/// and the surface.
pub(crate) fn slice(
    model: &Model,
    spec: &SliceSpec<'_>,
    out: &Path,
) -> Result<(Slice, SurfaceResult)> {
    let dirs = Directions::random(&model.params()?)
        .dims(1)
        .seed(spec.seed)
        .normalization(spec.norm)
        .build()?
        .with_description(format!("final {}", spec.name));
    let mut eval = model.evaluator()?;
    let r = Surface::builder(&dirs)
        .line(-1.0..=1.0, spec.points)
        .build()?
        .evaluate(&model.vs, &mut eval, out)?;
    let s = train_sharpness(&r)?;
    let figures = Slice {
        name: spec.name.to_string(),
        seed: spec.seed,
        normalization: format!("{:?}", spec.norm).to_lowercase(),
        centre_loss: s.reference_loss,
        width: 0.5 * s.width.unwrap_or(f64::NAN),
        curvature: s.curvature_x.unwrap_or(f64::NAN),
    };
    Ok((figures, r))
}

/// The surface's own sharpness figures (ε = 0.1) of the train split.
pub(crate) fn train_sharpness(r: &SurfaceResult) -> Result<&Sharpness> {
    r.sharpness
        .iter()
        .find(|s| s.split == "train")
        .ok_or_else(|| {
            Error::corrupt(
                &r.dir,
                "the surface has no sharpness figures of the train split",
            )
        })
}

/// The filter-normalized random plane through `model` with direction seed
/// `seed` (biases and BatchNorm ignored).
pub(crate) fn filter_plane(model: &Model, seed: u64) -> Result<Directions> {
    Directions::random(&model.params()?).seed(seed).build()
}

/// The loss of `model` over [-1, 1]² of the plane `dirs`, `points` per
/// axis, into `out`.
pub(crate) fn plane(
    model: &Model,
    dirs: &Directions,
    points: usize,
    out: &Path,
) -> Result<SurfaceResult> {
    let mut eval = model.evaluator()?;
    let surface = Surface::builder(dirs)
        .grid(-1.0..=1.0, points, -1.0..=1.0, points)
        .build()?;
    surface.evaluate(&model.vs, &mut eval, out)
}

/// Training samples of the curvature maps.
const CURVATURE_SAMPLES: i64 = 256;

/// The mean |λmin/λmax| over a 3 × 3 map on [-1, 1]² of the plane `dirs`
/// (Hessian of the train loss on the first 256 samples), written to
/// `RUN_DIR/curvature/ratio-filter-2d`.
pub(crate) fn mean_abs_ratio(model: &Model, dirs: &Directions, run_dir: &Path) -> Result<f64> {
    let (x, y) = model.train_prefix(CURVATURE_SAMPLES)?;
    let objective = SupervisedObjective::new(model.net.as_ref(), &x, &y)?;
    let map = RatioMap {
        dirs,
        half: 1.0,
        points: 3,
    };
    let v = map
        .evaluate(&model.vs, objective, run_dir, &mut |_, _| {})?
        .abs_ratio();
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}

/// Half-width of the sub-level set {L < L(c) + ε} around index `c` of a
/// 1-D curve with coordinates `xs` (see [`width_1d`]; reaching the end counts
/// as the end).
pub(crate) fn flat_width(xs: &[f64], loss: &[f64], c: usize, eps: f64) -> f64 {
    0.5 * width_1d(xs, loss, c, loss[c] + eps).0
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
    }
}
