//! The metrics table: user metrics reported at epoch (or step) ends, in long
//! form (one row per metric value), so any metric names work.
//!
//! Stored as the Arrow IPC file `metrics.arrow`, rewritten atomically after
//! every report (it is small), so a crash never leaves it half-written.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::fsutil::write_atomic;
use crate::store::snapshot::{check_ipc_block, ipc_footer};

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
pub fn metrics_batch(
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
pub fn write_metrics(path: &Path, rows: &[MetricRow], fsync: bool) -> Result<()> {
    let batch = metrics_batch(rows).map_err(|e| Error::arrow(path, e))?;
    write_atomic(path, fsync, |w| {
        let mut writer =
            FileWriter::try_new(w, &batch.schema()).map_err(|e| Error::arrow(path, e))?;
        writer.write(&batch).map_err(|e| Error::arrow(path, e))?;
        writer.finish().map_err(|e| Error::arrow(path, e))
    })
}

/// Reads the metrics table; a missing file is an empty table.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    // Arrow's reader panics on some damaged files: check the structure first.
    let (footer, trailer_start) = ipc_footer(&bytes).map_err(|r| Error::corrupt(path, r))?;
    for block in footer.recordBatches().into_iter().flatten() {
        check_ipc_block(&bytes, block, trailer_start, &metrics_schema())
            .map_err(|r| Error::corrupt(path, r))?;
    }
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err(Error::corrupt(path, "unexpected dictionary batches"));
    }
    let reader = FileReader::try_new(std::io::Cursor::new(bytes.as_slice()), None)
        .map_err(|e| Error::corrupt(path, format!("not an Arrow IPC file ({e})")))?;
    if reader.schema().fields() != metrics_schema().fields() {
        return Err(Error::corrupt(
            path,
            "columns differ from the metrics schema",
        ));
    }
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
        let col = |i: usize| batch.column(i);
        let snapshot = col(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("schema checked");
        let epoch = col(1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("schema checked");
        let step = col(2)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("schema checked");
        let name = col(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("schema checked");
        let value = col(4)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("schema checked");
        let time = col(5)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("schema checked");
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
