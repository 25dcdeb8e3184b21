//! Snapshot files: one Arrow IPC file per snapshot.
//!
//! Layout (documented in `schemas/snapshot.json`): a single non-null column
//! `values` (float32, or float64 for float64 models) and one record batch per
//! tensor, in manifest order, each holding the tensor flattened in row-major
//! order. The schema's metadata key [`SNAPSHOT_META_KEY`] holds a JSON
//! [`SnapshotMeta`]. Batches are 64-byte aligned, so a memory-mapped file is
//! read without copying.
//!
//! Integrity: the footer lists the CRC32 of every batch
//! ([`CHECKSUM_KEY`]) and of the metadata
//! JSON ([`SNAPSHOT_META_CRC_KEY`]); the metadata holds the digest of the
//! manifest's tensor table it was recorded with
//! ([`SnapshotMeta::tensors_crc32`]). Opening a file checks its structure,
//! the metadata checksum and the digest; a tensor's values are checked
//! against their checksum when the tensor is read whole
//! ([`SnapshotFile::verify_tensor`]) or streamed ([`Run::stream`](crate::Run::stream)).
//! A file without them is refused (only pre-release builds wrote such files).

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float16Array, Float32Array, Float64Array, UInt16Array};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::convert::try_fb_to_schema;
use arrow::ipc::reader::FileDecoder;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::fsutil::open_regular;
use crate::store::manifest::{Manifest, StorageDtype};
use crate::store::table::{
    check_header, check_ipc_block, checksum_mismatch, footer_checksums, footer_metadata,
    ipc_footer, write_ipc_with,
};

pub use crate::store::table::CHECKSUM_KEY;

/// Schema metadata key holding the snapshot's [`SnapshotMeta`] as JSON.
pub const SNAPSHOT_META_KEY: &str = "tch_landscape.snapshot";

/// Footer metadata key holding the CRC32 of the JSON stored under
/// [`SNAPSHOT_META_KEY`] (a decimal integer).
pub const SNAPSHOT_META_CRC_KEY: &str = "tch_landscape.snapshot.crc32";

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
    /// The digest of the manifest's tensor table the snapshot was recorded
    /// with ([`Manifest::tensors_crc32`]); a snapshot is refused when the
    /// manifest's differs. `None` in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors_crc32: Option<u32>,
}

/// Values that are not finite (NaN, ±∞) found in one tensor of one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// The snapshot file.
    pub path: PathBuf,
    /// The snapshot's index.
    pub snapshot: u32,
    /// The tensor's name.
    pub tensor: String,
    /// How many of its values are not finite.
    pub count: u64,
    /// The first of them (row-major flat index inside the tensor).
    pub first_index: u64,
    /// Its value.
    pub first_value: f64,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        write!(
            f,
            "{}: snapshot {}, tensor '{}': {} non-finite value{s}, the first ({}) at element {}",
            self.path.display(),
            self.snapshot,
            self.tensor,
            self.count,
            self.first_value,
            self.first_index
        )
    }
}

/// Host-memory values of one tensor.
#[derive(Debug)]
pub(crate) enum HostValues {
    /// float32 storage.
    F32(Vec<f32>),
    /// float64 storage.
    F64(Vec<f64>),
    /// A contiguous CPU tensor of the storage dtype, written from its own
    /// memory (no copy): the caller must keep its values unchanged until the
    /// write is acknowledged (the recorder's waiting durabilities block the
    /// training thread for exactly that long).
    Borrowed(tch::Tensor),
}

impl HostValues {
    /// Size in bytes.
    pub fn nbytes(&self) -> usize {
        match self {
            HostValues::F32(v) => v.len() * 4,
            HostValues::F64(v) => v.len() * 8,
            HostValues::Borrowed(t) => t.numel() * t.kind().elt_size_in_bytes(),
        }
    }
}

/// An Arrow array over the memory of the contiguous CPU tensor `t` of the
/// storage dtype `dtype` (kept alive by the array), or `None` when `t` is
/// not one.
fn borrowed_array(t: tch::Tensor, dtype: StorageDtype) -> Option<ArrayRef> {
    let kind = match dtype {
        StorageDtype::Float32 => tch::Kind::Float,
        StorageDtype::Float64 => tch::Kind::Double,
        StorageDtype::Float16 => tch::Kind::Half,
        StorageDtype::BFloat16 => tch::Kind::BFloat16,
    };
    if t.kind() != kind || t.device() != tch::Device::Cpu || !t.is_contiguous() {
        return None;
    }
    let len = t.numel();
    let ptr = std::ptr::NonNull::new(t.data_ptr().cast::<u8>());
    let buffer = match ptr {
        Some(ptr) if len > 0 => {
            let owner: Arc<dyn arrow::alloc::Allocation> = Arc::new(std::sync::Mutex::new(t));
            // SAFETY: a contiguous CPU tensor of `len` elements of the
            // storage dtype's size (torch aligns storage, and offsets are
            // whole elements); `owner` keeps the storage alive as long as
            // the buffer. The values are only read, and
            // `HostValues::Borrowed`'s contract keeps them unchanged until
            // the write is done.
            unsafe { arrow::buffer::Buffer::from_custom_allocation(ptr, len * dtype.size(), owner) }
        }
        _ => arrow::buffer::Buffer::from_vec(Vec::<u8>::new()),
    };
    Some(match dtype {
        StorageDtype::Float32 => Arc::new(Float32Array::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, len),
            None,
        )),
        StorageDtype::Float64 => Arc::new(Float64Array::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, len),
            None,
        )),
        StorageDtype::Float16 => Arc::new(Float16Array::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, len),
            None,
        )),
        StorageDtype::BFloat16 => Arc::new(UInt16Array::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, len),
            None,
        )),
    })
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
        StorageDtype::Float16 => DataType::Float16,
        StorageDtype::BFloat16 => DataType::UInt16,
    }
}

/// The Arrow schema of a snapshot file (without the per-file metadata).
pub fn snapshot_schema(dtype: StorageDtype) -> Schema {
    Schema::new(vec![Field::new("values", values_type(dtype), false)])
}

/// Writes one snapshot file atomically into `path`, with the checksum of
/// every batch and of the metadata. `values` must be in manifest order.
/// Returns the number of value bytes written and the owned host buffers
/// (`HostValues::F32`/`F64`) back, in order, for reuse by the next copy
/// (`None` for borrowed tensors).
pub(crate) fn write_snapshot(
    path: &Path,
    dtype: StorageDtype,
    meta: &SnapshotMeta,
    values: Vec<HostValues>,
    fsync: bool,
) -> Result<(usize, Vec<Option<HostValues>>)> {
    let meta_json = serde_json::to_string(meta).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let meta_crc = crc32fast::hash(meta_json.as_bytes());
    let schema = Arc::new(
        snapshot_schema(dtype).with_metadata(std::collections::HashMap::from([(
            SNAPSHOT_META_KEY.to_string(),
            meta_json,
        )])),
    );
    let mut bytes = 0;
    let mut back = Vec::with_capacity(values.len());
    write_ipc_with(path, &schema, fsync, |sink| {
        for v in values {
            bytes += v.nbytes();
            // Vec -> Arrow buffer is a move, not a copy (and back after the
            // write, the batch dropped).
            let (array, owned): (ArrayRef, Option<Owned>) = match (v, dtype) {
                (HostValues::F32(v), StorageDtype::Float32) => {
                    let a = Float32Array::from(v);
                    (Arc::new(a.clone()), Some(Owned::F32(a)))
                }
                (HostValues::F64(v), StorageDtype::Float64) => {
                    let a = Float64Array::from(v);
                    (Arc::new(a.clone()), Some(Owned::F64(a)))
                }
                (HostValues::Borrowed(t), dtype) => match borrowed_array(t, dtype) {
                    Some(a) => (a, None),
                    None => return Err(mismatch()),
                },
                _ => return Err(mismatch()),
            };
            let batch = RecordBatch::try_new(schema.clone(), vec![array])
                .map_err(|e| Error::arrow(path, e))?;
            sink.write(&batch)?;
            drop(batch);
            back.push(owned.and_then(Owned::reclaim));
        }
        sink.footer_metadata(SNAPSHOT_META_CRC_KEY, meta_crc.to_string());
        Ok(())
    })?;
    Ok((bytes, back))
}

fn mismatch() -> Error {
    Error::invalid(
        "snapshot values",
        "element type differs from the run's storage dtype",
    )
}

/// An array built from an owned host buffer, to take the buffer back.
enum Owned {
    F32(Float32Array),
    F64(Float64Array),
}

impl Owned {
    /// The buffer as a `Vec` again, when nothing else holds it.
    fn reclaim(self) -> Option<HostValues> {
        match self {
            Owned::F32(a) => a
                .into_parts()
                .1
                .into_inner()
                .into_vec::<f32>()
                .ok()
                .map(HostValues::F32),
            Owned::F64(a) => a
                .into_parts()
                .1
                .into_inner()
                .into_vec::<f64>()
                .ok()
                .map(HostValues::F64),
        }
    }
}

/// Where one tensor's record batch lies in a snapshot file.
#[derive(Debug)]
struct Batch {
    /// The tensor's name.
    name: String,
    /// Byte range of the batch's block (message header and body).
    start: usize,
    end: usize,
    /// Byte offset of the first value.
    values: usize,
    /// Bytes per value.
    elem: usize,
    /// Number of values.
    numel: usize,
    /// The stored checksum of `start..end`, when the file has checksums.
    crc: Option<u32>,
    /// Set once the checksum was found to match.
    verified: AtomicBool,
}

/// Values per step of a scan over a whole tensor ([`SnapshotFile::verify`]).
const SCAN_CHUNK: usize = 1 << 20;

/// A snapshot file opened by memory map; tensors are read without copying.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    meta: SnapshotMeta,
    mmap: Arc<memmap2::Mmap>,
    arrays: Vec<ArrayRef>,
    batches: Vec<Batch>,
    checksums: bool,
}

impl SnapshotFile {
    /// Opens `path` and checks it against the manifest: a regular file (a
    /// FIFO or device is refused before it is opened), its structure, the
    /// checksum of its metadata, same run id, recorded with the manifest's
    /// tensor table (digest), one batch per tensor, each with the tensor's
    /// element count. Values are checked later, when read
    /// ([`verify_tensor`](Self::verify_tensor)).
    pub fn open(path: &Path, manifest: &Manifest) -> Result<SnapshotFile> {
        let file = open_regular(path)?;
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
        let stored = footer_metadata(&footer, SNAPSHOT_META_CRC_KEY).ok_or_else(|| {
            corrupt(format!(
                "no '{SNAPSHOT_META_CRC_KEY}' checksum in its footer (damaged, or written by a pre-release build: record it again)"
            ))
        })?;
        let stored: u32 = stored.parse().map_err(|_| {
            corrupt(format!(
                "unreadable '{SNAPSHOT_META_CRC_KEY}' footer metadata {stored:?}"
            ))
        })?;
        let computed = crc32fast::hash(meta_json.as_bytes());
        if computed != stored {
            return Err(corrupt(checksum_mismatch(
                &format!("metadata '{SNAPSHOT_META_KEY}'"),
                stored,
                computed,
            )));
        }
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
        let checksums = footer_checksums(&footer, blocks.len()).map_err(corrupt)?;
        check_header(&buffer, &footer, blocks.iter().next()).map_err(corrupt)?;
        let elem = manifest.storage_dtype.size();
        let decoder = FileDecoder::new(schema.clone(), footer.version());
        let base = mmap.as_ptr() as usize;
        let mut arrays = Vec::with_capacity(blocks.len());
        let mut batches = Vec::with_capacity(blocks.len());
        for (k, (block, tensor)) in blocks.iter().zip(&manifest.tensors).enumerate() {
            let bad = |r: String| corrupt(format!("batch of tensor '{}': {r}", tensor.name));
            let (start, len) =
                check_ipc_block(&buffer, block, trailer_start, &expected).map_err(bad)?;
            let data = buffer.slice_with_length(start, len);
            let batch = decoder
                .read_record_batch(block, &data)
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad("empty batch".into()))?;
            let array = batch
                .columns()
                .first()
                .cloned()
                .ok_or_else(|| bad("no column".into()))?;
            if array.len() as u64 != tensor.numel {
                return Err(corrupt(format!(
                    "tensor '{}' has {} values, the manifest says {:?} = {} elements",
                    tensor.name,
                    array.len(),
                    tensor.shape,
                    tensor.numel
                )));
            }
            let numel = array.len();
            // Where the values lie in the file: inside the batch's block (the
            // decoder reads aligned buffers without copying them).
            let values = match values_ptr(&array) {
                _ if numel == 0 => start,
                Some(p) => p.wrapping_sub(base),
                None => usize::MAX,
            };
            let inside = values >= start
                && values
                    .checked_add(numel * elem)
                    .is_some_and(|e| e <= start + len);
            if !inside {
                return Err(bad("its values do not lie inside its block".into()));
            }
            batches.push(Batch {
                name: tensor.name.clone(),
                start,
                end: start + len,
                values,
                elem,
                numel,
                crc: checksums.as_ref().and_then(|c| c.get(k).copied()),
                verified: AtomicBool::new(false),
            });
            arrays.push(array);
        }
        // After the element counts, which name the tensor that differs.
        let digest = manifest.tensors_crc32();
        if let Some(recorded) = meta.tensors_crc32.filter(|&d| d != digest) {
            return Err(corrupt(format!(
                "was recorded with a tensor table of digest {recorded:08x}, the run's manifest \
                 describes one of digest {digest:08x}: the manifest's tensor names, shapes, \
                 dtypes, roles or offsets were changed after recording"
            )));
        }
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            meta,
            mmap,
            arrays,
            batches,
            checksums: checksums.is_some(),
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

    /// Whether the file carries checksums (files written before they existed
    /// do not; their values cannot be checked).
    pub fn has_checksums(&self) -> bool {
        self.checksums
    }

    /// Number of tensors (record batches) in the file.
    pub fn tensor_count(&self) -> usize {
        self.batches.len()
    }

    fn batch(&self, i: usize) -> Result<&Batch> {
        self.batches.get(i).ok_or_else(|| {
            Error::invalid(
                "tensor index",
                format!(
                    "{i} is out of range: {} holds {} tensors",
                    self.path.display(),
                    self.batches.len()
                ),
            )
        })
    }

    /// Checks the `i`-th tensor's bytes against their checksum (once: a
    /// match is remembered). Files without checksums pass. An error names
    /// the file and the tensor.
    pub fn verify_tensor(&self, i: usize) -> Result<()> {
        let b = self.batch(i)?;
        let Some(stored) = b.crc else {
            return Ok(());
        };
        if b.verified.load(Ordering::Relaxed) {
            return Ok(());
        }
        let computed = crc32fast::hash(self.bytes(b.start, b.end));
        self.compare(b, stored, computed)?;
        b.verified.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Checks every tensor against its checksum ([`verify_tensor`](Self::verify_tensor)).
    pub fn verify(&self) -> Result<()> {
        (0..self.batches.len()).try_for_each(|i| self.verify_tensor(i))
    }

    fn compare(&self, b: &Batch, stored: u32, computed: u32) -> Result<()> {
        if stored == computed {
            return Ok(());
        }
        Err(Error::corrupt(
            &self.path,
            checksum_mismatch(&format!("tensor '{}'", b.name), stored, computed),
        ))
    }

    /// The bytes `start..end` of the file (empty when out of range, which
    /// the checks at open rule out).
    fn bytes(&self, start: usize, end: usize) -> &[u8] {
        self.mmap.get(start..end).unwrap_or_default()
    }

    /// Starts the incremental check of the `i`-th tensor, read in order by
    /// [`check_values`](Self::check_values): `None` when there is nothing to
    /// check (no checksum, or already verified).
    pub(crate) fn begin_check(&self, i: usize) -> Option<crc32fast::Hasher> {
        let b = self.batches.get(i)?;
        if b.crc.is_none() || b.verified.load(Ordering::Relaxed) {
            return None;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(self.bytes(b.start, b.values));
        Some(h)
    }

    /// Adds the bytes of the `i`-th tensor's values `start..start + len` to
    /// an incremental check.
    pub(crate) fn check_values(
        &self,
        i: usize,
        start: usize,
        len: usize,
        h: &mut crc32fast::Hasher,
    ) {
        if let Some(b) = self.batches.get(i) {
            let from = b.values + start.min(b.numel) * b.elem;
            let to = b.values + (start + len).min(b.numel) * b.elem;
            h.update(self.bytes(from, to));
        }
    }

    /// Ends the incremental check of the `i`-th tensor, whose every value
    /// was added in order: an error naming the file and the tensor when the
    /// checksum does not match.
    pub(crate) fn end_check(&self, i: usize, mut h: crc32fast::Hasher) -> Result<()> {
        let b = self.batch(i)?;
        let Some(stored) = b.crc else {
            return Ok(());
        };
        h.update(self.bytes(b.values + b.numel * b.elem, b.end));
        self.compare(b, stored, h.finalize())?;
        b.verified.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads the whole `i`-th tensor once: checks its checksum and counts
    /// its non-finite values, in one pass. `Ok(None)` when every value is
    /// finite.
    pub(crate) fn scan_tensor(&self, i: usize) -> Result<Option<NonFinite>> {
        let b = self.batch(i)?;
        let mut hasher = self.begin_check(i);
        let (mut count, mut first) = (0u64, None);
        let mut start = 0;
        while start < b.numel {
            let len = SCAN_CHUNK.min(b.numel - start);
            if let Some(h) = hasher.as_mut() {
                self.check_values(i, start, len, h);
            }
            let (n, f) = self
                .values(i)
                .map_or((0, None), |v| v.non_finite(start..start + len));
            count += n;
            if first.is_none() {
                first = f.map(|(j, v)| ((start + j) as u64, v));
            }
            self.release_range(i, start, len);
            start += len;
        }
        if let Some(h) = hasher {
            self.end_check(i, h)?;
        }
        Ok(first.map(|(first_index, first_value)| NonFinite {
            path: self.path.clone(),
            snapshot: self.meta.index,
            tensor: b.name.clone(),
            count,
            first_index,
            first_value,
        }))
    }

    /// Values of the `i`-th tensor (manifest order) in their stored type,
    /// borrowed from the memory map, not checked against their checksum (see
    /// [`verify_tensor`](Self::verify_tensor)). `None` when `i` is out of
    /// range.
    pub fn values(&self, i: usize) -> Option<StoredValues<'_>> {
        let any = self.arrays.get(i)?.as_any();
        if let Some(a) = any.downcast_ref::<Float32Array>() {
            Some(StoredValues::F32(a.values()))
        } else if let Some(a) = any.downcast_ref::<Float64Array>() {
            Some(StoredValues::F64(a.values()))
        } else if let Some(a) = any.downcast_ref::<Float16Array>() {
            Some(StoredValues::F16(a.values()))
        } else {
            any.downcast_ref::<UInt16Array>().map(|a| {
                use half::slice::HalfBitsSliceExt;
                StoredValues::BF16(a.values().as_ref().reinterpret_cast())
            })
        }
    }

    /// Values of the `i`-th tensor (manifest order) as float32, borrowed from
    /// the memory map, not checked against their checksum (see
    /// [`verify_tensor`](Self::verify_tensor)). `None` when the run stores
    /// another type or `i` is out of range.
    pub fn f32_values(&self, i: usize) -> Option<&[f32]> {
        self.arrays
            .get(i)?
            .as_any()
            .downcast_ref::<Float32Array>()
            .map(|a| a.values().as_ref())
    }

    /// Values of the `i`-th tensor (manifest order) as float64, borrowed from
    /// the memory map, not checked against their checksum (see
    /// [`verify_tensor`](Self::verify_tensor)). `None` when the run stores
    /// float32 or `i` is out of range.
    pub fn f64_values(&self, i: usize) -> Option<&[f64]> {
        self.arrays
            .get(i)?
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.values().as_ref())
    }

    /// Copies the `i`-th tensor's values converted to float32 into `out`,
    /// from element `start` on (`out.len()` elements). Reading the whole
    /// tensor (`start` 0, `out.len()` its element count) checks it against its
    /// checksum first. An error for a range outside the tensor.
    pub fn read_f32_into(&self, i: usize, start: usize, out: &mut [f32]) -> Result<()> {
        let b = self.batch(i)?;
        let end = start
            .checked_add(out.len())
            .filter(|&e| e <= b.numel)
            .ok_or_else(|| {
                Error::invalid(
                    "element range",
                    format!(
                        "{start}..{start}+{} is outside tensor '{}' ({} elements) of {}",
                        out.len(),
                        b.name,
                        b.numel,
                        self.path.display()
                    ),
                )
            })?;
        if start == 0 && end == b.numel {
            self.verify_tensor(i)?;
        }
        self.copy_f32(i, start, out);
        Ok(())
    }

    /// [`read_f32_into`](Self::read_f32_into) without the checks: the range
    /// must lie inside the tensor (out-of-range ranges copy nothing).
    pub(crate) fn copy_f32(&self, i: usize, start: usize, out: &mut [f32]) {
        if let Some(v) = self.values(i) {
            v.copy_f32(start, out);
        }
    }

    /// Tells the kernel the mapped pages of the `i`-th tensor's range
    /// `[start, start+len)` (elements) will not be needed again soon, so
    /// streaming over files larger than memory does not grow the resident set.
    pub(crate) fn release_range(&self, i: usize, start: usize, len: usize) {
        let Some(b) = self.batches.get(i) else {
            return;
        };
        // A read fault maps a whole block of page cache around the address
        // (fault-around, up to 2 MiB), so release that much on each side of
        // the range read, or mapped pages pile up in the resident set.
        const AROUND: usize = 2 << 20;
        let page = 4096;
        let begin = (b.values + start * b.elem).saturating_sub(AROUND) / page * page;
        let end = (b.values + (start + len) * b.elem + AROUND).min(self.mmap.len());
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

/// The address of the first value of an array of a storage type.
fn values_ptr(array: &ArrayRef) -> Option<usize> {
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<Float32Array>() {
        Some(a.values().as_ptr() as usize)
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        Some(a.values().as_ptr() as usize)
    } else if let Some(a) = any.downcast_ref::<Float16Array>() {
        Some(a.values().as_ptr() as usize)
    } else {
        any.downcast_ref::<UInt16Array>()
            .map(|a| a.values().as_ptr() as usize)
    }
}

/// One tensor's values in their stored type, borrowed from a snapshot file.
#[derive(Debug, Clone, Copy)]
pub enum StoredValues<'a> {
    /// float32 storage.
    F32(&'a [f32]),
    /// float64 storage.
    F64(&'a [f64]),
    /// float16 storage.
    F16(&'a [half::f16]),
    /// bfloat16 storage.
    BF16(&'a [half::bf16]),
}

impl StoredValues<'_> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            StoredValues::F32(v) => v.len(),
            StoredValues::F64(v) => v.len(),
            StoredValues::F16(v) => v.len(),
            StoredValues::BF16(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A CPU tensor of the values, in the stored dtype (a copy).
    pub fn to_tensor(&self) -> tch::Tensor {
        match self {
            StoredValues::F32(v) => tch::Tensor::from_slice(v),
            StoredValues::F64(v) => tch::Tensor::from_slice(v),
            StoredValues::F16(v) => tch::Tensor::from_slice(v),
            StoredValues::BF16(v) => {
                // tch 0.26 gives `half::bf16` the kind `Half`, so
                // `from_slice` would read its bits as float16: go through
                // float32 (exact both ways).
                let mut f = vec![0f32; v.len()];
                self.copy_f32(0, &mut f);
                tch::Tensor::from_slice(&f).to_kind(tch::Kind::BFloat16)
            }
        }
    }

    /// The value at `i` as float64 (exact), `None` out of range.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            StoredValues::F32(v) => v.get(i).map(|&x| f64::from(x)),
            StoredValues::F64(v) => v.get(i).copied(),
            StoredValues::F16(v) => v.get(i).map(|x| x.to_f64()),
            StoredValues::BF16(v) => v.get(i).map(|x| x.to_f64()),
        }
    }

    /// Copies the values from `start` on into `out` as float32 (float64
    /// rounded; float16 and bfloat16 exact). Copies nothing when the range
    /// is not inside.
    pub fn copy_f32(&self, start: usize, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        let range = start..start.saturating_add(out.len());
        match self {
            StoredValues::F32(v) => {
                if let Some(v) = v.get(range) {
                    out.copy_from_slice(v);
                }
            }
            StoredValues::F64(v) => {
                if let Some(v) = v.get(range) {
                    for (o, x) in out.iter_mut().zip(v) {
                        *o = *x as f32;
                    }
                }
            }
            StoredValues::F16(v) => {
                if let Some(v) = v.get(range) {
                    v.convert_to_f32_slice(out);
                }
            }
            StoredValues::BF16(v) => {
                if let Some(v) = v.get(range) {
                    v.convert_to_f32_slice(out);
                }
            }
        }
    }

    /// The number of non-finite values in `range` and the first of them
    /// (position from the range's start, value).
    pub(crate) fn non_finite(&self, range: std::ops::Range<usize>) -> (u64, Option<(usize, f64)>) {
        match self {
            StoredValues::F32(v) => non_finite(&v[range], |x| x.is_finite(), f64::from),
            StoredValues::F64(v) => non_finite(&v[range], |x| x.is_finite(), |x| x),
            StoredValues::F16(v) => non_finite(&v[range], |x| x.is_finite(), |x| x.to_f64()),
            StoredValues::BF16(v) => non_finite(&v[range], |x| x.is_finite(), |x| x.to_f64()),
        }
    }
}

/// The number of values of `v` that are not finite, and the first of them
/// (position, value).
pub(crate) fn non_finite<T: Copy>(
    v: &[T],
    finite: impl Fn(T) -> bool,
    to_f64: impl Fn(T) -> f64,
) -> (u64, Option<(usize, f64)>) {
    // Branch-free (vectorized) test first: the common case is all finite.
    if v.iter().fold(true, |ok, &x| ok & finite(x)) {
        return (0, None);
    }
    let count = v.iter().map(|&x| u64::from(!finite(x))).sum::<u64>();
    let first = v
        .iter()
        .position(|&x| !finite(x))
        .map(|j| (j, to_f64(v[j])));
    (count, first)
}

fn mmap_buffer(mmap: &Arc<memmap2::Mmap>) -> Buffer {
    let ptr = NonNull::new(mmap.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: the pointer and length describe the live mapping, which the
    // Arc keeps alive as long as any Buffer slice refers to it.
    unsafe { Buffer::from_custom_allocation(ptr, mmap.len(), mmap.clone()) }
}
