//! Supervised data from a file: inputs and targets of a training split and,
//! optionally, a test split, in safetensors (`.safetensors`) or NumPy
//! (`.npz`) files, by tensor name (default `x_train`, `y_train`, `x_test`,
//! `y_test`).
//!
//! Checked before any analysis starts, each error naming the file and the
//! tensor: the names exist, inputs and targets have the same non-zero number
//! of samples, inputs are floating point (integers, e.g. `uint8` pixels, are
//! refused: scale them as the model was trained), every value is finite;
//! class targets (cross-entropy) are integers of one dimension in
//! `[0, classes)` — the class count comes from the model's output, see
//! [`Dataset::check_classes`] —, regression targets (MSE) are floating point.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::store::fsutil;

/// The largest data file read (64 GiB).
pub const MAX_DATA_BYTES: u64 = 64 << 30;

/// What the targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// One integer class per sample (cross-entropy).
    Classes,
    /// Floating-point values (mean squared error).
    Values,
}

/// The tensor names of the splits in a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNames {
    /// Training inputs (default `x_train`).
    pub x_train: String,
    /// Training targets (default `y_train`).
    pub y_train: String,
    /// Test inputs (default `x_test`; the test split is optional).
    pub x_test: String,
    /// Test targets (default `y_test`).
    pub y_test: String,
}

impl Default for DataNames {
    fn default() -> Self {
        DataNames {
            x_train: "x_train".into(),
            y_train: "y_train".into(),
            x_test: "x_test".into(),
            y_test: "y_test".into(),
        }
    }
}

/// One split's inputs and targets.
#[derive(Debug)]
pub struct DataSplit {
    /// Split name (`train`, `test`).
    pub name: String,
    /// Inputs, first dimension = samples (float).
    pub x: Tensor,
    /// Targets, first dimension = samples (int64 classes or float values).
    pub y: Tensor,
}

/// The splits read from a data file (train first).
#[derive(Debug)]
pub struct Dataset {
    /// The file they came from.
    pub path: PathBuf,
    /// `train`, then `test` when the file has it.
    pub splits: Vec<DataSplit>,
}

impl Dataset {
    /// Reads `path` (by extension: `.safetensors`, or `.npz`) and checks the
    /// named tensors for `targets` (see the [module documentation](self)).
    pub fn load(path: impl AsRef<Path>, names: &DataNames, targets: Targets) -> Result<Dataset> {
        let path = path.as_ref();
        let bad = |reason: String| Error::Data {
            path: path.to_path_buf(),
            reason,
        };
        let len = fsutil::open_regular(path)?
            .metadata()
            .map_err(|e| Error::io("reading", path, e))?
            .len();
        if len > MAX_DATA_BYTES {
            return Err(bad(format!(
                "{len} bytes, more than the {MAX_DATA_BYTES} accepted"
            )));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        // The readers are tch's (the safetensors crate, tch's npy code); a
        // damaged file must be an error, never a crash of the caller.
        let read = std::panic::catch_unwind(|| match ext {
            "safetensors" => Tensor::read_safetensors(path).map_err(|e| e.to_string()),
            "npz" => Tensor::read_npz(path).map_err(|e| e.to_string()),
            _ => Err(format!(
                "unknown extension '.{ext}': expected .safetensors or .npz"
            )),
        });
        let tensors = match read {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(bad(e)),
            Err(_) => return Err(bad(format!("not a readable {ext} file"))),
        };
        let take = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let available = || {
            let mut all: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
            all.sort();
            all.join(", ")
        };
        let mut splits = Vec::new();
        for (split, xn, yn, required) in [
            ("train", &names.x_train, &names.y_train, true),
            ("test", &names.x_test, &names.y_test, false),
        ] {
            let (x, y) = match (take(xn), take(yn)) {
                (Some(x), Some(y)) => (x, y),
                (None, None) if !required => continue,
                (x, _) => {
                    let missing = if x.is_none() { xn } else { yn };
                    return Err(bad(format!(
                        "has no tensor '{missing}' (the {split} split; name it with --{}); it holds: {}",
                        if x.is_none() { format!("x-{split}") } else { format!("y-{split}") },
                        available()
                    )));
                }
            };
            splits.push(check_split(path, split, (xn, x), (yn, y), targets)?);
        }
        Ok(Dataset {
            path: path.to_path_buf(),
            splits,
        })
    }

    /// The training split.
    pub fn train(&self) -> &DataSplit {
        &self.splits[0]
    }

    /// Checks class targets against the model's number of outputs.
    pub fn check_classes(&self, classes: i64) -> Result<()> {
        for s in &self.splits {
            if s.y.kind() != Kind::Int64 {
                continue;
            }
            let max =
                s.y.f_max()
                    .and_then(|m| m.f_int64_value(&[]))
                    .map_err(|e| Error::torch("reading the largest class", e))?;
            if max >= classes {
                return Err(Error::Data {
                    path: self.path.clone(),
                    reason: format!(
                        "{} split: class {max} in the targets, but the model has {classes} outputs (classes 0 to {})",
                        s.name,
                        classes - 1
                    ),
                });
            }
        }
        Ok(())
    }

    /// Moves every split to `device`.
    pub fn to_device(mut self, device: tch::Device) -> Result<Dataset> {
        for s in &mut self.splits {
            let err = |e| Error::torch(format!("moving the {} split to {device:?}", s.name), e);
            s.x = s.x.f_to_device(device).map_err(err)?;
            s.y = s.y.f_to_device(device).map_err(err)?;
        }
        Ok(self)
    }
}

fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

fn is_int(k: Kind) -> bool {
    matches!(
        k,
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
    )
}

/// One split's tensors, checked and converted (inputs float32 unless
/// float64, class targets int64).
fn check_split(
    path: &Path,
    split: &str,
    (xn, x): (&str, &Tensor),
    (yn, y): (&str, &Tensor),
    targets: Targets,
) -> Result<DataSplit> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    let (xs, ys) = (x.size(), y.size());
    if xs.is_empty() || ys.is_empty() || xs[0] != ys[0] || xs[0] == 0 {
        return Err(bad(format!(
            "'{xn}' {xs:?} and '{yn}' {ys:?} must be non-empty with the same number of samples (first dimension)"
        )));
    }
    if !is_float(x.kind()) {
        return Err(bad(format!(
            "'{xn}' is {:?}, expected floating-point inputs (convert and scale them as the model was trained)",
            x.kind()
        )));
    }
    let torch = |e| Error::torch(format!("checking '{xn}' and '{yn}'"), e);
    let x = if x.kind() == Kind::Double {
        x.shallow_clone()
    } else {
        x.f_to_kind(Kind::Float).map_err(torch)?
    };
    check_finite(path, xn, &x)?;
    let y = match targets {
        Targets::Classes => {
            if !is_int(y.kind()) || ys.len() != 1 {
                return Err(bad(format!(
                    "'{yn}' is {:?} {ys:?}, expected one integer class per sample for --loss cross-entropy (or use --loss mse)",
                    y.kind()
                )));
            }
            let y = y.f_to_kind(Kind::Int64).map_err(torch)?;
            let min = y
                .f_min()
                .and_then(|m| m.f_int64_value(&[]))
                .map_err(torch)?;
            if min < 0 {
                return Err(bad(format!(
                    "'{yn}' holds the class {min}; classes must be 0 or more"
                )));
            }
            y
        }
        Targets::Values => {
            if !is_float(y.kind()) {
                return Err(bad(format!(
                    "'{yn}' is {:?}, expected floating-point targets for --loss mse",
                    y.kind()
                )));
            }
            let y = y.f_to_kind(x.kind()).map_err(torch)?;
            check_finite(path, yn, &y)?;
            y
        }
    };
    Ok(DataSplit {
        name: split.to_string(),
        x,
        y,
    })
}

fn check_finite(path: &Path, name: &str, t: &Tensor) -> Result<()> {
    let finite = t
        .f_isfinite()
        .and_then(|f| f.f_all())
        .and_then(|a| a.f_int64_value(&[]))
        .map_err(|e| Error::torch(format!("checking '{name}'"), e))?;
    if finite == 0 {
        return Err(Error::Data {
            path: path.to_path_buf(),
            reason: format!("'{name}' holds NaN or infinite values"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
        let path = dir.join(file);
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        if file.ends_with(".npz") {
            Tensor::write_npz(&named, &path).unwrap();
        } else {
            Tensor::write_safetensors(&named, &path).unwrap();
        }
        path
    }

    #[test]
    fn both_formats_load_and_bad_data_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::randn([6, 4], tch::kind::FLOAT_CPU);
        let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
        for file in ["d.safetensors", "d.npz"] {
            let p = write(
                dir.path(),
                file,
                &[("x_train", x.copy()), ("y_train", y.copy())],
            );
            let d = Dataset::load(&p, &DataNames::default(), Targets::Classes).unwrap();
            assert_eq!(d.splits.len(), 1, "{file}");
            assert!(d.train().x.equal(&x) && d.train().y.equal(&y), "{file}");
            assert!(d.check_classes(3).is_ok());
            let e = d.check_classes(2).unwrap_err().to_string();
            assert!(e.contains(file) && e.contains("class 2"), "{e}");
        }
        let cases: Vec<(Vec<(&str, Tensor)>, &str)> = vec![
            (vec![("x_train", x.copy())], "'y_train'"),
            (
                vec![
                    ("x_train", x.copy()),
                    ("y_train", Tensor::from_slice(&[0i64, 1])),
                ],
                "same number of samples",
            ),
            (
                vec![("x_train", x.to_kind(Kind::Uint8)), ("y_train", y.copy())],
                "floating-point inputs",
            ),
            (
                vec![("x_train", x.copy()), ("y_train", y.to_kind(Kind::Float))],
                "integer class",
            ),
            (
                vec![("x_train", x.copy()), ("y_train", y.neg())],
                "classes must be 0 or more",
            ),
            (
                vec![("x_train", x.copy() / 0.0), ("y_train", y.copy())],
                "NaN or infinite",
            ),
            (
                vec![
                    ("x_train", x.copy()),
                    ("y_train", y.copy()),
                    ("x_test", x.copy()),
                ],
                "'y_test'",
            ),
        ];
        for (k, (tensors, want)) in cases.into_iter().enumerate() {
            let p = write(dir.path(), &format!("c{k}.safetensors"), &tensors);
            let e = Dataset::load(&p, &DataNames::default(), Targets::Classes)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("c{k}.safetensors")) && e.contains(want),
                "{k}: {e}"
            );
        }
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk").unwrap();
        let e = Dataset::load(&junk, &DataNames::default(), Targets::Values)
            .unwrap_err()
            .to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        let e = Dataset::load(
            dir.path().join("d.csv"),
            &DataNames::default(),
            Targets::Values,
        );
        assert!(e.is_err());
    }
}
