//! The metrics table: user metrics reported at epoch (or step) ends, in long
//! form (one row per metric value), so any metric names work.
//!
//! Stored as the Arrow IPC file `metrics.arrow`, rewritten atomically after
//! every report (it is small), so a crash never leaves it half-written.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::table::{column, read_ipc, write_ipc};

/// File name of the metrics table inside a run directory.
pub const METRICS_FILE: &str = "metrics.arrow";

/// One reported metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Index of the snapshot taken at the same call, if one was taken.
    pub snapshot: Option<u32>,
    /// Epoch of the report.
    pub epoch: u64,
    /// Global step of the report, when known.
    pub step: Option<u64>,
    /// Metric name as given by the user.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Wall time of the report, seconds since the Unix epoch.
    pub unix_time: f64,
}

/// The Arrow schema of the metrics table (`schemas/metrics.json`).
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, true),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("step", DataType::UInt64, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("unix_time", DataType::Float64, false),
    ]))
}

/// Builds the metrics table as one record batch.
pub(crate) fn metrics_batch(
    rows: &[MetricRow],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(rows.iter().map(|r| r.snapshot).collect::<UInt32Array>()),
            Arc::new(rows.iter().map(|r| Some(r.epoch)).collect::<UInt64Array>()),
            Arc::new(rows.iter().map(|r| r.step).collect::<UInt64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.name.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(rows.iter().map(|r| Some(r.value)).collect::<Float64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.unix_time))
                    .collect::<Float64Array>(),
            ),
        ],
    )
}

/// Writes the whole metrics table atomically.
pub(crate) fn write_metrics(path: &Path, rows: &[MetricRow], fsync: bool) -> Result<()> {
    let batch = metrics_batch(rows).map_err(|e| Error::arrow(path, e))?;
    write_ipc(path, &batch, fsync)
}

/// Reads the metrics table; a missing file is an empty table.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let batches = read_ipc(path, &metrics_schema())?;
    let mut rows = Vec::new();
    for batch in &batches {
        let snapshot = column::<UInt32Array>(batch, 0, path)?;
        let epoch = column::<UInt64Array>(batch, 1, path)?;
        let step = column::<UInt64Array>(batch, 2, path)?;
        let name = column::<StringArray>(batch, 3, path)?;
        let value = column::<Float64Array>(batch, 4, path)?;
        let time = column::<Float64Array>(batch, 5, path)?;
        for i in 0..batch.num_rows() {
            rows.push(MetricRow {
                snapshot: snapshot.is_valid(i).then(|| snapshot.value(i)),
                epoch: epoch.value(i),
                step: step.is_valid(i).then(|| step.value(i)),
                name: name.value(i).to_string(),
                value: value.value(i),
                unix_time: time.value(i),
            });
        }
    }
    Ok(rows)
}
