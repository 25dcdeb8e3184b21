//! Reading a run directory: manifest, snapshots, metrics, and streaming over
//! chosen tensors across all snapshots in bounded memory; checking a run
//! ([`Run::verify`], [`Run::verify_dir`]).
//!
//! What is checked when: opening checks the manifest, the snapshots'
//! structure and their agreement with the manifest, and that the snapshots
//! are numbered 0, 1, 2, … without a gap; reading a whole tensor
//! ([`Run::tensors`], [`Run::flat_f32`], [`Run::load_into`]) checks its
//! checksum; [`Run::stream`] checks each tensor's checksum as its values
//! pass and refuses non-finite values; [`Run::verify`] reads everything.

use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::error::{Error, Result};
use crate::store::fsutil::is_temp_name;
use crate::store::manifest::{Manifest, TensorInfo};
use crate::store::metrics::{metrics_schema, read_metrics, MetricRow, METRICS_FILE};
use crate::store::snapshot::{
    non_finite, parse_snapshot_file_name, snapshot_file_name, NonFinite, SnapshotFile, SNAPSHOT_DIR,
};
use crate::store::table::read_ipc_checked;
use crate::tensor::{kind_from_name, model_variable};

pub use crate::tensor::Selection;

/// Sub-directory of a run holding its surfaces (`RUN/surfaces/NAME`), where
/// the report finds them.
pub const SURFACES_DIR: &str = "surfaces";
/// Sub-directory of a run holding its curvature maps (`RUN/curvature/NAME`).
pub const CURVATURE_DIR: &str = "curvature";
/// Sub-directory of a run holding its trajectory PCA (`RUN/pca`).
pub const PCA_DIR: &str = "pca";

impl Selection {
    /// Indices (manifest order) of the selected tensors; an error when a name
    /// is unknown or nothing is selected.
    pub fn indices(&self, manifest: &Manifest) -> Result<Vec<usize>> {
        let idx = match self {
            Selection::Names(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for n in names {
                    let i = manifest
                        .tensors
                        .binary_search_by(|t| t.name.as_str().cmp(n))
                        .map_err(|_| Error::UnknownTensor {
                            tensor: n.clone(),
                            place: format!("run {}", manifest.run_id),
                        })?;
                    idx.push(i);
                }
                idx.sort_unstable();
                idx.dedup();
                idx
            }
            _ => (0..manifest.tensors.len())
                .filter(|&i| self.selects(&manifest.tensors[i].name, manifest.tensors[i].role))
                .collect(),
        };
        if idx.is_empty() {
            return Err(Error::invalid(
                "tensor selection",
                format!("'{self}' selects no tensor of run {}", manifest.run_id),
            ));
        }
        Ok(idx)
    }
}

/// A recorded run, opened for reading.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    manifest: Manifest,
    snapshots: Vec<SnapshotFile>,
}

/// What [`Run::verify`] or [`Run::verify_dir`] found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Number of files read and checked.
    pub files: usize,
    /// Files without checksums (written before tch-landscape stored them):
    /// their structure was checked, their values could not be.
    pub without_checksums: Vec<PathBuf>,
    /// Tensors holding values that are not finite, by snapshot.
    pub non_finite: Vec<NonFinite>,
    /// Every other problem, each naming its file.
    pub problems: Vec<Error>,
}

impl Verification {
    /// True when nothing is wrong: no problem and no non-finite value (files
    /// without checksums are not a problem).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.non_finite.is_empty()
    }

    /// Adds the findings of `other`.
    pub fn merge(&mut self, other: Verification) {
        self.files += other.files;
        self.without_checksums.extend(other.without_checksums);
        self.non_finite.extend(other.non_finite);
        self.problems.extend(other.problems);
    }

    /// Records the outcome of reading one file: `Ok(has_checksums)` or the
    /// problem.
    pub(crate) fn file(&mut self, path: &Path, outcome: Result<bool>) {
        self.files += 1;
        match outcome {
            Ok(true) => {}
            Ok(false) => self.without_checksums.push(path.to_path_buf()),
            Err(e) => self.problems.push(e),
        }
    }

    /// Checks every tensor of `snap`: checksum and finite values.
    fn snapshot(&mut self, snap: &SnapshotFile) {
        self.file(snap.path(), Ok(snap.has_checksums()));
        for k in 0..snap.tensor_count() {
            match snap.scan_tensor(k) {
                Ok(None) => {}
                Ok(Some(nf)) => self.non_finite.push(nf),
                Err(e) => self.problems.push(e),
            }
        }
    }

    /// Checks the metrics table of the run directory `dir`, if any.
    fn metrics(&mut self, dir: &Path) {
        let path = dir.join(METRICS_FILE);
        if std::fs::symlink_metadata(&path).is_ok() {
            let outcome = read_ipc_checked(&path, &metrics_schema()).map(|(_, crc)| crc);
            self.file(&path, outcome);
        }
    }
}

/// The snapshot files of the run directory `dir` (temporary files ignored,
/// stray files warned about), sorted by index.
fn snapshot_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let snap_dir = dir.join(SNAPSHOT_DIR);
    let mut files = Vec::new();
    let entries = std::fs::read_dir(&snap_dir).map_err(|e| Error::io("listing", &snap_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &snap_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temp_name(&name) {
            continue;
        }
        match parse_snapshot_file_name(&name) {
            Some(index) => files.push((index, entry.path())),
            None => {
                tracing::warn!(file = %entry.path().display(), "ignoring unexpected file in snapshot directory")
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One error per gap in the numbering of `files` (sorted by index), which
/// must be 0, 1, 2, …: the recorder writes them in that order and the
/// analyses index snapshots by position.
fn gaps(dir: &Path, files: &[(u32, PathBuf)]) -> Vec<Error> {
    let snap_dir = dir.join(SNAPSHOT_DIR);
    let mut out = Vec::new();
    let mut expected = 0u32;
    for &(index, _) in files {
        if index > expected {
            let (a, b) = (expected, index - 1);
            let which = if a == b {
                format!("snapshot {a} ({}) is missing", snapshot_file_name(a))
            } else {
                format!(
                    "snapshots {a} to {b} ({} to {}) are missing",
                    snapshot_file_name(a),
                    snapshot_file_name(b)
                )
            };
            let after = if a == 0 {
                String::new()
            } else {
                format!(" after snapshot {}", a - 1)
            };
            out.push(Error::corrupt(
                &snap_dir,
                format!(
                    "{which}{after} (the next one is {index}): snapshots are numbered from 0 \
                     without gaps and analyses index them by position; restore the file from \
                     a copy of the run"
                ),
            ));
        }
        expected = index.saturating_add(1);
    }
    out
}

/// Opens the snapshot `path`, whose file name says `index`.
fn open_snapshot(index: u32, path: &Path, manifest: &Manifest) -> Result<SnapshotFile> {
    let snap = SnapshotFile::open(path, manifest)?;
    if snap.meta().index != index {
        return Err(Error::corrupt(
            path,
            format!(
                "file name says snapshot {index}, its metadata says {}",
                snap.meta().index
            ),
        ));
    }
    Ok(snap)
}

impl Run {
    /// Opens the run directory `dir`, reading the manifest and checking every
    /// snapshot file (footer, run id, tensor table digest, tensor count and
    /// sizes) and that they are numbered 0, 1, 2, … without a gap (a missing
    /// snapshot is an error naming it). Temporary files left by a killed
    /// writer are ignored. Values are checked when read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Run> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir)?;
        let files = snapshot_files(&dir)?;
        if let Some(gap) = gaps(&dir, &files).into_iter().next() {
            return Err(gap);
        }
        let snapshots = files
            .iter()
            .map(|(index, path)| open_snapshot(*index, path, &manifest))
            .collect::<Result<Vec<_>>>()?;
        Ok(Run {
            dir,
            manifest,
            snapshots,
        })
    }

    /// Checks everything of the opened run: every tensor of every snapshot
    /// against its checksum, for values that are not finite, and the
    /// metrics table. This reads every value once (a few GB at most at this
    /// tool's scale: seconds from the page cache).
    pub fn verify(&self) -> Verification {
        let mut v = Verification {
            files: 1, // the manifest, checked by `open`
            ..Verification::default()
        };
        for snap in &self.snapshots {
            v.snapshot(snap);
        }
        v.metrics(&self.dir);
        v
    }

    /// Checks the run directory `dir` like [`Run::open`] followed by
    /// [`Run::verify`], without stopping at the first problem: every
    /// damaged file and every missing snapshot is a problem of its own.
    pub fn verify_dir(dir: impl AsRef<Path>) -> Verification {
        let dir = dir.as_ref();
        let mut v = Verification::default();
        match Manifest::read(dir) {
            Err(e) => v.file(&Manifest::path_in(dir), Err(e)),
            Ok(manifest) => {
                v.files += 1;
                match snapshot_files(dir) {
                    Err(e) => v.problems.push(e),
                    Ok(files) => {
                        v.problems.extend(gaps(dir, &files));
                        for (index, path) in &files {
                            match open_snapshot(*index, path, &manifest) {
                                Ok(snap) => v.snapshot(&snap),
                                Err(e) => v.file(path, Err(e)),
                            }
                        }
                    }
                }
            }
        }
        v.metrics(dir);
        v
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// All snapshots, in order.
    pub fn snapshots(&self) -> &[SnapshotFile] {
        &self.snapshots
    }

    /// Number of snapshots.
    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// True when the run has no snapshot.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// The `i`-th snapshot (position, not necessarily the stored index).
    pub fn snapshot(&self, i: usize) -> Result<&SnapshotFile> {
        self.snapshots.get(i).ok_or_else(|| Error::NoSuchSnapshot {
            path: self.dir.clone(),
            index: i,
            count: self.snapshots.len(),
        })
    }

    /// The user metrics recorded with the run.
    pub fn metrics(&self) -> Result<Vec<MetricRow>> {
        read_metrics(&self.dir.join(METRICS_FILE))
    }

    /// The `i`-th snapshot as named CPU tensors with their recorded shapes and
    /// original dtypes, in manifest order; each tensor is checked against its
    /// checksum.
    pub fn tensors(&self, i: usize) -> Result<Vec<(String, Tensor)>> {
        let snap = self.snapshot(i)?;
        self.manifest
            .tensors
            .iter()
            .enumerate()
            .map(|(k, info)| Ok((info.name.clone(), tensor_from_snapshot(snap, k, info)?)))
            .collect()
    }

    /// The selected tensors of the `i`-th snapshot concatenated into one flat
    /// float32 vector (manifest order), each checked against its checksum.
    pub fn flat_f32(&self, i: usize, selection: &Selection) -> Result<Vec<f32>> {
        let snap = self.snapshot(i)?;
        let idx = selection.indices(&self.manifest)?;
        // The manifest bounds every count (`MAX_NUMEL`) and the snapshot
        // holds that many values.
        let total: u64 = idx.iter().map(|&k| self.manifest.tensors[k].numel).sum();
        let mut out = vec![0f32; total as usize];
        let mut pos = 0;
        for k in idx {
            let n = self.manifest.tensors[k].numel as usize;
            snap.read_f32_into(k, 0, &mut out[pos..pos + n])?;
            pos += n;
        }
        Ok(out)
    }

    /// Copies the `i`-th snapshot into the variables of `vs` (by name), e.g. to
    /// evaluate the model at a recorded point. Every recorded tensor must
    /// exist in `vs` with the recorded shape, and match its checksum.
    pub fn load_into(&self, i: usize, vs: &tch::nn::VarStore) -> Result<()> {
        let vars = vs.variables();
        let snap = self.snapshot(i)?;
        tch::no_grad(|| {
            for (k, info) in self.manifest.tensors.iter().enumerate() {
                let mut var =
                    model_variable(&vars, &info.name, &info.shape, "the VarStore being loaded")?;
                let src = tensor_from_snapshot(snap, k, info)?;
                var.f_copy_(&src)
                    .map_err(|e| Error::torch(format!("loading '{}'", info.name), e))?;
            }
            Ok(())
        })
    }

    /// Streams the selected tensors across all snapshots, `chunk` elements at
    /// a time: each item holds the same element range of one tensor for every
    /// snapshot. Memory stays O(snapshots × chunk) whatever the model size.
    ///
    /// Each (snapshot, tensor) is checked against its checksum as its values
    /// pass (the item that ends a tensor is an error if one does not match),
    /// and a value that is not finite in float32 is an error
    /// ([`Error::NonFinite`]) naming the snapshot file, the tensor and the
    /// element. The stream ends after its first error.
    pub fn stream(&self, selection: &Selection, chunk: usize) -> Result<ChunkStream<'_>> {
        if chunk == 0 {
            return Err(Error::invalid("chunk size", "must be at least 1 element"));
        }
        let tensors = selection.indices(&self.manifest)?;
        Ok(ChunkStream {
            run: self,
            tensors,
            chunk,
            cur: 0,
            start: 0,
            global: 0,
            checks: Vec::new(),
            released: 0,
            pending_release: None,
            scratch: Vec::new(),
            failed: false,
        })
    }
}

fn tensor_from_snapshot(snap: &SnapshotFile, k: usize, info: &TensorInfo) -> Result<Tensor> {
    snap.verify_tensor(k)?;
    let t = match snap.values(k) {
        Some(v) => v.to_tensor(),
        None => return Err(Error::corrupt(snap.path(), format!("has no tensor {k}"))),
    };
    let kind = kind_from_name(&info.dtype).ok_or_else(|| {
        Error::corrupt(
            snap.path(),
            format!("tensor '{}' has unknown dtype '{}'", info.name, info.dtype),
        )
    })?;
    t.f_reshape(info.shape.as_slice())
        .and_then(|t| t.f_to_kind(kind))
        .map_err(|e| Error::torch(format!("rebuilding tensor '{}'", info.name), e))
}

/// One element range of one tensor, for every snapshot of a run.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Manifest index of the tensor.
    pub tensor: usize,
    /// First element of the range inside the tensor.
    pub start: usize,
    /// Number of elements in the range.
    pub len: usize,
    /// First element of the range in the flat concatenation of the selected
    /// tensors.
    pub global_start: usize,
    /// Values, snapshot-major: row `s` is `data[s*len .. (s+1)*len]`.
    pub data: Vec<f32>,
}

impl Chunk {
    /// The values of snapshot `s` (empty when out of range).
    pub fn row(&self, s: usize) -> &[f32] {
        self.data
            .get(s * self.len..(s + 1) * self.len)
            .unwrap_or_default()
    }
}

/// Iterator returned by [`Run::stream`].
#[derive(Debug)]
pub struct ChunkStream<'a> {
    run: &'a Run,
    tensors: Vec<usize>,
    chunk: usize,
    cur: usize,
    start: usize,
    global: usize,
    /// The incremental checksum of the current tensor, per snapshot.
    checks: Vec<Option<crc32fast::Hasher>>,
    /// Elements of the current tensor whose pages were released.
    released: usize,
    /// Pages to release before the next chunk is read: (tensor, first
    /// element, count), once the previous chunk's rows are no longer used.
    pending_release: Option<(usize, usize, usize)>,
    /// Float32 copies of the rows of float64 snapshots.
    scratch: Vec<Vec<f32>>,
    failed: bool,
}

/// Values read from each snapshot between two releases of its mapped pages
/// (1 MiB of float32): one `madvise` per MiB rather than per chunk (each
/// call flushes TLBs on every core), at most this much (plus the
/// fault-around) resident per snapshot.
const RELEASE_VALUES: usize = 1 << 18;

/// One element range of one tensor for every snapshot, borrowed: the rows
/// of float32 snapshots are the mapped files' own memory (no copy), those of
/// float64 snapshots converted copies. See [`ChunkStream::next_rows`].
#[derive(Debug)]
pub(crate) struct ChunkRows<'s> {
    /// Manifest index of the tensor.
    pub(crate) tensor: usize,
    /// First element of the range inside the tensor.
    pub(crate) start: usize,
    /// Number of elements in the range.
    pub(crate) len: usize,
    /// First element of the range in the flat concatenation of the selected
    /// tensors.
    pub(crate) global_start: usize,
    /// The values of each snapshot, `len` each.
    pub(crate) rows: Vec<&'s [f32]>,
}

impl ChunkStream<'_> {
    /// The next chunk's rows, checked (checksums as they pass, every value
    /// finite), borrowed until the next call. Pages of the mapped files are
    /// released in steps of [`RELEASE_VALUES`] once read.
    pub(crate) fn next_rows(&mut self) -> Option<Result<ChunkRows<'_>>> {
        if self.failed {
            return None;
        }
        if let Some((k, from, n)) = self.pending_release.take() {
            for snap in &self.run.snapshots {
                snap.release_range(k, from, n);
            }
        }
        let (k, start, len) = loop {
            let &k = self.tensors.get(self.cur)?;
            let numel = self.run.manifest.tensors[k].numel as usize;
            if self.start >= numel {
                self.cur += 1;
                self.start = 0;
                continue;
            }
            break (k, self.start, self.chunk.min(numel - self.start));
        };
        match self.check_rows(k, start, len) {
            Ok(()) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let end = start + len;
        if end == self.run.manifest.tensors[k].numel as usize
            || end - self.released >= RELEASE_VALUES
        {
            self.pending_release = Some((k, self.released, end - self.released));
            self.released = end;
        }
        let global_start = self.global;
        self.start += len;
        self.global += len;
        let mut scratch = self.scratch.iter();
        let rows = self
            .run
            .snapshots
            .iter()
            .map(|snap| match snap.f32_values(k) {
                Some(v) => v.get(start..end).unwrap_or_default(),
                None => scratch.next().map_or(&[][..], |v| v.as_slice()),
            })
            .collect();
        Some(Ok(ChunkRows {
            tensor: k,
            start,
            len,
            global_start,
            rows,
        }))
    }

    /// Checks the range `[start, start+len)` of tensor `k` in every
    /// snapshot (checksum, finite values; the checksum completed at the
    /// tensor's end) and converts float64 rows into `scratch`.
    fn check_rows(&mut self, k: usize, start: usize, len: usize) -> Result<()> {
        let info = &self.run.manifest.tensors[k];
        let snapshots = &self.run.snapshots;
        if start == 0 {
            self.checks = snapshots.iter().map(|s| s.begin_check(k)).collect();
            self.released = 0;
        }
        let mut used = 0;
        for (snap, check) in snapshots.iter().zip(&mut self.checks) {
            if let Some(h) = check.as_mut() {
                snap.check_values(k, start, len, h);
            }
            let bad = match snap.f32_values(k) {
                Some(v) => non_finite(&v[start..start + len], f32::is_finite, f64::from).1,
                None => {
                    if self.scratch.len() <= used {
                        self.scratch.push(Vec::new());
                    }
                    let row = &mut self.scratch[used];
                    used += 1;
                    row.resize(len, 0.0);
                    snap.copy_f32(k, start, row);
                    non_finite(row, f32::is_finite, f64::from).1
                }
            };
            if let Some((j, _)) = bad {
                // Damage that made a value NaN is reported as damage.
                snap.verify_tensor(k)?;
                let at = start + j;
                let value = snap
                    .values(k)
                    .and_then(|v| v.get_f64(at))
                    .unwrap_or(f64::NAN);
                return Err(Error::NonFinite {
                    path: snap.path().to_path_buf(),
                    tensor: info.name.clone(),
                    index: at as u64,
                    value,
                });
            }
        }
        if start + len == info.numel as usize {
            for (snap, check) in snapshots.iter().zip(&mut self.checks) {
                if let Some(h) = check.take() {
                    snap.end_check(k, h)?;
                }
            }
        }
        Ok(())
    }

    /// The next chunk, copied.
    fn next_chunk(&mut self) -> Option<Result<Chunk>> {
        let rows = match self.next_rows()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let mut data = Vec::with_capacity(rows.rows.len() * rows.len);
        for r in &rows.rows {
            data.extend_from_slice(r);
        }
        Some(Ok(Chunk {
            tensor: rows.tensor,
            start: rows.start,
            len: rows.len,
            global_start: rows.global_start,
            data,
        }))
    }
}

impl Iterator for ChunkStream<'_> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        self.next_chunk()
    }
}
