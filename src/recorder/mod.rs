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
//! The training thread only deep-copies the variables to host memory; a
//! background thread writes them (see [`writer`]). With the default
//! [`Durability::Written`], `on_epoch_end` returns once the snapshot file is in
//! place under its final name, so a snapshot whose call returned survives
//! `kill -9`. [`Durability::Queued`] returns right after the copy, for the
//! least overhead, and may lose the last `queue` snapshots on a crash.

mod copy;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::error::{Error, Result};
use crate::store::fsutil::{create_dir_in, remove_temp_files, DirLock};
use crate::store::manifest::{rfc3339_utc, Manifest, FORMAT_NAME, MANIFEST_FILE, SCHEMA_VERSION};
use crate::store::metrics::{MetricRow, METRICS_FILE};
use crate::store::snapshot::{SnapshotMeta, Trigger, SNAPSHOT_DIR};
use copy::SharedVariables;
pub use writer::WriterStats;
use writer::{Ack, Job};

/// When a snapshot call returns, relative to the data reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Return once the snapshot file is complete and renamed into place (and
    /// fsynced, unless disabled): every returned call survives a crash.
    #[default]
    Written,
    /// Return once the host copy is queued for the writer: least overhead;
    /// the queued snapshots (at most `queue`) are lost if the process dies.
    Queued,
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
    user: BTreeMap<String, String>,
}

impl RecorderBuilder {
    /// Also snapshot every `n` optimizer steps (reported via
    /// [`Recorder::on_step_end`]). `n` must be at least 1.
    pub fn every_n_steps(mut self, n: u64) -> Self {
        self.every_n_steps = Some(n);
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

    /// Whether files are fsynced before being renamed into place (default
    /// true). Without it a kill -9 is still safe, a power loss may not be.
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
            for f in [METRICS_FILE, MANIFEST_FILE] {
                let p = dir.join(f);
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
                }
            }
        }
        let snap_dir = dir.join(SNAPSHOT_DIR);
        create_dir_in(&dir, &snap_dir)?;
        remove_temp_files(&snap_dir)?;
        remove_temp_files(&dir)?;

        let vars: SharedVariables = vs.variables_.clone();
        let (tensors, skipped, storage_dtype) = copy::describe(&copy::sorted_variables(&vars));
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
        };
        manifest.write(&dir, self.fsync)?;
        let (tx, handle) = writer::spawn(dir.clone(), storage_dtype, self.fsync, self.queue)?;
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
            last_step: None,
            durability: self.durability,
            fsync: self.fsync,
            closed: false,
        };
        rec.snapshot_now(0, Trigger::TrainStart)?;
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
    last_step: Option<u64>,
    durability: Durability,
    fsync: bool,
    closed: bool,
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
            user: BTreeMap::new(),
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
    /// metrics (any names). Returns once the snapshot is durable (see
    /// [`Durability`]).
    pub fn on_epoch_end(&mut self, epoch: u64, metrics: &[(&str, f64)]) -> Result<()> {
        let _span = tracing::debug_span!("on_epoch_end", epoch).entered();
        let index = self.snapshot_now(epoch, Trigger::EpochEnd)?;
        self.record_metrics(Some(index), epoch, metrics)
    }

    /// Call after optimizer steps (`step` counts from 1 over the whole run):
    /// snapshots when `every_n_steps` divides `step`, and records the
    /// metrics given (pass `&[]` for none).
    pub fn on_step_end(&mut self, epoch: u64, step: u64, metrics: &[(&str, f64)]) -> Result<()> {
        self.last_step = Some(step);
        let snapshot = match self.every_n_steps() {
            Some(n) if step.is_multiple_of(n) => Some(self.snapshot_now(epoch, Trigger::StepEnd)?),
            _ => None,
        };
        self.record_metrics(snapshot, epoch, metrics)
    }

    /// Takes a snapshot now, outside the epoch/step schedule.
    pub fn snapshot(&mut self, epoch: u64) -> Result<u32> {
        self.snapshot_now(epoch, Trigger::Manual)
    }

    /// Waits until everything handed to the writer is on disk.
    pub fn flush(&mut self) -> Result<()> {
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

    fn snapshot_now(&mut self, epoch: u64, trigger: Trigger) -> Result<u32> {
        if self.closed {
            return Err(Error::Writer("was already stopped by finish()".into()));
        }
        let index = self.next_index;
        let context = format!(" at epoch {epoch} (snapshot {index})");
        let values = copy::copy_to_host(
            &self.vars,
            &self.manifest.tensors,
            &self.manifest.skipped,
            self.manifest.storage_dtype,
            &context,
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
        let (ack, rx) = self.ack_pair();
        self.send(Job::Snapshot { meta, values, ack }, rx)?;
        self.next_index += 1;
        Ok(index)
    }

    fn record_metrics(
        &mut self,
        snapshot: Option<u32>,
        epoch: u64,
        metrics: &[(&str, f64)],
    ) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        let t = unix_now();
        let rows = metrics
            .iter()
            .map(|(name, value)| MetricRow {
                snapshot,
                epoch,
                step: self.last_step,
                name: (*name).to_string(),
                value: *value,
                unix_time: t,
            })
            .collect();
        let (ack, rx) = self.ack_pair();
        self.send(Job::Metrics { rows, ack }, rx)
    }

    fn ack_pair(&self) -> (Option<Ack>, Option<crossbeam_channel::Receiver<()>>) {
        match self.durability {
            Durability::Written => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                (Some(tx), Some(rx))
            }
            Durability::Queued => (None, None),
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
        if let Some(rx) = wait {
            if rx.recv().is_err() {
                return Err(self.writer_failure());
            }
        }
        Ok(())
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
