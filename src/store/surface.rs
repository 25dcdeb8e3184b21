//! The surface directory: on-disk format of loss surfaces (and of the
//! curvature maps computed on them), written and read through the crate's
//! one table writer and reader (`store::table`).
//!
//! ```text
//! SURFACE_DIR/
//!   surface.json          the surface's spec (atomic JSON)
//!   directions.parquet    centre and directions (schemas/directions.json)
//!   points/NNNNNN.arrow   finished points, one atomic Arrow IPC segment per flush
//!   surface.parquet       all points (schemas/surface_points.json), when complete
//!   sharpness.json        sharpness figures, when complete and not a shard
//! ```
//!
//! The records of the rows ([`GridPoint`], [`SplitResult`], [`PointValue`])
//! are defined here, with their format; the specs and figures stored as JSON
//! belong to the analyses and are written through serde (a spec stored in a
//! table's metadata implements `StoredSpec`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::fsutil::{
    create_dir_in, create_output_dir, is_temp_name, open_regular, read_json, write_atomic,
    write_json,
};
use crate::store::manifest::schema_version;
use crate::store::run::Verification;
use crate::store::table::{
    column, json_entry, read_current_or_older, read_ipc, read_ipc_checked, read_parquet, write_ipc,
    write_parquet_batch,
};

/// Name of the specification file of a surface directory.
pub const SPEC_FILE: &str = "surface.json";
/// Name of the final results table.
pub const RESULT_FILE: &str = "surface.parquet";
/// Name of the directions file.
pub const DIRECTIONS_FILE: &str = "directions.parquet";
/// Sub-directory of point segments.
pub const POINTS_DIR: &str = "points";
/// Name of the sharpness file.
pub const SHARPNESS_FILE: &str = "sharpness.json";
/// Metadata key of the spec in `surface.parquet`.
pub const SURFACE_META_KEY: &str = "tch_landscape.surface";
/// The newest `schema_version` of `surface.json` this build reads (and the
/// one it writes). Version 2 stores the grid's reference point, evaluated
/// on its own when off the lattice, and adds the `run_id` and `reference`
/// columns (`ix`/`iy` null off the lattice); version 1 files are read.
pub const SCHEMA_VERSION: u32 = 2;

/// One point of a grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridPoint {
    /// Flat index `iy * nx + ix`.
    pub index: usize,
    /// Column.
    pub ix: usize,
    /// Row (0 for 1-D grids).
    pub iy: usize,
    /// x coordinate (α).
    pub x: f64,
    /// y coordinate (β; 0 for 1-D grids).
    pub y: f64,
    /// False for the reference point evaluated on its own, off the lattice
    /// (its `ix` and `iy` are then meaningless, and null in tables).
    pub on_grid: bool,
    /// Whether this is the result's reference point (θ* of a surface, the
    /// trained end of an interpolation).
    pub reference: bool,
}

/// Loss and accuracy of the model on one data split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitResult {
    /// Split name, e.g. `train` or `test`.
    pub split: String,
    /// Mean loss over the split.
    pub loss: f64,
    /// Accuracy in percent, when the task has one.
    pub accuracy: Option<f64>,
}

/// The values of every split at one grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointValue {
    /// The grid point.
    pub point: GridPoint,
    /// Loss and accuracy per split.
    pub splits: Vec<SplitResult>,
}

/// A specification stored as JSON in the key-value metadata of a result
/// table, next to flat copies of its most asked-for settings.
pub(crate) trait StoredSpec: Serialize + DeserializeOwned {
    /// The flat copies, in order: key (stored with the prefix
    /// `tch_landscape.`) and value.
    fn flat_meta(&self) -> Vec<(&'static str, String)>;

    /// Number of points of its grid: a stored point index must be below.
    fn grid_len(&self) -> usize;

    /// The id of the run the result belongs to, written as the table's
    /// `run_id` column (null when not known).
    fn run_id(&self) -> Option<String> {
        None
    }
}

/// The key-value metadata of a result table: `spec` as JSON under `key`,
/// then its flat copies under `tch_landscape.*`.
pub(crate) fn spec_metadata<S: StoredSpec>(
    path: &Path,
    key: &str,
    spec: &S,
) -> Result<Vec<(String, String)>> {
    Ok(std::iter::once(json_entry(path, key, spec)?)
        .chain(
            spec.flat_meta()
                .into_iter()
                .map(|(k, v)| (format!("tch_landscape.{k}"), v)),
        )
        .collect())
}

/// The error of a stored point index outside a `len`-point grid.
pub(crate) fn index_outside(path: &Path, index: usize, len: usize) -> Error {
    Error::corrupt(
        path,
        format!("point index {index} outside the {len}-point grid"),
    )
}

/// Schema of point segments (`points/*.arrow`): one row per point and split.
pub fn points_schema() -> SchemaRef {
    Arc::new(Schema::new(point_fields()))
}

/// Schema of `surface.parquet`: the run's id, then the columns of
/// [`points_schema`].
pub fn result_schema() -> SchemaRef {
    let mut fields = vec![Field::new("run_id", DataType::Utf8, true)];
    fields.extend(point_fields());
    Arc::new(Schema::new(fields))
}

fn point_fields() -> Vec<Field> {
    vec![
        Field::new("index", DataType::UInt32, false),
        Field::new("ix", DataType::UInt32, true),
        Field::new("iy", DataType::UInt32, true),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("reference", DataType::Boolean, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, true),
    ]
}

/// The schema of segments and tables written by schema version 1 (read,
/// never written): no `run_id` or `reference`, `ix`/`iy` never null.
fn points_schema_v1() -> Schema {
    Schema::new(vec![
        Field::new("index", DataType::UInt32, false),
        Field::new("ix", DataType::UInt32, false),
        Field::new("iy", DataType::UInt32, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, true),
    ])
}

/// Reads a file with the current schema `schema`, else as a version 1
/// file.
fn read_either<T>(schema: &Schema, read: impl Fn(&Schema) -> Result<T>) -> Result<T> {
    read_current_or_older(schema, &points_schema_v1(), read)
}

/// A surface directory (which need not exist yet).
#[derive(Debug, Clone)]
pub(crate) struct SurfaceDir {
    path: PathBuf,
}

impl SurfaceDir {
    /// The surface directory `path`.
    pub(crate) fn new(path: &Path) -> SurfaceDir {
        SurfaceDir {
            path: path.to_path_buf(),
        }
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the directory and its `points/` sub-directory.
    pub(crate) fn create(&self) -> Result<()> {
        create_output_dir(&self.path)?;
        create_dir_in(&self.path, &self.file(POINTS_DIR))
    }

    /// The spec in `surface.json`, or `None` when there is none; a newer
    /// or invalid `schema_version` is an error (see
    /// [`schema_version`](crate::store::manifest)).
    pub(crate) fn read_spec<S: DeserializeOwned>(&self) -> Result<Option<S>> {
        let path = self.file(SPEC_FILE);
        let Some(value) = read_json_if_any::<serde_json::Value>(&path)? else {
            return Ok(None);
        };
        schema_version(&path, &value, SCHEMA_VERSION)?;
        serde_json::from_value(value)
            .map(Some)
            .map_err(|source| Error::Json { path, source })
    }

    /// Writes `surface.json` atomically.
    pub(crate) fn write_spec<S: Serialize>(&self, spec: &S) -> Result<()> {
        write_json(&self.file(SPEC_FILE), spec, true)
    }

    /// Writes `sharpness.json` atomically.
    pub(crate) fn write_sharpness<T: Serialize + ?Sized>(&self, sharpness: &T) -> Result<()> {
        write_json(&self.file(SHARPNESS_FILE), sharpness, true)
    }

    /// Has `save` write `directions.parquet` (given its path) unless the
    /// file is there.
    pub(crate) fn save_directions(&self, save: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let path = self.file(DIRECTIONS_FILE);
        if path.exists() {
            return Ok(());
        }
        save(&path)
    }

    /// Copies `directions.parquet` of `from` into this directory, atomically.
    pub(crate) fn copy_directions(&self, from: &SurfaceDir) -> Result<()> {
        let src = from.file(DIRECTIONS_FILE);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut open_regular(&src)?, &mut bytes)
            .map_err(|e| Error::io("reading", &src, e))?;
        let dst = self.file(DIRECTIONS_FILE);
        write_atomic(&dst, true, |w| {
            std::io::Write::write_all(w, &bytes).map_err(|e| Error::io("writing", &dst, e))
        })
    }

    /// Whether `surface.parquet` exists (the computation finished).
    pub(crate) fn has_result(&self) -> bool {
        self.file(RESULT_FILE).exists()
    }

    /// The points of `surface.parquet` (of a `grid_len`-point grid), in
    /// file order.
    pub(crate) fn read_result(&self, grid_len: usize) -> Result<Vec<PointValue>> {
        let path = self.file(RESULT_FILE);
        let table = read_either(&result_schema(), |schema| {
            read_parquet(&path, schema, "a surface table")
        })?;
        let mut out = Vec::new();
        for batch in &table.batches {
            batch_points(batch, grid_len, &path, &mut out)?;
        }
        Ok(out)
    }

    /// Writes `surface.parquet` atomically: `points` with `spec` (and its
    /// flat copies of the most asked-for settings) as metadata.
    pub(crate) fn write_result<S: StoredSpec>(
        &self,
        spec: &S,
        points: &[PointValue],
    ) -> Result<()> {
        let path = self.file(RESULT_FILE);
        let batch =
            points_batch(points, Some(spec.run_id())).map_err(|e| Error::arrow(&path, e))?;
        let meta = spec_metadata(&path, SURFACE_META_KEY, spec)?;
        write_parquet_batch(&path, &batch, &meta)
    }

    /// The segments of `points/` (removing leftover temporary files) and
    /// every point they hold (of a `grid_len`-point grid), by flat index.
    pub(crate) fn read_segments(&self, grid_len: usize) -> Result<Segments> {
        let dir = self.file(POINTS_DIR);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(n) = name
                .strip_suffix(".arrow")
                .and_then(|s| s.parse::<usize>().ok())
            {
                found.push((n, entry.path()));
            }
        }
        found.sort();
        let mut points = BTreeMap::new();
        for (_, path) in &found {
            for p in read_segment(path, grid_len)? {
                points.insert(p.point.index, p);
            }
        }
        Ok(Segments {
            next: found.last().map_or(0, |s| s.0 + 1),
            files: found.into_iter().map(|(_, p)| p).collect(),
            dir,
            points,
        })
    }
}

/// The point segments of a surface directory: those read back, and a writer
/// of new ones.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    next: usize,
    files: Vec<PathBuf>,
    /// The points read back, by flat index.
    pub(crate) points: BTreeMap<usize, PointValue>,
}

impl Segments {
    /// Writes `points` as the next segment, atomically and durably.
    pub(crate) fn write(&mut self, points: &[PointValue]) -> Result<()> {
        let path = self.dir.join(format!("{:06}.arrow", self.next));
        let batch = points_batch(points, None).map_err(|e| Error::arrow(&path, e))?;
        write_ipc(&path, &batch, true)?;
        self.files.push(path);
        self.next += 1;
        Ok(())
    }

    /// Removes every segment (once `surface.parquet` holds their points).
    pub(crate) fn remove_all(&mut self) {
        for p in self.files.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn read_segment(path: &Path, grid_len: usize) -> Result<Vec<PointValue>> {
    let mut out = Vec::new();
    for batch in read_either(&points_schema(), |schema| read_ipc(path, schema))? {
        batch_points(&batch, grid_len, path, &mut out)?;
    }
    Ok(out)
}

/// The rows of `points`, one per point and split; with `run_id`, the
/// `surface.parquet` table (its first column), else a segment.
fn points_batch(
    points: &[PointValue],
    run_id: Option<Option<String>>,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let rows: Vec<(&GridPoint, &SplitResult)> = points
        .iter()
        .flat_map(|p| p.splits.iter().map(move |s| (&p.point, s)))
        .collect();
    let cell = |f: fn(&GridPoint) -> usize| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| r.0.on_grid.then(|| f(r.0) as u32))
                .collect::<UInt32Array>(),
        )
    };
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.0.index as u32),
        )),
        cell(|p| p.ix),
        cell(|p| p.iy),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0.x))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0.y))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.0.reference)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1.split.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.1.loss),
        )),
        Arc::new(rows.iter().map(|r| r.1.accuracy).collect::<Float64Array>()),
    ];
    match run_id {
        None => RecordBatch::try_new(points_schema(), cols),
        Some(id) => {
            let ids: StringArray = rows.iter().map(|_| id.as_deref()).collect();
            cols.insert(0, Arc::new(ids));
            RecordBatch::try_new(result_schema(), cols)
        }
    }
}

/// Appends the rows of `batch` (schema checked by the reader: current or
/// version 1; columns found by name) to `out`, grouping consecutive rows of
/// one point; an error for a point index outside the `grid_len`-point grid.
fn batch_points(
    batch: &RecordBatch,
    grid_len: usize,
    path: &Path,
    out: &mut Vec<PointValue>,
) -> Result<()> {
    let at = |name: &str| batch.schema_ref().index_of(name).ok();
    let need =
        |name: &str| at(name).ok_or_else(|| Error::corrupt(path, format!("no column '{name}'")));
    let u = |name: &str| column::<UInt32Array>(batch, need(name)?, path);
    let f = |name: &str| column::<Float64Array>(batch, need(name)?, path);
    let (index, ix, iy, x, y) = (u("index")?, u("ix")?, u("iy")?, f("x")?, f("y")?);
    let reference = match at("reference") {
        Some(i) => Some(column::<BooleanArray>(batch, i, path)?),
        None => None,
    };
    let split = column::<StringArray>(batch, need("split")?, path)?;
    let (loss, acc) = (f("loss")?, f("accuracy")?);
    for r in 0..batch.num_rows() {
        let i = index.value(r) as usize;
        if i >= grid_len {
            return Err(index_outside(path, i, grid_len));
        }
        let s = SplitResult {
            split: split.value(r).to_string(),
            loss: loss.value(r),
            accuracy: acc.is_valid(r).then(|| acc.value(r)),
        };
        match out.last_mut() {
            Some(p) if p.point.index == i => p.splits.push(s),
            _ => out.push(PointValue {
                point: GridPoint {
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
                    x: x.value(r),
                    y: y.value(r),
                    on_grid: ix.is_valid(r),
                    reference: reference.is_some_and(|c| c.value(r)),
                },
                splits: vec![s],
            }),
        }
    }
    Ok(())
}

/// Checks the files of the surface (or curvature-map) directory `dir` that
/// the store reads, changing nothing: `surface.json` and `sharpness.json`
/// (JSON, schema version), every point segment of `points/` (checksums,
/// columns) and `surface.parquet` (columns). What needs the analysis (the
/// grid, the directions) is checked by loading the result
/// (`SurfaceResult::load`, `CurvatureMap::load`).
pub fn verify_dir(dir: &Path) -> Verification {
    let mut v = Verification::default();
    let spec = dir.join(SPEC_FILE);
    if std::fs::symlink_metadata(&spec).is_ok() {
        let outcome = read_json::<serde_json::Value>(&spec)
            .and_then(|value| schema_version(&spec, &value, SCHEMA_VERSION))
            .map(|_| true);
        v.file(&spec, outcome);
    }
    let sharpness = dir.join(SHARPNESS_FILE);
    if std::fs::symlink_metadata(&sharpness).is_ok() {
        v.file(
            &sharpness,
            read_json::<serde_json::Value>(&sharpness).map(|_| true),
        );
    }
    let points = dir.join(POINTS_DIR);
    match std::fs::read_dir(&points) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => v.problems.push(Error::io("listing", &points, e)),
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !is_temp_name(&name) && name.ends_with(".arrow")
                })
                .map(|e| e.path())
                .collect();
            files.sort();
            for path in files {
                let outcome =
                    read_either(&points_schema(), |schema| read_ipc_checked(&path, schema))
                        .map(|(_, crc)| crc);
                v.file(&path, outcome);
            }
        }
    }
    let result = dir.join(RESULT_FILE);
    if std::fs::symlink_metadata(&result).is_ok() {
        let outcome = read_either(&result_schema(), |schema| {
            read_parquet(&result, schema, "a surface table")
        })
        .map(|_| true);
        v.file(&result, outcome);
    }
    v
}

/// Reads the JSON document `path`; `None` when it does not exist.
fn read_json_if_any<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    read_json(path).map(Some)
}

/// A spec standing in for an analysis' one, in unit tests of the formats.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct TestSpec {
    /// Number of grid points.
    pub(crate) n: usize,
    /// Its schema version.
    pub(crate) schema_version: u32,
}

#[cfg(test)]
impl TestSpec {
    /// The spec of an `n`-point grid, of the current schema version.
    pub(crate) fn new(n: usize) -> TestSpec {
        TestSpec {
            n,
            schema_version: SCHEMA_VERSION,
        }
    }
}

#[cfg(test)]
impl StoredSpec for TestSpec {
    fn flat_meta(&self) -> Vec<(&'static str, String)> {
        vec![("n", self.n.to_string()), ("centre", "c".into())]
    }

    fn grid_len(&self) -> usize {
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points of a 3 × 2 grid.
    const LEN: usize = 6;

    fn point(i: usize, loss: f64) -> PointValue {
        let (ix, iy) = (i % 3, i / 3);
        PointValue {
            point: GridPoint {
                index: i,
                ix,
                iy,
                x: ix as f64 - 1.0,
                y: iy as f64,
                on_grid: true,
                reference: false,
            },
            splits: vec![
                SplitResult {
                    split: "train".into(),
                    loss,
                    accuracy: Some(50.0),
                },
                SplitResult {
                    split: "test".into(),
                    loss: loss + 1.0,
                    accuracy: None,
                },
            ],
        }
    }

    #[test]
    fn segments_round_trip_and_resume_numbering() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SurfaceDir::new(tmp.path());
        dir.create().unwrap();
        let mut segs = dir.read_segments(LEN).unwrap();
        assert!(segs.points.is_empty());
        segs.write(&[point(0, 0.5), point(4, f64::NAN)]).unwrap();
        segs.write(&[point(2, 1.5)]).unwrap();
        std::fs::write(tmp.path().join("points/.000009.arrow.tmp"), b"x").unwrap();
        let mut back = dir.read_segments(LEN).unwrap();
        assert_eq!(back.points.keys().copied().collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(back.points[&2], point(2, 1.5));
        assert!(back.points[&4].splits[0].loss.is_nan());
        assert!(!tmp.path().join("points/.000009.arrow.tmp").exists());
        back.write(&[point(5, 2.0)]).unwrap();
        assert!(tmp.path().join("points/000002.arrow").exists());
        back.remove_all();
        assert_eq!(
            std::fs::read_dir(tmp.path().join("points"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_damaged_segment_is_an_error_never_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SurfaceDir::new(tmp.path());
        dir.create().unwrap();
        let mut segs = dir.read_segments(LEN).unwrap();
        segs.write(&[point(1, 0.25)]).unwrap();
        let path = tmp.path().join("points/000000.arrow");
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xa5;
            std::fs::write(&path, &bad).unwrap();
            // An error, or (a flipped value byte) points of the grid.
            let _ = dir.read_segments(LEN);
        }
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        let e = dir.read_segments(LEN).unwrap_err();
        assert!(e.to_string().contains("000000.arrow"), "{e}");
        // A point outside the grid is refused.
        std::fs::write(&path, &bytes).unwrap();
        let e = dir.read_segments(1).unwrap_err().to_string();
        assert!(e.contains("outside the 1-point grid"), "{e}");
    }

    #[test]
    fn the_result_round_trips_with_the_spec_as_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SurfaceDir::new(tmp.path());
        dir.create().unwrap();
        assert!(!dir.has_result());
        let points = [point(0, 0.5), point(5, 1.5), point(3, f64::INFINITY)];
        dir.write_result(&TestSpec::new(LEN), &points).unwrap();
        assert!(dir.has_result());
        assert_eq!(dir.read_result(LEN).unwrap(), points);
        let path = tmp.path().join(RESULT_FILE);
        let table = read_parquet(&path, &result_schema(), "a surface table").unwrap();
        let meta: Vec<_> = table
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tch_landscape."))
            .collect();
        assert_eq!(meta.len(), 5, "{meta:?}"); // with the data and metadata checksums
        assert_eq!(
            table.metadata[SURFACE_META_KEY],
            "{\"n\":6,\"schema_version\":2}"
        );
        assert_eq!(table.metadata["tch_landscape.n"], "6");
        assert_eq!(table.metadata["tch_landscape.centre"], "c");
        let e = dir.read_result(5).unwrap_err().to_string();
        assert!(e.contains("point index 5 outside the 5-point grid"), "{e}");
    }

    #[test]
    fn json_files_are_optional_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SurfaceDir::new(tmp.path());
        assert!(dir.read_spec::<serde_json::Value>().unwrap().is_none());
        std::fs::write(tmp.path().join(SPEC_FILE), b"{\"format\": 1").unwrap();
        let e = dir.read_spec::<serde_json::Value>().unwrap_err();
        assert!(matches!(e, Error::Json { .. }), "{e:?}");
        // A newer schema is refused (it used to be read, then rewritten as
        // version 1); a version that is not one is damage.
        std::fs::write(
            tmp.path().join(SPEC_FILE),
            b"{\"n\": 1, \"schema_version\": 99}",
        )
        .unwrap();
        let e = dir.read_spec::<TestSpec>().unwrap_err();
        assert!(matches!(e, Error::SchemaVersion { found: 99, .. }), "{e:?}");
        std::fs::write(
            tmp.path().join(SPEC_FILE),
            b"{\"n\": 1, \"schema_version\": -1}",
        )
        .unwrap();
        let e = dir.read_spec::<TestSpec>().unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        dir.write_spec(&TestSpec::new(4)).unwrap();
        assert_eq!(dir.read_spec::<TestSpec>().unwrap(), Some(TestSpec::new(4)));
    }

    #[test]
    fn verify_dir_finds_damaged_segments_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SurfaceDir::new(tmp.path());
        dir.create().unwrap();
        dir.write_spec(&TestSpec::new(LEN)).unwrap();
        let mut segs = dir.read_segments(LEN).unwrap();
        segs.write(&[point(0, 0.5), point(1, 0.75)]).unwrap();
        segs.write(&[point(2, 1.5)]).unwrap();
        let temp = tmp.path().join("points/.000009.arrow.tmp");
        std::fs::write(&temp, b"x").unwrap();
        let v = verify_dir(tmp.path());
        assert!(v.is_clean() && v.without_checksums.is_empty(), "{v:?}");
        assert_eq!(v.files, 3);
        assert!(temp.exists(), "verify removed a file");
        // A flipped byte in a loss value of the first segment.
        let seg = tmp.path().join("points/000000.arrow");
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes
            .windows(8)
            .position(|w| w == 0.75f64.to_le_bytes())
            .unwrap();
        bytes[at + 3] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();
        // The reader of segments refuses it too (it used to read a
        // different loss).
        let e = dir.read_segments(LEN).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        let v = verify_dir(tmp.path());
        assert_eq!(v.problems.len(), 1, "{v:?}");
        let msg = v.problems[0].to_string();
        assert!(
            msg.contains("000000.arrow") && msg.contains("checksum mismatch"),
            "{msg}"
        );
    }
}
