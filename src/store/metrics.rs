//! The metrics table: user metrics reported at epoch (or step) ends, in long
//! form (one row per metric value), so any metric names work.
//!
//! # On disk
//!
//! A finished run holds one Arrow IPC file, `metrics.arrow` (one record
//! batch, the columns of [`metrics_schema`], `schemas/metrics.json`). While a
//! run is recorded the rows are appended, never rewritten:
//!
//! ```text
//! RUN/metrics/000000.arrow    sealed segments: Arrow IPC, one record batch of
//! RUN/metrics/000001.arrow    at most `metrics_segment_rows` rows, each written
//!                             once, atomically (temporary name, rename)
//! RUN/metrics/000002.journal  the open segment's rows as they are reported:
//!                             an append-only journal (format below)
//! ```
//!
//! The writer keeps the open segment's rows in memory (bounded by the
//! segment size) and appends each report to its journal; when the segment is
//! full it is written as `NNNNNN.arrow` and its journal removed. `finish()`
//! compacts the segments and the open rows into `metrics.arrow`, whose schema
//! metadata `tch_landscape.metrics_segments` says how many segment indices it
//! covers, then removes `metrics/`. [`read_metrics`] therefore reads, in
//! order: `metrics.arrow` if present (files written before segments existed
//! have no such key and cover none), then the segments it does not cover,
//! then the journal of the next segment. A journal whose segment exists is a
//! leftover of a kill between writing the segment and removing the journal
//! and is ignored; so are segments a compacted `metrics.arrow` covers (a kill
//! during compaction).
//!
//! # Journal format
//!
//! Little-endian. The 8-byte magic `TLMJRNL1`, then frames. A frame is a
//! 12-byte header, `len: u32`, `!len: u32` (its bitwise complement, so a
//! damaged length is detected) and `crc32(payload): u32`, followed by the
//! `len`-byte payload: rows of `flags: u8` (bit 0: snapshot present, bit 1:
//! step present), `snapshot: u32`, `epoch: u64`, `step: u64`, `value: f64`,
//! `unix_time: f64`, `name_len: u16`, `name` (UTF-8). One report is written as
//! one frame (or several, for reports of more than [`MAX_FRAME_ROWS`] rows).
//!
//! A process killed while appending leaves a torn tail: a frame cut short, or
//! (after a power loss without fsync) bytes that are all zero. Both end the
//! journal with a warning. Anything else that is not a valid frame (a
//! mismatched length, a bad checksum, a malformed row) is an error naming the
//! file and the byte offset: rows are never silently dropped or altered.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, Float64Array, Float64Builder, StringArray, StringBuilder, UInt32Array, UInt32Builder,
    UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::fsutil::{is_temp_name, open_regular, sync_dir};
use crate::store::table::{column, read_ipc, write_ipc};

/// File name of the metrics table inside a run directory.
pub const METRICS_FILE: &str = "metrics.arrow";

/// Directory of the metrics segments and journal inside a run directory,
/// present while a run is recorded (and after it was killed).
pub const METRICS_DIR: &str = "metrics";

/// Default number of metric rows per segment (rows the writer holds in
/// memory before writing them as a segment file).
pub const DEFAULT_SEGMENT_ROWS: usize = 65_536;

/// Largest accepted number of rows per segment.
pub const MAX_SEGMENT_ROWS: usize = 1 << 20;

/// Longest accepted metric name, in bytes.
pub const MAX_METRIC_NAME_BYTES: usize = 1024;

/// Most rows in one journal frame.
pub const MAX_FRAME_ROWS: usize = 1024;

/// Schema metadata key of a compacted `metrics.arrow`: how many segment
/// indices (0, 1, ...) its rows include.
pub const SEGMENTS_KEY: &str = "tch_landscape.metrics_segments";

const JOURNAL_MAGIC: [u8; 8] = *b"TLMJRNL1";
const FRAME_HEADER: usize = 12;
/// Fixed bytes of a journal row before its name.
const ROW_FIXED: usize = 1 + 4 + 8 + 8 + 8 + 8 + 2;
const MAX_FRAME_BYTES: usize = MAX_FRAME_ROWS * (ROW_FIXED + MAX_METRIC_NAME_BYTES);
const FLAG_SNAPSHOT: u8 = 1;
const FLAG_STEP: u8 = 2;

/// One reported metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Index of the snapshot taken at the same call, if one was taken.
    pub snapshot: Option<u32>,
    /// Epoch of the report.
    pub epoch: u64,
    /// Global step of the report, when known.
    pub step: Option<u64>,
    /// Metric name as given by the user.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Wall time of the report, seconds since the Unix epoch.
    pub unix_time: f64,
}

/// The Arrow schema of the metrics table (`schemas/metrics.json`).
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, true),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("step", DataType::UInt64, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("unix_time", DataType::Float64, false),
    ]))
}

/// Builds the metrics table as one record batch.
pub(crate) fn metrics_batch(
    rows: &[MetricRow],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let mut b = Columns::with_capacity(rows.len());
    for r in rows {
        b.push(r);
    }
    b.finish(metrics_schema())
}

/// The metrics columns being built, row by row.
#[derive(Debug)]
struct Columns {
    snapshot: UInt32Builder,
    epoch: UInt64Builder,
    step: UInt64Builder,
    name: StringBuilder,
    value: Float64Builder,
    time: Float64Builder,
    len: usize,
}

impl Columns {
    fn with_capacity(rows: usize) -> Columns {
        Columns {
            snapshot: UInt32Builder::with_capacity(rows),
            epoch: UInt64Builder::with_capacity(rows),
            step: UInt64Builder::with_capacity(rows),
            name: StringBuilder::with_capacity(rows, rows * 8),
            value: Float64Builder::with_capacity(rows),
            time: Float64Builder::with_capacity(rows),
            len: 0,
        }
    }

    fn push(&mut self, r: &MetricRow) {
        self.snapshot.append_option(r.snapshot);
        self.epoch.append_value(r.epoch);
        self.step.append_option(r.step);
        self.name.append_value(&r.name);
        self.value.append_value(r.value);
        self.time.append_value(r.unix_time);
        self.len += 1;
    }

    /// Appends every row of `batch` (a metrics batch read from `path`).
    fn extend_from_batch(&mut self, batch: &RecordBatch, path: &Path) -> Result<()> {
        let snapshot = column::<UInt32Array>(batch, 0, path)?;
        let epoch = column::<UInt64Array>(batch, 1, path)?;
        let step = column::<UInt64Array>(batch, 2, path)?;
        let name = column::<StringArray>(batch, 3, path)?;
        let value = column::<Float64Array>(batch, 4, path)?;
        let time = column::<Float64Array>(batch, 5, path)?;
        for i in 0..batch.num_rows() {
            self.snapshot
                .append_option(snapshot.is_valid(i).then(|| snapshot.value(i)));
            self.epoch.append_value(epoch.value(i));
            self.step
                .append_option(step.is_valid(i).then(|| step.value(i)));
            self.name.append_value(name.value(i));
            self.value.append_value(value.value(i));
            self.time.append_value(time.value(i));
        }
        self.len += batch.num_rows();
        Ok(())
    }

    /// The rows pushed so far as one batch of `schema`; empties the builders.
    fn finish(
        &mut self,
        schema: SchemaRef,
    ) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        self.len = 0;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(self.snapshot.finish()),
                Arc::new(self.epoch.finish()),
                Arc::new(self.step.finish()),
                Arc::new(self.name.finish()),
                Arc::new(self.value.finish()),
                Arc::new(self.time.finish()),
            ],
        )
    }
}

/// The segment directory of the metrics table `path`: `path` without its
/// extension (`RUN/metrics.arrow` → `RUN/metrics`); none without extension.
fn segment_dir(path: &Path) -> Option<PathBuf> {
    path.extension()?;
    Some(path.with_extension(""))
}

/// File name of segment `index`.
pub fn segment_file_name(index: u32) -> String {
    format!("{index:06}.arrow")
}

/// File name of the journal of segment `index`.
pub fn journal_file_name(index: u32) -> String {
    format!("{index:06}.journal")
}

/// What a file name in the segment directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Segment(u32),
    Journal(u32),
}

/// Parses a segment or journal file name written by [`segment_file_name`]
/// or [`journal_file_name`] (exactly: `1.arrow` or `0000001.arrow` are not).
fn parse_entry(name: &str) -> Option<Entry> {
    let (digits, kind): (&str, fn(u32) -> Entry) = if let Some(d) = name.strip_suffix(".arrow") {
        (d, Entry::Segment)
    } else {
        (name.strip_suffix(".journal")?, Entry::Journal)
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    (format!("{index:06}") == digits).then(|| kind(index))
}

// ---------------------------------------------------------------------------
// Writing: the append-only log the recorder's writer thread owns.
// ---------------------------------------------------------------------------

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

/// The open journal of one segment.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    frame: Vec<u8>,
}

impl Journal {
    /// Creates the journal `path` (never through an existing file or link).
    fn create(path: PathBuf) -> Result<Journal> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &path, e)),
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("creating", &path, e))?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        out.write_all(&JOURNAL_MAGIC)
            .map_err(|e| Error::io("writing", &path, e))?;
        Ok(Journal {
            path,
            out,
            frame: Vec::new(),
        })
    }

    /// Appends `rows` (at most [`MAX_FRAME_ROWS`], names at most
    /// [`MAX_METRIC_NAME_BYTES`]) as one frame, into the buffer.
    fn append(&mut self, rows: &[MetricRow]) -> Result<()> {
        let f = &mut self.frame;
        f.clear();
        f.resize(FRAME_HEADER, 0);
        for r in rows {
            let name = r.name.as_bytes();
            let name_len = u16::try_from(name.len())
                .ok()
                .filter(|&n| usize::from(n) <= MAX_METRIC_NAME_BYTES)
                .ok_or_else(|| name_too_long(&r.name))?;
            let flags = if r.snapshot.is_some() {
                FLAG_SNAPSHOT
            } else {
                0
            } | if r.step.is_some() { FLAG_STEP } else { 0 };
            f.push(flags);
            f.extend_from_slice(&r.snapshot.unwrap_or(0).to_le_bytes());
            f.extend_from_slice(&r.epoch.to_le_bytes());
            f.extend_from_slice(&r.step.unwrap_or(0).to_le_bytes());
            f.extend_from_slice(&r.value.to_bits().to_le_bytes());
            f.extend_from_slice(&r.unix_time.to_bits().to_le_bytes());
            f.extend_from_slice(&name_len.to_le_bytes());
            f.extend_from_slice(name);
        }
        let payload = &f[FRAME_HEADER..];
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l as usize <= MAX_FRAME_BYTES)
            .ok_or_else(|| Error::invalid("metrics", "too many rows in one journal frame"))?;
        let crc = crc32fast::hash(payload);
        f[0..4].copy_from_slice(&len.to_le_bytes());
        f[4..8].copy_from_slice(&(!len).to_le_bytes());
        f[8..12].copy_from_slice(&crc.to_le_bytes());
        self.out
            .write_all(f)
            .map_err(|e| Error::io("appending to", &self.path, e))
    }

    /// Hands the buffered frames to the kernel: they survive the process
    /// being killed (not a power loss).
    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("appending to", &self.path, e))
    }

    /// [`flush`](Self::flush), then fsync: the frames survive a power loss.
    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }
}

/// The error for a metric name over [`MAX_METRIC_NAME_BYTES`].
pub(crate) fn name_too_long(name: &str) -> Error {
    let start: String = name.chars().take(32).collect();
    Error::invalid(
        format!("metric name '{}…'", start.escape_debug()),
        format!(
            "is {} bytes long; at most {MAX_METRIC_NAME_BYTES} are accepted",
            name.len()
        ),
    )
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
                std::fs::create_dir_all(&self.dir)
                    .map_err(|e| Error::io("creating", &self.dir, e))?;
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
            // Its rows are in the segment now: nothing to flush.
            let (_, _) = j.out.into_parts();
            std::fs::remove_file(&j.path).map_err(|e| Error::io("removing", &j.path, e))?;
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
        drop(self.journal.take());
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &self.dir, e)),
        }
        Ok(self.stats)
    }
}

// ---------------------------------------------------------------------------
// Reading.
// ---------------------------------------------------------------------------

/// Reads the metrics of a run: the table `path` (`RUN/metrics.arrow`) and
/// the segments and journal of a run being recorded or killed in the
/// directory beside it (`RUN/metrics/`, see the module docs), in report
/// order. A run without metrics is an empty table.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    // A recorder working on the run may seal a segment (removing its
    // journal) or compact (removing the segments) between the listing and
    // the reads: a file that vanished means "list again".
    let mut attempts = 0;
    loop {
        match read_metrics_once(path) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < 4 =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn read_metrics_once(path: &Path) -> Result<Vec<MetricRow>> {
    // List first, then read the table: a compaction between the two leaves
    // a table covering everything listed.
    let (segments, journals) = match segment_dir(path) {
        Some(dir) => list_segment_dir(&dir)?,
        None => (Vec::new(), Vec::new()),
    };
    let (mut rows, covered) = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        _ => read_table(path)?,
    };
    let mut next = covered;
    for (index, seg) in segments.iter().filter(|(i, _)| *i >= covered) {
        if *index != next {
            return Err(missing_segment(seg, next));
        }
        rows.extend(read_table(seg)?.0);
        next = next.saturating_add(1);
    }
    let mut open = journals.iter().filter(|(i, _)| *i >= next);
    if let Some((index, journal)) = open.next() {
        if *index != next {
            return Err(missing_segment(journal, next));
        }
        if let Some((_, other)) = open.next() {
            return Err(Error::corrupt(
                other,
                format!(
                    "a second open journal after {} (one run writes one at a time)",
                    journal_file_name(*index)
                ),
            ));
        }
        rows.extend(read_journal(journal)?);
    }
    Ok(rows)
}

fn missing_segment(found: &Path, next: u32) -> Error {
    Error::corrupt(
        found,
        format!(
            "metrics segment {} is missing before it (deleted?)",
            segment_file_name(next)
        ),
    )
}

/// The segments and journals in `dir`, each sorted by index; an absent
/// directory has none. Temporary names are skipped, other names warned of.
#[allow(clippy::type_complexity)]
fn list_segment_dir(dir: &Path) -> Result<(Vec<(u32, PathBuf)>, Vec<(u32, PathBuf)>)> {
    let (mut segments, mut journals) = (Vec::new(), Vec::new());
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((segments, journals)),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let mut unexpected = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temp_name(&name) {
            continue;
        }
        match parse_entry(&name) {
            Some(Entry::Segment(i)) => segments.push((i, entry.path())),
            Some(Entry::Journal(i)) => journals.push((i, entry.path())),
            None => unexpected += 1,
        }
    }
    if unexpected > 0 {
        tracing::warn!(dir = %dir.display(), count = unexpected, "ignoring unexpected files in the metrics directory");
    }
    segments.sort();
    journals.sort();
    Ok((segments, journals))
}

/// Reads a metrics table or segment (Arrow IPC) and the number of segment
/// indices it covers (its `tch_landscape.metrics_segments` metadata; 0 when
/// absent, as in tables written before segments existed).
fn read_table(path: &Path) -> Result<(Vec<MetricRow>, u32)> {
    let batches = read_ipc(path, &metrics_schema())?;
    let covered = match batches
        .first()
        .and_then(|b| b.schema_ref().metadata().get(SEGMENTS_KEY).cloned())
    {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            Error::corrupt(
                path,
                format!("metadata '{SEGMENTS_KEY}' is '{v}', expected a segment count"),
            )
        })?,
    };
    let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for batch in &batches {
        let snapshot = column::<UInt32Array>(batch, 0, path)?;
        let epoch = column::<UInt64Array>(batch, 1, path)?;
        let step = column::<UInt64Array>(batch, 2, path)?;
        let name = column::<StringArray>(batch, 3, path)?;
        let value = column::<Float64Array>(batch, 4, path)?;
        let time = column::<Float64Array>(batch, 5, path)?;
        for i in 0..batch.num_rows() {
            rows.push(MetricRow {
                snapshot: snapshot.is_valid(i).then(|| snapshot.value(i)),
                epoch: epoch.value(i),
                step: step.is_valid(i).then(|| step.value(i)),
                name: name.value(i).to_string(),
                value: value.value(i),
                unix_time: time.value(i),
            });
        }
    }
    Ok((rows, covered))
}

/// Reads exactly `buf.len()` bytes, or fewer at the end of the file;
/// returns how many were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading", path, e)),
        }
    }
    Ok(n)
}

/// True when everything left in `r` is zero bytes.
fn rest_is_zero(r: &mut impl Read, path: &Path) -> Result<bool> {
    let mut buf = [0u8; 8192];
    loop {
        let n = read_up_to(r, &mut buf, path)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}

/// Reads a metrics journal (see the module docs), tolerating a torn tail.
fn read_journal(path: &Path) -> Result<Vec<MetricRow>> {
    let mut r = std::io::BufReader::new(open_regular(path)?);
    let torn = |offset: u64, why: &str| {
        tracing::warn!(file = %path.display(), offset, "metrics journal ends in a torn tail ({why}): the rows of the last report before the process died are ignored");
    };
    let mut rows = Vec::new();
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut r, &mut magic, path)?;
    if magic != JOURNAL_MAGIC {
        // Killed before the header reached the disk: empty, a prefix of the
        // magic, or zeros (power loss).
        let torn_header = if n < magic.len() {
            JOURNAL_MAGIC.starts_with(&magic[..n]) || magic[..n].iter().all(|&b| b == 0)
        } else {
            magic == [0; 8] && rest_is_zero(&mut r, path)?
        };
        if !torn_header {
            return Err(Error::corrupt(
                path,
                "not a metrics journal (no 'TLMJRNL1' magic)",
            ));
        }
        if n > 0 {
            torn(0, "incomplete header");
        }
        return Ok(rows);
    }
    let mut offset = magic.len() as u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER];
        let n = read_up_to(&mut r, &mut header, path)?;
        if n == 0 {
            return Ok(rows);
        }
        if n < FRAME_HEADER {
            torn(offset, "incomplete frame header");
            return Ok(rows);
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (len, check, crc) = (word(0), word(4), word(8));
        if len != !check {
            if header == [0; FRAME_HEADER] && rest_is_zero(&mut r, path)? {
                torn(offset, "zero bytes");
                return Ok(rows);
            }
            return Err(Error::corrupt(
                path,
                format!("journal frame at byte {offset}: damaged header (length {len} does not match its check word)"),
            ));
        }
        let len = len as usize;
        if !(ROW_FIXED..=MAX_FRAME_BYTES).contains(&len) {
            return Err(Error::corrupt(
                path,
                format!("journal frame at byte {offset}: length {len} outside {ROW_FIXED}..={MAX_FRAME_BYTES}"),
            ));
        }
        payload.resize(len, 0);
        if read_up_to(&mut r, &mut payload, path)? < len {
            torn(offset, "incomplete frame");
            return Ok(rows);
        }
        if crc32fast::hash(&payload) != crc {
            return Err(Error::corrupt(
                path,
                format!("journal frame at byte {offset}: checksum mismatch"),
            ));
        }
        decode_rows(&payload, &mut rows).map_err(|why| {
            Error::corrupt(path, format!("journal frame at byte {offset}: {why}"))
        })?;
        offset += (FRAME_HEADER + len) as u64;
    }
}

/// Decodes the rows of one frame's payload (checksum already verified).
fn decode_rows(mut p: &[u8], rows: &mut Vec<MetricRow>) -> std::result::Result<(), String> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
        if p.len() < n {
            return Err("row cut short".into());
        }
        let (head, tail) = p.split_at(n);
        *p = tail;
        Ok(head)
    }
    fn u64_at(b: &[u8], i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    }
    while !p.is_empty() {
        let f = take(&mut p, ROW_FIXED)?;
        let flags = f[0];
        if flags & !(FLAG_SNAPSHOT | FLAG_STEP) != 0 {
            return Err(format!("unknown row flags {flags:#04x}"));
        }
        let snapshot = u32::from_le_bytes([f[1], f[2], f[3], f[4]]);
        let name_len = usize::from(u16::from_le_bytes([f[37], f[38]]));
        if name_len > MAX_METRIC_NAME_BYTES {
            return Err(format!("metric name of {name_len} bytes"));
        }
        let name = std::str::from_utf8(take(&mut p, name_len)?)
            .map_err(|_| "metric name is not UTF-8".to_string())?;
        rows.push(MetricRow {
            snapshot: (flags & FLAG_SNAPSHOT != 0).then_some(snapshot),
            epoch: u64_at(f, 5),
            step: (flags & FLAG_STEP != 0).then(|| u64_at(f, 13)),
            value: f64::from_bits(u64_at(f, 21)),
            unix_time: f64::from_bits(u64_at(f, 29)),
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> MetricRow {
        MetricRow {
            snapshot: i.is_multiple_of(3).then_some(i as u32 / 3),
            epoch: i / 10,
            step: (!i.is_multiple_of(5)).then_some(i),
            name: ["loss", "", "ü-名前", "acc"][i as usize % 4].to_string(),
            value: if i == 7 {
                f64::NAN
            } else {
                i as f64 * 0.25 - 3.0
            },
            unix_time: 1.7e9 + i as f64,
        }
    }

    fn rows(range: std::ops::Range<u64>) -> Vec<MetricRow> {
        range.map(row).collect()
    }

    /// Bit-exact equality (NaN included).
    fn same(a: &[MetricRow], b: &[MetricRow]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.snapshot == y.snapshot
                    && x.epoch == y.epoch
                    && x.step == y.step
                    && x.name == y.name
                    && x.value.to_bits() == y.value.to_bits()
                    && x.unix_time.to_bits() == y.unix_time.to_bits()
            })
    }

    /// A log of `segment_rows` with `n` rows appended in reports of 1 to 4
    /// rows, flushed (not finished).
    fn log_with(dir: &Path, segment_rows: usize, n: u64) -> (MetricsLog, Vec<MetricRow>) {
        let mut log = MetricsLog::new(dir, segment_rows, false);
        let all = rows(0..n);
        let mut i = 0;
        while i < all.len() {
            let k = (i % 4 + 1).min(all.len() - i);
            log.append(&all[i..i + k]).unwrap();
            i += k;
        }
        log.flush().unwrap();
        (log, all)
    }

    fn read(dir: &Path) -> Result<Vec<MetricRow>> {
        read_metrics(&dir.join(METRICS_FILE))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(METRICS_DIR))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn appended_rows_read_back_in_order_before_and_after_compaction() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(read(dir).unwrap().is_empty(), "no metrics yet");
        let (log, all) = log_with(dir, 5, 23);
        assert!(log.buffered() <= 5);
        assert_eq!(
            names(dir),
            [
                "000000.arrow",
                "000001.arrow",
                "000002.arrow",
                "000003.arrow",
                "000004.journal"
            ]
        );
        assert!(same(&read(dir).unwrap(), &all));
        let stats = log.finish().unwrap();
        assert_eq!(
            (stats.rows, stats.segments, stats.peak_buffered),
            (23, 4, 5)
        );
        assert!(!dir.join(METRICS_DIR).exists(), "segments removed");
        assert!(same(&read(dir).unwrap(), &all));
        // Exactly full segments: no journal left open.
        let tmp = tempfile::tempdir().unwrap();
        let (log, all) = log_with(tmp.path(), 4, 12);
        assert_eq!(names(tmp.path()).len(), 3);
        assert!(same(&read(tmp.path()).unwrap(), &all));
        log.finish().unwrap();
        assert!(same(&read(tmp.path()).unwrap(), &all));
    }

    #[test]
    fn a_log_without_rows_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let log = MetricsLog::new(tmp.path(), 8, true);
        log.finish().unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn torn_journal_tails_read_as_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (_log, all) = log_with(dir, 1000, 40);
        let journal = dir.join(METRICS_DIR).join(journal_file_name(0));
        let bytes = std::fs::read(&journal).unwrap();
        let mut last = 0;
        for cut in 0..=bytes.len() {
            std::fs::write(&journal, &bytes[..cut]).unwrap();
            let got = read(dir).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert!(
                got.len() >= last,
                "cut at {cut}: fewer rows than a shorter cut"
            );
            assert!(same(&got, &all[..got.len()]), "cut at {cut}: not a prefix");
            last = got.len();
        }
        assert_eq!(last, all.len());
        // A zero-filled tail (power loss before the data reached the disk).
        for zeros in [1, 11, 12, 13, 5000] {
            let mut b = bytes.clone();
            b.resize(bytes.len() + zeros, 0);
            std::fs::write(&journal, &b).unwrap();
            assert!(same(&read(dir).unwrap(), &all), "{zeros} zero bytes");
        }
        std::fs::write(&journal, [0u8; 100]).unwrap();
        assert!(read(dir).unwrap().is_empty());
    }

    #[test]
    fn damaged_journal_bytes_are_errors_never_different_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (_log, all) = log_with(dir, 1000, 12);
        let journal = dir.join(METRICS_DIR).join(journal_file_name(0));
        let bytes = std::fs::read(&journal).unwrap();
        let mut errors = 0;
        for pos in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[pos] ^= mask;
                std::fs::write(&journal, &b).unwrap();
                match read(dir) {
                    Ok(got) => assert!(
                        same(&got, &all),
                        "byte {pos} ^ {mask:#x}: read {} rows that differ",
                        got.len()
                    ),
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(msg.contains(&journal.display().to_string()), "{msg}");
                        errors += 1;
                    }
                }
            }
        }
        assert!(errors > bytes.len(), "most flips must be detected");
        // Trailing garbage after the last frame is not a torn tail.
        let mut b = bytes.clone();
        b.extend_from_slice(&[0xAB; 20]);
        std::fs::write(&journal, &b).unwrap();
        assert!(read(dir).is_err());
    }

    #[test]
    fn leftovers_of_a_kill_are_not_read_twice() {
        // Killed after writing segment 0 and before removing its journal.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut log, _) = log_with(dir, 3, 2);
        let stale = std::fs::read(dir.join(METRICS_DIR).join(journal_file_name(0))).unwrap();
        log.append(&rows(2..4)).unwrap();
        log.flush().unwrap();
        std::fs::write(dir.join(METRICS_DIR).join(journal_file_name(0)), stale).unwrap();
        assert!(same(&read(dir).unwrap(), &rows(0..4)));

        // Killed during compaction: metrics.arrow written, segments (some or
        // all) and the journal still there.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (log, all) = log_with(dir, 4, 10);
        let saved = tmp.path().join("saved");
        std::fs::create_dir(&saved).unwrap();
        for n in names(dir) {
            std::fs::copy(dir.join(METRICS_DIR).join(&n), saved.join(&n)).unwrap();
        }
        log.finish().unwrap();
        std::fs::create_dir(dir.join(METRICS_DIR)).unwrap();
        for n in ["000001.arrow", "000002.journal"] {
            std::fs::copy(saved.join(n), dir.join(METRICS_DIR).join(n)).unwrap();
        }
        assert!(same(&read(dir).unwrap(), &all));
    }

    #[test]
    fn missing_segments_and_extra_journals_are_errors_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (_log, _) = log_with(dir, 2, 7);
        let mdir = dir.join(METRICS_DIR);
        let check = |want: &str| {
            let e = read(dir).expect_err(want);
            let msg = e.to_string();
            assert!(msg.contains(want), "{msg}");
            assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        };
        std::fs::rename(mdir.join("000001.arrow"), dir.join("keep")).unwrap();
        check("000001.arrow is missing");
        std::fs::rename(dir.join("keep"), mdir.join("000001.arrow")).unwrap();
        std::fs::copy(mdir.join("000003.journal"), mdir.join("000005.journal")).unwrap();
        check("second open journal");
        std::fs::rename(mdir.join("000003.journal"), dir.join("keep")).unwrap();
        check("000003.arrow is missing");
        std::fs::remove_file(mdir.join("000005.journal")).unwrap();
        // Unknown names and temporary files are ignored.
        std::fs::write(mdir.join("notes.txt"), b"x").unwrap();
        std::fs::write(mdir.join("1.arrow"), b"x").unwrap();
        std::fs::write(mdir.join(".000003.arrow.tmp"), b"x").unwrap();
        assert!(same(&read(dir).unwrap(), &rows(0..6)));
    }

    #[test]
    fn tables_without_the_segment_key_cover_no_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(METRICS_FILE);
        // As written before segments existed: one batch, no metadata.
        let old = rows(0..9);
        write_ipc(&path, &metrics_batch(&old).unwrap(), false).unwrap();
        assert!(same(&read_metrics(&path).unwrap(), &old));
        // A bad segment count is an error naming the key.
        let schema = Arc::new(Schema::new_with_metadata(
            metrics_schema().fields().clone(),
            std::collections::HashMap::from([(SEGMENTS_KEY.to_string(), "-1".to_string())]),
        ));
        let batch = metrics_batch(&old).unwrap().with_schema(schema).unwrap();
        write_ipc(&path, &batch, false).unwrap();
        let e = read_metrics(&path).unwrap_err().to_string();
        assert!(e.contains(SEGMENTS_KEY), "{e}");
    }

    #[test]
    fn entry_names_parse_exactly() {
        assert_eq!(parse_entry("000012.arrow"), Some(Entry::Segment(12)));
        assert_eq!(
            parse_entry("1234567.journal"),
            Some(Entry::Journal(1_234_567))
        );
        for bad in [
            "12.arrow",
            "0000012.arrow",
            "+00012.arrow",
            "000012.arrow.tmp",
            "000012",
        ] {
            assert_eq!(parse_entry(bad), None, "{bad}");
        }
        assert_eq!(parse_entry(&segment_file_name(7)), Some(Entry::Segment(7)));
        assert_eq!(
            parse_entry(&journal_file_name(u32::MAX)),
            Some(Entry::Journal(u32::MAX))
        );
    }

    #[test]
    fn overlong_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::new(tmp.path(), 8, false);
        let mut r = row(1);
        r.name = "x".repeat(MAX_METRIC_NAME_BYTES + 1);
        let e = log.append(&[r]).unwrap_err();
        assert!(e.to_string().contains("metric name"), "{e}");
    }
}
