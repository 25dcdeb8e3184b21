//! The files of an animation of the landscape over training
//! (`landscape animate`, [`analysis::animate`](crate::analysis::animate)):
//!
//! - `animation.json`: the settings ([`AnimationSpec`]), written before the
//!   first frame is computed, so a rerun resumes the same work or is refused;
//! - `frames/NNNNNN/`: one surface directory per frame (snapshot NNNNNN);
//! - `animation.parquet`: every value of every frame, one row per (frame,
//!   grid point, split), the settings as JSON in its key-value metadata.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::analysis::animate::{AnimationSpec, ANIMATION_SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::store::fsutil::{open_regular, write_json};
use crate::store::manifest::schema_version;
use crate::store::table::{json_entry, write_parquet};

/// The settings file of an animation directory.
pub const SPEC_FILE: &str = "animation.json";
/// The table of every frame's values.
pub const TABLE_FILE: &str = "animation.parquet";
/// Parquet metadata key of the settings.
pub const ANIMATION_META_KEY: &str = "tch_landscape.animation";

/// The largest `animation.json` read (a frame list of a long run is a few
/// hundred KiB).
const MAX_SPEC_BYTES: u64 = 64 << 20;

/// One row of `animation.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnimationRow {
    /// Frame number (0-based, in snapshot order).
    pub frame: u32,
    /// The frame's snapshot index.
    pub snapshot: u64,
    /// The frame's epoch.
    pub epoch: u64,
    /// Grid x coordinate.
    pub x: f64,
    /// Grid y coordinate.
    pub y: f64,
    /// Whether this is the frame's snapshot itself (its reference point).
    pub at_snapshot: bool,
    /// Data split.
    pub split: String,
    /// Mean loss.
    pub loss: f64,
    /// Accuracy in percent, when the loss has one.
    pub accuracy: Option<f64>,
}

/// The schema of `animation.parquet`.
pub fn animation_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, true),
        Field::new("frame", DataType::UInt32, false),
        Field::new("snapshot", DataType::UInt64, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("at_snapshot", DataType::Boolean, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, true),
    ]))
}

/// Writes `rows` to `path` (atomically), `spec` as JSON in its metadata.
pub(crate) fn write_table(path: &Path, rows: &[AnimationRow], spec: &AnimationSpec) -> Result<()> {
    let meta = vec![json_entry(path, ANIMATION_META_KEY, spec)?];
    let run_id = spec.directions.run_id();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(
            rows.iter().map(|_| run_id.as_deref()),
        )),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.frame))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.snapshot),
        )),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.epoch))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.x))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.y))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.at_snapshot)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.split.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.loss))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.accuracy))),
    ];
    let batch =
        RecordBatch::try_new(animation_schema(), cols).map_err(|e| Error::arrow(path, e))?;
    write_parquet(path, animation_schema(), &meta, |sink| sink.write(&batch)).map(|_| ())
}

/// Writes `animation.json` into `dir` atomically.
pub(crate) fn write_spec(dir: &Path, spec: &AnimationSpec) -> Result<()> {
    write_json(&dir.join(SPEC_FILE), spec, true)
}

/// Reads and checks `animation.json` of `dir` (bounded, a regular file, a
/// supported schema version, [`AnimationSpec::validate`]); `None` when there
/// is none.
pub(crate) fn read_spec(dir: &Path) -> Result<Option<AnimationSpec>> {
    let path = dir.join(SPEC_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let file = open_regular(&path)?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("reading", &path, e))?
        .len();
    if len > MAX_SPEC_BYTES {
        return Err(Error::corrupt(
            &path,
            format!("{len} bytes, expected at most {MAX_SPEC_BYTES}"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_SPEC_BYTES), &mut bytes)
        .map_err(|e| Error::io("reading", &path, e))?;
    let json = |source| Error::Json {
        path: path.clone(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(json)?;
    schema_version(&path, &value, ANIMATION_SCHEMA_VERSION)?;
    let spec: AnimationSpec = serde_json::from_value(value).map_err(json)?;
    spec.validate(&path)?;
    Ok(Some(spec))
}
