//! What a curvature map computes and holds: the values at one point
//! ([`CurvatureValues`]), its specification, its points and the map read
//! back. The file format is [`crate::store::curvature`]'s.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lanczos::{Lanczos, Spectrum};
use crate::analysis::directions::DirectionsMeta;
use crate::analysis::grid::{Grid, GridPoint};
use crate::analysis::shard::Shard;
use crate::error::Result;
use crate::tensor::Selection;

/// The curvature computed at one point: the extreme Hessian eigenvalues and
/// the paper's measure of non-convexity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvatureValues {
    /// Smallest Hessian eigenvalue.
    pub lambda_min: f64,
    /// Largest Hessian eigenvalue.
    pub lambda_max: f64,
    /// `|λmin / λmax|`.
    pub abs_ratio: f64,
}

impl From<&Spectrum> for CurvatureValues {
    fn from(s: &Spectrum) -> CurvatureValues {
        CurvatureValues {
            lambda_min: s.lambda_min,
            lambda_max: s.lambda_max,
            abs_ratio: s.abs_ratio(),
        }
    }
}

/// What a curvature map holds: everything that determines its values.
/// Stored as JSON under
/// [`CURVATURE_META_KEY`](crate::store::curvature::CURVATURE_META_KEY) in
/// `curvature.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvatureSpec {
    /// Always `tch-landscape-curvature`.
    pub format: String,
    /// On-disk schema version.
    pub schema_version: u32,
    /// The directions' provenance and settings (id, seed, normalization).
    pub directions: DirectionsMeta,
    /// The grid.
    pub grid: Grid,
    /// Lanczos settings (seed, tol, max_iter).
    pub lanczos: Lanczos,
    /// The parameters the Hessian is taken with respect to (files written
    /// before the one selection type say `multi_dim` for
    /// [`Selection::Weights`]; they still load).
    pub params: Selection,
    /// Full description of the evaluator (objective, batches, parameters).
    pub evaluator: String,
    /// Shard `(i, n)` when only every n-th point from i was computed.
    pub shard: Option<Shard>,
    /// When the computation was first started (RFC 3339 UTC).
    pub created_utc: String,
}

/// Curvature at one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvaturePoint {
    /// Flat index `iy * nx + ix`.
    pub index: usize,
    /// Column.
    pub ix: usize,
    /// Row.
    pub iy: usize,
    /// x coordinate (α).
    pub x: f64,
    /// y coordinate (β).
    pub y: f64,
    /// Smallest Hessian eigenvalue.
    pub lambda_min: f64,
    /// Largest Hessian eigenvalue.
    pub lambda_max: f64,
    /// `|λmin / λmax|`.
    pub abs_ratio: f64,
}

impl CurvaturePoint {
    /// The values `v` at grid point `p`.
    pub fn new(p: &GridPoint, v: CurvatureValues) -> CurvaturePoint {
        CurvaturePoint {
            index: p.index,
            ix: p.ix,
            iy: p.iy,
            x: p.x,
            y: p.y,
            lambda_min: v.lambda_min,
            lambda_max: v.lambda_max,
            abs_ratio: v.abs_ratio,
        }
    }

    /// The curvature values of this point.
    pub fn values(&self) -> CurvatureValues {
        CurvatureValues {
            lambda_min: self.lambda_min,
            lambda_max: self.lambda_max,
            abs_ratio: self.abs_ratio,
        }
    }
}

/// A computed curvature map.
#[derive(Debug, Clone)]
pub struct CurvatureMap {
    /// The output directory.
    pub dir: PathBuf,
    /// Its specification.
    pub spec: CurvatureSpec,
    /// Every computed point, by flat index.
    pub points: Vec<CurvaturePoint>,
    /// Points computed by this call (the rest were resumed from disk).
    pub computed: usize,
    /// Seconds this call spent computing.
    pub seconds: f64,
    /// True when every point (of the shard) is done and `curvature.parquet`
    /// was written.
    pub complete: bool,
}

impl CurvatureMap {
    fn values(&self, f: impl Fn(&CurvaturePoint) -> f64) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.spec.grid.len()];
        for p in &self.points {
            if let Some(slot) = out.get_mut(p.index) {
                *slot = f(p);
            }
        }
        out
    }

    /// λmin in flat grid order (x fastest; NaN where not computed).
    pub fn lambda_min(&self) -> Vec<f64> {
        self.values(|p| p.lambda_min)
    }

    /// λmax in flat grid order.
    pub fn lambda_max(&self) -> Vec<f64> {
        self.values(|p| p.lambda_max)
    }

    /// |λmin/λmax| in flat grid order.
    pub fn abs_ratio(&self) -> Vec<f64> {
        self.values(|p| p.abs_ratio)
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.spec.grid
    }

    /// The point in column `ix`, row `iy`, if computed.
    pub fn get(&self, ix: usize, iy: usize) -> Option<&CurvaturePoint> {
        self.points.iter().find(|p| p.ix == ix && p.iy == iy)
    }

    /// The point at (0, 0), when the grid has one and it was computed.
    pub fn centre(&self) -> Option<&CurvaturePoint> {
        self.points.iter().find(|p| p.x == 0.0 && p.y == 0.0)
    }

    /// Reads `curvature.parquet` of a finished map directory (see
    /// [`crate::store::curvature`]).
    pub fn load(dir: impl AsRef<Path>) -> Result<CurvatureMap> {
        let dir = dir.as_ref();
        let (spec, points) = crate::store::curvature::read(dir)?;
        Ok(CurvatureMap {
            dir: dir.to_path_buf(),
            spec,
            points,
            computed: 0,
            seconds: 0.0,
            complete: true,
        })
    }
}

/// A specification for unit tests of the map and its file format.
#[cfg(test)]
pub(crate) fn test_spec(grid: Grid) -> CurvatureSpec {
    use crate::analysis::directions::DirectionKind;
    CurvatureSpec {
        format: crate::store::curvature::FORMAT.into(),
        schema_version: crate::store::curvature::SCHEMA_VERSION,
        directions: DirectionsMeta {
            id: "0123abcd".into(),
            kind: DirectionKind::Random,
            seed: Some(7),
            normalization: None,
            ignore: None,
            bn_stats: crate::analysis::directions::BnStats::Fixed,
            n_directions: if grid.y.is_some() { 2 } else { 1 },
            description: "unit test".into(),
            extra: Default::default(),
        },
        grid,
        lanczos: Lanczos::default(),
        params: Selection::Weights,
        evaluator: "unit test".into(),
        shard: None,
        created_utc: "2024-01-01T00:00:00Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::grid::Axis;

    #[test]
    fn values_follow_the_grid_and_missing_points_are_nan() {
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 3),
            y: None,
        };
        let v = CurvatureValues {
            lambda_min: -0.5,
            lambda_max: 2.0,
            abs_ratio: 0.25,
        };
        let m = CurvatureMap {
            dir: PathBuf::from("m"),
            spec: test_spec(grid),
            points: vec![CurvaturePoint::new(&grid.point(1), v)],
            computed: 0,
            seconds: 0.0,
            complete: false,
        };
        let r = m.abs_ratio();
        assert!(r[0].is_nan() && r[2].is_nan());
        assert_eq!(r[1], 0.25);
        assert_eq!(m.lambda_min()[1], -0.5);
        assert_eq!(m.centre().map(|p| p.values()), Some(v));
        assert_eq!(m.get(1, 0).map(|p| p.index), Some(1));
        assert!(m.get(0, 0).is_none());
    }
}
