//! Parquet export of a run: trajectory, metrics, per-snapshot metrics and
//! per-tensor summaries, zstd-compressed, readable as they are by pyarrow,
//! polars and DuckDB.
//!
//! Tables (documented in `schemas/`, layout in `schemas/export.json`); every
//! table starts with `run_id`, so the tables of several runs concatenate:
//! - `trajectory.parquet`: one row per snapshot × tensor chunk, values as
//!   `list<float32>` (tensors larger than the chunk size span several rows),
//!   with the tensor's role, shape and element count;
//! - `metrics.parquet`: the metrics table (long: one row per reported value);
//! - `epochs.parquet`: one row per snapshot (θ₀ included) with its epoch,
//!   step, trigger and time, and one column per metric reported with an
//!   epoch-level snapshot (null where not reported);
//! - `summary.parquet`: per snapshot and tensor: L2 norm, mean, std, min, max.
//!
//! Every table carries the key-value metadata `tch_landscape.run_id` and
//! `tch_landscape.schema_version` ([`EXPORT_SCHEMA_VERSION`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Array, Float64Array, Int64Array, ListArray, StringArray, UInt32Array,
    UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::fsutil::DirLock;
use crate::store::manifest::TensorInfo;
use crate::store::metrics::{metrics_batch, MetricRow};
use crate::store::run::Run;
use crate::store::snapshot::{SnapshotMeta, Trigger};
use crate::store::table::{write_parquet, write_parquet_batch};

/// Default number of values per trajectory row.
pub const DEFAULT_CHUNK: usize = 65_536;

/// Version of the export tables' columns, written under
/// [`SCHEMA_VERSION_KEY`]. Version 1 (no such key) had no `run_id` column,
/// no `role`/`shape`/`numel` in the trajectory and no `epochs.parquet`.
pub const EXPORT_SCHEMA_VERSION: u32 = 2;

/// Key-value metadata key of the export tables' schema version.
pub const SCHEMA_VERSION_KEY: &str = "tch_landscape.schema_version";

/// Key-value metadata key of the exported run's id.
pub const RUN_ID_KEY: &str = "tch_landscape.run_id";

/// File name of the trajectory table.
pub const TRAJECTORY_FILE: &str = "trajectory.parquet";
/// File name of the long metrics table.
pub const METRICS_PARQUET_FILE: &str = "metrics.parquet";
/// File name of the per-snapshot metrics table.
pub const EPOCHS_FILE: &str = "epochs.parquet";
/// File name of the per-tensor statistics table.
pub const SUMMARY_FILE: &str = "summary.parquet";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The trajectory table.
    pub trajectory: PathBuf,
    /// The metrics table (long).
    pub metrics: PathBuf,
    /// The per-snapshot table (wide).
    pub epochs: PathBuf,
    /// The summary table.
    pub summary: PathBuf,
    /// Rows in the trajectory table.
    pub trajectory_rows: u64,
}

/// (snapshot index, epoch, tensor position, [L2 norm, mean, std, min, max]).
type StatsRow = (u32, u64, usize, [f64; 5]);

fn run_id_field() -> Field {
    Field::new("run_id", DataType::Utf8, false)
}

/// Schema of `trajectory.parquet`.
pub fn trajectory_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        run_id_field(),
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("step", DataType::UInt64, true),
        Field::new("tensor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new(
            "shape",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, false))),
            false,
        ),
        Field::new("numel", DataType::UInt64, false),
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
        run_id_field(),
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

/// Schema of the export's `metrics.parquet`: `run_id`, then the columns of
/// the run's metrics table ([`metrics_schema`](crate::store::metrics::metrics_schema)).
pub fn export_metrics_schema() -> SchemaRef {
    let mut fields = vec![Arc::new(run_id_field())];
    fields.extend(
        crate::store::metrics::metrics_schema()
            .fields()
            .iter()
            .cloned(),
    );
    Arc::new(Schema::new(fields))
}

/// The fixed columns of `epochs.parquet`, before the metric columns.
pub const EPOCHS_FIXED_COLUMNS: [&str; 6] = [
    "run_id",
    "snapshot",
    "epoch",
    "step",
    "trigger",
    "unix_time",
];

/// Schema of `epochs.parquet` with the metric columns `metrics` (in this
/// order, already deduplicated against the fixed columns, see
/// [`epochs_column_names`]).
pub fn epochs_schema(metrics: &[String]) -> SchemaRef {
    let mut fields = vec![
        run_id_field(),
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("step", DataType::UInt64, true),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("unix_time", DataType::Float64, false),
    ];
    fields.extend(
        metrics
            .iter()
            .map(|m| Field::new(m.as_str(), DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

/// The column name of each metric name in `epochs.parquet`: the metric's
/// own name, or `metric_` prepended (until it is unique) when it would
/// collide with a fixed column such as `epoch`.
pub fn epochs_column_names(metrics: &[String]) -> Vec<String> {
    let mut taken: std::collections::HashSet<String> = EPOCHS_FIXED_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(metrics.iter().cloned())
        .collect();
    metrics
        .iter()
        .map(|m| {
            if !EPOCHS_FIXED_COLUMNS.contains(&m.as_str()) {
                return m.clone();
            }
            let mut c = format!("metric_{m}");
            while taken.contains(&c) {
                c = format!("metric_{c}");
            }
            taken.insert(c.clone());
            c
        })
        .collect()
}

/// The name a trigger has in files (`train_start`, `epoch_end`, …).
fn trigger_name(t: Trigger) -> &'static str {
    match t {
        Trigger::TrainStart => "train_start",
        Trigger::EpochEnd => "epoch_end",
        Trigger::StepEnd => "step_end",
        Trigger::Manual => "manual",
    }
}

fn run_metadata(run: &Run) -> Vec<(String, String)> {
    vec![
        (RUN_ID_KEY.to_string(), run.manifest().run_id.clone()),
        (
            SCHEMA_VERSION_KEY.to_string(),
            EXPORT_SCHEMA_VERSION.to_string(),
        ),
    ]
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
    let trajectory = out_dir.join(TRAJECTORY_FILE);
    let kv = run_metadata(run);
    let run_id = manifest.run_id.as_str();
    let mut stats_rows: Vec<StatsRow> = Vec::new();
    let rows = write_parquet(&trajectory, trajectory_schema(), &kv, |sink| {
        for snap in run.snapshots() {
            let meta = snap.meta();
            for (k, info) in manifest.tensors.iter().enumerate() {
                let mut values = vec![0f32; info.numel as usize];
                snap.read_f32_into(k, 0, &mut values)?;
                stats_rows.push((meta.index, meta.epoch, k, summarize(&values)));
                let batch = trajectory_batch(run_id, meta, info, values, chunk)
                    .map_err(|e| Error::arrow(&trajectory, e))?;
                sink.write(&batch)?;
            }
        }
        Ok(())
    })?;

    let summary = out_dir.join(SUMMARY_FILE);
    let col = |f: fn(&StatsRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(stats_rows.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run_id; stats_rows.len()])),
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

    let rows_m = run.metrics()?;
    let metrics = out_dir.join(METRICS_PARQUET_FILE);
    let batch = export_metrics_batch(run_id, &rows_m).map_err(|e| Error::arrow(&metrics, e))?;
    write_parquet_batch(&metrics, &batch, &kv)?;

    let epochs = out_dir.join(EPOCHS_FILE);
    let metas: Vec<&SnapshotMeta> = run.snapshots().iter().map(|s| s.meta()).collect();
    let batch = epochs_batch(run_id, &metas, &rows_m).map_err(|e| Error::arrow(&epochs, e))?;
    write_parquet_batch(&epochs, &batch, &kv)?;

    Ok(ExportSummary {
        trajectory,
        metrics,
        epochs,
        summary,
        trajectory_rows: rows,
    })
}

/// The run's metrics table with `run_id` in front.
fn export_metrics_batch(
    run_id: &str,
    rows: &[MetricRow],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let inner = metrics_batch(rows)?;
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![run_id; rows.len()]))];
    cols.extend(inner.columns().iter().cloned());
    RecordBatch::try_new(export_metrics_schema(), cols)
}

/// One row per snapshot of `metas`; the metric rows reported with a
/// snapshot that is not a step snapshot (θ₀'s through `on_train_start`,
/// `on_epoch_end`'s) spread into one nullable column per metric name, in
/// order of first report. A name reported twice for one snapshot keeps the
/// last value. Rows without a snapshot, with a step snapshot, or with a
/// snapshot that is not in the run (a killed run) stay in the long table
/// only.
fn epochs_batch(
    run_id: &str,
    metas: &[&SnapshotMeta],
    rows: &[MetricRow],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let position: HashMap<u32, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| (m.index, i))
        .collect();
    let mut names: Vec<String> = Vec::new();
    let mut column_of: HashMap<&str, usize> = HashMap::new();
    let mut values: Vec<Vec<Option<f64>>> = Vec::new();
    for r in rows {
        let Some(&pos) = r.snapshot.and_then(|s| position.get(&s)) else {
            continue;
        };
        if !r.is_per_epoch(Some(metas[pos].trigger)) {
            continue;
        }
        let c = *column_of.entry(r.name.as_str()).or_insert_with(|| {
            names.push(r.name.clone());
            values.push(vec![None; metas.len()]);
            names.len() - 1
        });
        values[c][pos] = Some(r.value);
    }
    let n = metas.len();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run_id; n])),
        Arc::new(UInt32Array::from_iter_values(metas.iter().map(|m| m.index))),
        Arc::new(UInt64Array::from_iter_values(metas.iter().map(|m| m.epoch))),
        Arc::new(UInt64Array::from_iter(metas.iter().map(|m| m.step))),
        Arc::new(StringArray::from_iter_values(
            metas.iter().map(|m| trigger_name(m.trigger)),
        )),
        Arc::new(Float64Array::from_iter_values(
            metas.iter().map(|m| m.unix_time),
        )),
    ];
    cols.extend(
        values
            .into_iter()
            .map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
    );
    RecordBatch::try_new(epochs_schema(&epochs_column_names(&names)), cols)
}

/// The trajectory rows of one tensor of one snapshot: `chunk` values a row.
fn trajectory_batch(
    run_id: &str,
    meta: &SnapshotMeta,
    info: &TensorInfo,
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
    let rank = info.shape.len();
    let shape = ListArray::try_new(
        Arc::new(Field::new("item", DataType::Int64, false)),
        OffsetBuffer::new(
            (0..=n_chunks)
                .map(|c| (c * rank) as i32)
                .collect::<Vec<_>>()
                .into(),
        ),
        Arc::new(Int64Array::from_iter_values(
            (0..n_chunks).flat_map(|_| info.shape.iter().copied()),
        )),
        None,
    )?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run_id; n_chunks])),
        Arc::new(UInt32Array::from(vec![meta.index; n_chunks])),
        Arc::new(UInt64Array::from(vec![meta.epoch; n_chunks])),
        Arc::new(UInt64Array::from(vec![meta.step; n_chunks])),
        Arc::new(StringArray::from(vec![info.name.as_str(); n_chunks])),
        Arc::new(StringArray::from(vec![info.role.as_str(); n_chunks])),
        Arc::new(shape),
        Arc::new(UInt64Array::from(vec![info.numel; n_chunks])),
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

    fn meta(index: u32, epoch: u64, trigger: Trigger) -> SnapshotMeta {
        SnapshotMeta {
            run_id: "r".into(),
            index,
            epoch,
            step: (index > 0).then_some(index as u64 * 10),
            trigger,
            unix_time: index as f64,
            tensors_crc32: None,
        }
    }

    fn row(snapshot: Option<u32>, epoch: u64, name: &str, value: f64) -> MetricRow {
        MetricRow {
            snapshot,
            epoch,
            step: None,
            name: name.into(),
            value,
            unix_time: 0.0,
        }
    }

    #[test]
    fn epochs_spread_epoch_metrics_only() {
        let metas = [
            meta(0, 0, Trigger::TrainStart),
            meta(1, 1, Trigger::StepEnd),
            meta(2, 1, Trigger::EpochEnd),
        ];
        let metas: Vec<&SnapshotMeta> = metas.iter().collect();
        let rows = [
            row(Some(0), 0, "loss", 2.0),
            row(None, 1, "batch_loss", 9.0),
            row(Some(1), 1, "batch_loss", 8.0),
            row(Some(2), 1, "loss", 1.0),
            row(Some(2), 1, "epoch", 7.0),
            row(Some(2), 1, "acc", 50.0),
            row(Some(2), 1, "acc", 60.0),
            row(Some(9), 3, "loss", 0.5),
        ];
        let b = epochs_batch("r", &metas, &rows).unwrap();
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "run_id",
                "snapshot",
                "epoch",
                "step",
                "trigger",
                "unix_time",
                "loss",
                "metric_epoch",
                "acc"
            ]
        );
        assert_eq!(b.num_rows(), 3);
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(col(6), [Some(2.0), None, Some(1.0)]);
        assert_eq!(col(7), [None, None, Some(7.0)]);
        assert_eq!(col(8), [None, None, Some(60.0)]);
        let trig = b.column(4).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(trig.value(1), "step_end");
    }

    #[test]
    fn epochs_column_names_avoid_fixed_and_taken_names() {
        let names = ["epoch".to_string(), "metric_epoch".to_string()];
        assert_eq!(
            epochs_column_names(&names),
            ["metric_metric_epoch", "metric_epoch"]
        );
    }
}
