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

mod journal;
mod log;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, Float64Array, Float64Builder, StringArray, StringBuilder, UInt32Array, UInt32Builder,
    UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::fsutil::is_temp_name;
use crate::store::snapshot::Trigger;
use crate::store::table::{column, read_ipc};
use journal::read_journal;
pub(crate) use log::MetricsLog;

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

impl MetricRow {
    /// Whether the row was reported per epoch: with a snapshot that is not
    /// a step snapshot (`trigger` is that snapshot's, `None` when it is not
    /// in the run), or with neither a snapshot nor a step. Rows of
    /// `on_step_end` are per step.
    pub fn is_per_epoch(&self, trigger: Option<Trigger>) -> bool {
        match self.snapshot {
            Some(_) => trigger != Some(Trigger::StepEnd),
            None => self.step.is_none(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::table::write_ipc;

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
