//! The files of a trajectory PCA (`RUN_DIR/pca/` by default):
//!
//! ```text
//! pca-variance.parquet      explained variance per component (schemas/pca_variance.json)
//! pca-path.parquet          path coordinates on every PC, residuals (schemas/pca_path.json)
//! pca-tensors.parquet       per-tensor figures (schemas/pca_tensors.json)
//! pca.json                  the summary (PcaSummary)
//! directions-raw.parquet    the PCA plane, unit-norm components (schemas/directions.json)
//! directions-filter.parquet the PCA plane, filter-normalized
//! plane-check.parquet       the plane-vs-true check (schemas/pca_plane_check.json)
//! ```
//!
//! The three PCA tables carry the settings as JSON under [`PCA_META_KEY`]
//! (with their `schema_version`); the plane check carries its evaluator's
//! description there.
//!
//! Schema version 2 (this build): `pca-path.parquet` has `run_id` first,
//! one column `pc1` … `pcK` per returned component and `in_fit`, instead of
//! version 1's `x`, `y`; `pca-variance.parquet` has `run_id` first; pca.json
//! lists the runs (a joint PCA has several) and says whether the centre was
//! a row of the matrix (`include_final`). Version-1 files still load
//! ([`PcaSummary::load`], [`read_path_table`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::fsutil::{create_output_dir, open_regular, read_json, write_json};
use crate::store::manifest::schema_version;
use crate::store::table;
use crate::tensor::Role;

/// Explained-variance table written by `PcaResult::save`.
pub const VARIANCE_FILE: &str = "pca-variance.parquet";
/// Path table (coordinates and residuals) written by `PcaResult::save`.
pub const PATH_FILE: &str = "pca-path.parquet";
/// Per-tensor table written by `PcaResult::save`.
pub const TENSORS_FILE: &str = "pca-tensors.parquet";
/// JSON summary written by `PcaResult::save`.
pub const SUMMARY_FILE: &str = "pca.json";
/// Raw (unit-norm) PCA directions written by `PcaResult::save`.
pub const DIRECTIONS_RAW_FILE: &str = "directions-raw.parquet";
/// Filter-normalized PCA directions written by `PcaResult::save`.
pub const DIRECTIONS_FILTER_FILE: &str = "directions-filter.parquet";
/// Suggested name of the plane-check table (`PlaneCheck::save`) in a PCA
/// output directory.
pub const PLANE_CHECK_FILE: &str = "plane-check.parquet";
/// Parquet metadata key holding the PCA settings (JSON).
pub const PCA_META_KEY: &str = "tch_landscape.pca";
/// The newest `schema_version` of [`SUMMARY_FILE`] this build reads (and the
/// one it writes).
pub const SCHEMA_VERSION: u32 = 2;

/// What `PcaResult::save` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaFiles {
    /// Explained variance per component.
    pub variance: PathBuf,
    /// Path coordinates and residuals per snapshot.
    pub path: PathBuf,
    /// Per-tensor figures.
    pub tensors: PathBuf,
    /// JSON summary.
    pub summary: PathBuf,
    /// Raw unit-norm directions.
    pub directions_raw: PathBuf,
    /// Filter-normalized directions.
    pub directions_filter: PathBuf,
}

impl PcaFiles {
    /// The files of a PCA saved into `out`.
    fn in_dir(out: &Path) -> PcaFiles {
        PcaFiles {
            variance: out.join(VARIANCE_FILE),
            path: out.join(PATH_FILE),
            tensors: out.join(TENSORS_FILE),
            summary: out.join(SUMMARY_FILE),
            directions_raw: out.join(DIRECTIONS_RAW_FILE),
            directions_filter: out.join(DIRECTIONS_FILTER_FILE),
        }
    }
}

/// One snapshot of the path in PCA coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    /// Id of the run the snapshot belongs to (version-1 files: the
    /// summary's run, filled in by [`PcaSummary::load`]).
    #[serde(default)]
    pub run_id: String,
    /// Stored snapshot index.
    pub snapshot: u32,
    /// Epoch at which it was taken.
    pub epoch: u64,
    /// ⟨θᵢ − θ_final, pc_k⟩ for every returned component k (not mean-centred:
    /// the final snapshot is at the origin).
    pub coords: Vec<f64>,
    /// ‖Δᵢ − PΔᵢ‖ / ‖Δᵢ‖ with Δᵢ = θᵢ − θ_final and P the projection onto the
    /// PC1/PC2 plane (0 when Δᵢ = 0, e.g. for the final snapshot).
    pub residual: f64,
    /// Whether θᵢ − centre was a row of the PCA matrix (false for the
    /// centre itself unless the PCA includes it as a zero row).
    #[serde(default = "yes")]
    pub in_fit: bool,
}

fn yes() -> bool {
    true
}

/// One run of a PCA (several for a joint PCA), as pca.json lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcaRun {
    /// Run id.
    pub run_id: String,
    /// Run directory.
    pub dir: String,
    /// Number of its snapshots (all are path points).
    pub snapshots: usize,
}

impl PathPoint {
    /// Coordinate along PC1.
    pub fn x(&self) -> f64 {
        self.coords.first().copied().unwrap_or(0.0)
    }

    /// Coordinate along PC2 (0 when the trajectory has rank 1).
    pub fn y(&self) -> f64 {
        self.coords.get(1).copied().unwrap_or(0.0)
    }

    /// Coordinates along every returned component (PC1, PC2, …).
    pub fn pcs(&self) -> &[f64] {
        &self.coords
    }
}

/// Per-tensor (per-layer) figures of a trajectory PCA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorPca {
    /// Tensor name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Number of elements.
    pub numel: u64,
    /// The tensor's total variance (trace of its centred Gram / (n−2)).
    pub variance: f64,
    /// Its share of the selection's total variance.
    pub variance_fraction: f64,
    /// Explained variance ratio of the first two principal components of this
    /// tensor's own trajectory (how close to 2-D the layer moves; 0 for a
    /// tensor that does not move).
    pub own_ratio: [f64; 2],
    /// ‖pc_k restricted to this tensor‖² for the global components: the share
    /// of each component lying in this tensor (sums to 1 over tensors).
    pub share: Vec<f64>,
}

/// One row of the plane-vs-true check: a snapshot, one split.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneCheckRow {
    /// Stored snapshot index.
    pub snapshot: u32,
    /// Epoch.
    pub epoch: u64,
    /// PC1 coordinate.
    pub x: f64,
    /// PC2 coordinate.
    pub y: f64,
    /// Relative distance of the snapshot to the plane.
    pub residual: f64,
    /// Split name.
    pub split: String,
    /// L(θᵢ).
    pub true_loss: f64,
    /// L at θᵢ's projection onto the PCA plane.
    pub plane_loss: f64,
    /// Accuracy at θᵢ, when the evaluator reports one.
    pub true_accuracy: Option<f64>,
    /// Accuracy at the projection.
    pub plane_accuracy: Option<f64>,
}

/// The JSON summary of a PCA ([`SUMMARY_FILE`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaSummary {
    /// Always `tch-landscape-pca`.
    pub format: String,
    /// Version of this layout.
    pub schema_version: u32,
    /// Run id (of the first run for a joint PCA: its final snapshot is the
    /// centre).
    pub run_id: String,
    /// Run directory (of the first run for a joint PCA).
    pub run_dir: String,
    /// Every run whose snapshots were analysed, in path order (one for a
    /// run's PCA; version-1 files: filled in by [`PcaSummary::load`]).
    #[serde(default)]
    pub runs: Vec<PcaRun>,
    /// Whether the centre (the final model) was an all-zero row of the
    /// matrix, as in the paper's reference code (false: the paper's text).
    #[serde(default)]
    pub include_final: bool,
    /// The selection, in its [`Display`](std::fmt::Display) form
    /// (`weights`, `names:a,b`, `contains:fc`).
    pub selection: String,
    /// Components asked for.
    pub components: usize,
    /// Chunk size.
    pub chunk: usize,
    /// Number of snapshots (of every run).
    pub snapshots: usize,
    /// Selected parameters.
    pub numel: u64,
    /// Non-zero components.
    pub rank: usize,
    /// Explained variance of the returned components.
    pub explained_variance: Vec<f64>,
    /// Explained variance ratio of the returned components.
    pub explained_variance_ratio: Vec<f64>,
    /// PC1 + PC2 ratio.
    pub plane_ratio: f64,
    /// Cumulative ratio over all non-zero components.
    pub cumulative_ratio: Vec<f64>,
    /// Total variance.
    pub total_variance: f64,
    /// How component signs are fixed.
    pub sign_convention: String,
    /// `path` or `components` (the rule of `sign_convention`; files written
    /// before it existed: empty).
    #[serde(default)]
    pub signs: String,
    /// Precision of the chunk products of the Gram matrix: `f32` or `f64`
    /// (files written before it existed: empty, they used float64).
    #[serde(default)]
    pub gram_precision: String,
    /// Passes the fit made over the snapshots (files written before it
    /// existed: 0).
    #[serde(default)]
    pub passes: usize,
    /// How path coordinates are defined.
    pub coordinates: String,
    /// The path.
    pub path: Vec<PathPoint>,
    /// Per-tensor figures.
    pub tensors: Vec<TensorPca>,
    /// Seconds the PCA took.
    pub seconds: f64,
    /// When the summary was written.
    pub created_utc: String,
}

impl PcaSummary {
    /// Reads the summary `pca.json` written by `PcaResult::save`; a newer or
    /// invalid `schema_version` is an error.
    ///
    /// Version-1 files (one run, the final snapshot never in the fit) load
    /// with `runs`, every point's `run_id` and `in_fit` filled in.
    pub fn load(path: &Path) -> Result<PcaSummary> {
        let value: serde_json::Value = read_json(path)?;
        let version = schema_version(path, &value, SCHEMA_VERSION)?;
        let mut summary: PcaSummary =
            serde_json::from_value(value).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })?;
        if version < 2 {
            summary.upgrade_v1();
        }
        summary
            .validate()
            .map_err(|reason| Error::corrupt(path, reason))?;
        Ok(summary)
    }

    /// Reads `dir/pca.json` ([`SUMMARY_FILE`]): a run's PCA directory or a
    /// joint PCA's output directory.
    pub fn load_dir(dir: &Path) -> Result<PcaSummary> {
        Self::load(&dir.join(SUMMARY_FILE))
    }

    /// The path of each run, in the order of [`runs`](Self::runs): run id
    /// and its points (a joint PCA's paths, all relative to the first run's
    /// final model).
    pub fn paths_by_run(&self) -> Vec<(&str, Vec<&PathPoint>)> {
        self.runs
            .iter()
            .map(|r| {
                let points = self.path.iter().filter(|p| p.run_id == r.run_id).collect();
                (r.run_id.as_str(), points)
            })
            .collect()
    }

    /// Fills in what version 1 did not store: one run, its id on every
    /// point, the final snapshot outside the fit.
    fn upgrade_v1(&mut self) {
        if self.runs.is_empty() {
            self.runs.push(PcaRun {
                run_id: self.run_id.clone(),
                dir: self.run_dir.clone(),
                snapshots: self.path.len(),
            });
        }
        for p in &mut self.path {
            if p.run_id.is_empty() {
                p.run_id = self.run_id.clone();
            }
        }
        if let Some(last) = self.path.last_mut() {
            last.in_fit = false;
        }
    }

    /// What a fitted PCA always satisfies: at least one component, one
    /// path point and one tensor; ratios in [0, 1]; finite coordinates and
    /// variances below [`MAX_ABS_VALUE`].
    fn validate(&self) -> std::result::Result<(), String> {
        let k = self.explained_variance_ratio.len();
        if k == 0 || self.explained_variance.len() != k || self.cumulative_ratio.len() < k {
            return Err(format!(
                "expected as many explained variances as ratios (at least one) and a cumulative ratio for each, found {}, {} and {}",
                self.explained_variance.len(),
                k,
                self.cumulative_ratio.len()
            ));
        }
        let ratio = |what: &str, v: f64| {
            if (0.0..=1.0 + 1e-9).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} is {v}, expected a ratio in [0, 1]"))
            }
        };
        let value = |what: &str, v: f64| {
            if v.is_finite() && v.abs() <= MAX_ABS_VALUE {
                Ok(())
            } else {
                Err(format!(
                    "{what} is {v}, expected a finite value of magnitude at most {MAX_ABS_VALUE:e}"
                ))
            }
        };
        for (i, &r) in self.explained_variance_ratio.iter().enumerate() {
            ratio(&format!("explained_variance_ratio[{i}]"), r)?;
        }
        for (i, &c) in self.cumulative_ratio.iter().enumerate() {
            ratio(&format!("cumulative_ratio[{i}]"), c)?;
        }
        for (i, &v) in self.explained_variance.iter().enumerate() {
            value(&format!("explained_variance[{i}]"), v)?;
        }
        ratio("plane_ratio", self.plane_ratio)?;
        value("total_variance", self.total_variance)?;
        if self.path.is_empty() || self.tensors.is_empty() {
            return Err(format!(
                "expected at least one path point and one tensor, found {} and {}",
                self.path.len(),
                self.tensors.len()
            ));
        }
        for p in &self.path {
            let most = k.max(self.components);
            if p.coords.is_empty() || p.coords.len() > most {
                return Err(format!(
                    "path point of snapshot {} has {} coordinates, expected 1 to {most}",
                    p.snapshot,
                    p.coords.len()
                ));
            }
            for (j, &c) in p.coords.iter().enumerate() {
                value(&format!("PC{} of snapshot {}", j + 1, p.snapshot), c)?;
            }
            value(&format!("residual of snapshot {}", p.snapshot), p.residual)?;
        }
        if self.runs.is_empty() {
            return Err("expected at least one run in \"runs\"".into());
        }
        for r in &self.runs {
            let n = self.path.iter().filter(|p| p.run_id == r.run_id).count();
            if n != r.snapshots {
                return Err(format!(
                    "run {} lists {} snapshots but the path has {n} points of it",
                    r.run_id, r.snapshots
                ));
            }
        }
        if self.runs.iter().map(|r| r.snapshots).sum::<usize>() != self.path.len() {
            return Err(format!(
                "the path has {} points, not those of the runs listed",
                self.path.len()
            ));
        }
        for t in &self.tensors {
            ratio(
                &format!("variance_fraction of '{}'", t.name),
                t.variance_fraction,
            )?;
            value(&format!("variance of '{}'", t.name), t.variance)?;
        }
        Ok(())
    }

    /// Writes the summary as pretty JSON, atomically.
    fn save(&self, path: &Path) -> Result<()> {
        write_json(path, self, true)
    }
}

/// The largest magnitude a stored PCA value (coordinate, variance) may
/// have: far beyond what float32 weights produce, small enough to draw.
pub const MAX_ABS_VALUE: f64 = 1e100;

/// Schema of [`VARIANCE_FILE`].
pub fn variance_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("component", DataType::UInt32, false),
        Field::new("explained_variance", DataType::Float64, false),
        Field::new("explained_variance_ratio", DataType::Float64, false),
        Field::new("cumulative_ratio", DataType::Float64, false),
    ]))
}

/// Schema of [`PATH_FILE`] for two components (as `schemas/pca_path.json`
/// documents it); [`path_schema_for`] gives it for any number.
pub fn path_schema() -> SchemaRef {
    path_schema_for(2)
}

/// Schema of [`PATH_FILE`] with `k` component columns: `run_id`,
/// `snapshot`, `epoch`, `pc1` … `pck`, `residual`, `in_fit`.
pub fn path_schema_for(k: usize) -> SchemaRef {
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
    ];
    fields.extend((1..=k).map(|j| Field::new(format!("pc{j}"), DataType::Float64, false)));
    fields.push(Field::new("residual", DataType::Float64, false));
    fields.push(Field::new("in_fit", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// Schema of a version-1 [`PATH_FILE`] (`x`, `y` for PC1, PC2).
fn path_schema_v1() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("residual", DataType::Float64, false),
    ]))
}

/// Most component columns a path table may have.
const MAX_PATH_COMPONENTS: usize = 100_000;

/// Reads a [`PATH_FILE`] of either version: version 2 (`pc1` … `pcK`,
/// `in_fit`, `run_id`) or version 1 (`x`, `y`; `run_id` then comes from the
/// settings, the last snapshot is outside the fit).
pub fn read_path_table(path: &Path) -> Result<Vec<PathPoint>> {
    const WHAT: &str = "a PCA path table";
    let names: Vec<String> = {
        let file = open_regular(path)?;
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::corrupt(path, format!("not a readable Parquet file ({e})")))?;
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    if names.iter().any(|n| n == "x") {
        let t = table::read_parquet(path, &path_schema_v1(), WHAT)?;
        let settings: serde_json::Value = t.json_meta(path, PCA_META_KEY, WHAT)?;
        let run_id = settings["run_id"].as_str().unwrap_or_default().to_string();
        let mut out = Vec::new();
        for b in &t.batches {
            let snap = table::column::<UInt32Array>(b, 0, path)?;
            let epoch = table::column::<UInt64Array>(b, 1, path)?;
            let f = |i| table::column::<Float64Array>(b, i, path);
            let (x, y, res) = (f(2)?, f(3)?, f(4)?);
            out.extend((0..b.num_rows()).map(|r| PathPoint {
                run_id: run_id.clone(),
                snapshot: snap.value(r),
                epoch: epoch.value(r),
                coords: vec![x.value(r), y.value(r)],
                residual: res.value(r),
                in_fit: true,
            }));
        }
        if let Some(last) = out.last_mut() {
            last.in_fit = false;
        }
        return Ok(out);
    }
    let k = names.iter().filter(|n| n.starts_with("pc")).count();
    if k == 0 || k > MAX_PATH_COMPONENTS {
        return Err(Error::corrupt(
            path,
            format!(
                "{k} component columns pc1, pc2, …: expected 1 to {MAX_PATH_COMPONENTS} in {WHAT}"
            ),
        ));
    }
    let t = table::read_parquet(path, &path_schema_for(k), WHAT)?;
    let mut out = Vec::new();
    for b in &t.batches {
        let run = table::column::<StringArray>(b, 0, path)?;
        let snap = table::column::<UInt32Array>(b, 1, path)?;
        let epoch = table::column::<UInt64Array>(b, 2, path)?;
        let pcs = (0..k)
            .map(|j| table::column::<Float64Array>(b, 3 + j, path))
            .collect::<Result<Vec<_>>>()?;
        let res = table::column::<Float64Array>(b, 3 + k, path)?;
        let in_fit = table::column::<BooleanArray>(b, 4 + k, path)?;
        out.extend((0..b.num_rows()).map(|r| PathPoint {
            run_id: run.value(r).to_string(),
            snapshot: snap.value(r),
            epoch: epoch.value(r),
            coords: pcs.iter().map(|c| c.value(r)).collect(),
            residual: res.value(r),
            in_fit: in_fit.value(r),
        }));
    }
    Ok(out)
}

/// Schema of [`TENSORS_FILE`].
pub fn tensors_schema() -> SchemaRef {
    let f64 = |name| Field::new(name, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("tensor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("numel", DataType::UInt64, false),
        f64("variance"),
        f64("variance_fraction"),
        f64("own_ratio_pc1"),
        f64("own_ratio_pc2"),
        f64("share_pc1"),
        f64("share_pc2"),
    ]))
}

/// Schema of the plane-check table (`PlaneCheck::save`).
pub fn plane_check_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("residual", DataType::Float64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("true_loss", DataType::Float64, false),
        Field::new("plane_loss", DataType::Float64, false),
        Field::new("true_accuracy", DataType::Float64, true),
        Field::new("plane_accuracy", DataType::Float64, true),
    ]))
}

/// The three PCA tables and the summary, as [`write`] takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PcaTables<'a> {
    /// The settings, JSON, written under [`PCA_META_KEY`] of every table.
    pub settings: &'a str,
    /// The `run_id` of the variance table: the run, or the runs of a joint
    /// PCA joined by `+`.
    pub fitted: &'a str,
    /// Explained variance of every non-zero component (the full spectrum).
    pub spectrum: &'a [f64],
    /// Total variance (the denominator of the ratios).
    pub total_variance: f64,
    /// Cumulative explained variance ratio, one per spectrum entry.
    pub cumulative_ratio: &'a [f64],
    /// The summary (it holds the path and per-tensor figures of the tables).
    pub summary: &'a PcaSummary,
}

/// Writes into `out` (created if needed) [`VARIANCE_FILE`], [`PATH_FILE`],
/// [`TENSORS_FILE`] (zstd Parquet, the settings under [`PCA_META_KEY`]) and
/// [`SUMMARY_FILE`]; returns the paths of every PCA file, the directions
/// included, which the caller writes.
pub(crate) fn write(out: &Path, t: PcaTables<'_>) -> Result<PcaFiles> {
    create_output_dir(out)?;
    let files = PcaFiles::in_dir(out);
    let meta = [(PCA_META_KEY.to_string(), t.settings.to_string())];
    let tables = [
        (&files.variance, variance_batch(&t)),
        (
            &files.path,
            path_batch(&t.summary.path, t.summary.explained_variance_ratio.len()),
        ),
        (&files.tensors, tensors_batch(&t.summary.tensors)),
    ];
    for (path, batch) in tables {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        table::write_parquet_batch(path, &batch, &meta)?;
    }
    t.summary.save(&files.summary)?;
    Ok(files)
}

type BatchResult = std::result::Result<RecordBatch, arrow::error::ArrowError>;

/// A float64 column of `rows`.
fn f64_column<R>(rows: &[R], f: impl Fn(&R) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

fn variance_batch(t: &PcaTables<'_>) -> BatchResult {
    let n = t.spectrum.len();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values((0..n).map(|_| t.fitted))),
        Arc::new(UInt32Array::from_iter_values(1..=n as u32)),
        Arc::new(Float64Array::from(t.spectrum.to_vec())),
        f64_column(t.spectrum, |v| v / t.total_variance),
        Arc::new(Float64Array::from(t.cumulative_ratio.to_vec())),
    ];
    RecordBatch::try_new(variance_schema(), cols)
}

/// The path table with `k` component columns (a point with fewer
/// coordinates has 0 in the others).
fn path_batch(p: &[PathPoint], k: usize) -> BatchResult {
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            p.iter().map(|p| p.run_id.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(p.iter().map(|p| p.snapshot))),
        Arc::new(UInt64Array::from_iter_values(p.iter().map(|p| p.epoch))),
    ];
    for j in 0..k {
        cols.push(f64_column(p, |p| p.coords.get(j).copied().unwrap_or(0.0)));
    }
    cols.push(f64_column(p, |p| p.residual));
    cols.push(Arc::new(BooleanArray::from(
        p.iter().map(|p| p.in_fit).collect::<Vec<_>>(),
    )));
    RecordBatch::try_new(path_schema_for(k), cols)
}

fn tensors_batch(t: &[TensorPca]) -> BatchResult {
    let share = |k: usize| move |t: &TensorPca| t.share.get(k).copied().unwrap_or(0.0);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            t.iter().map(|t| t.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            t.iter().map(|t| t.role.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(t.iter().map(|t| t.numel))),
        f64_column(t, |t| t.variance),
        f64_column(t, |t| t.variance_fraction),
        f64_column(t, |t| t.own_ratio[0]),
        f64_column(t, |t| t.own_ratio[1]),
        f64_column(t, share(0)),
        f64_column(t, share(1)),
    ];
    RecordBatch::try_new(tensors_schema(), cols)
}

/// Writes a plane-check table as zstd Parquet ([`plane_check_schema`]),
/// `evaluator` (its description) under [`PCA_META_KEY`].
pub(crate) fn write_plane_check(path: &Path, r: &[PlaneCheckRow], evaluator: &str) -> Result<()> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(r.iter().map(|r| r.snapshot))),
        Arc::new(UInt64Array::from_iter_values(r.iter().map(|r| r.epoch))),
        f64_column(r, |r| r.x),
        f64_column(r, |r| r.y),
        f64_column(r, |r| r.residual),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|r| r.split.as_str()),
        )),
        f64_column(r, |r| r.true_loss),
        f64_column(r, |r| r.plane_loss),
        Arc::new(r.iter().map(|r| r.true_accuracy).collect::<Float64Array>()),
        Arc::new(r.iter().map(|r| r.plane_accuracy).collect::<Float64Array>()),
    ];
    let batch =
        RecordBatch::try_new(plane_check_schema(), cols).map_err(|e| Error::arrow(path, e))?;
    let meta = serde_json::json!({ "evaluator": evaluator }).to_string();
    table::write_parquet_batch(path, &batch, &[(PCA_META_KEY.to_string(), meta)])
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;
    use crate::store::table::column;

    /// Reads a plane-check table back (the tests' check of the format): its
    /// rows and the evaluator's description.
    fn read_plane_check(path: &Path) -> Result<(Vec<PlaneCheckRow>, String)> {
        let t = table::read_parquet(path, &plane_check_schema(), "a plane-check table")?;
        let meta: serde_json::Value = t.json_meta(path, PCA_META_KEY, "a plane-check table")?;
        let mut rows = Vec::new();
        for b in &t.batches {
            let u32s = column::<UInt32Array>(b, 0, path)?;
            let u64s = column::<UInt64Array>(b, 1, path)?;
            let split = column::<StringArray>(b, 5, path)?;
            let f = |i| column::<Float64Array>(b, i, path);
            let (x, y, res, tl, pl, ta, pa) = (f(2)?, f(3)?, f(4)?, f(6)?, f(7)?, f(8)?, f(9)?);
            let opt = |a: &Float64Array, r| a.is_valid(r).then(|| a.value(r));
            rows.extend((0..b.num_rows()).map(|r| PlaneCheckRow {
                snapshot: u32s.value(r),
                epoch: u64s.value(r),
                x: x.value(r),
                y: y.value(r),
                residual: res.value(r),
                split: split.value(r).to_string(),
                true_loss: tl.value(r),
                plane_loss: pl.value(r),
                true_accuracy: opt(ta, r),
                plane_accuracy: opt(pa, r),
            }));
        }
        let evaluator = meta["evaluator"].as_str().unwrap_or_default().to_string();
        Ok((rows, evaluator))
    }

    fn point(snapshot: u32, x: f64, y: f64) -> PathPoint {
        PathPoint {
            run_id: "r".into(),
            snapshot,
            epoch: 10 * snapshot as u64,
            coords: vec![x, y],
            residual: 0.25,
            in_fit: x != 0.0 || y != 0.0,
        }
    }

    #[test]
    fn path_and_tensor_tables_keep_their_columns_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PATH_FILE);
        let path = vec![point(0, 1.5, -2.0), point(3, 0.0, 0.0)];
        let meta = [(PCA_META_KEY.to_string(), "{\"rank\":1}".to_string())];
        table::write_parquet_batch(&p, &path_batch(&path, 2).unwrap(), &meta).unwrap();
        let t = table::read_parquet(&p, &path_schema(), "a PCA path table").unwrap();
        let b = &t.batches[0];
        assert_eq!(column::<StringArray>(b, 0, &p).unwrap().value(1), "r");
        assert_eq!(column::<UInt32Array>(b, 1, &p).unwrap().values(), &[0, 3]);
        assert_eq!(column::<UInt64Array>(b, 2, &p).unwrap().values(), &[0, 30]);
        assert_eq!(
            column::<Float64Array>(b, 3, &p).unwrap().values(),
            &[1.5, 0.0]
        );
        assert_eq!(
            column::<Float64Array>(b, 4, &p).unwrap().values(),
            &[-2.0, 0.0]
        );
        let in_fit = column::<BooleanArray>(b, 6, &p).unwrap();
        assert!(in_fit.value(0) && !in_fit.value(1));
        assert_eq!(read_path_table(&p).unwrap(), path);
        let m: serde_json::Value = t.json_meta(&p, PCA_META_KEY, "a PCA table").unwrap();
        assert_eq!(m["rank"], 1);

        let tensors = vec![TensorPca {
            name: "fc.weight".into(),
            role: Role::Weight,
            numel: 6,
            variance: 2.0,
            variance_fraction: 1.0,
            own_ratio: [0.75, 0.25],
            share: vec![1.0],
        }];
        let p = dir.path().join(TENSORS_FILE);
        table::write_parquet_batch(&p, &tensors_batch(&tensors).unwrap(), &meta).unwrap();
        let t = table::read_parquet(&p, &tensors_schema(), "a PCA tensors table").unwrap();
        let b = &t.batches[0];
        assert_eq!(column::<StringArray>(b, 1, &p).unwrap().value(0), "weight");
        assert_eq!(column::<Float64Array>(b, 6, &p).unwrap().value(0), 0.25);
        // One component: no share of PC2.
        assert_eq!(column::<Float64Array>(b, 8, &p).unwrap().value(0), 0.0);
        assert!(column::<UInt32Array>(b, 2, &p).is_err(), "numel is UInt64");
    }

    #[test]
    fn version_1_path_tables_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PATH_FILE);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values([0, 1, 2])),
            Arc::new(UInt64Array::from_iter_values([0, 1, 2])),
            Arc::new(Float64Array::from(vec![-2.0, -1.0, 0.0])),
            Arc::new(Float64Array::from(vec![0.5, -0.5, 0.0])),
            Arc::new(Float64Array::from(vec![0.1, 0.2, 0.0])),
        ];
        let batch = RecordBatch::try_new(path_schema_v1(), cols).unwrap();
        let meta = [(PCA_META_KEY.to_string(), "{\"run_id\":\"old\"}".to_string())];
        table::write_parquet_batch(&p, &batch, &meta).unwrap();
        let path = read_path_table(&p).unwrap();
        assert_eq!(path.len(), 3);
        assert_eq!(
            (path[0].x(), path[0].y(), path[1].residual),
            (-2.0, 0.5, 0.2)
        );
        assert!(path.iter().all(|q| q.run_id == "old"));
        let fits: Vec<bool> = path.iter().map(|q| q.in_fit).collect();
        assert_eq!(fits, [true, true, false]);
    }

    #[test]
    fn plane_check_round_trips_with_missing_accuracies() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PLANE_CHECK_FILE);
        let row = |split: &str, acc| PlaneCheckRow {
            snapshot: 1,
            epoch: 2,
            x: 0.5,
            y: -0.5,
            residual: 0.1,
            split: split.into(),
            true_loss: 1.0,
            plane_loss: 1.25,
            true_accuracy: acc,
            plane_accuracy: acc.map(|a: f64| a - 1.0),
        };
        let rows = vec![row("train", Some(90.0)), row("test", None)];
        write_plane_check(&p, &rows, "an MLP").unwrap();
        assert_eq!(read_plane_check(&p).unwrap(), (rows, "an MLP".to_string()));
        let e = table::read_parquet(&p, &path_schema(), "a PCA path table").unwrap_err();
        assert!(e.to_string().contains("a PCA path table"), "{e}");
    }

    #[test]
    fn a_summary_loads_back_and_a_missing_one_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SUMMARY_FILE);
        let s = summary();
        s.save(&p).unwrap();
        let back = PcaSummary::load(&p).unwrap();
        assert_eq!(
            (back.selection.as_str(), back.path),
            ("names:a,b", s.path.clone())
        );
        let e = PcaSummary::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        // Schema versions: newer, and not a version.
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        // Version 1: no runs, no include_final, no run_id or in_fit per point.
        let mut v1 = v.clone();
        v1["schema_version"] = 1.into();
        let o = v1.as_object_mut().unwrap();
        o.remove("runs");
        o.remove("include_final");
        for pt in v1["path"].as_array_mut().unwrap() {
            let o = pt.as_object_mut().unwrap();
            o.remove("run_id");
            o.remove("in_fit");
        }
        std::fs::write(&p, v1.to_string()).unwrap();
        let old = PcaSummary::load(&p).unwrap();
        assert_eq!(old.path, s.path, "v1: run ids and in_fit filled in");
        assert_eq!(
            (old.runs.clone(), old.include_final),
            (s.runs.clone(), false)
        );
        assert_eq!(old.paths_by_run()[0].1.len(), 2);
        v["schema_version"] = 99.into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = PcaSummary::load(&p).unwrap_err();
        assert!(matches!(e, Error::SchemaVersion { found: 99, .. }), "{e:?}");
        v["schema_version"] = "1".into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = PcaSummary::load(&p).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    }

    #[test]
    fn write_creates_the_directory_and_the_variance_ratios() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a").join("pca");
        let s = summary();
        let tables = PcaTables {
            fitted: "r",
            settings: "{\"rank\":2}",
            spectrum: &[3.0, 1.0],
            total_variance: 4.0,
            cumulative_ratio: &[0.75, 1.0],
            summary: &s,
        };
        let files = write(&out, tables).unwrap();
        assert_eq!(files, PcaFiles::in_dir(&out));
        let p = &files.variance;
        let t = table::read_parquet(p, &variance_schema(), "a PCA variance table").unwrap();
        let b = &t.batches[0];
        assert_eq!(column::<StringArray>(b, 0, p).unwrap().value(1), "r");
        assert_eq!(column::<UInt32Array>(b, 1, p).unwrap().values(), &[1, 2]);
        let ratio = column::<Float64Array>(b, 3, p).unwrap();
        assert_eq!(ratio.values(), &[0.75, 0.25]);
        let m: serde_json::Value = t.json_meta(p, PCA_META_KEY, "a PCA table").unwrap();
        assert_eq!(m["rank"], 2);
        let back = read_path_table(&files.path).unwrap();
        assert_eq!(back.len(), s.path.len());
        for (b, p) in back.iter().zip(&s.path) {
            assert_eq!(b.coords[..], p.coords[..b.coords.len()]);
            assert_eq!((b.snapshot, b.in_fit), (p.snapshot, p.in_fit));
        }
        assert_eq!(PcaSummary::load(&files.summary).unwrap().run_id, "r");
        assert!(
            !files.directions_raw.exists(),
            "the caller writes directions"
        );
    }

    fn summary() -> PcaSummary {
        PcaSummary {
            format: "tch-landscape-pca".into(),
            schema_version: SCHEMA_VERSION,
            run_id: "r".into(),
            run_dir: "d".into(),
            runs: vec![PcaRun {
                run_id: "r".into(),
                dir: "d".into(),
                snapshots: 2,
            }],
            include_final: false,
            selection: crate::Selection::Names(vec!["a".into(), "b".into()]).to_string(),
            components: 2,
            chunk: 8,
            snapshots: 2,
            numel: 6,
            rank: 1,
            explained_variance: vec![2.0],
            explained_variance_ratio: vec![1.0],
            plane_ratio: 1.0,
            cumulative_ratio: vec![1.0],
            total_variance: 2.0,
            sign_convention: String::new(),
            signs: "path".into(),
            gram_precision: "f32".into(),
            passes: 1,
            coordinates: String::new(),
            path: vec![point(0, 1.0, 0.0), point(1, 0.0, 0.0)],
            tensors: vec![TensorPca {
                name: "a".into(),
                role: Role::Weight,
                numel: 6,
                variance: 2.0,
                variance_fraction: 1.0,
                own_ratio: [1.0, 0.0],
                share: vec![1.0],
            }],
            seconds: 0.5,
            created_utc: String::new(),
        }
    }
}
