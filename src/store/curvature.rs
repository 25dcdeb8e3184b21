//! The curvature-map format (`schemas/curvature.json`).
//!
//! A curvature map's directory is a surface directory whose rows are the
//! curvature quantities (in `surface.parquet` and the `points/` segments,
//! one row per point and quantity: the splits `lambda_max`, `lambda_min` and
//! `abs_ratio`, the value in the `loss` column), plus `curvature.parquet`:
//! one row per grid point with columns `index, ix, iy, x, y, lambda_min,
//! lambda_max, abs_ratio, hvps, residual_max, residual_min, converged,
//! seconds, reference` (zstd), the map's spec (`CurvatureSpec` of
//! `analysis::hessian`, any `StoredSpec` here) as JSON under
//! [`CURVATURE_META_KEY`] and flat copies of the most asked-for settings
//! under `tch_landscape.*`, in the Parquet key-value metadata and on the
//! Arrow schema (pyarrow's `read_table(..).schema.metadata` shows them).
//!
//! The solver figures of a point (HVPs, Ritz residuals, wall time) travel in
//! the surface rows as the splits `hvps`, `residual_max`, `residual_min`,
//! `converged` (1 or 0) and `seconds`, so resumed maps and merged shards
//! keep them; points computed by a build that did not record them have
//! them null in `curvature.parquet`.
//!
//! A curvature map has no sharpness figures (its values are not losses):
//! [`write`] removes the empty `sharpness.json` the surface engine leaves.
//!
//! This file is the one place that maps [`CurvatureValues`] to and from the
//! surface rows, and that reads and writes `curvature.parquet`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::manifest::schema_version;
use crate::store::surface::{
    index_outside, spec_metadata, GridPoint, PointValue, SplitResult, StoredSpec, RESULT_FILE,
    SHARPNESS_FILE,
};
use crate::store::table::{column, read_current_or_older, read_parquet, write_parquet_batch};

/// Split name of λmax in the surface rows of a curvature map.
pub const SPLIT_LAMBDA_MAX: &str = "lambda_max";
/// Split name of λmin.
pub const SPLIT_LAMBDA_MIN: &str = "lambda_min";
/// Split name of |λmin/λmax|.
pub const SPLIT_ABS_RATIO: &str = "abs_ratio";
/// Split name of the Hessian-vector products a point's Lanczos run used.
pub const SPLIT_HVPS: &str = "hvps";
/// Split name of the Ritz residual bound of λmax.
pub const SPLIT_RESIDUAL_MAX: &str = "residual_max";
/// Split name of the Ritz residual bound of λmin.
pub const SPLIT_RESIDUAL_MIN: &str = "residual_min";
/// Split name of the convergence flag (1 or 0).
pub const SPLIT_CONVERGED: &str = "converged";
/// Split name of a point's wall time in seconds.
pub const SPLIT_SECONDS: &str = "seconds";
/// Name of the curvature table in a curvature map's directory.
pub const CURVATURE_FILE: &str = "curvature.parquet";
/// Metadata key of the map's spec in `curvature.parquet`.
pub const CURVATURE_META_KEY: &str = "tch_landscape.curvature";
/// `format` of a curvature map's spec.
pub(crate) const FORMAT: &str = "tch-landscape-curvature";
/// `schema_version` of a curvature map's spec written by this build.
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// What "a curvature map" is called in errors.
const WHAT: &str = "a curvature map";

/// What the Lanczos solver reported at one point.
///
/// Equality ignores `seconds` (the wall time differs from run to run; two
/// computations of the same point are equal when everything else is).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SolverFigures {
    /// Hessian-vector products used.
    pub hvps: u64,
    /// Ritz residual bound `|β_m·s_m|` of λmax.
    pub residual_max: f64,
    /// Ritz residual bound of λmin.
    pub residual_min: f64,
    /// Whether the run met its tolerance (or exhausted the Krylov space).
    /// A run that does not converge is an error
    /// ([`Error::NotConverged`]), never a point, so stored points say true.
    pub converged: bool,
    /// Wall time of the point's Lanczos run, in seconds.
    pub seconds: f64,
}

impl PartialEq for SolverFigures {
    fn eq(&self, o: &Self) -> bool {
        (
            self.hvps,
            self.residual_max,
            self.residual_min,
            self.converged,
        ) == (o.hvps, o.residual_max, o.residual_min, o.converged)
    }
}

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
    /// The solver's figures (`None` for points stored by a build that did
    /// not record them).
    #[serde(default)]
    pub solver: Option<SolverFigures>,
}

/// Whether `p` is the map's reference point (θ*, measured on its own when
/// no grid point falls on it).
pub fn is_reference(p: &GridPoint) -> bool {
    p.reference
}

/// Curvature at one grid point: one row of `curvature.parquet`.
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
    /// The solver's figures (`None` when not recorded).
    pub solver: Option<SolverFigures>,
    /// Whether this is the reference point θ* ([`is_reference`]).
    pub reference: bool,
    /// False for the reference point evaluated on its own, off the lattice
    /// (`ix`/`iy` null in the table, 0 here).
    pub on_grid: bool,
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
            solver: v.solver,
            reference: is_reference(p),
            on_grid: p.on_grid,
        }
    }

    /// The curvature values of this point.
    pub fn values(&self) -> CurvatureValues {
        CurvatureValues {
            lambda_min: self.lambda_min,
            lambda_max: self.lambda_max,
            abs_ratio: self.abs_ratio,
            solver: self.solver,
        }
    }
}

/// Columns of `curvature.parquet`.
pub fn curvature_schema() -> SchemaRef {
    let u = |n: &str| Field::new(n, DataType::UInt32, false);
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        u("index"),
        Field::new("ix", DataType::UInt32, true),
        Field::new("iy", DataType::UInt32, true),
        f("x"),
        f("y"),
        f("lambda_min"),
        f("lambda_max"),
        f("abs_ratio"),
        Field::new("hvps", DataType::UInt64, true),
        Field::new("residual_max", DataType::Float64, true),
        Field::new("residual_min", DataType::Float64, true),
        Field::new("converged", DataType::Boolean, true),
        Field::new("seconds", DataType::Float64, true),
        Field::new("reference", DataType::Boolean, false),
    ]))
}

/// Columns of a `curvature.parquet` written before the solver figures
/// (still read).
fn curvature_schema_v1() -> SchemaRef {
    let mut fields: Vec<Field> = curvature_schema().fields()[..8]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for f in &mut fields[1..3] {
        *f = f.clone().with_nullable(false);
    }
    Arc::new(Schema::new(fields))
}

/// The surface rows of one point's values: `lambda_max`, `lambda_min`,
/// `abs_ratio`, then the solver figures (`hvps`, `residual_max`,
/// `residual_min`, `converged`, `seconds`) when known, each value in
/// `loss`, accuracy `None`.
pub(crate) fn to_rows(v: &CurvatureValues) -> Vec<SplitResult> {
    let row = |split: &str, loss: f64| SplitResult {
        split: split.to_string(),
        loss,
        accuracy: None,
    };
    let mut rows = vec![
        row(SPLIT_LAMBDA_MAX, v.lambda_max),
        row(SPLIT_LAMBDA_MIN, v.lambda_min),
        row(SPLIT_ABS_RATIO, v.abs_ratio),
    ];
    if let Some(s) = &v.solver {
        rows.extend([
            row(SPLIT_HVPS, s.hvps as f64),
            row(SPLIT_RESIDUAL_MAX, s.residual_max),
            row(SPLIT_RESIDUAL_MIN, s.residual_min),
            row(SPLIT_CONVERGED, if s.converged { 1.0 } else { 0.0 }),
            row(SPLIT_SECONDS, s.seconds),
        ]);
    }
    rows
}

/// The solver figures of a point's rows: all five or none (`None`); an
/// error for some but not all, or values that are not counts / flags.
fn solver_of(dir: &Path, p: &PointValue) -> Result<Option<SolverFigures>> {
    let get = |name: &str| p.splits.iter().find(|s| s.split == name).map(|s| s.loss);
    let names = [
        SPLIT_HVPS,
        SPLIT_RESIDUAL_MAX,
        SPLIT_RESIDUAL_MIN,
        SPLIT_CONVERGED,
        SPLIT_SECONDS,
    ];
    let found: Vec<Option<f64>> = names.iter().map(|n| get(n)).collect();
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let bad = |what: String| {
        Error::corrupt(
            dir.join(RESULT_FILE),
            format!("point {}: {what}", p.point.index),
        )
    };
    let mut v = [0.0; 5];
    for ((slot, f), name) in v.iter_mut().zip(&found).zip(names) {
        *slot = f.ok_or_else(|| bad(format!("has solver figures but no '{name}' row")))?;
    }
    let [hvps, residual_max, residual_min, converged, seconds] = v;
    let is_count = hvps >= 0.0 && hvps.fract() == 0.0 && hvps < 2f64.powi(63);
    if !is_count {
        return Err(bad(format!("'{SPLIT_HVPS}' is {hvps}, expected a count")));
    }
    if converged != 0.0 && converged != 1.0 {
        return Err(bad(format!(
            "'{SPLIT_CONVERGED}' is {converged}, expected 0 or 1"
        )));
    }
    Ok(Some(SolverFigures {
        hvps: hvps as u64,
        residual_max,
        residual_min,
        converged: converged == 1.0,
        seconds,
    }))
}

/// The curvature points of the surface points (rows) of the surface
/// directory `dir`; an error naming the point when one lacks a row (not a
/// curvature map).
pub(crate) fn points_of(dir: &Path, rows: &[PointValue]) -> Result<Vec<CurvaturePoint>> {
    let mut points = Vec::with_capacity(rows.len());
    for p in rows {
        let get = |name: &str| {
            p.splits
                .iter()
                .find(|s| s.split == name)
                .map(|s| s.loss)
                .ok_or_else(|| {
                    Error::corrupt(
                        dir.join(RESULT_FILE),
                        format!("point {} has no '{name}' row: not {WHAT}", p.point.index),
                    )
                })
        };
        let values = CurvatureValues {
            lambda_min: get(SPLIT_LAMBDA_MIN)?,
            lambda_max: get(SPLIT_LAMBDA_MAX)?,
            abs_ratio: get(SPLIT_ABS_RATIO)?,
            solver: solver_of(dir, p)?,
        };
        points.push(CurvaturePoint::new(&p.point, values));
    }
    Ok(points)
}

/// Writes `dir/curvature.parquet` (atomically) from a map's spec and points,
/// and removes the empty `sharpness.json` the surface engine wrote (a
/// curvature map has no sharpness figures).
pub(crate) fn write<S: StoredSpec>(dir: &Path, spec: &S, points: &[CurvaturePoint]) -> Result<()> {
    write_table(dir, spec, points)?;
    let sharpness = dir.join(SHARPNESS_FILE);
    match std::fs::remove_file(&sharpness) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("removing", &sharpness, e))
        }
        _ => Ok(()),
    }
}

/// Writes `dir/curvature.parquet` (atomically).
fn write_table<S: StoredSpec>(dir: &Path, spec: &S, points: &[CurvaturePoint]) -> Result<()> {
    let path = dir.join(CURVATURE_FILE);
    let u = |f: fn(&CurvaturePoint) -> usize| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(
            points.iter().map(|p| f(p) as u32),
        ))
    };
    let v = |f: fn(&CurvaturePoint) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(points.iter().map(f)))
    };
    let cell = |f: fn(&CurvaturePoint) -> usize| -> ArrayRef {
        Arc::new(
            points
                .iter()
                .map(|p| p.on_grid.then(|| f(p) as u32))
                .collect::<UInt32Array>(),
        )
    };
    let cols = vec![
        u(|p| p.index),
        cell(|p| p.ix),
        cell(|p| p.iy),
        v(|p| p.x),
        v(|p| p.y),
        v(|p| p.lambda_min),
        v(|p| p.lambda_max),
        v(|p| p.abs_ratio),
        Arc::new(
            points
                .iter()
                .map(|p| p.solver.map(|s| s.hvps))
                .collect::<UInt64Array>(),
        ),
        Arc::new(
            points
                .iter()
                .map(|p| p.solver.map(|s| s.residual_max))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            points
                .iter()
                .map(|p| p.solver.map(|s| s.residual_min))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            points
                .iter()
                .map(|p| p.solver.map(|s| s.converged))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            points
                .iter()
                .map(|p| p.solver.map(|s| s.seconds))
                .collect::<Float64Array>(),
        ),
        Arc::new(BooleanArray::from(
            points.iter().map(|p| p.reference).collect::<Vec<_>>(),
        )),
    ];
    let meta = spec_metadata(&path, CURVATURE_META_KEY, spec)?;
    let schema = Arc::new(Schema::new_with_metadata(
        curvature_schema().fields().clone(),
        meta.iter().cloned().collect::<HashMap<_, _>>(),
    ));
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow(&path, e))?;
    write_parquet_batch(&path, &batch, &meta)
}

/// Reads `dir/curvature.parquet`: the spec and the points (an error for a
/// point index outside the spec's grid).
pub(crate) fn read<S: StoredSpec>(dir: &Path) -> Result<(S, Vec<CurvaturePoint>)> {
    let path = dir.join(CURVATURE_FILE);
    // Written before the solver figures: the first eight columns.
    let table = read_current_or_older(&curvature_schema(), &curvature_schema_v1(), |schema| {
        read_parquet(&path, schema, WHAT)
    })?;
    let value: serde_json::Value = table.json_meta(&path, CURVATURE_META_KEY, WHAT)?;
    schema_version(&path, &value, SCHEMA_VERSION)?;
    let spec: S = serde_json::from_value(value)
        .map_err(|e| Error::corrupt(&path, format!("bad '{CURVATURE_META_KEY}' metadata ({e})")))?;
    let len = spec.grid_len();
    let mut points = Vec::new();
    for batch in &table.batches {
        let u = |i| column::<UInt32Array>(batch, i, &path);
        let f = |i| column::<Float64Array>(batch, i, &path);
        let (index, ix, iy) = (u(0)?, u(1)?, u(2)?);
        let (x, y, lmin, lmax, ratio) = (f(3)?, f(4)?, f(5)?, f(6)?, f(7)?);
        let figures = if batch.num_columns() > 8 {
            let b = |i| column::<BooleanArray>(batch, i, &path);
            Some((
                column::<UInt64Array>(batch, 8, &path)?,
                f(9)?,
                f(10)?,
                b(11)?,
                f(12)?,
                b(13)?,
            ))
        } else {
            None
        };
        for r in 0..batch.num_rows() {
            let solver = figures.and_then(|(h, rmax, rmin, c, s, _)| {
                [
                    h.is_valid(r),
                    rmax.is_valid(r),
                    rmin.is_valid(r),
                    c.is_valid(r),
                    s.is_valid(r),
                ]
                .iter()
                .all(|&v| v)
                .then(|| SolverFigures {
                    hvps: h.value(r),
                    residual_max: rmax.value(r),
                    residual_min: rmin.value(r),
                    converged: c.value(r),
                    seconds: s.value(r),
                })
            });
            let (px, py) = (x.value(r), y.value(r));
            let reference = match figures {
                Some((.., re)) => re.value(r),
                // A table without the column: the test of `is_reference`.
                None => px == 0.0 && py == 0.0,
            };
            let i = index.value(r) as usize;
            if i >= len {
                return Err(index_outside(&path, i, len));
            }
            points.push(CurvaturePoint {
                index: i,
                ix: if ix.is_valid(r) {
                    ix.value(r) as usize
                } else {
                    0
                },
                iy: if iy.is_valid(r) {
                    iy.value(r) as usize
                } else {
                    0
                },
                x: px,
                y: py,
                lambda_min: lmin.value(r),
                lambda_max: lmax.value(r),
                abs_ratio: ratio.value(r),
                solver,
                reference,
                on_grid: ix.is_valid(r),
            });
        }
    }
    Ok((spec, points))
}

/// What a shard directory given to a curvature merge holds.
pub(crate) enum ShardState<S> {
    /// A finished curvature-map shard, with its spec.
    Finished(Box<S>),
    /// No finished surface yet: the surface merge reports its progress.
    Unfinished,
    /// A finished surface without `curvature.parquet`: not a curvature map.
    NotCurvature,
}

/// Classifies a shard directory for a curvature merge
/// (`analysis::hessian::merge_curvature_shards`).
pub(crate) fn shard_state<S: StoredSpec>(dir: &Path) -> Result<ShardState<S>> {
    if dir.join(CURVATURE_FILE).exists() {
        Ok(ShardState::Finished(Box::new(read(dir)?.0)))
    } else if dir.join(RESULT_FILE).exists() {
        Ok(ShardState::NotCurvature)
    } else {
        Ok(ShardState::Unfinished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::surface::TestSpec;

    /// The point `i` of a 3 × 2 grid.
    fn grid_point(i: usize) -> GridPoint {
        let (ix, iy) = (i % 3, i / 3);
        GridPoint {
            index: i,
            ix,
            iy,
            x: ix as f64 - 1.0,
            y: iy as f64 - 0.5,
            on_grid: true,
            reference: false,
        }
    }

    fn values(i: usize) -> CurvatureValues {
        let (lmin, lmax) = (-0.1 * i as f64, 1.0 + i as f64);
        CurvatureValues {
            lambda_min: lmin,
            lambda_max: lmax,
            abs_ratio: (lmin / lmax).abs(),
            // Points of an older build have no solver figures.
            solver: (i != 3).then_some(SolverFigures {
                hvps: 20 + i as u64,
                residual_max: 1e-3 * i as f64,
                residual_min: 2e-3,
                converged: i != 5,
                seconds: 0.25 * i as f64,
            }),
        }
    }

    #[test]
    fn rows_round_trip_through_a_surface_result() {
        let tmp = tempfile::tempdir().unwrap();
        let mut points: Vec<PointValue> = (0..6)
            .map(|i| PointValue {
                point: grid_point(i),
                splits: to_rows(&values(i)),
            })
            .collect();
        assert_eq!(points[0].splits[0].split, "lambda_max");
        assert_eq!(points[0].splits.len(), 8);
        let back = points_of(tmp.path(), &points).unwrap();
        for (i, p) in back.iter().enumerate() {
            assert_eq!((p.index, p.values()), (i, values(i)));
            assert_eq!(p.x, grid_point(i).x);
            // Seconds are carried, though equality ignores them.
            assert_eq!(
                p.solver.map(|s| s.seconds),
                values(i).solver.map(|s| s.seconds)
            );
        }
        // The 3 × 2 grid (x −1, 0, 1; y −0.5, 0.5) has no (0, 0) point.
        assert!(back.iter().all(|p| !p.reference));
        let mut partial = points.clone();
        partial[4].splits.pop();
        let e = points_of(tmp.path(), &partial).unwrap_err().to_string();
        assert!(e.contains("point 4") && e.contains("seconds"), "{e}");
        let mut bad = points.clone();
        bad[0].splits[3].loss = 2.5;
        let e = points_of(tmp.path(), &bad).unwrap_err().to_string();
        assert!(e.contains("point 0") && e.contains("hvps"), "{e}");
        points[2].splits.truncate(2);
        let e = points_of(tmp.path(), &points).unwrap_err().to_string();
        assert!(e.contains("point 2") && e.contains("abs_ratio"), "{e}");
    }

    #[test]
    fn the_table_round_trips_with_its_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = TestSpec::new(6);
        let mut points: Vec<CurvaturePoint> = (0..6)
            .map(|i| CurvaturePoint::new(&grid_point(i), values(i)))
            .collect();
        points[4].reference = true;
        // The surface engine's empty sharpness.json is removed.
        std::fs::write(tmp.path().join(SHARPNESS_FILE), b"[]").unwrap();
        write(tmp.path(), &spec, &points).unwrap();
        assert!(!tmp.path().join(SHARPNESS_FILE).exists());
        let (spec2, points2) = read::<TestSpec>(tmp.path()).unwrap();
        assert_eq!((spec2, points2), (spec.clone(), points.clone()));
        let path = tmp.path().join(CURVATURE_FILE);
        let table = read_parquet(&path, &curvature_schema(), WHAT).unwrap();
        let b = &table.batches[0];
        let hvps = column::<UInt64Array>(b, 8, &path).unwrap();
        assert!(hvps.is_null(3) && hvps.value(0) == 20);
        let seconds = column::<Float64Array>(b, 12, &path).unwrap();
        assert_eq!(seconds.value(2), 0.5);
        let reference = column::<BooleanArray>(b, 13, &path).unwrap();
        assert!(reference.value(4) && !reference.value(0));
        assert_eq!(
            table.metadata[CURVATURE_META_KEY],
            "{\"n\":6,\"schema_version\":2}"
        );
        assert_eq!(table.metadata["tch_landscape.n"], "6");
        assert!(matches!(
            shard_state::<TestSpec>(tmp.path()).unwrap(),
            ShardState::Finished(_)
        ));
        write(tmp.path(), &TestSpec::new(5), &points).unwrap();
        let e = read::<TestSpec>(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("point index 5 outside the 5-point grid"), "{e}");
        // A map of a newer schema is refused.
        let newer = TestSpec {
            n: 6,
            schema_version: 99,
        };
        write(tmp.path(), &newer, &points).unwrap();
        let e = read::<TestSpec>(tmp.path()).unwrap_err();
        assert!(matches!(e, Error::SchemaVersion { found: 99, .. }), "{e:?}");
    }

    #[test]
    fn tables_without_the_solver_columns_still_load() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CURVATURE_FILE);
        let f = |v: Vec<f64>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
        let u = |v: Vec<u32>| -> ArrayRef { Arc::new(UInt32Array::from(v)) };
        let cols = vec![
            u(vec![0, 1]),
            u(vec![0, 1]),
            u(vec![0, 0]),
            f(vec![-1.0, 0.0]),
            f(vec![0.0, 0.0]),
            f(vec![-0.5, -0.25]),
            f(vec![2.0, 1.0]),
            f(vec![0.25, 0.25]),
        ];
        let batch = RecordBatch::try_new(curvature_schema_v1(), cols).unwrap();
        let spec = TestSpec::new(2);
        let meta = spec_metadata(&path, CURVATURE_META_KEY, &spec).unwrap();
        write_parquet_batch(&path, &batch, &meta).unwrap();
        let (_, points) = read::<TestSpec>(tmp.path()).unwrap();
        assert_eq!(points.len(), 2);
        assert!(points.iter().all(|p| p.solver.is_none()));
        assert!(!points[0].reference && points[1].reference);
    }

    #[test]
    fn a_surface_without_the_table_is_not_a_curvature_map() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            shard_state::<TestSpec>(tmp.path()).unwrap(),
            ShardState::Unfinished
        ));
        std::fs::write(tmp.path().join(RESULT_FILE), b"").unwrap();
        assert!(matches!(
            shard_state::<TestSpec>(tmp.path()).unwrap(),
            ShardState::NotCurvature
        ));
        let e = read::<TestSpec>(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(CURVATURE_FILE), "{e}");
    }
}
