//! The run manifest: a versioned JSON document describing a run directory.
//!
//! Written once when the recorder is built and rewritten (atomically) when it
//! finishes. Its layout is documented in `schemas/manifest.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::fsutil::write_json;

/// File name of the manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The newest on-disk schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The `format` field's value, to tell our manifests from other JSON files.
pub const FORMAT_NAME: &str = "tch-landscape-run";

pub use crate::tensor::Role;

/// The element type values are stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageDtype {
    /// IEEE float32 (used for float32, float16 and bfloat16 models: exact).
    Float32,
    /// IEEE float64 (used when any recorded tensor is float64).
    Float64,
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

    /// Reads and validates the manifest of the run directory `dir`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        if !dir.is_dir() {
            return Err(Error::NotARun {
                path: dir.to_path_buf(),
                reason: "no such directory".into(),
            });
        }
        let path = Self::path_in(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARun {
                    path: dir.to_path_buf(),
                    reason: format!("no {MANIFEST_FILE} (was it written by Recorder?)"),
                })
            }
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
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
        let version = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::corrupt(&path, "missing integer \"schema_version\""))?;
        if version > SCHEMA_VERSION as u64 || version == 0 {
            return Err(Error::SchemaVersion {
                path,
                found: version.min(u32::MAX as u64) as u32,
                supported: SCHEMA_VERSION,
            });
        }
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
            if i > 0 && self.tensors[i - 1].name >= t.name {
                return Err(Error::corrupt(
                    path,
                    "tensors are not sorted by unique name",
                ));
            }
            let numel: i64 = t.shape.iter().product();
            if t.shape.iter().any(|&d| d < 0) || numel as u64 != t.numel || t.offset != offset {
                return Err(Error::corrupt(
                    path,
                    format!("tensor '{}' has inconsistent shape/numel/offset", t.name),
                ));
            }
            offset += t.numel;
        }
        Ok(())
    }
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
    fn roles() {
        assert_eq!(Role::classify(true, 2), Role::Weight);
        assert_eq!(Role::classify(true, 4), Role::Weight);
        assert_eq!(Role::classify(true, 1), Role::Bias);
        assert_eq!(Role::classify(false, 1), Role::Buffer);
    }
}
