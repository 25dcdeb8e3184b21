//! The curvature-map format (`schemas/curvature.json`).
//!
//! A curvature map's directory is a surface directory whose rows are the
//! curvature quantities (in `surface.parquet` and the `points/` segments,
//! one row per point and quantity: the splits `lambda_max`, `lambda_min` and
//! `abs_ratio`, the value in the `loss` column), plus `curvature.parquet`:
//! one row per grid point with columns `index, ix, iy, x, y, lambda_min,
//! lambda_max, abs_ratio` (zstd), the
//! [`CurvatureSpec`] as JSON under [`CURVATURE_META_KEY`] and flat copies of
//! the most asked-for settings under `tch_landscape.*`, in the Parquet
//! key-value metadata and on the Arrow schema (pyarrow's
//! `read_table(..).schema.metadata` shows them).
//!
//! This file is the one place that maps [`CurvatureValues`] to and from the
//! surface rows, and that reads and writes `curvature.parquet`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::analysis::evaluator::SplitResult;
use crate::analysis::hessian::{CurvaturePoint, CurvatureSpec, CurvatureValues};
use crate::analysis::surface::{PointValue, RESULT_FILE};
use crate::error::{Error, Result};
use crate::store::table::{column, read_parquet, write_parquet_batch};

/// Split name of λmax in the surface rows of a curvature map.
pub const SPLIT_LAMBDA_MAX: &str = "lambda_max";
/// Split name of λmin.
pub const SPLIT_LAMBDA_MIN: &str = "lambda_min";
/// Split name of |λmin/λmax|.
pub const SPLIT_ABS_RATIO: &str = "abs_ratio";
/// Name of the curvature table in a curvature map's directory.
pub const CURVATURE_FILE: &str = "curvature.parquet";
/// Metadata key of the [`CurvatureSpec`] in `curvature.parquet`.
pub const CURVATURE_META_KEY: &str = "tch_landscape.curvature";
/// `format` of a [`CurvatureSpec`].
pub(crate) const FORMAT: &str = "tch-landscape-curvature";
/// `schema_version` of a [`CurvatureSpec`] written by this build.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// What "a curvature map" is called in errors.
const WHAT: &str = "a curvature map";

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

/// The key-value metadata of `curvature.parquet`: the spec's JSON, then
/// flat copies of the most asked-for settings.
fn metadata(path: &Path, spec: &CurvatureSpec) -> Result<Vec<(String, String)>> {
    let json = serde_json::to_string(spec).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let d = &spec.directions;
    let flat = [
        ("directions_id", d.id.clone()),
        ("seed", d.seed.map(|s| s.to_string()).unwrap_or_default()),
        ("lanczos_seed", spec.lanczos.seed().to_string()),
        ("tol", spec.lanczos.tol().to_string()),
        ("max_iter", spec.lanczos.max_iter().to_string()),
        ("params", spec.params.to_string()),
        ("hvp", spec.evaluator.clone()),
    ];
    Ok(std::iter::once((CURVATURE_META_KEY.to_string(), json))
        .chain(
            flat.into_iter()
                .map(|(k, v)| (format!("tch_landscape.{k}"), v)),
        )
        .collect())
}

/// Writes `dir/curvature.parquet` (atomically) from a map's spec and points.
pub(crate) fn write(dir: &Path, spec: &CurvatureSpec, points: &[CurvaturePoint]) -> Result<()> {
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
    let meta = metadata(&path, spec)?;
    let schema = Arc::new(Schema::new_with_metadata(
        curvature_schema().fields().clone(),
        meta.iter().cloned().collect::<HashMap<_, _>>(),
    ));
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow(&path, e))?;
    write_parquet_batch(&path, &batch, &meta)
}

/// Reads `dir/curvature.parquet`: the spec and the points.
pub(crate) fn read(dir: &Path) -> Result<(CurvatureSpec, Vec<CurvaturePoint>)> {
    let path = dir.join(CURVATURE_FILE);
    let table = read_parquet(&path, &curvature_schema(), WHAT)?;
    let spec: CurvatureSpec = table.json_meta(&path, CURVATURE_META_KEY, WHAT)?;
    let mut points = Vec::new();
    for batch in &table.batches {
        let u = |i| column::<UInt32Array>(batch, i, &path);
        let f = |i| column::<Float64Array>(batch, i, &path);
        let (index, ix, iy) = (u(0)?, u(1)?, u(2)?);
        let (x, y, lmin, lmax, ratio) = (f(3)?, f(4)?, f(5)?, f(6)?, f(7)?);
        for r in 0..batch.num_rows() {
            let i = index.value(r) as usize;
            if i >= spec.grid.len() {
                return Err(Error::corrupt(
                    &path,
                    format!("point index {i} outside the {}-point grid", spec.grid.len()),
                ));
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
pub(crate) enum ShardState {
    /// A finished curvature-map shard, with its spec.
    Finished(Box<CurvatureSpec>),
    /// No finished surface yet: the surface merge reports its progress.
    Unfinished,
    /// A finished surface without `curvature.parquet`: not a curvature map.
    NotCurvature,
}

/// Classifies a shard directory for
/// [`merge_curvature_shards`](crate::analysis::hessian::merge_curvature_shards).
pub(crate) fn shard_state(dir: &Path) -> Result<ShardState> {
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
    use crate::analysis::grid::{Axis, Grid};
    use crate::analysis::hessian::test_spec;

    fn grid() -> Grid {
        Grid {
            x: Axis::new(-1.0..=1.0, 3),
            y: Some(Axis::new(-0.5..=0.5, 2)),
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
        let g = grid();
        let tmp = tempfile::tempdir().unwrap();
        let points: Vec<PointValue> = (0..g.len())
            .map(|i| PointValue {
                point: g.point(i),
                splits: to_rows(&values(i)),
            })
            .collect();
        assert_eq!(points[0].splits[0].split, "lambda_max");
        let mut points = points;
        let back = points_of(tmp.path(), &points).unwrap();
        for (i, p) in back.iter().enumerate() {
            assert_eq!((p.index, p.values()), (i, values(i)));
        }
        points[2].splits.pop();
        let e = points_of(tmp.path(), &points).unwrap_err().to_string();
        assert!(e.contains("point 2") && e.contains("abs_ratio"), "{e}");
    }

    #[test]
    fn the_table_round_trips_with_its_metadata() {
        let g = grid();
        let tmp = tempfile::tempdir().unwrap();
        let spec = test_spec(g);
        let points: Vec<CurvaturePoint> = (0..g.len())
            .map(|i| CurvaturePoint::new(&g.point(i), values(i)))
            .collect();
        write(tmp.path(), &spec, &points).unwrap();
        let (spec2, points2) = read(tmp.path()).unwrap();
        assert_eq!((spec2, points2), (spec.clone(), points));
        let path = tmp.path().join(CURVATURE_FILE);
        let table = read_parquet(&path, &curvature_schema(), WHAT).unwrap();
        assert_eq!(table.metadata["tch_landscape.params"], "weights");
        assert_eq!(table.metadata["tch_landscape.tol"], "0.001");
        assert!(matches!(
            shard_state(tmp.path()).unwrap(),
            ShardState::Finished(_)
        ));
    }

    #[test]
    fn files_with_the_old_selection_name_still_load() {
        let g = grid();
        let tmp = tempfile::tempdir().unwrap();
        let spec = test_spec(g);
        let json = serde_json::to_string(&spec)
            .unwrap()
            .replace("\"params\":\"weights\"", "\"params\":\"multi_dim\"");
        assert!(json.contains("multi_dim"));
        let old: CurvatureSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(old, spec);
        std::fs::write(tmp.path().join(RESULT_FILE), b"").unwrap();
        assert!(matches!(
            shard_state(tmp.path()).unwrap(),
            ShardState::NotCurvature
        ));
        let e = read(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(CURVATURE_FILE), "{e}");
    }
}
