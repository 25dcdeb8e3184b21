//! The recording hook: attach to an existing tch training loop in three lines.
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! use tch_landscape::Recorder;
//! let mut rec = Recorder::builder("runs/mlp").build(&vs)?; // snapshots θ₀
//! for epoch in 1..=10u64 {
//!     /* the user's own training code */
//!     rec.on_epoch_end(epoch, &[("train_loss", 0.1), ("lr", 0.05)])?;
//! }
//! rec.finish()?;
//! # Ok(()) }
//! ```
//!
//! A background thread writes the snapshots (`recorder/writer.rs`). With the
//! default [`Durability::Written`], `on_epoch_end` returns once the snapshot
//! file is in place under its final name, so a snapshot whose call returned
//! survives `kill -9`; the writer fsyncs it right after, in the background
//! ([`Durability::Synced`] waits for the fsync too: power-loss safe). As the
//! call waits anyway, CPU variables are written straight from their own
//! memory, without a host copy. [`Durability::Queued`] returns right after a
//! host copy, for the least overhead, and may lose the last `queue`
//! snapshots on a crash.
//!
//! Metrics (`on_epoch_end`, `on_step_end`) are appended, never rewritten: the
//! writer holds at most [`RecorderBuilder::metrics_segment_rows`] rows in
//! memory, appends each report to a journal and writes full segments once
//! (`RUN/metrics/`); `finish()` compacts them into `RUN/metrics.arrow`
//! ([`store::metrics`](crate::store::metrics) describes the files). Logging
//! metrics at every step therefore costs the same per call however long the
//! run, and fsyncs only with snapshots, [`Recorder::flush`] and
//! [`Recorder::finish`]. A killed run's metrics stay readable
//! ([`Run::metrics`](crate::Run::metrics)); which rows survive is the
//! [`Durability`] contract.

mod copy;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::error::{Error, Result};
use crate::store::fsutil::{create_dir_in, remove_temp_files, DirLock};
use crate::store::manifest::{
    rfc3339_utc, Manifest, StorageDtype, FORMAT_NAME, MANIFEST_FILE, SCHEMA_VERSION,
};
use crate::store::metrics::{
    name_too_long, MetricRow, DEFAULT_SEGMENT_ROWS, MAX_METRIC_NAME_BYTES, MAX_SEGMENT_ROWS,
    METRICS_DIR, METRICS_FILE,
};
use crate::store::snapshot::{SnapshotMeta, Trigger, SNAPSHOT_DIR};
use crate::tensor::Selection;
use copy::SharedVariables;
pub use writer::WriterStats;
use writer::{Ack, Job};

/// Metric rows batched on the training thread under [`Durability::Queued`]
/// before they are handed to the writer.
const QUEUED_BATCH_ROWS: usize = 1024;

/// When a recording call returns, relative to its data reaching the disk.
///
/// A file survives `kill -9` as soon as its bytes are in the kernel's page
/// cache and it is renamed into place; `fsync` is needed only against power
/// loss (or a kernel crash). So the default returns after the rename and
/// fsyncs in the background, on the writer thread.
///
/// | | snapshot | metrics of a call without snapshot | metrics of a snapshot call |
/// |---|---|---|---|
/// | `Written` (default) | survives `kill -9`; fsynced right after the call returned | survive `kill -9` (written, not fsynced) | as the snapshot |
/// | `Synced` | survives `kill -9` and a power loss: fsynced before the call returns | survive `kill -9` (written, not fsynced) | as the snapshot |
/// | `Queued` | lost if the process dies before the writer wrote it | may be lost on a crash until the next snapshot, `flush()` or `finish()` | as the snapshot |
///
/// Metric rows are fsynced only with snapshots, [`Recorder::flush`] and
/// [`Recorder::finish`] (and once per full segment): after a power loss the
/// rows reported since the last of these may be lost in every mode, and
/// under `Written` the snapshot written last before the power loss may be
/// lost or unreadable (readers report it by file name). `flush()` and
/// `finish()` make everything durable in every mode. Rows are never
/// reordered, and a crash never leaves a row half-written or altered: what
/// survives is a prefix of what was reported.
///
/// Under `Written` and `Synced` the call waits for the write anyway, so CPU
/// variables of the storage dtype are written from their own memory: no
/// host copy of the model is made (a model of any size is recorded in about
/// its own memory). `Queued` copies them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Return once the snapshot file is complete and renamed into place, and
    /// once the metrics reported by the call are written to the run's
    /// metrics journal: every returned call survives the process being
    /// killed. The snapshot (and the metrics with it) are fsynced in the
    /// background right after (unless fsync is disabled). Costs one round
    /// trip to the writer thread per call that reports metrics.
    #[default]
    Written,
    /// As `Written`, and the snapshot and its metrics are fsynced before the
    /// call returns: every returned snapshot also survives a power loss.
    Synced,
    /// Return once the host copy and the metrics are queued for the writer:
    /// least overhead; the queued snapshots (at most `queue`) and the metrics
    /// reported since the last snapshot, `flush()` or `finish()` may be lost
    /// if the process dies.
    Queued,
}

impl Durability {
    /// Whether calls wait for the writer.
    fn waits(self) -> bool {
        !matches!(self, Durability::Queued)
    }
}

/// Configures and builds a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderBuilder {
    dir: PathBuf,
    every_n_steps: Option<u64>,
    queue: usize,
    durability: Durability,
    fsync: bool,
    overwrite: bool,
    metrics_segment_rows: usize,
    user: BTreeMap<String, String>,
    lr_metric: Option<String>,
    selection: Option<Selection>,
    storage: Option<StorageDtype>,
}

impl RecorderBuilder {
    /// Stores the values as `dtype` instead of exactly (the default: float32,
    /// or float64 when any recorded tensor is float64). Opt-in
    /// [`StorageDtype::BFloat16`] or [`StorageDtype::Float16`] halve the
    /// snapshot files of a float32 model; values are rounded to nearest, and
    /// the manifest's `storage_dtype` says so, so every reader and analysis
    /// converts them back (surfaces then evaluate the rounded parameters).
    /// Float16 storage refuses a snapshot whose finite values exceed its
    /// range (|x| > 65504), naming the tensor; bfloat16 has float32's range.
    pub fn storage(mut self, dtype: StorageDtype) -> Self {
        self.storage = Some(dtype);
        self
    }

    /// Records only the variables `selection` picks (default: every
    /// floating-point variable), e.g. [`Selection::Weights`] for a large
    /// model whose trajectory PCA needs only its weights. The others are
    /// listed in the manifest's `skipped`, the selection as the reason, so
    /// every reader sees what the run holds: trajectory PCA, exports and
    /// reports work on the recorded tensors; analyses that load the whole
    /// model into its variables (surfaces, curvature) refuse the run,
    /// naming the tensors it lacks. A name of [`Selection::Names`] that is
    /// no floating-point variable, or a selection of nothing, is an error.
    pub fn select(mut self, selection: Selection) -> Self {
        self.selection = Some(selection);
        self
    }

    /// Also snapshot every `n` optimizer steps (reported via
    /// [`Recorder::on_step_end`]). `n` must be at least 1.
    pub fn every_n_steps(mut self, n: u64) -> Self {
        self.every_n_steps = Some(n);
        self
    }

    /// Names the metric that holds the learning rate (default: `lr` or
    /// `learning_rate`), so reports find its drops; stored in the manifest.
    pub fn learning_rate_metric(mut self, name: impl Into<String>) -> Self {
        self.lr_metric = Some(name.into());
        self
    }

    /// How many snapshots may wait for the writer (default 2). Bounds the
    /// recorder's memory to about `queue + 2` snapshots.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// When snapshot calls return (default [`Durability::Written`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Whether files are fsynced (default true): before the call returns
    /// under [`Durability::Synced`], right after under
    /// [`Durability::Written`], by the writer under [`Durability::Queued`].
    /// Without it a kill -9 is still safe, a power loss may not be.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Replace a run already recorded in the directory (default false: such a
    /// directory is refused).
    pub fn overwrite(mut self, on: bool) -> Self {
        self.overwrite = on;
        self
    }

    /// How many metric rows the writer holds in memory before writing them as
    /// one segment file (default 65,536, about 3 MiB; from 1 to 1,048,576).
    /// Bounds the writer's memory for metrics (under [`Durability::Queued`]
    /// up to 1,024 more rows wait on the training thread, handed over in one
    /// message); smaller segments mean more files in a killed run (a
    /// finished run has one `metrics.arrow`).
    pub fn metrics_segment_rows(mut self, rows: usize) -> Self {
        self.metrics_segment_rows = rows;
        self
    }

    /// Adds a free-form key/value to the manifest (model name, seed, ...).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Creates the run directory, writes the manifest, starts the writer and
    /// snapshots the variables of `vs` as θ₀ (snapshot 0, epoch 0).
    pub fn build(self, vs: &tch::nn::VarStore) -> Result<Recorder> {
        if self.queue == 0 {
            return Err(Error::invalid("queue", "must be at least 1"));
        }
        if self.every_n_steps == Some(0) {
            return Err(Error::invalid("every_n_steps", "must be at least 1"));
        }
        if !(1..=MAX_SEGMENT_ROWS).contains(&self.metrics_segment_rows) {
            return Err(Error::invalid(
                "metrics_segment_rows",
                format!(
                    "is {}; must be from 1 to {MAX_SEGMENT_ROWS}",
                    self.metrics_segment_rows
                ),
            ));
        }
        let dir = self.dir;
        let lock = DirLock::create(&dir)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        if manifest_path.exists() {
            if !self.overwrite {
                return Err(Error::AlreadyExists { path: dir });
            }
            let p = dir.join(SNAPSHOT_DIR);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::io("removing", &p, e))?;
            }
            let p = dir.join(MANIFEST_FILE);
            std::fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
        }
        // A new run starts without metrics: an earlier run's table and
        // segments (or a killed recorder's) must not be read as this run's.
        for p in [dir.join(METRICS_DIR), dir.join(METRICS_FILE)] {
            let removed = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
                Err(_) => Ok(()),
            };
            removed.map_err(|e| Error::io("removing", &p, e))?;
        }
        let snap_dir = dir.join(SNAPSHOT_DIR);
        create_dir_in(&dir, &snap_dir)?;
        remove_temp_files(&snap_dir)?;
        remove_temp_files(&dir)?;

        let vars: SharedVariables = vs.variables_.clone();
        let (tensors, skipped, exact) = copy::describe(&copy::sorted_variables(&vars));
        let storage_dtype = self.storage.unwrap_or(exact);
        let (tensors, skipped) = match &self.selection {
            Some(sel) => copy::select(tensors, skipped, sel)?,
            None => (tensors, skipped),
        };
        if tensors.is_empty() {
            return Err(Error::invalid(
                "VarStore",
                "has no floating-point variables to record; build the recorder after creating the model",
            ));
        }
        for s in &skipped {
            tracing::warn!(tensor = %s.name, dtype = %s.dtype, "not recorded: {}", s.reason);
        }
        let now = SystemTime::now();
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            schema_version: SCHEMA_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            run_id: new_run_id(now),
            created_utc: rfc3339_utc(now),
            storage_dtype,
            tensors,
            skipped,
            every_n_steps: self.every_n_steps,
            finished: false,
            user: self.user,
            lr_metric: self.lr_metric,
        };
        manifest.write(&dir, self.fsync)?;
        let pool = Arc::new(copy::HostPool::default());
        let (tx, handle) = writer::spawn(
            dir.clone(),
            storage_dtype,
            self.fsync,
            self.queue,
            self.metrics_segment_rows,
            pool.clone(),
        )?;
        tracing::info!(dir = %dir.display(), run_id = %manifest.run_id, tensors = manifest.tensors.len(),
            numel = manifest.total_numel(), "recorder started");
        let mut rec = Recorder {
            dir,
            vars,
            manifest,
            tx: Some(tx),
            handle: Some(handle),
            lock: Some(lock),
            next_index: 0,
            pending: Vec::new(),
            last_step: None,
            durability: self.durability,
            fsync: self.fsync,
            closed: false,
            pool,
        };
        rec.snapshot_now(0, Trigger::TrainStart, Vec::new())?;
        Ok(rec)
    }
}

/// What a finished recording wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Snapshot files written.
    pub snapshots: u64,
    /// Value bytes written.
    pub bytes: u64,
    /// Seconds the writer thread spent serializing and writing.
    pub writer_busy_seconds: f64,
    /// CPU seconds the writer thread used: what recording can take from the
    /// training threads when every core is busy (`None` where the platform
    /// has no per-thread clock).
    pub writer_cpu_seconds: Option<f64>,
    /// Metric rows written.
    pub metric_rows: u64,
    /// Metrics segment files written before the final compaction.
    pub metric_segments: u64,
    /// Most metric rows the writer held in memory at once (at most
    /// [`RecorderBuilder::metrics_segment_rows`]).
    pub peak_buffered_metric_rows: u64,
}

/// The recording hook. See the [module docs](self).
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    vars: SharedVariables,
    manifest: Manifest,
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<Result<WriterStats>>>,
    lock: Option<DirLock>,
    next_index: u32,
    /// Under [`Durability::Queued`], metric rows not yet handed to the
    /// writer (at most [`QUEUED_BATCH_ROWS`]): one channel message per batch
    /// instead of one per report.
    pending: Vec<MetricRow>,
    last_step: Option<u64>,
    durability: Durability,
    fsync: bool,
    closed: bool,
    /// Host buffers the writer gave back, reused by the next copy.
    pool: Arc<copy::HostPool>,
}

impl Recorder {
    /// Starts configuring a recorder that writes to the run directory `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> RecorderBuilder {
        RecorderBuilder {
            dir: dir.as_ref().to_path_buf(),
            every_n_steps: None,
            queue: 2,
            durability: Durability::default(),
            fsync: true,
            overwrite: false,
            metrics_segment_rows: DEFAULT_SEGMENT_ROWS,
            user: BTreeMap::new(),
            lr_metric: None,
            selection: None,
            storage: None,
        }
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of snapshots taken so far (θ₀ included).
    pub fn snapshots_taken(&self) -> u32 {
        self.next_index
    }

    /// Call at the end of every epoch: snapshots the variables and records the
    /// metrics (any names of at most 1 KiB). Returns once the snapshot and
    /// the metrics are durable (see [`Durability`]).
    pub fn on_epoch_end(&mut self, epoch: u64, metrics: &[(&str, f64)]) -> Result<()> {
        let _span = tracing::debug_span!("on_epoch_end", epoch).entered();
        let rows = self.metric_rows(Some(self.next_index), epoch, metrics)?;
        self.snapshot_now(epoch, Trigger::EpochEnd, rows)?;
        Ok(())
    }

    /// Call after optimizer steps (`step` counts from 1 over the whole run):
    /// snapshots when `every_n_steps` divides `step`, and records the
    /// metrics given (pass `&[]` for none). Calling it at every step with
    /// metrics is cheap (see the [module docs](self)).
    pub fn on_step_end(&mut self, epoch: u64, step: u64, metrics: &[(&str, f64)]) -> Result<()> {
        self.last_step = Some(step);
        let snapshot = matches!(self.every_n_steps(), Some(n) if step.is_multiple_of(n));
        let rows = self.metric_rows(snapshot.then_some(self.next_index), epoch, metrics)?;
        if snapshot {
            self.snapshot_now(epoch, Trigger::StepEnd, rows)?;
            return Ok(());
        }
        self.send_metrics(rows)
    }

    /// Records metrics of θ₀ (snapshot 0, epoch 0), e.g. the loss and
    /// accuracy of the untrained model, so that the metrics have a row at
    /// every snapshot. Call it after [`RecorderBuilder::build`] and before
    /// any step or other snapshot (an error otherwise: the model is no longer
    /// θ₀); it takes no snapshot. The rows get snapshot 0, epoch 0 and no
    /// step.
    pub fn on_train_start(&mut self, metrics: &[(&str, f64)]) -> Result<()> {
        if self.next_index != 1 || self.last_step.is_some() {
            return Err(Error::invalid(
                "on_train_start",
                "must be called before any on_step_end, on_epoch_end or snapshot: \
                 its metrics describe θ₀ (snapshot 0)",
            ));
        }
        let rows = self.metric_rows(Some(0), 0, metrics)?;
        self.send_metrics(rows)
    }

    /// Hands metric rows of a call that took no snapshot to the writer, as
    /// the durability says.
    fn send_metrics(&mut self, rows: Vec<MetricRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self.durability {
            Durability::Written | Durability::Synced => {
                let (ack, rx) = self.ack_pair();
                self.send(Job::Metrics { rows, ack }, rx)
            }
            Durability::Queued => {
                self.pending.extend(rows);
                if self.pending.len() >= QUEUED_BATCH_ROWS {
                    self.send_pending()?;
                }
                Ok(())
            }
        }
    }

    /// Takes a snapshot now, outside the epoch/step schedule.
    pub fn snapshot(&mut self, epoch: u64) -> Result<u32> {
        self.snapshot_now(epoch, Trigger::Manual, Vec::new())
    }

    /// Waits until everything handed to the writer is on disk (snapshots
    /// and metrics written and, unless disabled, fsynced).
    pub fn flush(&mut self) -> Result<()> {
        self.send_pending()?;
        let (ack, rx) = crossbeam_channel::bounded(1);
        self.send(Job::Flush(ack), Some(rx))
    }

    /// Stops the writer after it has written everything queued, marks the
    /// manifest finished and releases the directory lock. Returns the
    /// writer's real error if it failed at any point.
    pub fn finish(mut self) -> Result<RunSummary> {
        self.close()
    }

    fn every_n_steps(&self) -> Option<u64> {
        self.manifest.every_n_steps
    }

    /// Snapshots the variables now, with the metric rows `metrics` reported
    /// by the same call (their `snapshot` is this snapshot's index).
    fn snapshot_now(
        &mut self,
        epoch: u64,
        trigger: Trigger,
        mut metrics: Vec<MetricRow>,
    ) -> Result<u32> {
        if self.closed {
            return Err(Error::Writer("was already stopped by finish()".into()));
        }
        let index = self.next_index;
        let context = format!(" at epoch {epoch} (snapshot {index})");
        // A waiting call may hand the writer the live CPU tensors: they do
        // not change until the writer has acknowledged the file.
        let values = copy::copy_to_host(
            &self.vars,
            &self.manifest.tensors,
            &self.manifest.skipped,
            self.manifest.storage_dtype,
            &context,
            self.durability.waits(),
            &self.pool,
        )?;
        let meta = SnapshotMeta {
            run_id: self.manifest.run_id.clone(),
            index,
            epoch,
            step: self.last_step,
            trigger,
            unix_time: unix_now(),
            tensors_crc32: Some(self.manifest.tensors_crc32()),
        };
        if !self.pending.is_empty() {
            // Reported before this call: they go first, with the snapshot.
            let mine = std::mem::replace(&mut metrics, std::mem::take(&mut self.pending));
            metrics.extend(mine);
        }
        let (ack, rx) = self.ack_pair();
        self.send(
            Job::Snapshot {
                meta,
                values,
                metrics,
                ack,
                sync_before_ack: self.durability != Durability::Written,
            },
            rx,
        )?;
        self.next_index += 1;
        Ok(index)
    }

    /// The rows of one report; an error for a name over
    /// [`MAX_METRIC_NAME_BYTES`] (before anything is recorded).
    fn metric_rows(
        &self,
        snapshot: Option<u32>,
        epoch: u64,
        metrics: &[(&str, f64)],
    ) -> Result<Vec<MetricRow>> {
        if let Some((name, _)) = metrics
            .iter()
            .find(|(n, _)| n.len() > MAX_METRIC_NAME_BYTES)
        {
            return Err(name_too_long(name));
        }
        let t = if metrics.is_empty() { 0.0 } else { unix_now() };
        Ok(metrics
            .iter()
            .map(|(name, value)| MetricRow {
                snapshot,
                epoch,
                step: self.last_step,
                name: (*name).to_string(),
                value: *value,
                unix_time: t,
            })
            .collect())
    }

    /// Hands the rows batched under [`Durability::Queued`] to the writer.
    fn send_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        self.send(Job::Metrics { rows, ack: None }, None)
    }

    fn ack_pair(&self) -> (Option<Ack>, Option<crossbeam_channel::Receiver<()>>) {
        if self.durability.waits() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        }
    }

    /// Hands a job to the writer and, when `wait` is given, waits for its
    /// acknowledgement. When the writer has died, returns its real error.
    fn send(&mut self, job: Job, wait: Option<crossbeam_channel::Receiver<()>>) -> Result<()> {
        let Some(tx) = &self.tx else {
            // `close` sets `closed` before dropping `tx`, and `snapshot_now`
            // checks `closed`: here the writer failed at an earlier call.
            return Err(Error::Writer(
                "failed earlier and stopped; its error was returned by an earlier call".into(),
            ));
        };
        if tx.send(job).is_err() {
            return Err(self.writer_failure());
        }
        let Some(rx) = wait else {
            return Ok(());
        };
        // The writer may stop (failing a background fsync) while this job
        // waits in its queue: the job, and its answer channel, then stay in
        // the channel, so waiting also watches the thread.
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(self.writer_failure())
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    let stopped = self.handle.as_ref().is_none_or(|h| h.is_finished());
                    if stopped {
                        return match rx.try_recv() {
                            Ok(()) => Ok(()),
                            Err(_) => Err(self.writer_failure()),
                        };
                    }
                }
            }
        }
    }

    /// Joins a writer known to have stopped and returns the error it ended with.
    fn writer_failure(&mut self) -> Error {
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(_))) => Error::Writer("stopped unexpectedly".into()),
            Some(Err(p)) => Error::worker_panicked("the recorder's writer thread", p.as_ref()),
            None => Error::Writer("already failed earlier".into()),
        }
    }

    fn close(&mut self) -> Result<RunSummary> {
        if self.closed {
            return Err(Error::Writer("was already stopped by finish()".into()));
        }
        self.closed = true;
        // Batched rows go to the writer first (an error here is the
        // writer's own, joined).
        self.send_pending()?;
        self.tx = None; // ends the writer's loop once the queue is drained
        let stats = match self.handle.take().map(|h| h.join()) {
            Some(Ok(Ok(stats))) => stats,
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(p)) => {
                return Err(Error::worker_panicked(
                    "the recorder's writer thread",
                    p.as_ref(),
                ))
            }
            None => return Err(Error::Writer("had already failed".into())),
        };
        self.manifest.finished = true;
        self.manifest.write(&self.dir, self.fsync)?;
        self.lock = None;
        tracing::info!(dir = %self.dir.display(), snapshots = stats.snapshots, bytes = stats.bytes, "recorder finished");
        Ok(RunSummary {
            dir: self.dir.clone(),
            snapshots: stats.snapshots,
            bytes: stats.bytes,
            writer_busy_seconds: stats.busy_seconds,
            writer_cpu_seconds: stats.cpu_seconds,
            metric_rows: stats.metric_rows,
            metric_segments: stats.metric_segments,
            peak_buffered_metric_rows: stats.peak_buffered_metric_rows,
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.close() {
                tracing::error!(dir = %self.dir.display(), error = %e, "recorder dropped without finish() and failed to close");
            }
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn new_run_id(now: SystemTime) -> String {
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}", nanos, std::process::id())
}
