//! The background writer: serializes snapshots and metrics to the run
//! directory, off the training thread.
//!
//! Fed by a bounded crossbeam channel: when the disk is slower than training,
//! `send` blocks (training slows down) instead of dropping snapshots or
//! growing memory. The first I/O error stops the writer; it is returned from
//! `join` and reported to any caller waiting for an acknowledgement.
//!
//! Metrics are appended to the run's metrics log
//! ([`MetricsLog`](crate::store::metrics)): at most one segment of rows
//! (`metrics_segment_rows`) is held in memory, each report is appended to the
//! open segment's journal, full segments are written once, and the log is
//! compacted into `metrics.arrow` when the writer ends. When it hands the
//! rows to the kernel and when it fsyncs them:
//!
//! | job | metrics rows | acknowledged after |
//! |---|---|---|
//! | `Metrics` with an ack (`Durability::Written`) | written to the journal (no fsync) | the write |
//! | `Metrics` without (`Durability::Queued`: batches of up to 1,024 rows from the recorder) | buffered (written when 64 KiB are pending) | — |
//! | `Snapshot`, `sync_before_ack` (`Durability::Synced`, `Queued`) | written and fsynced, after the snapshot file | the fsync |
//! | `Snapshot` otherwise (`Durability::Written`) | written after the snapshot file; both fsynced right after the answer | the rename and the write |
//! | `Flush` | written and fsynced | the fsync |
//! | end (`finish`) | compacted into `metrics.arrow`, fsynced | — |

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::copy::HostPool;
use crate::error::{Error, Result};
use crate::store::fsutil::{sync_dir, sync_file};
use crate::store::manifest::StorageDtype;
use crate::store::metrics::{MetricRow, MetricsLog};
use crate::store::snapshot::{
    snapshot_file_name, write_snapshot, HostValues, SnapshotMeta, SNAPSHOT_DIR,
};

/// Acknowledgement channel: the writer answers `()` once the work is on
/// disk; when the work fails it drops the sender unanswered and stops, and
/// the waiting caller joins the writer to get the real [`Error`].
pub(crate) type Ack = Sender<()>;

/// A unit of work for the writer.
pub(crate) enum Job {
    /// Write one snapshot (values in manifest order), then append the
    /// metrics reported with it and make them durable.
    Snapshot {
        /// Its metadata.
        meta: SnapshotMeta,
        /// Its values.
        values: Vec<HostValues>,
        /// Metric rows reported by the same call.
        metrics: Vec<MetricRow>,
        /// Answered when the file is in place and the metrics are written
        /// (and both fsynced, with `sync_before_ack`).
        ack: Option<Ack>,
        /// fsync (when enabled) before answering; otherwise right after.
        sync_before_ack: bool,
    },
    /// Append metric rows to the metrics log.
    Metrics {
        /// New rows.
        rows: Vec<MetricRow>,
        /// When given, the rows are handed to the kernel (they survive the
        /// process being killed) before this is answered.
        ack: Option<Ack>,
    },
    /// Answer once everything queued before it is on disk (fsynced).
    Flush(Ack),
}

/// Counters the writer reports when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriterStats {
    /// Snapshot files written.
    pub snapshots: u64,
    /// Value bytes written.
    pub bytes: u64,
    /// Seconds spent serializing and writing.
    pub busy_seconds: f64,
    /// CPU seconds the writer thread used (what it can take from training
    /// threads on a busy machine; `None` where the platform has no thread
    /// clock).
    pub cpu_seconds: Option<f64>,
    /// Metric rows written.
    pub metric_rows: u64,
    /// Metrics segment files written before the final compaction.
    pub metric_segments: u64,
    /// Most metric rows the writer held in memory at once (never more than
    /// the segment size, `RecorderBuilder::metrics_segment_rows`).
    pub peak_buffered_metric_rows: u64,
}

/// Starts the writer thread for the run directory `dir`; metrics are
/// written in segments of `segment_rows` rows.
pub(crate) fn spawn(
    dir: PathBuf,
    dtype: StorageDtype,
    fsync: bool,
    queue: usize,
    segment_rows: usize,
    pool: Arc<HostPool>,
) -> Result<(Sender<Job>, JoinHandle<Result<WriterStats>>)> {
    let (tx, rx) = crossbeam_channel::bounded(queue);
    let handle = std::thread::Builder::new()
        .name("landscape-writer".into())
        .spawn(move || run(dir, dtype, fsync, segment_rows, rx, &pool))
        .map_err(|e| Error::Writer(format!("could not be started: {e}")))?;
    Ok((tx, handle))
}

fn run(
    dir: PathBuf,
    dtype: StorageDtype,
    fsync: bool,
    segment_rows: usize,
    rx: Receiver<Job>,
    pool: &HostPool,
) -> Result<WriterStats> {
    let mut stats = WriterStats::default();
    let mut metrics = MetricsLog::new(&dir, segment_rows, fsync);
    let snap_dir = dir.join(SNAPSHOT_DIR);
    for job in rx {
        let t0 = std::time::Instant::now();
        // A snapshot acknowledged before its fsync, synced after the answer.
        let mut later: Option<PathBuf> = None;
        let (result, ack) = match job {
            Job::Snapshot {
                meta,
                values,
                metrics: rows,
                ack,
                sync_before_ack,
            } => {
                let _span = tracing::debug_span!("write_snapshot", index = meta.index).entered();
                let path = snap_dir.join(snapshot_file_name(meta.index));
                let now = fsync && sync_before_ack;
                let r = write_snapshot(&path, dtype, &meta, values, now)
                    .map(|(bytes, buffers)| {
                        stats.snapshots += 1;
                        stats.bytes += bytes as u64;
                        pool.give(buffers);
                    })
                    .and_then(|()| metrics.append(&rows))
                    .and_then(|()| if now { metrics.sync() } else { metrics.flush() });
                if fsync && !now {
                    later = Some(path);
                }
                (r, ack)
            }
            Job::Metrics { rows, ack } => {
                let r = metrics.append(&rows).and_then(|()| match ack {
                    Some(_) => metrics.flush(),
                    None => Ok(()),
                });
                (r, ack)
            }
            Job::Flush(ack) => (metrics.sync(), Some(ack)),
        };
        debug_assert!(metrics.buffered() <= segment_rows.max(1));
        stats.busy_seconds += t0.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                // The caller goes on; the file and its metrics become
                // durable now (an error stops the writer like any other,
                // reported at the next call).
                if let Some(path) = later {
                    let t1 = std::time::Instant::now();
                    let synced = sync_file(&path)
                        .and_then(|()| sync_dir(&snap_dir))
                        .and_then(|()| metrics.sync());
                    stats.busy_seconds += t1.elapsed().as_secs_f64();
                    if let Err(e) = synced {
                        tracing::error!(error = %e, "recorder writer failed; stopping");
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "recorder writer failed; stopping");
                // Dropping `ack` unanswered wakes the waiting caller, and
                // dropping `rx` on return makes later sends fail, so the
                // training thread learns of the failure at its next call;
                // either way it joins this thread and returns `e`.
                drop(ack);
                return Err(e);
            }
        }
    }
    let t0 = std::time::Instant::now();
    let log = metrics.finish()?;
    stats.busy_seconds += t0.elapsed().as_secs_f64();
    stats.metric_rows = log.rows;
    stats.metric_segments = log.segments;
    stats.peak_buffered_metric_rows = log.peak_buffered;
    stats.cpu_seconds = thread_cpu_seconds();
    Ok(stats)
}

/// CPU time the calling thread has used so far.
#[cfg(unix)]
fn thread_cpu_seconds() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// CPU time the calling thread has used so far (no thread clock here).
#[cfg(not(unix))]
fn thread_cpu_seconds() -> Option<f64> {
    None
}
