//! Snapshot files: one Arrow IPC file per snapshot.
//!
//! Layout (documented in `schemas/snapshot.json`): a single non-null column
//! `values` (float32, or float64 for float64 models) and one record batch per
//! tensor, in manifest order, each holding the tensor flattened in row-major
//! order. The schema's metadata key [`SNAPSHOT_META_KEY`] holds a JSON
//! [`SnapshotMeta`]. Batches are 64-byte aligned, so a memory-mapped file is
//! read without copying.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float32Array, Float64Array};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::convert::try_fb_to_schema;
use arrow::ipc::reader::FileDecoder;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::fsutil::write_atomic;
use crate::store::manifest::{Manifest, StorageDtype};
use crate::store::table::{check_ipc_block, ipc_footer};

/// Schema metadata key holding the snapshot's [`SnapshotMeta`] as JSON.
pub const SNAPSHOT_META_KEY: &str = "tch_landscape.snapshot";

/// Sub-directory of a run holding the snapshot files.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// What caused a snapshot to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Taken when the recorder was built (θ₀).
    TrainStart,
    /// Taken at the end of an epoch.
    EpochEnd,
    /// Taken every N optimizer steps.
    StepEnd,
    /// Taken on the user's explicit request.
    Manual,
}

/// Per-snapshot metadata stored in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Run id, equal to the manifest's.
    pub run_id: String,
    /// Position of the snapshot in the run (0 = train start).
    pub index: u32,
    /// Epoch at which it was taken (0 = before training).
    pub epoch: u64,
    /// Global optimizer step at which it was taken, as reported by the user
    /// (`None` when the user never reported steps).
    pub step: Option<u64>,
    /// What caused it.
    pub trigger: Trigger,
    /// Wall time when the copy was taken, seconds since the Unix epoch.
    pub unix_time: f64,
}

/// Host-memory values of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostValues {
    /// float32 storage.
    F32(Vec<f32>),
    /// float64 storage.
    F64(Vec<f64>),
}

impl HostValues {
    /// Size in bytes.
    pub fn nbytes(&self) -> usize {
        match self {
            HostValues::F32(v) => v.len() * 4,
            HostValues::F64(v) => v.len() * 8,
        }
    }
}

/// The snapshot file name for index `index`.
pub fn snapshot_file_name(index: u32) -> String {
    format!("{index:06}.arrow")
}

/// Parses a snapshot file name back to its index.
pub fn parse_snapshot_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".arrow")?;
    if stem.len() == 6 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

fn values_type(dtype: StorageDtype) -> DataType {
    match dtype {
        StorageDtype::Float32 => DataType::Float32,
        StorageDtype::Float64 => DataType::Float64,
    }
}

/// The Arrow schema of a snapshot file (without the per-file metadata).
pub fn snapshot_schema(dtype: StorageDtype) -> Schema {
    Schema::new(vec![Field::new("values", values_type(dtype), false)])
}

/// Writes one snapshot file atomically into `path`. `values` must be in
/// manifest order. Returns the number of value bytes written.
pub(crate) fn write_snapshot(
    path: &Path,
    dtype: StorageDtype,
    meta: &SnapshotMeta,
    values: Vec<HostValues>,
    fsync: bool,
) -> Result<usize> {
    let meta_json = serde_json::to_string(meta).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let schema = Arc::new(
        snapshot_schema(dtype).with_metadata(std::collections::HashMap::from([(
            SNAPSHOT_META_KEY.to_string(),
            meta_json,
        )])),
    );
    let mut bytes = 0;
    write_atomic(path, fsync, |w| {
        let mut writer = FileWriter::try_new(w, &schema).map_err(|e| Error::arrow(path, e))?;
        for v in values {
            bytes += v.nbytes();
            // Vec -> Arrow buffer is a move, not a copy.
            let array: ArrayRef = match (v, dtype) {
                (HostValues::F32(v), StorageDtype::Float32) => Arc::new(Float32Array::from(v)),
                (HostValues::F64(v), StorageDtype::Float64) => Arc::new(Float64Array::from(v)),
                _ => {
                    return Err(Error::invalid(
                        "snapshot values",
                        "element type differs from the run's storage dtype",
                    ))
                }
            };
            let batch = RecordBatch::try_new(schema.clone(), vec![array])
                .map_err(|e| Error::arrow(path, e))?;
            writer.write(&batch).map_err(|e| Error::arrow(path, e))?;
        }
        writer.finish().map_err(|e| Error::arrow(path, e))?;
        Ok(())
    })?;
    Ok(bytes)
}

/// A snapshot file opened by memory map; tensors are read without copying.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    meta: SnapshotMeta,
    mmap: Arc<memmap2::Mmap>,
    arrays: Vec<ArrayRef>,
}

impl SnapshotFile {
    /// Opens `path` and checks it against the manifest: same run id, one batch
    /// per tensor, each with the tensor's element count.
    pub fn open(path: &Path, manifest: &Manifest) -> Result<SnapshotFile> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        // SAFETY: snapshot files are immutable once renamed into place; the
        // recorder never writes to a final name.
        let mmap = Arc::new(
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mapping", path, e))?,
        );
        let buffer = mmap_buffer(&mmap);
        let corrupt = |reason: String| Error::corrupt(path, reason);
        let (footer, trailer_start) = ipc_footer(&buffer).map_err(corrupt)?;
        let fb_schema = footer
            .schema()
            .ok_or_else(|| corrupt("IPC footer has no schema".into()))?;
        let schema: SchemaRef = Arc::new(
            try_fb_to_schema(fb_schema).map_err(|e| corrupt(format!("unreadable schema ({e})")))?,
        );
        let expected = snapshot_schema(manifest.storage_dtype);
        if schema.fields() != expected.fields() {
            return Err(corrupt(format!(
                "expected a single non-null '{}' column, found {:?}",
                values_type(manifest.storage_dtype),
                schema.fields()
            )));
        }
        let meta_json = schema
            .metadata()
            .get(SNAPSHOT_META_KEY)
            .ok_or_else(|| corrupt(format!("schema metadata lacks '{SNAPSHOT_META_KEY}'")))?;
        let meta: SnapshotMeta = serde_json::from_str(meta_json)
            .map_err(|e| corrupt(format!("bad '{SNAPSHOT_META_KEY}' metadata ({e})")))?;
        if meta.run_id != manifest.run_id {
            return Err(corrupt(format!(
                "belongs to run '{}', the manifest is run '{}'",
                meta.run_id, manifest.run_id
            )));
        }
        let blocks = footer
            .recordBatches()
            .ok_or_else(|| corrupt("IPC footer lists no record batches".into()))?;
        if blocks.len() != manifest.tensors.len() {
            return Err(corrupt(format!(
                "expected {} record batches (one per tensor), found {}",
                manifest.tensors.len(),
                blocks.len()
            )));
        }
        let decoder = FileDecoder::new(schema.clone(), footer.version());
        let mut arrays = Vec::with_capacity(blocks.len());
        for (block, tensor) in blocks.iter().zip(&manifest.tensors) {
            let (start, len) = check_ipc_block(&buffer, block, trailer_start, &expected)
                .map_err(|r| corrupt(format!("batch of tensor '{}': {r}", tensor.name)))?;
            let data = buffer.slice_with_length(start, len);
            let batch = decoder
                .read_record_batch(block, &data)
                .map_err(|e| corrupt(format!("tensor '{}': {e}", tensor.name)))?
                .ok_or_else(|| corrupt(format!("tensor '{}': empty batch", tensor.name)))?;
            let array = batch.column(0).clone();
            if array.len() as u64 != tensor.numel {
                return Err(corrupt(format!(
                    "tensor '{}' has {} values, the manifest says {:?} = {} elements",
                    tensor.name,
                    array.len(),
                    tensor.shape,
                    tensor.numel
                )));
            }
            arrays.push(array);
        }
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            meta,
            mmap,
            arrays,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Values of the `i`-th tensor (manifest order) as float32, borrowed from
    /// the memory map. `None` when the run stores float64.
    pub fn f32_values(&self, i: usize) -> Option<&[f32]> {
        self.arrays[i]
            .as_any()
            .downcast_ref::<Float32Array>()
            .map(|a| a.values().as_ref())
    }

    /// Values of the `i`-th tensor (manifest order) as float64, borrowed from
    /// the memory map. `None` when the run stores float32.
    pub fn f64_values(&self, i: usize) -> Option<&[f64]> {
        self.arrays[i]
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.values().as_ref())
    }

    /// Copies the `i`-th tensor's values converted to float32 into `out`,
    /// from element `start` on (`out.len()` elements).
    pub fn read_f32_into(&self, i: usize, start: usize, out: &mut [f32]) {
        if let Some(v) = self.f32_values(i) {
            out.copy_from_slice(&v[start..start + out.len()]);
        } else if let Some(v) = self.f64_values(i) {
            let n = out.len();
            for (o, x) in out.iter_mut().zip(&v[start..start + n]) {
                *o = *x as f32;
            }
        }
    }

    /// Tells the kernel the mapped pages of the `i`-th tensor's range
    /// `[start, start+len)` (elements) will not be needed again soon, so
    /// streaming over files larger than memory does not grow the resident set.
    pub(crate) fn release_range(&self, i: usize, start: usize, len: usize) {
        let elem = match self.arrays[i].data_type() {
            DataType::Float64 => 8,
            _ => 4,
        };
        let base = self.mmap.as_ptr() as usize;
        let values_ptr = self.arrays[i].to_data().buffers()[0].as_ptr() as usize;
        // A read fault maps a whole block of page cache around the address
        // (fault-around, up to 2 MiB), so release that much on each side of
        // the range read, or mapped pages pile up in the resident set.
        const AROUND: usize = 2 << 20;
        let page = 4096;
        let begin = (values_ptr - base + start * elem).saturating_sub(AROUND) / page * page;
        let end = (values_ptr - base + (start + len) * elem + AROUND).min(self.mmap.len());
        // SAFETY: the mapping is read-only and file-backed; dropping its
        // pages only means they are read from the file again if touched.
        let _ = unsafe {
            self.mmap.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                begin,
                end.saturating_sub(begin),
            )
        };
    }
}

fn mmap_buffer(mmap: &Arc<memmap2::Mmap>) -> Buffer {
    let ptr = NonNull::new(mmap.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: the pointer and length describe the live mapping, which the
    // Arc keeps alive as long as any Buffer slice refers to it.
    unsafe { Buffer::from_custom_allocation(ptr, mmap.len(), mmap.clone()) }
}
