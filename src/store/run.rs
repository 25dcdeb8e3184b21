//! Reading a run directory: manifest, snapshots, metrics, and streaming over
//! chosen tensors across all snapshots in bounded memory.

use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::error::{Error, Result};
use crate::store::fsutil::is_temp_name;
use crate::store::manifest::{Manifest, TensorInfo};
use crate::store::metrics::{read_metrics, MetricRow, METRICS_FILE};
use crate::store::snapshot::{parse_snapshot_file_name, SnapshotFile, SNAPSHOT_DIR};
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

impl Run {
    /// Opens the run directory `dir`, reading the manifest and checking every
    /// snapshot file (footer, run id, tensor count and sizes). Temporary files
    /// left by a killed writer are ignored.
    pub fn open(dir: impl AsRef<Path>) -> Result<Run> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir)?;
        let snap_dir = dir.join(SNAPSHOT_DIR);
        let mut files = Vec::new();
        let entries =
            std::fs::read_dir(&snap_dir).map_err(|e| Error::io("listing", &snap_dir, e))?;
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
        let mut snapshots = Vec::with_capacity(files.len());
        for (index, path) in files {
            let snap = SnapshotFile::open(&path, &manifest)?;
            if snap.meta().index != index {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "file name says snapshot {index}, its metadata says {}",
                        snap.meta().index
                    ),
                ));
            }
            snapshots.push(snap);
        }
        Ok(Run {
            dir,
            manifest,
            snapshots,
        })
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
    /// original dtypes, in manifest order.
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
    /// float32 vector (manifest order).
    pub fn flat_f32(&self, i: usize, selection: &Selection) -> Result<Vec<f32>> {
        let snap = self.snapshot(i)?;
        let idx = selection.indices(&self.manifest)?;
        let total: u64 = idx.iter().map(|&k| self.manifest.tensors[k].numel).sum();
        let mut out = vec![0f32; total as usize];
        let mut pos = 0;
        for k in idx {
            let n = self.manifest.tensors[k].numel as usize;
            snap.read_f32_into(k, 0, &mut out[pos..pos + n]);
            pos += n;
        }
        Ok(out)
    }

    /// Copies the `i`-th snapshot into the variables of `vs` (by name), e.g. to
    /// evaluate the model at a recorded point. Every recorded tensor must
    /// exist in `vs` with the recorded shape.
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
        })
    }
}

fn tensor_from_snapshot(snap: &SnapshotFile, k: usize, info: &TensorInfo) -> Result<Tensor> {
    let t = if let Some(v) = snap.f32_values(k) {
        Tensor::from_slice(v)
    } else if let Some(v) = snap.f64_values(k) {
        Tensor::from_slice(v)
    } else {
        return Err(Error::corrupt(
            snap.path(),
            "values are neither float32 nor float64",
        ));
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
    /// The values of snapshot `s`.
    pub fn row(&self, s: usize) -> &[f32] {
        &self.data[s * self.len..(s + 1) * self.len]
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
}

impl Iterator for ChunkStream<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        loop {
            let &k = self.tensors.get(self.cur)?;
            let numel = self.run.manifest.tensors[k].numel as usize;
            if self.start >= numel {
                self.cur += 1;
                self.start = 0;
                continue;
            }
            let len = self.chunk.min(numel - self.start);
            let n = self.run.snapshots.len();
            let mut data = vec![0f32; n * len];
            for (s, snap) in self.run.snapshots.iter().enumerate() {
                snap.read_f32_into(k, self.start, &mut data[s * len..(s + 1) * len]);
                snap.release_range(k, self.start, len);
            }
            let chunk = Chunk {
                tensor: k,
                start: self.start,
                len,
                global_start: self.global,
                data,
            };
            self.start += len;
            self.global += len;
            return Some(chunk);
        }
    }
}
