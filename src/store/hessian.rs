//! The Hessian at one point (`landscape curvature` without `--map`):
//! `DIR/hessian.parquet`, one row per value in long form — λmax, λmin, the
//! top-k and bottom-k eigenvalues with their residuals, Hutchinson's trace
//! with its standard error, the spectral density on its grid — each row
//! labelled with the run's id (`run_id`, first column) — and the
//! settings (snapshot, parameters, Lanczos/Hutchinson/SLQ options and seeds,
//! BatchNorm policy, objective) as JSON under [`HESSIAN_META_KEY`]
//! (`schemas/hessian.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::store::table::{column, json_entry, read_parquet, write_parquet_batch};

/// File name of the point's Hessian table.
pub const HESSIAN_FILE: &str = "hessian.parquet";
/// Metadata key of the settings in `hessian.parquet`.
pub const HESSIAN_META_KEY: &str = "tch_landscape.hessian";

/// One value of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct HessianRow {
    /// `lambda_max`, `lambda_min`, `top`, `bottom`, `trace` or `density`.
    pub quantity: String,
    /// Rank (0 = largest for `top`, smallest for `bottom`), grid index for
    /// `density`, 0 otherwise.
    pub index: u32,
    /// The eigenvalue, trace or density.
    pub value: f64,
    /// Relative residual (eigenvalues), standard error (trace), or the
    /// eigenvalue at which the density is given.
    pub aux: Option<f64>,
}

/// The columns of `hessian.parquet` (documented in `schemas/hessian.json`).
pub fn hessian_schema() -> Schema {
    let mut fields = vec![Field::new("run_id", DataType::Utf8, false)];
    fields.extend(
        hessian_schema_v1()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    Schema::new(fields)
}

/// The columns of a `hessian.parquet` written before `run_id` (still read).
fn hessian_schema_v1() -> Schema {
    Schema::new(vec![
        Field::new("quantity", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
        Field::new("aux", DataType::Float64, true),
    ])
}

/// Writes `dir/hessian.parquet` atomically, every row labelled with
/// `run_id` (the run whose snapshot the point is), with `settings` in its
/// metadata; returns its path.
pub fn write_hessian<T: serde::Serialize>(
    dir: &Path,
    run_id: &str,
    rows: &[HessianRow],
    settings: &T,
) -> Result<PathBuf> {
    let path = dir.join(HESSIAN_FILE);
    let meta = vec![json_entry(&path, HESSIAN_META_KEY, settings)?];
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| run_id))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.quantity.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.index))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.aux))),
    ];
    let schema = Arc::new(Schema::new_with_metadata(
        hessian_schema().fields().clone(),
        meta.iter().cloned().collect::<HashMap<_, _>>(),
    ));
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow(&path, e))?;
    write_parquet_batch(&path, &batch, &meta)?;
    Ok(path)
}

/// Reads `dir/hessian.parquet`: the rows and the settings (as JSON).
/// Tables written before the `run_id` column still load.
pub fn read_hessian(dir: &Path) -> Result<(Vec<HessianRow>, serde_json::Value)> {
    let path = dir.join(HESSIAN_FILE);
    let what = "a Hessian table";
    let (table, first) = match read_parquet(&path, &hessian_schema(), what) {
        Ok(t) => (t, 1),
        Err(e) => match read_parquet(&path, &hessian_schema_v1(), what) {
            Ok(t) => (t, 0),
            Err(_) => return Err(e),
        },
    };
    let settings: serde_json::Value = table.json_meta(&path, HESSIAN_META_KEY, what)?;
    let mut rows = Vec::new();
    for batch in &table.batches {
        let q = column::<StringArray>(batch, first, &path)?;
        let i = column::<UInt32Array>(batch, first + 1, &path)?;
        let v = column::<Float64Array>(batch, first + 2, &path)?;
        let a = column::<Float64Array>(batch, first + 3, &path)?;
        for r in 0..batch.num_rows() {
            rows.push(HessianRow {
                quantity: q.value(r).to_string(),
                index: i.value(r),
                value: v.value(r),
                aux: (!a.is_null(r)).then(|| a.value(r)),
            });
        }
    }
    Ok((rows, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            HessianRow {
                quantity: "lambda_max".into(),
                index: 0,
                value: 3.5,
                aux: Some(1e-4),
            },
            HessianRow {
                quantity: "trace".into(),
                index: 0,
                value: -2.0,
                aux: None,
            },
        ];
        write_hessian(dir.path(), "run-a", &rows, &serde_json::json!({"seed": 7})).unwrap();
        let (back, settings) = read_hessian(dir.path()).unwrap();
        assert_eq!(back, rows);
        assert_eq!(settings["seed"], 7);
        let path = dir.path().join(HESSIAN_FILE);
        let t = read_parquet(&path, &hessian_schema(), "a Hessian table").unwrap();
        let ids = column::<StringArray>(&t.batches[0], 0, &path).unwrap();
        assert_eq!((ids.value(0), ids.value(1)), ("run-a", "run-a"));
    }

    #[test]
    fn tables_without_run_id_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HESSIAN_FILE);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(["lambda_max"])),
            Arc::new(UInt32Array::from_iter_values([0])),
            Arc::new(Float64Array::from_iter_values([2.5])),
            Arc::new(Float64Array::from_iter([None])),
        ];
        let batch = RecordBatch::try_new(Arc::new(hessian_schema_v1()), cols).unwrap();
        let meta = vec![json_entry(&path, HESSIAN_META_KEY, &serde_json::json!({})).unwrap()];
        write_parquet_batch(&path, &batch, &meta).unwrap();
        let (rows, _) = read_hessian(dir.path()).unwrap();
        assert_eq!((rows.len(), rows[0].value), (1, 2.5));
    }
}
