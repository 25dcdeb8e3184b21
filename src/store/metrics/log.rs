//! The append-only metrics log the recorder's writer thread owns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::Schema;

use super::journal::Journal;
use super::{
    journal_file_name, metrics_schema, segment_file_name, Columns, MetricRow, MAX_FRAME_ROWS,
    MAX_SEGMENT_ROWS, METRICS_DIR, METRICS_FILE, SEGMENTS_KEY,
};
use crate::error::{Error, Result};
use crate::store::fsutil::{create_output_dir, sync_dir};
use crate::store::table::{read_ipc, write_ipc};

/// Counters of a [`MetricsLog`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogStats {
    /// Rows appended.
    pub(crate) rows: u64,
    /// Segment files written.
    pub(crate) segments: u64,
    /// Most rows held in memory at once.
    pub(crate) peak_buffered: u64,
}

/// The append-only metrics log of a run being recorded (see the module
/// docs): rows of the open segment in memory and in its journal, full
/// segments written as Arrow IPC files, compacted into `metrics.arrow` by
/// [`finish`](Self::finish). Owned by the recorder's writer thread.
#[derive(Debug)]
pub(crate) struct MetricsLog {
    table: PathBuf,
    dir: PathBuf,
    segment_rows: usize,
    fsync: bool,
    /// The open segment's rows.
    open: Columns,
    /// Index of the open segment.
    index: u32,
    journal: Option<Journal>,
    /// Journal frames were appended since the last fsync.
    unsynced: bool,
    /// A journal file was created since the directory was last fsynced.
    dir_unsynced: bool,
    stats: LogStats,
}

impl MetricsLog {
    /// The log of the run directory `run_dir`, starting empty: any previous
    /// `metrics/` directory must have been removed. Nothing is created
    /// before the first row.
    pub(crate) fn new(run_dir: &Path, segment_rows: usize, fsync: bool) -> MetricsLog {
        MetricsLog {
            table: run_dir.join(METRICS_FILE),
            dir: run_dir.join(METRICS_DIR),
            segment_rows: segment_rows.clamp(1, MAX_SEGMENT_ROWS),
            fsync,
            open: Columns::with_capacity(0),
            index: 0,
            journal: None,
            unsynced: false,
            dir_unsynced: false,
            stats: LogStats::default(),
        }
    }

    /// Rows held in memory now (at most the segment size).
    pub(crate) fn buffered(&self) -> usize {
        self.open.len
    }

    fn journal(&mut self) -> Result<&mut Journal> {
        let journal = match self.journal.take() {
            Some(j) => j,
            None => {
                // Never through a link planted at RUN/metrics.
                create_output_dir(&self.dir)?;
                self.dir_unsynced = true;
                Journal::create(self.dir.join(journal_file_name(self.index)))?
            }
        };
        Ok(self.journal.insert(journal))
    }

    /// Appends `rows` in order: to the open segment's journal (buffered; see
    /// [`flush`](Self::flush)) and to memory, writing the segment when full.
    pub(crate) fn append(&mut self, rows: &[MetricRow]) -> Result<()> {
        let mut rest = rows;
        while !rest.is_empty() {
            let room = self.segment_rows - self.open.len;
            let (chunk, tail) = rest.split_at(room.min(rest.len()).min(MAX_FRAME_ROWS));
            self.journal()?.append(chunk)?;
            self.unsynced = true;
            for r in chunk {
                self.open.push(r);
            }
            self.stats.rows += chunk.len() as u64;
            self.stats.peak_buffered = self.stats.peak_buffered.max(self.open.len as u64);
            if self.open.len >= self.segment_rows {
                self.seal()?;
            }
            rest = tail;
        }
        Ok(())
    }

    /// Writes the open rows as segment `index` (atomically, fsynced when
    /// enabled), removes its journal and opens the next segment.
    fn seal(&mut self) -> Result<()> {
        let path = self.dir.join(segment_file_name(self.index));
        let batch = self
            .open
            .finish(metrics_schema())
            .map_err(|e| Error::arrow(&path, e))?;
        write_ipc(&path, &batch, self.fsync)?;
        if let Some(j) = self.journal.take() {
            j.discard()?;
        }
        self.unsynced = false;
        self.stats.segments += 1;
        self.index = self.index.checked_add(1).ok_or_else(|| {
            Error::invalid(
                "metrics",
                "more than 2^32 segments; raise metrics_segment_rows",
            )
        })?;
        Ok(())
    }

    /// Hands every appended row to the kernel: they survive the process
    /// being killed. No fsync.
    pub(crate) fn flush(&mut self) -> Result<()> {
        match &mut self.journal {
            Some(j) => j.flush(),
            None => Ok(()),
        }
    }

    /// Makes every appended row durable: flushed, and fsynced (journal and
    /// directory) when fsync is enabled. Does nothing when nothing changed.
    pub(crate) fn sync(&mut self) -> Result<()> {
        let Some(j) = &mut self.journal else {
            return Ok(());
        };
        if !self.fsync {
            return j.flush();
        }
        if self.unsynced {
            j.sync()?;
            self.unsynced = false;
        }
        if self.dir_unsynced {
            sync_dir(&self.dir)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Compacts every row into `metrics.arrow` (atomically; covering all
    /// segment indices so far) and removes the segment directory. Writes no
    /// table when no row was appended, like earlier versions.
    pub(crate) fn finish(mut self) -> Result<LogStats> {
        if self.stats.rows == 0 {
            return Ok(self.stats);
        }
        let mut all = Columns::with_capacity(usize::try_from(self.stats.rows).unwrap_or(0));
        let schema = metrics_schema();
        for i in 0..self.index {
            let path = self.dir.join(segment_file_name(i));
            for batch in read_ipc(&path, &schema)? {
                all.extend_from_batch(&batch, &path)?;
            }
        }
        let open = self
            .open
            .finish(schema.clone())
            .map_err(|e| Error::arrow(&self.table, e))?;
        all.extend_from_batch(&open, &self.table)?;
        drop(open);
        let covered = self.index.saturating_add(1);
        let with_key = Arc::new(Schema::new_with_metadata(
            schema.fields().clone(),
            std::collections::HashMap::from([(SEGMENTS_KEY.to_string(), covered.to_string())]),
        ));
        let batch = all
            .finish(with_key)
            .map_err(|e| Error::arrow(&self.table, e))?;
        write_ipc(&self.table, &batch, self.fsync)?;
        if let Some(j) = self.journal.take() {
            j.discard()?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &self.dir, e)),
        }
        Ok(self.stats)
    }
}
