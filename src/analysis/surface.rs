//! Loss surfaces: f(α, β) = L(θ* + αδ + βη) over a grid (§3 of the paper),
//! 1-D slices and 2-D planes, resumable and streamed to disk.
//!
//! ```no_run
//! # use tch_landscape::analysis::{directions::*, evaluator::*, params::ParamSet, surface::Surface};
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
//! # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
//! let dirs = Directions::random(&ParamSet::from_varstore(&vs)?).seed(123).build()?;
//! let mut eval = ClassifierEvaluator::new(&model).split("train", &x, &y)?;
//! let surface = Surface::new(&dirs)
//!     .grid(-1.0..=1.0, 51, -1.0..=1.0, 51)
//!     .evaluate(&vs, &mut eval, "runs/mlp/surface-filter")?; // resumable
//! # Ok(()) }
//! ```
//!
//! Output directory (`schemas/surface.json`):
//! - `surface.json`: the specification (directions id and settings, grid,
//!   evaluator); a resumed computation must match it;
//! - `directions.parquet`: centre and directions ([`Directions::save`]);
//! - `points/NNNNNN.arrow`: finished points, flushed as they complete, each
//!   segment written atomically, so a killed computation loses at most the
//!   points of one unflushed segment and resumes where it stopped;
//! - `surface.parquet`: all points, one row per point and split, written when
//!   the grid is complete; `sharpness.json`.
//!
//! Every point is set from the stored θ* (never by accumulating steps), and
//! the model's variables are restored bit-exactly afterwards, also on error.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::analysis::directions::{combine, Directions, DirectionsMeta};
use crate::analysis::evaluator::{Evaluator, SplitResult};
use crate::analysis::grid::{Axis, Grid, GridPoint};
use crate::analysis::params::{ParamSet, RestoreGuard};
use crate::analysis::shard::{in_shard, Shard};
use crate::analysis::sharpness::{sharpness, Sharpness};
use crate::error::{Error, Result};
use crate::store::fsutil::{is_temp_name, write_atomic};
use crate::store::manifest::rfc3339_utc;

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

/// What a surface directory holds: everything that determines its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurfaceSpec {
    /// Always `tch-landscape-surface`.
    pub format: String,
    /// On-disk schema version.
    pub schema_version: u32,
    /// The directions' provenance and settings (id, seed, normalization, BN policy).
    pub directions: DirectionsMeta,
    /// The grid.
    pub grid: Grid,
    /// The evaluator's description (model, loss, batch, splits).
    pub evaluator: String,
    /// ε used for the sharpness figures (`None`: no sharpness figures, as
    /// for curvature maps).
    pub sharpness_epsilon: Option<f64>,
    /// Shard `(i, n)` when only every n-th point from i was computed.
    pub shard: Option<(usize, usize)>,
    /// When the computation was first started (RFC 3339 UTC).
    pub created_utc: String,
}

impl SurfaceSpec {
    fn same_work(&self, other: &SurfaceSpec) -> bool {
        self.directions.id == other.directions.id
            && self.grid == other.grid
            && self.evaluator == other.evaluator
            && self.shard == other.shard
    }
}

/// The value of one split at one grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointValue {
    /// The grid point.
    pub point: GridPoint,
    /// Loss and accuracy per split.
    pub splits: Vec<SplitResult>,
}

/// A computed surface.
#[derive(Debug, Clone)]
pub struct SurfaceResult {
    /// The output directory.
    pub dir: PathBuf,
    /// Its specification.
    pub spec: SurfaceSpec,
    /// Every computed point, by flat index.
    pub points: Vec<PointValue>,
    /// Points computed by this call (the rest were resumed from disk).
    pub computed: usize,
    /// Seconds this call spent evaluating.
    pub seconds: f64,
    /// Sharpness per split (when the grid contains the centre).
    pub sharpness: Vec<Sharpness>,
}

impl SurfaceResult {
    /// Split names, in evaluator order.
    pub fn splits(&self) -> Vec<String> {
        self.points
            .first()
            .map(|p| p.splits.iter().map(|s| s.split.clone()).collect())
            .unwrap_or_default()
    }

    /// Loss values of `split` in flat grid order (NaN where missing).
    pub fn loss(&self, split: &str) -> Vec<f64> {
        self.values(split, |s| s.loss)
    }

    /// Accuracy values of `split` in flat grid order (NaN where missing).
    pub fn accuracy(&self, split: &str) -> Vec<f64> {
        self.values(split, |s| s.accuracy.unwrap_or(f64::NAN))
    }

    fn values(&self, split: &str, f: impl Fn(&SplitResult) -> f64) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.spec.grid.len()];
        for p in &self.points {
            if let Some(s) = p.splits.iter().find(|s| s.split == split) {
                out[p.point.index] = f(s);
            }
        }
        out
    }

    /// Reads a finished surface directory.
    pub fn load(dir: impl AsRef<Path>) -> Result<SurfaceResult> {
        let dir = dir.as_ref();
        let spec = read_spec(dir)?.ok_or_else(|| {
            Error::invalid(
                "surface directory",
                format!("{} has no {SPEC_FILE}", dir.display()),
            )
        })?;
        let points = read_points_parquet(&dir.join(RESULT_FILE), &spec.grid)?;
        let sharpness = compute_sharpness(&spec, &points);
        Ok(SurfaceResult {
            dir: dir.to_path_buf(),
            spec,
            points,
            computed: 0,
            seconds: 0.0,
            sharpness,
        })
    }
}

/// Callback receiving (points done, points total).
pub type Progress<'a> = Box<dyn FnMut(usize, usize) + 'a>;

/// Configures and computes a surface. See the [module docs](self).
pub struct Surface<'a> {
    dirs: &'a Directions,
    grid: Grid,
    flush_every: usize,
    epsilon: f64,
    shard: Option<(usize, usize)>,
    progress: Option<Progress<'a>>,
    stop_after: Option<usize>,
    with_sharpness: bool,
}

impl std::fmt::Debug for Surface<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Surface")
            .field("directions", &self.dirs.meta.id)
            .field("grid", &self.grid)
            .field("flush_every", &self.flush_every)
            .finish()
    }
}

impl<'a> Surface<'a> {
    /// A surface along `dirs`; default grid [-1, 1] with 51 points per axis
    /// (2-D when there are two directions), as the reference.
    pub fn new(dirs: &'a Directions) -> Surface<'a> {
        let axis = Axis::new(-1.0..=1.0, 51);
        Surface {
            dirs,
            grid: Grid {
                x: axis,
                y: (dirs.len() > 1).then_some(axis),
            },
            flush_every: 16,
            epsilon: 0.1,
            shard: None,
            progress: None,
            stop_after: None,
            with_sharpness: true,
        }
    }

    /// A 2-D grid of `nx` × `ny` points over the given ranges.
    pub fn grid(
        mut self,
        x: RangeInclusive<f64>,
        nx: usize,
        y: RangeInclusive<f64>,
        ny: usize,
    ) -> Self {
        self.grid = Grid {
            x: Axis::new(x, nx),
            y: Some(Axis::new(y, ny)),
        };
        self
    }

    /// A 1-D slice of `nx` points along the first direction.
    pub fn line(mut self, x: RangeInclusive<f64>, nx: usize) -> Self {
        self.grid = Grid {
            x: Axis::new(x, nx),
            y: None,
        };
        self
    }

    /// Points per segment file (default 16): at most this many finished
    /// points are lost when the process is killed.
    pub fn flush_every(mut self, n: usize) -> Self {
        self.flush_every = n;
        self
    }

    /// ε of the sharpness sub-level set (default 0.1, in loss units).
    pub fn sharpness_epsilon(mut self, eps: f64) -> Self {
        self.epsilon = eps;
        self
    }

    /// Whether to compute sharpness figures (default true); turn off when the
    /// evaluator's values are not losses (e.g. curvature maps).
    pub fn with_sharpness(mut self, on: bool) -> Self {
        self.with_sharpness = on;
        self
    }

    /// Compute only shard `i` of `n`: the points whose flat index ≡ i (mod n).
    pub fn shard(mut self, i: usize, n: usize) -> Self {
        self.shard = Some((i, n));
        self
    }

    /// Calls `f(done, total)` after each point.
    pub fn on_progress(mut self, f: impl FnMut(usize, usize) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Stops (as if killed) after computing `n` points; for tests of resuming.
    #[doc(hidden)]
    pub fn stop_after(mut self, n: usize) -> Self {
        self.stop_after = Some(n);
        self
    }

    /// The grid.
    pub fn grid_spec(&self) -> &Grid {
        &self.grid
    }

    /// Computes the surface with one model: sets each point into the
    /// variables of `vs` and calls `eval`, writing into `out`. Resumes from
    /// what `out` already holds.
    pub fn evaluate<E: Evaluator + ?Sized>(
        self,
        vs: &tch::nn::VarStore,
        eval: &mut E,
        out: impl AsRef<Path>,
    ) -> Result<SurfaceResult> {
        let description = eval.describe();
        let (dirs, grid) = (self.dirs, self.grid);
        self.run(out.as_ref(), description, |todo, sink| {
            let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
            let mut queue = shared_queue(todo, &next, &stop, sink);
            evaluate_points(dirs, &grid, vs, eval, &mut queue)
        })
    }

    /// Computes the surface with `replicas` copies of the model evaluating
    /// points concurrently, each on its own thread, pulling points from a
    /// shared counter so fast and slow replicas finish together. `factory`
    /// builds one replica (its own VarStore and an evaluator owning its
    /// model) on the thread that uses it; libtorch's intra-op thread pool is
    /// shared, so set `tch::set_num_threads` to cores / replicas.
    pub fn evaluate_parallel<F>(
        self,
        replicas: usize,
        factory: F,
        out: impl AsRef<Path>,
    ) -> Result<SurfaceResult>
    where
        F: Fn() -> Result<(tch::nn::VarStore, Box<dyn Evaluator>)> + Sync,
    {
        if replicas == 0 {
            return Err(Error::invalid("replicas", "must be at least 1"));
        }
        // The description comes from a probe replica, so resume checks work.
        let description = factory()?.1.describe();
        let (dirs, grid) = (self.dirs, self.grid);
        self.run(out.as_ref(), description, |todo, sink| {
            let next = AtomicUsize::new(0);
            let stop = AtomicBool::new(false);
            let (tx, rx) = crossbeam_channel::bounded::<PointValue>(64);
            std::thread::scope(|s| -> Result<()> {
                let mut handles = Vec::new();
                for r in 0..replicas {
                    let (tx, next, stop, factory) = (tx.clone(), &next, &stop, &factory);
                    // Tensors are Send but not Sync: each replica gets its own
                    // deep copy of the directions, made here and moved over.
                    let dirs = dirs.clone();
                    let handle = std::thread::Builder::new()
                        .name(format!("landscape-replica-{r}"))
                        .spawn_scoped(s, move || -> Result<()> {
                            let r = factory().and_then(|(vs, mut eval)| {
                                let send = |p| {
                                    tx.send(p).map_err(|_| {
                                        Error::invalid("surface", "result writer stopped")
                                    })
                                };
                                evaluate_points(
                                    &dirs,
                                    &grid,
                                    &vs,
                                    eval.as_mut(),
                                    &mut shared_queue(todo, next, stop, send),
                                )
                            });
                            if r.is_err() {
                                stop.store(true, Ordering::Relaxed);
                            }
                            r
                        })
                        .map_err(|e| {
                            Error::invalid("replicas", format!("cannot start thread: {e}"))
                        })?;
                    handles.push(handle);
                }
                drop(tx);
                let mut sink_err = None;
                for p in rx {
                    if sink_err.is_none() {
                        if let Err(e) = sink(p) {
                            stop.store(true, Ordering::Relaxed);
                            sink_err = Some(e);
                        }
                    }
                }
                let mut first_err = sink_err;
                for h in handles {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(Error::invalid("replicas", "a replica thread panicked"))
                    });
                    if let (Err(e), None) = (r, &first_err) {
                        first_err = Some(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            })
        })
    }

    /// Computes the surface with every MPI rank evaluating a share (see
    /// [`crate::distributed`]): call it on every rank with the same
    /// directions, grid and evaluator (each rank's own model and data, e.g.
    /// on [`Mpi::device`](crate::distributed::Mpi::device)). Rank 0 writes
    /// `out` (resuming from it as [`Surface::evaluate`] does) and gets
    /// `Some(result)`; the other ranks get `None` once rank 0 is done. Every
    /// rank returns the error when any rank fails.
    #[cfg(feature = "mpi")]
    pub fn evaluate_mpi<E: Evaluator + ?Sized>(
        self,
        mpi: &crate::distributed::Mpi,
        vs: &tch::nn::VarStore,
        eval: &mut E,
        out: impl AsRef<Path>,
    ) -> Result<Option<SurfaceResult>> {
        let description = eval.describe();
        let (dirs, grid) = (self.dirs, self.grid);
        mpi.agree(&crate::distributed::digest(
            &dirs.meta.id,
            &grid,
            &description,
            self.shard,
        ))?;
        if !mpi.is_writer() {
            let mut exchange = mpi.worker_exchange();
            let r = grid
                .validate(dirs.len())
                .and_then(|()| evaluate_points(dirs, &grid, vs, eval, &mut exchange));
            drop(exchange);
            return match r {
                Ok(()) => mpi.outcome().map(|()| None),
                Err(e) => {
                    mpi.report_failure(&e);
                    Err(e)
                }
            };
        }
        let mut coord = crate::distributed::Coordinator::new(mpi);
        let result = self.run(out.as_ref(), description, |todo, sink| {
            coord.set_work(todo, grid);
            let r = {
                let mut exchange = |done: Option<PointValue>| -> Result<Option<usize>> {
                    if let Some(p) = done {
                        sink(p)?;
                    }
                    coord.poll(&mut *sink);
                    Ok(coord.take())
                };
                evaluate_points(dirs, &grid, vs, eval, &mut exchange)
            };
            if r.is_err() {
                coord.stop();
            }
            coord.finish(sink);
            let worker_error = coord.take_error();
            r?;
            worker_error.map_or(Ok(()), Err)
        });
        // Workers not yet served (when rank 0 failed before computing) are stopped.
        coord.stop();
        coord.finish(&mut |_| Ok(()));
        coord.conclude(&result);
        result.map(Some)
    }

    fn run(
        mut self,
        out: &Path,
        evaluator: String,
        compute: impl FnOnce(&[usize], &mut dyn FnMut(PointValue) -> Result<()>) -> Result<()>,
    ) -> Result<SurfaceResult> {
        let _span = tracing::info_span!("surface", out = %out.display()).entered();
        self.grid.validate(self.dirs.len())?;
        if self.flush_every == 0 {
            return Err(Error::invalid("flush_every", "must be at least 1"));
        }
        if let Some((i, n)) = self.shard {
            Shard::new(i, n)?;
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(Error::invalid(
                "sharpness epsilon",
                format!("must be > 0, got {}", self.epsilon),
            ));
        }
        std::fs::create_dir_all(out.join(POINTS_DIR)).map_err(|e| Error::io("creating", out, e))?;
        let spec = SurfaceSpec {
            format: "tch-landscape-surface".into(),
            schema_version: 1,
            directions: self.dirs.meta.clone(),
            grid: self.grid,
            evaluator,
            sharpness_epsilon: self.with_sharpness.then_some(self.epsilon),
            shard: self.shard,
            created_utc: rfc3339_utc(std::time::SystemTime::now()),
        };
        let spec = match read_spec(out)? {
            Some(old) if old.same_work(&spec) => SurfaceSpec { created_utc: old.created_utc, ..spec },
            Some(old) => {
                return Err(Error::invalid(
                    "output directory",
                    format!(
                        "{} holds a different surface (directions {}, grid {:?}, evaluator '{}'); use a new directory",
                        out.display(),
                        old.directions.id,
                        old.grid,
                        old.evaluator
                    ),
                ))
            }
            None => spec,
        };
        write_json(&out.join(SPEC_FILE), &spec)?;
        let dirs_path = out.join(DIRECTIONS_FILE);
        if !dirs_path.exists() {
            self.dirs.save(&dirs_path)?;
        }

        // Resume: points already on disk.
        let mut done: BTreeMap<usize, PointValue> = BTreeMap::new();
        if out.join(RESULT_FILE).exists() {
            for p in read_points_parquet(&out.join(RESULT_FILE), &spec.grid)? {
                done.insert(p.point.index, p);
            }
        }
        let mut segments = list_segments(&out.join(POINTS_DIR))?;
        for (_, path) in &segments {
            for p in read_segment(path, &spec.grid)? {
                done.insert(p.point.index, p);
            }
        }
        let wanted: Vec<usize> = (0..spec.grid.len())
            .filter(|&i| in_shard(self.shard, i))
            .collect();
        let mut todo: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|i| !done.contains_key(i))
            .collect();
        if let Some(n) = self.stop_after {
            todo.truncate(n);
        }
        let total = wanted.len();
        let mut done_count = wanted.iter().filter(|i| done.contains_key(i)).count();
        tracing::info!(
            total,
            resumed = done_count,
            todo = todo.len(),
            "surface points"
        );

        let t0 = Instant::now();
        let mut next_seg = segments.last().map_or(0, |s| s.0 + 1);
        let mut pending: Vec<PointValue> = Vec::new();
        let mut computed = 0usize;
        let flush_every = self.flush_every;
        let points_dir = out.join(POINTS_DIR);
        let mut progress = self.progress.take();
        let computed_result = {
            let mut sink = |p: PointValue| -> Result<()> {
                if p.splits.iter().any(|s| !s.loss.is_finite()) {
                    tracing::warn!(
                        ix = p.point.ix,
                        iy = p.point.iy,
                        x = p.point.x,
                        y = p.point.y,
                        "non-finite loss at grid point; recorded as is"
                    );
                }
                pending.push(p.clone());
                done.insert(p.point.index, p);
                computed += 1;
                done_count += 1;
                if pending.len() >= flush_every {
                    let path = points_dir.join(format!("{next_seg:06}.arrow"));
                    write_segment(&path, &pending)?;
                    segments.push((next_seg, path));
                    next_seg += 1;
                    pending.clear();
                }
                if let Some(f) = progress.as_mut() {
                    f(done_count, total);
                }
                Ok(())
            };
            compute(&todo, &mut sink)
        };
        // Points finished before an error are kept, so a retry resumes after them.
        if !pending.is_empty() {
            let path = points_dir.join(format!("{next_seg:06}.arrow"));
            write_segment(&path, &pending)?;
            segments.push((next_seg, path));
        }
        computed_result?;
        let seconds = t0.elapsed().as_secs_f64();
        let points: Vec<PointValue> = done.into_values().collect();
        let complete = wanted
            .iter()
            .all(|i| points.iter().any(|p| p.point.index == *i))
            && self.stop_after.is_none();
        // A shard's points are scattered over the grid: sharpness needs the whole grid.
        let sharpness = if complete && spec.shard.is_none() {
            compute_sharpness(&spec, &points)
        } else {
            Vec::new()
        };
        if complete {
            write_points_parquet(&out.join(RESULT_FILE), &spec, &points)?;
            if spec.shard.is_none() {
                write_json(&out.join(SHARPNESS_FILE), &sharpness)?;
            }
            // The Parquet file now holds every point; the segments are redundant.
            for (_, p) in &segments {
                let _ = std::fs::remove_file(p);
            }
        }
        if computed > 0 {
            tracing::info!(
                computed,
                seconds,
                points_per_second = computed as f64 / seconds.max(1e-9),
                "surface computed"
            );
        }
        Ok(SurfaceResult {
            dir: out.to_path_buf(),
            spec,
            points,
            computed,
            seconds,
            sharpness,
        })
    }
}

/// Combines the shard directories `shards` (computed with
/// [`Surface::shard`], in any order) into `out`, which then holds what one
/// process computing the whole grid writes: `surface.json` (without shard),
/// `directions.parquet`, `surface.parquet` and `sharpness.json`.
///
/// Refuses, naming the directories, shards that do not belong together
/// (different directions — hence a different model or centre —, grid,
/// evaluator or shard count), a missing or repeated shard, and a shard that
/// is not finished (it says how many points it has; rerunning it resumes).
pub fn merge_shards(shards: &[impl AsRef<Path>], out: impl AsRef<Path>) -> Result<SurfaceResult> {
    let out = out.as_ref();
    let _span = tracing::info_span!("merge", out = %out.display()).entered();
    let loaded = check_shards(shards)?;
    let first = &loaded[0];
    let spec = SurfaceSpec {
        shard: None,
        created_utc: loaded
            .iter()
            .map(|s| s.spec.created_utc.clone())
            .min()
            .unwrap_or_default(),
        ..first.spec.clone()
    };
    let mut points: Vec<PointValue> = loaded.into_iter().flat_map(|s| s.points).collect();
    points.sort_by_key(|p| p.point.index);
    if let Some(old) = read_spec(out)? {
        if !old.same_work(&spec) {
            return Err(Error::invalid(
                "output directory",
                format!(
                    "{} holds a different surface (directions {}); merge into a new directory",
                    out.display(),
                    old.directions.id
                ),
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    let src = shards[0].as_ref().join(DIRECTIONS_FILE);
    let bytes = std::fs::read(&src).map_err(|e| Error::io("reading", &src, e))?;
    let dst = out.join(DIRECTIONS_FILE);
    write_atomic(&dst, true, |w| {
        std::io::Write::write_all(w, &bytes).map_err(|e| Error::io("writing", &dst, e))
    })?;
    write_json(&out.join(SPEC_FILE), &spec)?;
    write_points_parquet(&out.join(RESULT_FILE), &spec, &points)?;
    let sharpness = compute_sharpness(&spec, &points);
    write_json(&out.join(SHARPNESS_FILE), &sharpness)?;
    tracing::info!(
        shards = shards.len(),
        points = points.len(),
        "shards merged"
    );
    Ok(SurfaceResult {
        dir: out.to_path_buf(),
        spec,
        points,
        computed: 0,
        seconds: 0.0,
        sharpness,
    })
}

/// A finished shard directory.
struct LoadedShard {
    spec: SurfaceSpec,
    points: Vec<PointValue>,
}

/// Loads and cross-checks shard directories (see [`merge_shards`]).
fn check_shards(shards: &[impl AsRef<Path>]) -> Result<Vec<LoadedShard>> {
    if shards.is_empty() {
        return Err(Error::invalid("shards", "no shard directories given"));
    }
    let mut loaded: Vec<LoadedShard> = Vec::new();
    let mut seen: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let first_dir = shards[0].as_ref();
    for dir in shards {
        let dir = dir.as_ref();
        let spec = read_spec(dir)?.ok_or_else(|| {
            Error::invalid(
                "shards",
                format!(
                    "{} is not a surface directory (no {SPEC_FILE})",
                    dir.display()
                ),
            )
        })?;
        let Some((i, n)) = spec.shard else {
            return Err(Error::invalid(
                "shards",
                format!("{} holds a whole surface, not a shard", dir.display()),
            ));
        };
        if let Some(f) = loaded.first() {
            let mismatch = |what: &str, a: String, b: String| {
                Error::invalid(
                    "shards",
                    format!(
                        "{} and {} are shards of different surfaces: {what} {a} vs {b}",
                        first_dir.display(),
                        dir.display()
                    ),
                )
            };
            let f = &f.spec;
            if f.directions.id != spec.directions.id {
                return Err(mismatch(
                    "directions (centre/model or directions differ):",
                    f.directions.id.clone(),
                    spec.directions.id.clone(),
                ));
            }
            if f.grid != spec.grid {
                return Err(mismatch(
                    "grid",
                    format!("{:?}", f.grid),
                    format!("{:?}", spec.grid),
                ));
            }
            if f.evaluator != spec.evaluator {
                return Err(mismatch(
                    "evaluator",
                    format!("'{}'", f.evaluator),
                    format!("'{}'", spec.evaluator),
                ));
            }
            if f.sharpness_epsilon != spec.sharpness_epsilon {
                return Err(mismatch(
                    "sharpness epsilon",
                    format!("{:?}", f.sharpness_epsilon),
                    format!("{:?}", spec.sharpness_epsilon),
                ));
            }
            let fn_ = f.shard.map_or(0, |s| s.1);
            if fn_ != n {
                return Err(mismatch("shard count", fn_.to_string(), n.to_string()));
            }
        }
        if let Some(other) = seen.insert(i, dir.to_path_buf()) {
            return Err(Error::invalid(
                "shards",
                format!(
                    "shard {i}/{n} given twice: {} and {}",
                    other.display(),
                    dir.display()
                ),
            ));
        }
        let wanted = (0..spec.grid.len())
            .filter(|&p| in_shard(spec.shard, p))
            .count();
        let points = if dir.join(RESULT_FILE).exists() {
            read_points_parquet(&dir.join(RESULT_FILE), &spec.grid)?
        } else {
            Vec::new()
        };
        if points.len() != wanted || points.iter().any(|p| !in_shard(spec.shard, p.point.index)) {
            let mut have = points.len();
            if have == 0 {
                for (_, seg) in list_segments(&dir.join(POINTS_DIR)).unwrap_or_default() {
                    have += read_segment(&seg, &spec.grid).map_or(0, |v| v.len());
                }
            }
            return Err(Error::invalid(
                "shards",
                format!(
                    "shard {i}/{n} in {} is incomplete: {have} of its {wanted} points are done; \
                     run it again (it resumes) before merging",
                    dir.display()
                ),
            ));
        }
        loaded.push(LoadedShard { spec, points });
    }
    let n = loaded[0].spec.shard.map_or(0, |s| s.1);
    let missing: Vec<String> = (0..n)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            "shards",
            format!(
                "missing shard(s) {}: got {} of {n}",
                missing.join(", "),
                seen.len()
            ),
        ));
    }
    Ok(loaded)
}

/// Where a worker gets its next grid index: called with the value of the
/// point it just finished (`None` on the first call), returns the next flat
/// grid index, or `None` when there is no more work.
pub(crate) type Exchange<'x> = dyn FnMut(Option<PointValue>) -> Result<Option<usize>> + 'x;

/// An [`Exchange`] over a shared list: hands out `todo[k]` for k taken from
/// `next`, passes finished points to `sink`, stops early when `stop` is set.
pub(crate) fn shared_queue<'x>(
    todo: &'x [usize],
    next: &'x AtomicUsize,
    stop: &'x AtomicBool,
    mut sink: impl FnMut(PointValue) -> Result<()> + 'x,
) -> impl FnMut(Option<PointValue>) -> Result<Option<usize>> + 'x {
    move |done| {
        if let Some(p) = done {
            sink(p)?;
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(todo.get(next.fetch_add(1, Ordering::Relaxed)).copied())
    }
}

/// Evaluates the points handed out by `exchange` on one model.
pub(crate) fn evaluate_points<E: Evaluator + ?Sized>(
    dirs: &Directions,
    grid: &Grid,
    vs: &tch::nn::VarStore,
    eval: &mut E,
    exchange: &mut Exchange<'_>,
) -> Result<()> {
    dirs.check_model(vs)?;
    let device = vs.device();
    let vars = vs.variables();
    let targets: Vec<Tensor> = dirs
        .centre
        .tensors
        .iter()
        .map(|t| vars[&t.name].shallow_clone())
        .collect();
    let on_device = |set: &ParamSet| -> Vec<Tensor> {
        set.tensors
            .iter()
            .map(|t| t.tensor.to_device(device))
            .collect()
    };
    let centre = on_device(&dirs.centre);
    let d: Vec<Vec<Tensor>> = dirs.dirs.iter().map(on_device).collect();
    let _guard = RestoreGuard::new(vs);
    let mut finished = None;
    while let Some(index) = exchange(finished.take())? {
        let point = grid.point(index);
        let _span = tracing::debug_span!("point", ix = point.ix, iy = point.iy).entered();
        tch::no_grad(|| {
            for (i, target) in targets.iter().enumerate() {
                let dir: Vec<&Tensor> = d.iter().map(|v| &v[i]).collect();
                let v = combine(&centre[i], &dir, point.x, point.y).map_err(|e| {
                    Error::torch(format!("forming '{}'", dirs.centre.tensors[i].name), e)
                })?;
                let mut target = target.shallow_clone();
                target.f_copy_(&v).map_err(|e| {
                    Error::torch(format!("setting '{}'", dirs.centre.tensors[i].name), e)
                })?;
            }
            Ok::<(), Error>(())
        })?;
        let splits = eval.evaluate()?;
        finished = Some(PointValue { point, splits });
    }
    Ok(())
}

fn compute_sharpness(spec: &SurfaceSpec, points: &[PointValue]) -> Vec<Sharpness> {
    let (Some(first), Some(eps)) = (points.first(), spec.sharpness_epsilon) else {
        return Vec::new();
    };
    first
        .splits
        .iter()
        .filter_map(|s| {
            let mut loss = vec![f64::NAN; spec.grid.len()];
            for p in points {
                if let Some(v) = p.splits.iter().find(|v| v.split == s.split) {
                    loss[p.point.index] = v.loss;
                }
            }
            sharpness(&spec.grid, &loss, &s.split, eps)
        })
        .collect()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, true, |w| {
        std::io::Write::write_all(w, &bytes).map_err(|e| Error::io("writing", path, e))
    })
}

fn read_spec(dir: &Path) -> Result<Option<SurfaceSpec>> {
    let path = dir.join(SPEC_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| Error::Json { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

/// Schema of point segments and of `surface.parquet`.
pub fn points_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("index", DataType::UInt32, false),
        Field::new("ix", DataType::UInt32, false),
        Field::new("iy", DataType::UInt32, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, true),
    ]))
}

fn points_batch(
    points: &[PointValue],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let rows: Vec<(&GridPoint, &SplitResult)> = points
        .iter()
        .flat_map(|p| p.splits.iter().map(move |s| (&p.point, s)))
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.0.index as u32),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.0.ix as u32),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.0.iy as u32),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0.x))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0.y))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1.split.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.1.loss),
        )),
        Arc::new(rows.iter().map(|r| r.1.accuracy).collect::<Float64Array>()),
    ];
    RecordBatch::try_new(points_schema(), cols)
}

fn batch_points(
    batch: &RecordBatch,
    grid: &Grid,
    path: &Path,
    out: &mut Vec<PointValue>,
) -> Result<()> {
    if batch.schema().fields() != points_schema().fields() {
        return Err(Error::corrupt(
            path,
            "columns differ from the surface points schema",
        ));
    }
    let col = |i: usize| batch.column(i);
    let index = col(0)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .expect("schema checked");
    let split = col(5)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("schema checked");
    let loss = col(6)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("schema checked");
    let acc = col(7)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("schema checked");
    for r in 0..batch.num_rows() {
        let i = index.value(r) as usize;
        if i >= grid.len() {
            return Err(Error::corrupt(
                path,
                format!("point index {i} outside the {}-point grid", grid.len()),
            ));
        }
        let s = SplitResult {
            split: split.value(r).to_string(),
            loss: loss.value(r),
            accuracy: acc.is_valid(r).then(|| acc.value(r)),
        };
        match out.last_mut() {
            Some(p) if p.point.index == i => p.splits.push(s),
            _ => out.push(PointValue {
                point: grid.point(i),
                splits: vec![s],
            }),
        }
    }
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temp_name(&name) {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if let Some(n) = name
            .strip_suffix(".arrow")
            .and_then(|s| s.parse::<usize>().ok())
        {
            v.push((n, entry.path()));
        }
    }
    v.sort();
    Ok(v)
}

fn write_segment(path: &Path, points: &[PointValue]) -> Result<()> {
    let batch = points_batch(points).map_err(|e| Error::arrow(path, e))?;
    write_atomic(path, true, |w| {
        let mut writer =
            FileWriter::try_new(w, &batch.schema()).map_err(|e| Error::arrow(path, e))?;
        writer.write(&batch).map_err(|e| Error::arrow(path, e))?;
        writer.finish().map_err(|e| Error::arrow(path, e))
    })
}

fn read_segment(path: &Path, grid: &Grid) -> Result<Vec<PointValue>> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let reader = FileReader::try_new(file, None)
        .map_err(|e| Error::corrupt(path, format!("not an Arrow IPC file ({e})")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
        batch_points(&batch, grid, path, &mut out)?;
    }
    Ok(out)
}

fn write_points_parquet(path: &Path, spec: &SurfaceSpec, points: &[PointValue]) -> Result<()> {
    let batch = points_batch(points).map_err(|e| Error::arrow(path, e))?;
    let spec_json = serde_json::to_string(spec).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let d = &spec.directions;
    let mut kv = vec![KeyValue::new(SURFACE_META_KEY.to_string(), spec_json)];
    // Flat copies of the most asked-for settings, for tools that show metadata.
    let flat: HashMap<&str, String> = HashMap::from([
        ("directions_id", d.id.clone()),
        ("seed", d.seed.map(|s| s.to_string()).unwrap_or_default()),
        (
            "normalization",
            d.normalization
                .map(|n| format!("{n:?}").to_lowercase())
                .unwrap_or_default(),
        ),
        (
            "ignore",
            d.ignore
                .map(|n| format!("{n:?}").to_lowercase())
                .unwrap_or_default(),
        ),
        ("bn_stats", d.bn_stats.to_string()),
        ("centre", d.description.clone()),
    ]);
    for (k, v) in flat {
        kv.push(KeyValue::new(format!("tch_landscape.{k}"), v));
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_key_value_metadata(Some(kv))
        .build();
    let pq_err = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    write_atomic(path, true, |w| {
        let mut writer = ArrowWriter::try_new(w, points_schema(), Some(props)).map_err(pq_err)?;
        writer.write(&batch).map_err(pq_err)?;
        writer.close().map_err(pq_err)?;
        Ok(())
    })
}

fn read_points_parquet(path: &Path, grid: &Grid) -> Result<Vec<PointValue>> {
    let table = crate::store::table::read_parquet(path, &points_schema(), "a surface table")?;
    let mut out = Vec::new();
    for batch in &table.batches {
        batch_points(batch, grid, path, &mut out)?;
    }
    Ok(out)
}
