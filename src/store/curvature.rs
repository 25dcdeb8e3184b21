//! The curvature-map format (`schemas/curvature.json`).
//!
//! A curvature map's directory is a surface directory whose rows are the
//! curvature quantities (in `surface.parquet` and the `points/` segments,
//! one row per point and quantity: the splits `lambda_max`, `lambda_min` and
//! `abs_ratio`, the value in the `loss` column), plus `curvature.parquet`:
//! one row per grid point with columns `index, ix, iy, x, y, lambda_min,
//! lambda_max, abs_ratio` (zstd), the map's spec (`CurvatureSpec` of
//! `analysis::hessian`, any `StoredSpec` here) as JSON under
//! [`CURVATURE_META_KEY`] and flat copies of the most asked-for settings
//! under `tch_landscape.*`, in the Parquet key-value metadata and on the
//! Arrow schema (pyarrow's `read_table(..).schema.metadata` shows them).
//!
//! This file is the one place that maps [`CurvatureValues`] to and from the
//! surface rows, and that reads and writes `curvature.parquet`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::manifest::schema_version;
use crate::store::surface::{
    index_outside, spec_metadata, GridPoint, PointValue, SplitResult, StoredSpec, RESULT_FILE,
};
use crate::store::table::{column, read_parquet, write_parquet_batch};

/// Split name of λmax in the surface rows of a curvature map.
pub const SPLIT_LAMBDA_MAX: &str = "lambda_max";
/// Split name of λmin.
pub const SPLIT_LAMBDA_MIN: &str = "lambda_min";
/// Split name of |λmin/λmax|.
pub const SPLIT_ABS_RATIO: &str = "abs_ratio";
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

/// Columns of `curvature.parquet`.
pub fn curvature_schema() -> SchemaRef {
    let u = |n: &str| Field::new(n, DataType::UInt32, false);
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        u("index"),
        u("ix"),
        u("iy"),
        f("x"),
        f("y"),
        f("lambda_min"),
        f("lambda_max"),
        f("abs_ratio"),
    ]))
}

/// The surface rows of one point's values: `lambda_max`, `lambda_min`,
/// `abs_ratio`, each value in `loss`, accuracy `None`.
pub(crate) fn to_rows(v: &CurvatureValues) -> Vec<SplitResult> {
    let row = |split: &str, loss: f64| SplitResult {
        split: split.to_string(),
        loss,
        accuracy: None,
    };
    vec![
        row(SPLIT_LAMBDA_MAX, v.lambda_max),
        row(SPLIT_LAMBDA_MIN, v.lambda_min),
        row(SPLIT_ABS_RATIO, v.abs_ratio),
    ]
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
        };
        points.push(CurvaturePoint::new(&p.point, values));
    }
    Ok(points)
}

/// Writes `dir/curvature.parquet` (atomically) from a map's spec and points.
pub(crate) fn write<S: StoredSpec>(dir: &Path, spec: &S, points: &[CurvaturePoint]) -> Result<()> {
    let path = dir.join(CURVATURE_FILE);
    let u = |f: fn(&CurvaturePoint) -> usize| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(
            points.iter().map(|p| f(p) as u32),
        ))
    };
    let v = |f: fn(&CurvaturePoint) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(points.iter().map(f)))
    };
    let cols = vec![
        u(|p| p.index),
        u(|p| p.ix),
        u(|p| p.iy),
        v(|p| p.x),
        v(|p| p.y),
        v(|p| p.lambda_min),
        v(|p| p.lambda_max),
        v(|p| p.abs_ratio),
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
    let table = read_parquet(&path, &curvature_schema(), WHAT)?;
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
        for r in 0..batch.num_rows() {
            let i = index.value(r) as usize;
            if i >= len {
                return Err(index_outside(&path, i, len));
            }
            points.push(CurvaturePoint {
                index: i,
                ix: ix.value(r) as usize,
                iy: iy.value(r) as usize,
                x: x.value(r),
                y: y.value(r),
                lambda_min: lmin.value(r),
                lambda_max: lmax.value(r),
                abs_ratio: ratio.value(r),
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
        let back = points_of(tmp.path(), &points).unwrap();
        for (i, p) in back.iter().enumerate() {
            assert_eq!((p.index, p.values()), (i, values(i)));
            assert_eq!(p.x, grid_point(i).x);
        }
        points[2].splits.pop();
        let e = points_of(tmp.path(), &points).unwrap_err().to_string();
        assert!(e.contains("point 2") && e.contains("abs_ratio"), "{e}");
    }

    #[test]
    fn the_table_round_trips_with_its_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = TestSpec::new(6);
        let points: Vec<CurvaturePoint> = (0..6)
            .map(|i| CurvaturePoint::new(&grid_point(i), values(i)))
            .collect();
        write(tmp.path(), &spec, &points).unwrap();
        let (spec2, points2) = read::<TestSpec>(tmp.path()).unwrap();
        assert_eq!((spec2, points2), (spec.clone(), points.clone()));
        let path = tmp.path().join(CURVATURE_FILE);
        let table = read_parquet(&path, &curvature_schema(), WHAT).unwrap();
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
