//! Parquet export of a run: trajectory, metrics and per-tensor summaries,
//! zstd-compressed, readable as they are by pyarrow, polars and DuckDB.
//!
//! Tables (documented in `schemas/`):
//! - `trajectory.parquet`: one row per snapshot × tensor chunk, values as
//!   `list<float32>` (tensors larger than the chunk size span several rows);
//! - `metrics.parquet`: the metrics table;
//! - `summary.parquet`: per snapshot and tensor: L2 norm, mean, std, min, max.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Array, Float64Array, ListArray, StringArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::fsutil::DirLock;
use crate::store::metrics::metrics_batch;
use crate::store::run::Run;
use crate::store::snapshot::SnapshotMeta;
use crate::store::table::{write_parquet, write_parquet_batch};

/// Default number of values per trajectory row.
pub const DEFAULT_CHUNK: usize = 65_536;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The trajectory table.
    pub trajectory: PathBuf,
    /// The metrics table.
    pub metrics: PathBuf,
    /// The summary table.
    pub summary: PathBuf,
    /// Rows in the trajectory table.
    pub trajectory_rows: u64,
}

/// (snapshot index, epoch, tensor position, [L2 norm, mean, std, min, max]).
type StatsRow = (u32, u64, usize, [f64; 5]);

/// Schema of `trajectory.parquet`.
pub fn trajectory_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("step", DataType::UInt64, true),
        Field::new("tensor", DataType::Utf8, false),
        Field::new("chunk", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new(
            "values",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
            false,
        ),
    ]))
}

/// Schema of `summary.parquet`.
pub fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("tensor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("numel", DataType::UInt64, false),
        Field::new("l2_norm", DataType::Float64, false),
        Field::new("mean", DataType::Float64, false),
        Field::new("std", DataType::Float64, false),
        Field::new("min", DataType::Float64, false),
        Field::new("max", DataType::Float64, false),
    ]))
}

fn run_metadata(run: &Run) -> Vec<(String, String)> {
    vec![(
        "tch_landscape.run_id".to_string(),
        run.manifest().run_id.clone(),
    )]
}

/// Exports `run` into `out_dir` (created if needed), `chunk` values per
/// trajectory row.
pub fn export_parquet(run: &Run, out_dir: &Path, chunk: usize) -> Result<ExportSummary> {
    if chunk == 0 {
        return Err(Error::invalid("chunk", "must be at least 1 value per row"));
    }
    let _lock = DirLock::create(out_dir)?;
    let manifest = run.manifest();

    // Trajectory: snapshot-major, tensor by tensor, chunk by chunk; one
    // record batch per (snapshot, tensor) keeps memory at one tensor.
    let trajectory = out_dir.join("trajectory.parquet");
    let kv = run_metadata(run);
    let mut stats_rows: Vec<StatsRow> = Vec::new();
    let rows = write_parquet(&trajectory, trajectory_schema(), &kv, |sink| {
        for snap in run.snapshots() {
            let meta = snap.meta();
            for (k, info) in manifest.tensors.iter().enumerate() {
                let mut values = vec![0f32; info.numel as usize];
                snap.read_f32_into(k, 0, &mut values)?;
                stats_rows.push((meta.index, meta.epoch, k, summarize(&values)));
                let batch = trajectory_batch(meta, &info.name, values, chunk)
                    .map_err(|e| Error::arrow(&trajectory, e))?;
                sink.write(&batch)?;
            }
        }
        Ok(())
    })?;

    let summary = out_dir.join("summary.parquet");
    let col = |f: fn(&StatsRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(stats_rows.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            stats_rows.iter().map(|r| r.0),
        )),
        Arc::new(UInt64Array::from_iter_values(
            stats_rows.iter().map(|r| r.1),
        )),
        Arc::new(StringArray::from_iter_values(
            stats_rows
                .iter()
                .map(|r| manifest.tensors[r.2].name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            stats_rows
                .iter()
                .map(|r| manifest.tensors[r.2].role.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            stats_rows.iter().map(|r| manifest.tensors[r.2].numel),
        )),
        col(|r| r.3[0]),
        col(|r| r.3[1]),
        col(|r| r.3[2]),
        col(|r| r.3[3]),
        col(|r| r.3[4]),
    ];
    let batch =
        RecordBatch::try_new(summary_schema(), cols).map_err(|e| Error::arrow(&summary, e))?;
    write_parquet_batch(&summary, &batch, &kv)?;

    let metrics = out_dir.join("metrics.parquet");
    let batch = metrics_batch(&run.metrics()?).map_err(|e| Error::arrow(&metrics, e))?;
    write_parquet_batch(&metrics, &batch, &kv)?;

    Ok(ExportSummary {
        trajectory,
        metrics,
        summary,
        trajectory_rows: rows,
    })
}

/// The trajectory rows of one tensor of one snapshot: `chunk` values a row.
fn trajectory_batch(
    meta: &SnapshotMeta,
    tensor: &str,
    values: Vec<f32>,
    chunk: usize,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let n = values.len();
    let n_chunks = n.div_ceil(chunk).max(1);
    let offsets: Vec<i32> = (0..=n_chunks).map(|c| (c * chunk).min(n) as i32).collect();
    let list = ListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(Float32Array::from(values)),
        None,
    )?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(vec![meta.index; n_chunks])),
        Arc::new(UInt64Array::from(vec![meta.epoch; n_chunks])),
        Arc::new(UInt64Array::from(vec![meta.step; n_chunks])),
        Arc::new(StringArray::from(vec![tensor; n_chunks])),
        Arc::new(UInt32Array::from_iter_values(0..n_chunks as u32)),
        Arc::new(UInt64Array::from_iter_values(
            (0..n_chunks).map(|c| (c * chunk) as u64),
        )),
        Arc::new(list),
    ];
    RecordBatch::try_new(trajectory_schema(), cols)
}

/// L2 norm, mean, population std, min and max (accumulated in float64).
pub(crate) fn summarize(v: &[f32]) -> [f64; 5] {
    if v.is_empty() {
        return [0.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN];
    }
    let n = v.len() as f64;
    let (mut sum, mut sq) = (0f64, 0f64);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &x in v {
        let x = x as f64;
        sum += x;
        sq += x * x;
        lo = lo.min(x);
        hi = hi.max(x);
    }
    let mean = sum / n;
    // Second pass for the variance: no cancellation for large means.
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    [sq.sqrt(), mean, var.sqrt(), lo, hi]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_known_values() {
        let s = summarize(&[3.0, -4.0]);
        assert!((s[0] - 5.0).abs() < 1e-12);
        assert!((s[1] + 0.5).abs() < 1e-12);
        assert!((s[2] - 3.5).abs() < 1e-12);
        assert_eq!((s[3], s[4]), (-4.0, 3.0));
    }
}
