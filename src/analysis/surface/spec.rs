//! What a surface directory holds: its specification, the value of each
//! point, and a computed (or loaded) surface.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::directions::DirectionsMeta;
use crate::analysis::evaluator::SplitResult;
use crate::analysis::grid::Grid;
use crate::analysis::shard::{covers, Shard};
use crate::analysis::sharpness::{sharpness, Reference, Sharpness};
use crate::error::{Error, Result};
use crate::store::surface::{PointValue, StoredSpec, SurfaceDir, SPEC_FILE};

/// What a surface directory holds: everything that determines its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurfaceSpec {
    /// Always `tch-landscape-surface`.
    pub format: String,
    /// On-disk schema version.
    pub schema_version: u32,
    /// The directions' provenance and settings (id, seed, normalization, BN policy).
    pub directions: DirectionsMeta,
    /// The grid.
    pub grid: Grid,
    /// The evaluator's description (model, loss, batch, splits).
    pub evaluator: String,
    /// ε used for the sharpness figures (`None`: no sharpness figures, as
    /// for curvature maps).
    pub sharpness_epsilon: Option<f64>,
    /// The shard, when only every n-th point from i was computed (stored as
    /// `[i, n]`).
    pub shard: Option<Shard>,
    /// When the computation was first started (RFC 3339 UTC).
    pub created_utc: String,
}

/// The largest sharpness ε (a loss difference) a surface may use.
pub const MAX_SHARPNESS_EPSILON: f64 = 1e6;

/// The `format` of every `surface.json`.
pub(crate) const SURFACE_FORMAT: &str = "tch-landscape-surface";

impl SurfaceSpec {
    /// Reads `surface.json` of `store` (`None` when there is none) and
    /// checks what the grid's own checks do not: the format name and a
    /// finite, positive ε.
    pub(crate) fn read(store: &SurfaceDir) -> Result<Option<SurfaceSpec>> {
        let Some(spec) = store.read_spec::<SurfaceSpec>()? else {
            return Ok(None);
        };
        let path = store.path().join(SPEC_FILE);
        if spec.format != SURFACE_FORMAT {
            return Err(Error::corrupt(
                &path,
                format!(
                    "\"format\" is {:?}, expected \"{SURFACE_FORMAT}\"",
                    spec.format
                ),
            ));
        }
        if let Some(eps) = spec.sharpness_epsilon {
            if !(eps > 0.0 && eps <= MAX_SHARPNESS_EPSILON) {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "\"sharpness_epsilon\" is {eps}, expected 0 < ε ≤ {MAX_SHARPNESS_EPSILON:e}"
                    ),
                ));
            }
        }
        Ok(Some(spec))
    }

    /// Whether `other` describes the same values (a directory holding one
    /// may be resumed, or merged into, by the other).
    pub(crate) fn same_work(&self, other: &SurfaceSpec) -> bool {
        self.directions.id == other.directions.id
            && self.grid == other.grid
            && self.evaluator == other.evaluator
            && self.shard == other.shard
    }

    /// The flat indices of the grid points this spec computes.
    pub(crate) fn wanted(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.grid.len()).filter(|&i| covers(self.shard, i))
    }

    /// The reference point `[x, y]`: the grid's, or for results written
    /// before it was stored, the directions' default.
    pub fn reference(&self) -> [f64; 2] {
        let [x, y] = self
            .grid
            .reference
            .unwrap_or_else(|| self.directions.reference());
        [x, if self.grid.y.is_some() { y } else { 0.0 }]
    }

    /// Sharpness per split of `points` (a whole grid) at the reference
    /// point, with the loss measured there: empty without an ε, for a shard,
    /// or when the reference was not evaluated (results written before it
    /// was stored, whose lattice lacks it).
    pub(crate) fn sharpness(&self, points: &[PointValue]) -> Vec<Sharpness> {
        let (Some(eps), None) = (self.sharpness_epsilon, self.shard) else {
            return Vec::new();
        };
        let [rx, ry] = self.reference();
        let Some(at_reference) = points.iter().find(|p| p.point.x == rx && p.point.y == ry) else {
            return Vec::new();
        };
        let label = self.directions.reference_label();
        at_reference
            .splits
            .iter()
            .map(|s| {
                let loss = split_values(self.grid.lattice_len(), points, &s.split, |v| v.loss);
                let reference = Reference {
                    at: [rx, ry],
                    loss: s.loss,
                };
                let mut sh = sharpness(&self.grid, &loss, reference, &s.split, eps);
                sh.reference_label = label.clone();
                sh
            })
            .collect()
    }
}

/// `surface.parquet`'s metadata: the spec, and flat copies of the
/// directions' settings.
impl StoredSpec for SurfaceSpec {
    fn flat_meta(&self) -> Vec<(&'static str, String)> {
        let d = &self.directions;
        let lower = |v: Option<String>| v.map(|s| s.to_lowercase()).unwrap_or_default();
        vec![
            ("directions_id", d.id.clone()),
            ("seed", d.seed.map(|s| s.to_string()).unwrap_or_default()),
            (
                "normalization",
                lower(d.normalization.map(|n| format!("{n:?}"))),
            ),
            ("ignore", lower(d.ignore.map(|n| format!("{n:?}")))),
            ("bn_stats", d.bn_stats.to_string()),
            ("centre", d.description.clone()),
        ]
    }

    fn grid_len(&self) -> usize {
        self.grid.len()
    }

    fn run_id(&self) -> Option<String> {
        self.directions.run_id()
    }
}

/// The values of `split` at every point of a `len`-point lattice, in flat
/// order (NaN where missing; points after the lattice are left out).
fn split_values(
    len: usize,
    points: &[PointValue],
    split: &str,
    f: impl Fn(&SplitResult) -> f64,
) -> Vec<f64> {
    let mut out = vec![f64::NAN; len];
    for p in points {
        if let (Some(s), Some(o)) = (
            p.splits.iter().find(|s| s.split == split),
            out.get_mut(p.point.index),
        ) {
            *o = f(s);
        }
    }
    out
}

/// A computed surface.
#[derive(Debug, Clone)]
pub struct SurfaceResult {
    /// The output directory.
    pub dir: PathBuf,
    /// Its specification.
    pub spec: SurfaceSpec,
    /// Every computed point, by flat index.
    pub points: Vec<PointValue>,
    /// Points computed by this call (the rest were resumed from disk).
    pub computed: usize,
    /// Seconds this call spent evaluating.
    pub seconds: f64,
    /// Sharpness per split at the reference point (when the grid is whole).
    pub sharpness: Vec<Sharpness>,
    /// Whether every point of the grid (or shard) is done; false after a
    /// cancelled computation, which a later call resumes.
    pub complete: bool,
}

impl SurfaceResult {
    /// Split names, in evaluator order.
    pub fn splits(&self) -> Vec<String> {
        self.points
            .first()
            .map(|p| p.splits.iter().map(|s| s.split.clone()).collect())
            .unwrap_or_default()
    }

    /// Loss values of `split` at the lattice points in flat grid order
    /// (NaN where missing); the reference point evaluated on its own is in
    /// [`reference_value`](Self::reference_value).
    pub fn loss(&self, split: &str) -> Vec<f64> {
        split_values(self.spec.grid.lattice_len(), &self.points, split, |s| {
            s.loss
        })
    }

    /// The reference point `[x, y]` (θ* of a surface, the trained end of an
    /// interpolation; see [`SurfaceSpec::reference`]).
    pub fn reference(&self) -> [f64; 2] {
        self.spec.reference()
    }

    /// What the reference point is, in words.
    pub fn reference_label(&self) -> String {
        self.spec.directions.reference_label()
    }

    /// Loss and accuracy of `split` measured at the reference point, when
    /// it was evaluated (always, for results of this version).
    pub fn reference_value(&self, split: &str) -> Option<&SplitResult> {
        let [x, y] = self.reference();
        self.points
            .iter()
            .find(|p| p.point.x == x && p.point.y == y)?
            .splits
            .iter()
            .find(|s| s.split == split)
    }

    /// Accuracy values of `split` in flat grid order (NaN where missing).
    pub fn accuracy(&self, split: &str) -> Vec<f64> {
        split_values(self.spec.grid.lattice_len(), &self.points, split, |s| {
            s.accuracy.unwrap_or(f64::NAN)
        })
    }

    /// Reads a finished surface directory.
    pub fn load(dir: impl AsRef<Path>) -> Result<SurfaceResult> {
        let store = SurfaceDir::new(dir.as_ref());
        let spec = SurfaceSpec::read(&store)?.ok_or_else(|| {
            Error::invalid(
                "surface directory",
                format!("{} has no {SPEC_FILE}", store.path().display()),
            )
        })?;
        let mut points = store.read_result(spec.grid.len())?;
        SurfaceResult::place_on_grid(&spec.grid, &mut points);
        Ok(SurfaceResult::finished(store.path(), spec, points))
    }

    /// Places points read back from a directory on `grid`: their column, row
    /// and coordinates are recomputed from their flat index (which the store
    /// checked to be on the grid), as the grid read from `surface.json` gives
    /// them, so resumed and loaded points agree bit for bit with each other and
    /// a damaged coordinate in a file has no effect.
    pub(crate) fn place_on_grid<'p>(
        grid: &Grid,
        points: impl IntoIterator<Item = &'p mut PointValue>,
    ) {
        for p in points {
            p.point = grid.point(p.point.index);
        }
    }

    /// A whole surface (or shard) read from, or just written to, `dir`.
    pub(crate) fn finished(dir: &Path, spec: SurfaceSpec, points: Vec<PointValue>) -> Self {
        SurfaceResult {
            dir: dir.to_path_buf(),
            sharpness: spec.sharpness(&points),
            spec,
            points,
            computed: 0,
            seconds: 0.0,
            complete: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::grid::Axis;

    #[test]
    fn values_are_in_flat_order_with_nan_gaps() {
        let grid = Grid {
            x: Axis::new(0.0..=1.0, 2),
            y: Some(Axis::new(0.0..=1.0, 2)),
            reference: None,
        };
        let p = |i: usize, loss: f64| PointValue {
            point: grid.point(i),
            splits: vec![SplitResult {
                split: "a".into(),
                loss,
                accuracy: Some(loss * 10.0),
            }],
        };
        let v = split_values(4, &[p(3, 3.0), p(1, 1.0)], "a", |s| s.loss);
        assert!(v[0].is_nan() && v[2].is_nan());
        assert_eq!((v[1], v[3]), (1.0, 3.0));
        assert!(split_values(4, &[p(1, 1.0)], "b", |s| s.loss)
            .iter()
            .all(|x| x.is_nan()));
    }
}
