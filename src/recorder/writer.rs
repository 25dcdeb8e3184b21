//! The background writer: serializes snapshots and metrics to the run
//! directory, off the training thread.
//!
//! Fed by a bounded crossbeam channel: when the disk is slower than training,
//! `send` blocks (training slows down) instead of dropping snapshots or
//! growing memory. The first I/O error stops the writer; it is returned from
//! `join` and reported to any caller waiting for an acknowledgement.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::store::manifest::StorageDtype;
use crate::store::metrics::{write_metrics, MetricRow, METRICS_FILE};
use crate::store::snapshot::{
    snapshot_file_name, write_snapshot, HostValues, SnapshotMeta, SNAPSHOT_DIR,
};

/// Acknowledgement channel: the writer answers `()` once the work is on
/// disk; when the work fails it drops the sender unanswered and stops, and
/// the waiting caller joins the writer to get the real [`Error`].
pub(crate) type Ack = Sender<()>;

/// A unit of work for the writer.
pub(crate) enum Job {
    /// Write one snapshot (values in manifest order).
    Snapshot {
        /// Its metadata.
        meta: SnapshotMeta,
        /// Its values.
        values: Vec<HostValues>,
        /// Answered when the file is in place.
        ack: Option<Ack>,
    },
    /// Append metric rows and rewrite the metrics table.
    Metrics {
        /// New rows.
        rows: Vec<MetricRow>,
        /// Answered when the table is in place.
        ack: Option<Ack>,
    },
    /// Answer once everything queued before it is on disk.
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
}

/// Starts the writer thread for the run directory `dir`.
pub(crate) fn spawn(
    dir: PathBuf,
    dtype: StorageDtype,
    fsync: bool,
    queue: usize,
) -> Result<(Sender<Job>, JoinHandle<Result<WriterStats>>)> {
    let (tx, rx) = crossbeam_channel::bounded(queue);
    let handle = std::thread::Builder::new()
        .name("landscape-writer".into())
        .spawn(move || run(dir, dtype, fsync, rx))
        .map_err(|e| Error::Writer(format!("could not be started: {e}")))?;
    Ok((tx, handle))
}

fn run(dir: PathBuf, dtype: StorageDtype, fsync: bool, rx: Receiver<Job>) -> Result<WriterStats> {
    let mut stats = WriterStats::default();
    let mut metrics: Vec<MetricRow> = Vec::new();
    let snap_dir = dir.join(SNAPSHOT_DIR);
    for job in rx {
        let t0 = std::time::Instant::now();
        let (result, ack) = match job {
            Job::Snapshot { meta, values, ack } => {
                let _span = tracing::debug_span!("write_snapshot", index = meta.index).entered();
                let path = snap_dir.join(snapshot_file_name(meta.index));
                let r = write_snapshot(&path, dtype, &meta, values, fsync).map(|bytes| {
                    stats.snapshots += 1;
                    stats.bytes += bytes as u64;
                });
                (r, ack)
            }
            Job::Metrics { rows, ack } => {
                metrics.extend(rows);
                (write_metrics(&dir.join(METRICS_FILE), &metrics, fsync), ack)
            }
            Job::Flush(ack) => (Ok(()), Some(ack)),
        };
        stats.busy_seconds += t0.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                if let Some(ack) = ack {
                    let _ = ack.send(());
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
    Ok(stats)
}
