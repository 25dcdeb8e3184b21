//! The files of a mode-connectivity result (`landscape connect`,
//! [`analysis::connect`](crate::analysis::connect)):
//!
//! - `curve-state.arrow`: the bend θ_c, its momentum and the training log,
//!   rewritten atomically after every epoch (resume reads it); Arrow IPC, one
//!   float32 record batch per tensor (bend tensors, then momentum tensors, in
//!   the parameter set's order), the rest as JSON in the schema metadata;
//! - `curve.parquet`: one row per (path, t, split): `path` (`curve` or
//!   `line`), `t`, `split`, `loss`, `accuracy` (null without one); the
//!   summary (`connect.json`'s content) in its key-value metadata.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::analysis::connect::{EpochLog, PathRow};
use crate::analysis::params::{NamedTensor, ParamSet};
use crate::error::{Error, Result};
use crate::store::table::{column, read_ipc, read_parquet, write_ipc_with, write_parquet};

/// The state file's name in a curve directory.
pub const STATE_FILE: &str = "curve-state.arrow";
/// The table of both paths.
pub const CURVE_FILE: &str = "curve.parquet";
/// The summary.
pub const SUMMARY_FILE: &str = "connect.json";

/// Schema metadata key of the state's JSON.
const STATE_KEY: &str = "tch_landscape.curve_state";
/// Parquet metadata key of the summary.
pub const CURVE_META_KEY: &str = "tch_landscape.connect";

/// A bend's training state.
#[derive(Debug)]
pub struct CurveState {
    /// What the state belongs to (curve, settings, ends), as JSON.
    pub key: String,
    /// θ_c.
    pub bend: ParamSet,
    /// The momentum of each tensor of θ_c.
    pub momentum: Vec<Tensor>,
    /// One row per finished epoch.
    pub log: Vec<EpochLog>,
}

#[derive(Serialize, Deserialize)]
struct StateJson {
    key: String,
    log: Vec<EpochLog>,
    tensors: Vec<(String, u64)>,
}

fn state_schema() -> Schema {
    Schema::new(vec![Field::new("values", DataType::Float32, false)])
}

/// Writes `state` to `path` atomically (fsynced).
pub(crate) fn save_state(path: &Path, state: &CurveState) -> Result<()> {
    let json = StateJson {
        key: state.key.clone(),
        log: state.log.clone(),
        tensors: state
            .bend
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.tensor.numel() as u64))
            .collect(),
    };
    let text = serde_json::to_string(&json).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let schema = Arc::new(
        state_schema().with_metadata(std::collections::HashMap::from([(
            STATE_KEY.to_string(),
            text,
        )])),
    );
    write_ipc_with(path, &schema, true, |sink| {
        let all = state
            .bend
            .tensors
            .iter()
            .map(|t| (&t.name, &t.tensor))
            .chain(
                state
                    .bend
                    .tensors
                    .iter()
                    .map(|t| &t.name)
                    .zip(&state.momentum),
            );
        for (name, t) in all {
            let v = Vec::<f32>::try_from(t.flatten(0, -1))
                .map_err(|e| Error::torch(format!("saving the bend's '{name}'"), e))?;
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Float32Array::from(v)) as ArrayRef],
            )
            .map_err(|e| Error::arrow(path, e))?;
            sink.write(&batch)?;
        }
        Ok(())
    })
}

/// Reads the state at `path` (`None` when there is no file), checked
/// against `like` (names and element counts of the bend).
pub(crate) fn load_state(path: &Path, like: &ParamSet) -> Result<Option<CurveState>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let corrupt = |r: String| Error::corrupt(path, r);
    let batches = read_ipc(path, &state_schema())?;
    let meta = batches
        .first()
        .and_then(|b| b.schema().metadata().get(STATE_KEY).cloned())
        .ok_or_else(|| corrupt(format!("no '{STATE_KEY}' metadata")))?;
    let json: StateJson = serde_json::from_str(&meta)
        .map_err(|e| corrupt(format!("'{STATE_KEY}' is not the expected JSON ({e})")))?;
    let n = like.tensors.len();
    if json.tensors.len() != n || batches.len() != 2 * n {
        return Err(corrupt(format!(
            "holds {} tensors in {} batches, the curve has {n} tensors (2 × {n} batches expected)",
            json.tensors.len(),
            batches.len()
        )));
    }
    let mut read = |i: usize| -> Result<Tensor> {
        let t = &like.tensors[i % n];
        let (name, numel) = &json.tensors[i % n];
        if *name != t.name || *numel != t.tensor.numel() as u64 {
            return Err(corrupt(format!(
                "tensor {} is '{name}' of {numel} values, the curve's is '{}' of {}",
                i % n,
                t.name,
                t.tensor.numel()
            )));
        }
        let values: &Float32Array = column(&batches[i], 0, path)?;
        if values.len() as u64 != *numel {
            return Err(corrupt(format!(
                "'{name}' has {} values, {numel} expected",
                values.len()
            )));
        }
        if let Some(j) = values.values().iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                path: path.to_path_buf(),
                tensor: name.clone(),
                index: j as u64,
                value: f64::from(values.value(j)),
            });
        }
        Tensor::from_slice(values.values())
            .f_reshape(t.tensor.size())
            .map_err(|e| Error::torch(format!("reading '{name}'"), e))
    };
    let mut bend = Vec::with_capacity(n);
    for (i, t) in like.tensors.iter().enumerate() {
        bend.push(NamedTensor {
            name: t.name.clone(),
            role: t.role,
            tensor: read(i)?,
        });
    }
    let momentum = (n..2 * n).map(&mut read).collect::<Result<Vec<_>>>()?;
    Ok(Some(CurveState {
        key: json.key,
        bend: ParamSet { tensors: bend },
        momentum,
        log: json.log,
    }))
}

/// The schema of `curve.parquet`.
pub fn curve_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("t", DataType::Float64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, true),
    ]))
}

/// Writes the rows of both paths to `path` (atomically), `summary` (JSON)
/// in its metadata.
pub(crate) fn write_curve<T: Serialize>(path: &Path, rows: &[PathRow], summary: &T) -> Result<()> {
    let meta = vec![crate::store::table::json_entry(
        path,
        CURVE_META_KEY,
        summary,
    )?];
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.path))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.t))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.split.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.loss))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.accuracy))),
    ];
    let batch = RecordBatch::try_new(curve_schema(), cols).map_err(|e| Error::arrow(path, e))?;
    write_parquet(path, curve_schema(), &meta, |sink| sink.write(&batch)).map(|_| ())
}

/// One row of `curve.parquet` as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRow {
    /// `curve` or `line`.
    pub path: String,
    /// Position on the path, 0 to 1.
    pub t: f64,
    /// Data split.
    pub split: String,
    /// Loss.
    pub loss: f64,
    /// Accuracy in percent, when the loss has one.
    pub accuracy: Option<f64>,
}

/// Reads `curve.parquet` (checked against its schema and checksums): the
/// rows and the summary of its metadata (`connect.json`'s content).
pub fn read_curve(path: &Path) -> Result<(Vec<CurveRow>, serde_json::Value)> {
    use arrow::array::Array;
    let table = read_parquet(path, &curve_schema(), "a curve table")?;
    let summary = table.json_meta(path, CURVE_META_KEY, "a curve table")?;
    let mut rows = Vec::new();
    for b in &table.batches {
        let paths: &StringArray = column(b, 0, path)?;
        let ts: &Float64Array = column(b, 1, path)?;
        let splits: &StringArray = column(b, 2, path)?;
        let losses: &Float64Array = column(b, 3, path)?;
        let accs: &Float64Array = column(b, 4, path)?;
        for i in 0..b.num_rows() {
            let p = paths.value(i);
            if p != "curve" && p != "line" {
                return Err(Error::corrupt(
                    path,
                    format!("row {i}: path '{p}' is neither curve nor line"),
                ));
            }
            rows.push(CurveRow {
                path: p.to_string(),
                t: ts.value(i),
                split: splits.value(i).to_string(),
                loss: losses.value(i),
                accuracy: accs.is_valid(i).then(|| accs.value(i)),
            });
        }
    }
    Ok((rows, summary))
}
