//! The run manifest: a versioned JSON document describing a run directory.
//!
//! Written once when the recorder is built and rewritten (atomically) when it
//! finishes. Its layout is documented in `schemas/manifest.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::fsutil::{open_regular, write_json};

/// File name of the manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The newest on-disk schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The `format` field's value, to tell our manifests from other JSON files.
pub const FORMAT_NAME: &str = "tch-landscape-run";

/// The largest manifest read (bytes): a manifest lists tensor names and
/// shapes, a few hundred bytes per tensor, so anything bigger is not one.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The largest element count of a tensor, and of a snapshot, that a manifest
/// may declare (2^48: a petabyte of float32).
pub const MAX_NUMEL: u64 = 1 << 48;

/// The model dtypes the recorder records (floating point).
const RECORDED_DTYPES: [&str; 4] = ["float32", "float64", "float16", "bfloat16"];

pub use crate::tensor::Role;

/// The element type values are stored with.
///
/// By default a run stores its values exactly: float32 (for float32,
/// float16 and bfloat16 models) or float64 (when any recorded tensor is
/// float64). `Float16` and `BFloat16` are opt-in
/// ([`RecorderBuilder::storage`](crate::RecorderBuilder::storage)): half the
/// bytes of float32, values rounded to nearest; every reader converts them to
/// float32 (exactly: both are subsets of float32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageDtype {
    /// IEEE float32 (used for float32, float16 and bfloat16 models: exact).
    Float32,
    /// IEEE float64 (used when any recorded tensor is float64).
    Float64,
    /// IEEE float16 (opt-in, lossy for float32 models: 11 significant bits,
    /// largest finite value 65504). Arrow type `Float16`.
    Float16,
    /// bfloat16 (opt-in, lossy for float32 models: 8 significant bits,
    /// float32's range). Arrow has no bfloat16 type: the files hold the raw
    /// 16-bit patterns as `UInt16` (the upper half of the float32 bits).
    #[serde(rename = "bfloat16")]
    BFloat16,
}

impl StorageDtype {
    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            StorageDtype::Float32 => 4,
            StorageDtype::Float64 => 8,
            StorageDtype::Float16 | StorageDtype::BFloat16 => 2,
        }
    }

    /// The name used in manifests and options (`float32`, `float64`,
    /// `float16`, `bfloat16`).
    pub fn name(self) -> &'static str {
        match self {
            StorageDtype::Float32 => "float32",
            StorageDtype::Float64 => "float64",
            StorageDtype::Float16 => "float16",
            StorageDtype::BFloat16 => "bfloat16",
        }
    }

    /// Whether values are rounded when stored (float16 and bfloat16 storage
    /// of a float32 or float64 model).
    pub fn is_lossy(self) -> bool {
        matches!(self, StorageDtype::Float16 | StorageDtype::BFloat16)
    }
}

impl std::fmt::Display for StorageDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StorageDtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<StorageDtype> {
        match s {
            "float32" | "f32" => Ok(StorageDtype::Float32),
            "float64" | "f64" => Ok(StorageDtype::Float64),
            "float16" | "f16" => Ok(StorageDtype::Float16),
            "bfloat16" | "bf16" => Ok(StorageDtype::BFloat16),
            _ => Err(Error::invalid(
                "storage dtype",
                format!("'{s}' is not one of float32, float64, float16 (f16), bfloat16 (bf16)"),
            )),
        }
    }
}

/// One recorded tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// The VarStore name, e.g. `fc1.weight`.
    pub name: String,
    /// The shape at train start; every snapshot must match it.
    pub shape: Vec<i64>,
    /// The model's dtype for this tensor (`float32`, `float64`, `float16`, `bfloat16`).
    pub dtype: String,
    /// What kind of variable it is.
    pub role: Role,
    /// Whether it had `requires_grad` set when the recorder was built.
    pub trainable: bool,
    /// Number of elements.
    pub numel: u64,
    /// Offset of its first element in the flat concatenation of all tensors
    /// in manifest order.
    pub offset: u64,
}

/// A variable that was not recorded (non-floating dtypes), and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedTensor {
    /// The VarStore name.
    pub name: String,
    /// Its dtype.
    pub dtype: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The manifest of a run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// On-disk schema version ([`SCHEMA_VERSION`] when written by this build).
    pub schema_version: u32,
    /// Version of tch-landscape that wrote the run.
    pub crate_version: String,
    /// Unique id of the run, also stamped into every snapshot file.
    pub run_id: String,
    /// Creation time, RFC 3339 in UTC.
    pub created_utc: String,
    /// Element type of the stored values.
    pub storage_dtype: StorageDtype,
    /// Recorded tensors, sorted by name.
    pub tensors: Vec<TensorInfo>,
    /// Variables not recorded.
    pub skipped: Vec<SkippedTensor>,
    /// Snapshot period in optimizer steps, when step snapshots were asked for.
    pub every_n_steps: Option<u64>,
    /// Whether the recorder finished cleanly (`finish()` ran).
    pub finished: bool,
    /// Free-form key/value metadata given by the user.
    pub user: BTreeMap<String, String>,
    /// The metric that holds the learning rate, when the user named one
    /// ([`RecorderBuilder::learning_rate_metric`](crate::recorder::RecorderBuilder::learning_rate_metric));
    /// otherwise readers look for `lr` or `learning_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_metric: Option<String>,
}

impl Manifest {
    /// Total number of recorded elements per snapshot.
    pub fn total_numel(&self) -> u64 {
        self.tensors.iter().map(|t| t.numel).sum()
    }

    /// Looks a tensor up by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }

    /// Path of the manifest inside `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// Writes the manifest atomically into `dir`.
    pub(crate) fn write(&self, dir: &Path, fsync: bool) -> Result<()> {
        write_json(&Self::path_in(dir), self, fsync)
    }

    /// The CRC32 of the manifest's tensor table (every tensor's name, shape,
    /// dtype, role, trainable flag, element count and offset, in order),
    /// stored in every snapshot's metadata
    /// ([`SnapshotMeta::tensors_crc32`](crate::store::snapshot::SnapshotMeta::tensors_crc32))
    /// so a manifest edited or damaged after recording is detected.
    pub fn tensors_crc32(&self) -> u32 {
        let rows: Vec<_> = self
            .tensors
            .iter()
            .map(|t| {
                (
                    &t.name,
                    &t.shape,
                    &t.dtype,
                    t.role,
                    t.trainable,
                    t.numel,
                    t.offset,
                )
            })
            .collect();
        // Serializing plain strings, integers and a unit enum cannot fail.
        let json = serde_json::to_vec(&rows).unwrap_or_default();
        crc32fast::hash(&json)
    }

    /// Reads and validates the manifest of the run directory `dir`: a regular
    /// file of at most [`MAX_MANIFEST_BYTES`], of a known format and schema
    /// version, whose tensor table is consistent (sorted unique names,
    /// non-negative dimensions, element counts and offsets that add up
    /// without overflow, at most [`MAX_NUMEL`] elements, floating dtypes).
    pub fn read(dir: &Path) -> Result<Manifest> {
        if !dir.is_dir() {
            return Err(Error::NotARun {
                path: dir.to_path_buf(),
                reason: "no such directory".into(),
            });
        }
        let path = Self::path_in(dir);
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARun {
                    path: dir.to_path_buf(),
                    reason: format!("no {MANIFEST_FILE} (was it written by Recorder?)"),
                })
            }
            Err(e) => return Err(e),
        };
        let size = file
            .metadata()
            .map_err(|e| Error::io("reading", &path, e))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return Err(Error::corrupt(
                &path,
                format!(
                    "{size} bytes is too large for a run manifest (at most {MAX_MANIFEST_BYTES})"
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_MANIFEST_BYTES + 1),
            &mut bytes,
        )
        .map_err(|e| Error::io("reading", &path, e))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::corrupt(
                &path,
                format!("grew past {MAX_MANIFEST_BYTES} bytes while being read"),
            ));
        }
        // Check format and version before the full parse, so a newer schema
        // gets a version error rather than a confusing field error.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
        if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NAME) {
            return Err(Error::corrupt(
                &path,
                format!("expected \"format\": \"{FORMAT_NAME}\""),
            ));
        }
        schema_version(&path, &value, SCHEMA_VERSION)?;
        let manifest: Manifest = serde_json::from_value(value).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        manifest.validate(&path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let mut offset = 0u64;
        for (i, t) in self.tensors.iter().enumerate() {
            let bad = |what: String| Error::corrupt(path, format!("tensor '{}': {what}", t.name));
            if i > 0 && self.tensors[i - 1].name >= t.name {
                return Err(Error::corrupt(
                    path,
                    "tensors are not sorted by unique name",
                ));
            }
            if t.shape.iter().any(|&d| d < 0) {
                return Err(bad(format!("negative dimension in shape {:?}", t.shape)));
            }
            let numel = t
                .shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .filter(|&n| n <= MAX_NUMEL)
                .ok_or_else(|| {
                    bad(format!(
                        "shape {:?} has more than {MAX_NUMEL} elements",
                        t.shape
                    ))
                })?;
            if numel != t.numel {
                return Err(bad(format!(
                    "shape {:?} has {numel} elements, numel says {}",
                    t.shape, t.numel
                )));
            }
            if t.offset != offset {
                return Err(bad(format!(
                    "offset {} where the tensors before it end at {offset}",
                    t.offset
                )));
            }
            if !RECORDED_DTYPES.contains(&t.dtype.as_str()) {
                return Err(bad(format!(
                    "dtype {:?} is not one the recorder records (one of {RECORDED_DTYPES:?})",
                    t.dtype
                )));
            }
            offset = offset
                .checked_add(numel)
                .filter(|&o| o <= MAX_NUMEL)
                .ok_or_else(|| {
                    Error::corrupt(
                        path,
                        format!("the tensors hold more than {MAX_NUMEL} elements in all"),
                    )
                })?;
        }
        Ok(())
    }
}

/// The `schema_version` of the JSON document `value` read from `path`: a
/// positive integer, at most `supported` (the newest version this build
/// reads). A newer version is [`Error::SchemaVersion`]; a missing one, or one
/// that is not a positive integer below 2^32 (negative, fractional, a string,
/// huge), is [`Error::Corrupt`] saying what was found.
pub(crate) fn schema_version(
    path: &Path,
    value: &serde_json::Value,
    supported: u32,
) -> Result<u32> {
    let found = value.get("schema_version").ok_or_else(|| {
        Error::corrupt(
            path,
            "missing \"schema_version\" (expected a positive integer)",
        )
    })?;
    let version = found
        .as_u64()
        .filter(|&v| v > 0)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            let mut shown = found.to_string();
            if shown.len() > 40 {
                let cut = (0..=40)
                    .rev()
                    .find(|&i| shown.is_char_boundary(i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push('…');
            }
            Error::corrupt(
                path,
                format!(
                    "expected \"schema_version\" to be a positive integer below 2^32, found {shown}"
                ),
            )
        })?;
    if version > supported {
        return Err(Error::SchemaVersion {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    Ok(version)
}

/// Formats a Unix time as RFC 3339 UTC (`2026-11-27T09:06:15.123Z`).
pub(crate) fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_770_375_123);
        assert_eq!(rfc3339_utc(t), "2026-11-27T09:06:15.123Z");
        assert_eq!(
            rfc3339_utc(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn schema_versions_are_checked_with_what_was_found() {
        let p = Path::new("x.json");
        let v = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
        assert_eq!(
            schema_version(p, &v(r#"{"schema_version": 1}"#), 1).unwrap(),
            1
        );
        assert_eq!(
            schema_version(p, &v(r#"{"schema_version": 2}"#), 3).unwrap(),
            2
        );
        match schema_version(p, &v(r#"{"schema_version": 99}"#), 1) {
            Err(Error::SchemaVersion {
                found: 99,
                supported: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        for (json, found) in [
            (r#"{"schema_version": -1}"#, "found -1"),
            (r#"{"schema_version": "1"}"#, "found \"1\""),
            (
                r#"{"schema_version": 1099511627776}"#,
                "found 1099511627776",
            ),
            (r#"{"schema_version": 0}"#, "found 0"),
            (r#"{"schema_version": 2.5}"#, "found 2.5"),
            (r#"{"schema_version": [1]}"#, "found [1]"),
        ] {
            let e = schema_version(p, &v(json), 1).unwrap_err();
            assert!(matches!(e, Error::Corrupt { .. }), "{json}: {e:?}");
            assert!(
                e.to_string().contains("positive integer") && e.to_string().contains(found),
                "{json}: {e}"
            );
        }
        let e = schema_version(p, &v("{}"), 1).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn the_tensor_table_digest_sees_every_field() {
        let t = TensorInfo {
            name: "w".into(),
            shape: vec![3, 4],
            dtype: "float32".into(),
            role: Role::Weight,
            trainable: true,
            numel: 12,
            offset: 0,
        };
        let m = Manifest {
            lr_metric: None,
            format: FORMAT_NAME.into(),
            schema_version: SCHEMA_VERSION,
            crate_version: "0".into(),
            run_id: "r".into(),
            created_utc: String::new(),
            storage_dtype: StorageDtype::Float32,
            tensors: vec![t.clone()],
            skipped: vec![],
            every_n_steps: None,
            finished: false,
            user: BTreeMap::new(),
        };
        let d = m.tensors_crc32();
        let edits: [fn(&mut TensorInfo); 7] = [
            |t| t.name = "v".into(),
            |t| t.shape = vec![4, 3],
            |t| t.dtype = "float16".into(),
            |t| t.role = Role::Bias,
            |t| t.trainable = false,
            |t| t.numel = 13,
            |t| t.offset = 1,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut other = m.clone();
            edit(&mut other.tensors[0]);
            assert_ne!(other.tensors_crc32(), d, "edit {i}");
        }
        let mut other = m.clone();
        other.finished = true;
        other.user.insert("k".into(), "v".into());
        assert_eq!(other.tensors_crc32(), d);
    }

    #[test]
    fn roles() {
        assert_eq!(Role::classify(true, 2), Role::Weight);
        assert_eq!(Role::classify(true, 4), Role::Weight);
        assert_eq!(Role::classify(true, 1), Role::Bias);
        assert_eq!(Role::classify(false, 1), Role::Buffer);
    }
}
