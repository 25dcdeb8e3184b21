//! What a curvature map computes and holds: its specification and the map
//! read back. The values at one point ([`CurvatureValues`]) and the points
//! ([`CurvaturePoint`]) are records of the file format,
//! [`crate::store::curvature`]'s.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lanczos::{Lanczos, Spectrum};
use crate::analysis::directions::DirectionsMeta;
use crate::analysis::grid::Grid;
use crate::analysis::shard::Shard;
use crate::error::Result;
use crate::store::curvature::{CurvaturePoint, CurvatureValues, SolverFigures};
use crate::store::surface::StoredSpec;
use crate::tensor::Selection;

/// The curvature values of a Lanczos spectrum, with its solver figures
/// (`seconds` 0: the caller times the run, [`CurvatureValues::timed`]).
impl From<&Spectrum> for CurvatureValues {
    fn from(s: &Spectrum) -> CurvatureValues {
        CurvatureValues {
            lambda_min: s.lambda_min,
            lambda_max: s.lambda_max,
            abs_ratio: s.abs_ratio(),
            solver: Some(SolverFigures {
                hvps: s.hvps as u64,
                residual_max: s.top_residuals.first().copied().unwrap_or(0.0),
                residual_min: s.bottom_residuals.first().copied().unwrap_or(0.0),
                // A run that does not converge is an error, not a spectrum.
                converged: true,
                seconds: 0.0,
            }),
        }
    }
}

impl CurvatureValues {
    /// The values with the solver's wall time set to `seconds`.
    pub fn timed(mut self, seconds: f64) -> CurvatureValues {
        if let Some(s) = self.solver.as_mut() {
            s.seconds = seconds;
        }
        self
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

/// `curvature.parquet`'s metadata: the spec, and flat copies of the
/// settings most asked for.
impl StoredSpec for CurvatureSpec {
    fn flat_meta(&self) -> Vec<(&'static str, String)> {
        let d = &self.directions;
        vec![
            ("directions_id", d.id.clone()),
            ("seed", d.seed.map(|s| s.to_string()).unwrap_or_default()),
            ("lanczos_seed", self.lanczos.seed().to_string()),
            ("tol", self.lanczos.tol().to_string()),
            ("max_iter", self.lanczos.max_iter().to_string()),
            ("params", self.params.to_string()),
            ("hvp", self.evaluator.clone()),
        ]
    }

    fn grid_len(&self) -> usize {
        self.grid.len()
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
        let mut out = vec![f64::NAN; self.spec.grid.lattice_len()];
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
        self.points
            .iter()
            .find(|p| p.on_grid && p.ix == ix && p.iy == iy)
    }

    /// The reference point θ* (measured on its own when no grid point is
    /// there; maps written before then: the grid point at (0, 0), if any).
    pub fn centre(&self) -> Option<&CurvaturePoint> {
        self.points.iter().find(|p| p.reference)
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
fn test_spec(grid: Grid) -> CurvatureSpec {
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
            reference: Some([0.0, 0.0]),
        };
        let v = CurvatureValues {
            lambda_min: -0.5,
            lambda_max: 2.0,
            abs_ratio: 0.25,
            solver: None,
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

    #[test]
    fn the_spec_round_trips_through_the_table_with_its_flat_settings() {
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 3),
            y: Some(Axis::new(-0.5..=0.5, 2)),
            reference: None,
        };
        let spec = test_spec(grid);
        let flat = spec.flat_meta();
        assert!(flat.contains(&("params", "weights".into())), "{flat:?}");
        assert!(flat.contains(&("tol", "0.001".into())), "{flat:?}");
        assert_eq!(spec.grid_len(), 6);
        let points: Vec<CurvaturePoint> = (0..grid.len())
            .map(|i| {
                let v = CurvatureValues {
                    lambda_min: -(i as f64),
                    lambda_max: 2.0,
                    abs_ratio: i as f64 / 2.0,
                    solver: (i % 2 == 0).then_some(SolverFigures {
                        hvps: 10 + i as u64,
                        residual_max: 1e-4,
                        residual_min: 2e-4,
                        converged: true,
                        seconds: 0.5,
                    }),
                };
                CurvaturePoint::new(&grid.point(i), v)
            })
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        crate::store::curvature::write(tmp.path(), &spec, &points).unwrap();
        let map = CurvatureMap::load(tmp.path()).unwrap();
        assert_eq!((map.spec, map.points), (spec, points));
    }

    #[test]
    fn specs_with_the_old_selection_name_still_load() {
        let spec = test_spec(Grid {
            x: Axis::new(-1.0..=1.0, 3),
            y: None,
            reference: None,
        });
        let json = serde_json::to_string(&spec)
            .unwrap()
            .replace("\"params\":\"weights\"", "\"params\":\"multi_dim\"");
        assert!(json.contains("multi_dim"));
        let old: CurvatureSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(old, spec);
    }
}
