//! Importing checkpoints written by another program as a run directory.
//!
//! The paper's reference code (PyTorch) leaves one checkpoint file per epoch.
//! Saved as [safetensors](https://github.com/huggingface/safetensors) (one
//! file of named tensors), they become a run directory that every analysis,
//! `landscape pca` and `landscape report` read like a recorded one:
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! use tch_landscape::import::Import;
//!
//! let summary = Import::builder("runs/resnet56")
//!     .checkpoints(["ckpt/model_10.safetensors", "ckpt/model_0.safetensors"])
//!     .epoch_pattern("model_{}.safetensors")?   // sorted by epoch: 0, 10
//!     .build()?
//!     .run()?;
//! println!("{} snapshots", summary.checkpoints.len());
//! # Ok(()) }
//! ```
//!
//! Epochs: by default the order given (0, 1, 2, …; the first checkpoint is
//! θ₀, as a recorder's first snapshot), or [`ImportBuilder::epochs`], or
//! [`ImportBuilder::epoch_pattern`]: a file-name pattern where `{}` stands
//! for the epoch's digits and `*` for any text. The checkpoints are imported
//! in increasing epoch order; a repeated epoch, or a name that does not match
//! the pattern, is an error naming the file.
//!
//! Every checkpoint must hold exactly the tensors of the first (names,
//! shapes, dtypes). Tensors named `*running_mean`, `*running_var` or
//! `*num_batches_tracked` are buffers (non-trainable), the other floating
//! tensors trainable; integer and boolean tensors (`num_batches_tracked`)
//! are listed in the manifest as not recorded, as the recorder does. The run
//! is written with the [`Recorder`]: its manifest's `user` metadata says
//! `source = import` and lists the checkpoints.
//!
//! Nothing is written before every checkpoint was checked: its header (a
//! bounded, validated safetensors header: names, dtypes, shapes, offsets
//! covering the file exactly) against the first checkpoint's, then every
//! value (NaN or ±∞ is an error naming the file and the tensor). FIFOs and
//! devices are refused before they are opened. If writing fails afterwards
//! (a full disk, a checkpoint changed in between), what the import wrote is
//! removed: the output holds no run, never a partial one presented as
//! complete. A run already in the output is replaced only with
//! [`ImportBuilder::overwrite`], once every checkpoint has been checked.
//!
//! PyTorch's own format (`torch.save`: `.pt`, `.pth`, the reference code's
//! `.t7`) is a Python pickle that libtorch cannot read outside Python
//! (`Tensor::load_multi` expects a TorchScript archive, `loadz_multi` a
//! mobile parameter archive; both refuse a `torch.save` state dict). Such a
//! file is refused with an error that says so; [`CONVERT_PYTHON`] converts
//! them to safetensors.

mod pattern;
mod safetensors;

use pattern::*;
use safetensors::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::recorder::Recorder;
use crate::store::fsutil::{is_temp_name, open_regular, DirLock, LOCK_FILE};
use crate::store::manifest::{Manifest, SkippedTensor, TensorInfo, MAX_NUMEL};
use crate::store::metrics::{METRICS_DIR, METRICS_FILE};
use crate::store::snapshot::{
    snapshot_file_name, write_snapshot, HostValues, SnapshotFile, StoredValues, SNAPSHOT_DIR,
};

/// Python that converts PyTorch checkpoints (`torch.save` of a state dict,
/// or of a dict holding one under `state_dict`, as the reference code
/// saves) to safetensors beside them: `python3 - FILES... <<'EOF'`, this
/// text, `EOF`. Needs `pip install safetensors`.
pub const CONVERT_PYTHON: &str = r#"import sys, torch, safetensors.torch
for f in sys.argv[1:]:
    d = torch.load(f, map_location="cpu"); d = d.get("state_dict", d)
    safetensors.torch.save_file({k: v.contiguous().clone() for k, v in d.items()}, f.rsplit(".", 1)[0] + ".safetensors")"#;

/// The most checkpoints one import takes (snapshot files are numbered with
/// six digits).
pub const MAX_CHECKPOINTS: usize = 1_000_000;

/// The largest safetensors header read (bytes; the limit of the reference
/// safetensors implementation).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The most tensors a checkpoint may hold.
pub const MAX_TENSORS: usize = 100_000;

/// The longest tensor name accepted (bytes).
pub const MAX_NAME_BYTES: usize = 4096;

/// The most dimensions of a tensor.
const MAX_DIMS: usize = 64;

/// Bytes scanned per step when checking values.
const SCAN_BYTES: usize = 1 << 20;

/// Name suffixes of the tensors imported as buffers (non-trainable).
pub const BUFFER_SUFFIXES: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];

/// Configures an [`Import`]; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ImportBuilder {
    out: PathBuf,
    checkpoints: Vec<PathBuf>,
    epochs: Option<Vec<u64>>,
    pattern: Option<EpochPattern>,
    overwrite: bool,
    fsync: bool,
    user: BTreeMap<String, String>,
}

impl ImportBuilder {
    /// The checkpoint files (safetensors), in epoch order unless
    /// [`epochs`](Self::epochs) or [`epoch_pattern`](Self::epoch_pattern)
    /// say otherwise. Adds to those given before.
    pub fn checkpoints<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        self.checkpoints
            .extend(paths.into_iter().map(|p| p.as_ref().to_path_buf()));
        self
    }

    /// The epoch of each checkpoint, in the order the checkpoints were given
    /// (as many as there are checkpoints, all different). The checkpoints are
    /// imported in increasing epoch order.
    pub fn epochs(mut self, epochs: impl IntoIterator<Item = u64>) -> Self {
        self.epochs = Some(epochs.into_iter().collect());
        self
    }

    /// Takes each checkpoint's epoch from its file name (not its directory):
    /// `pattern` is the file name with `{}` where the epoch's digits are
    /// (exactly once) and `*` for any text, e.g.
    /// `model_{}.safetensors` or `ckpt-e{}-*.safetensors`. An error for a
    /// pattern without exactly one `{}`, or with a `/`.
    pub fn epoch_pattern(mut self, pattern: &str) -> Result<Self> {
        self.pattern = Some(EpochPattern::parse(pattern)?);
        Ok(self)
    }

    /// Replace a run already in the output directory (default false: such a
    /// directory is refused). It is replaced only after every checkpoint was
    /// checked.
    pub fn overwrite(mut self, on: bool) -> Self {
        self.overwrite = on;
        self
    }

    /// Whether the run's files are fsynced (default true; see
    /// [`RecorderBuilder::fsync`](crate::RecorderBuilder::fsync)).
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Adds a free-form key/value to the run's manifest (model name, ...),
    /// beside the import's own `source` and `import.*` keys.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Checks the options and assigns the epochs (from the file names when a
    /// pattern is set); reads no checkpoint yet.
    pub fn build(self) -> Result<Import> {
        let n = self.checkpoints.len();
        if n == 0 {
            return Err(Error::invalid(
                "checkpoints",
                "none given; pass at least one safetensors file",
            ));
        }
        if n > MAX_CHECKPOINTS {
            return Err(Error::invalid(
                "checkpoints",
                format!("{n} given; at most {MAX_CHECKPOINTS}"),
            ));
        }
        let epochs: Vec<u64> = match (self.epochs, &self.pattern) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "epochs",
                    "given both as a list and as a file-name pattern; choose one",
                ))
            }
            (Some(list), None) => {
                if list.len() != n {
                    return Err(Error::invalid(
                        "epochs",
                        format!(
                            "{} given for {n} checkpoints; give one per checkpoint",
                            list.len()
                        ),
                    ));
                }
                list
            }
            (None, Some(p)) => self
                .checkpoints
                .iter()
                .map(|path| p.epoch_of(path))
                .collect::<Result<_>>()?,
            (None, None) => (0..n as u64).collect(),
        };
        let mut checkpoints: Vec<Checkpoint> = self
            .checkpoints
            .into_iter()
            .zip(epochs)
            .map(|(path, epoch)| Checkpoint { path, epoch })
            .collect();
        checkpoints.sort_by_key(|c| c.epoch);
        if let Some(w) = checkpoints.windows(2).find(|w| w[0].epoch == w[1].epoch) {
            return Err(Error::invalid(
                "epochs",
                format!(
                    "{} and {} both have epoch {}; every checkpoint needs its own epoch",
                    w[0].path.display(),
                    w[1].path.display(),
                    w[0].epoch
                ),
            ));
        }
        check_outside_run_files(&self.out, &checkpoints)?;
        Ok(Import {
            out: self.out,
            checkpoints,
            pattern: self.pattern.map(|p| p.text),
            overwrite: self.overwrite,
            fsync: self.fsync,
            user: self.user,
        })
    }
}

/// One checkpoint file and its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The file.
    pub path: PathBuf,
    /// Its epoch (the snapshot's epoch in the run).
    pub epoch: u64,
}

/// A validated import of checkpoints into a run directory; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct Import {
    out: PathBuf,
    checkpoints: Vec<Checkpoint>,
    pattern: Option<String>,
    overwrite: bool,
    fsync: bool,
    user: BTreeMap<String, String>,
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's id.
    pub run_id: String,
    /// The checkpoints in snapshot order (snapshot `i` is `checkpoints[i]`).
    pub checkpoints: Vec<Checkpoint>,
    /// The recorded tensors, as in the manifest (name, shape, dtype, role).
    pub tensors: Vec<TensorInfo>,
    /// Tensors of the checkpoints that are not recorded (integer and
    /// boolean tensors such as `num_batches_tracked`).
    pub not_recorded: Vec<SkippedTensor>,
    /// Recorded elements per snapshot.
    pub parameters: u64,
    /// Of which trainable (weights and biases; not buffers).
    pub trainable_parameters: u64,
    /// Checkpoint bytes read (every file is read twice: checked, then
    /// imported).
    pub bytes_read: u64,
    /// Snapshot value bytes written.
    pub bytes_written: u64,
    /// Seconds spent checking the checkpoints before writing.
    pub check_seconds: f64,
    /// Seconds spent writing the run.
    pub write_seconds: f64,
}

impl Import {
    /// Starts configuring an import into the run directory `out`.
    pub fn builder(out: impl AsRef<Path>) -> ImportBuilder {
        ImportBuilder {
            out: out.as_ref().to_path_buf(),
            checkpoints: Vec::new(),
            epochs: None,
            pattern: None,
            overwrite: false,
            fsync: true,
            user: BTreeMap::new(),
        }
    }

    /// The checkpoints in the order they will be imported, with their epochs.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// The output run directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Checks every checkpoint, then writes the run. On error nothing is
    /// left in the output that looks like a run (see the
    /// [module docs](self)).
    pub fn run(&self) -> Result<ImportSummary> {
        if Manifest::path_in(&self.out).exists() && !self.overwrite {
            return Err(Error::AlreadyExists {
                path: self.out.clone(),
            });
        }
        if self.out.is_dir() {
            // Fail now, not after checking every checkpoint, when another
            // process writes there.
            drop(DirLock::acquire(&self.out)?);
        }
        let t0 = Instant::now();
        let mut bytes_read = 0u64;
        // 1. Headers of every file against the first's (cheap: no values).
        let mut layouts = Vec::with_capacity(self.checkpoints.len());
        for c in &self.checkpoints {
            let layout = read_layout(&c.path)?;
            if let Some(first) = layouts.first() {
                same_tensors(&self.checkpoints[0].path, first, &c.path, &layout)?;
            }
            layouts.push(layout);
        }
        // 2. Every value.
        for (c, layout) in self.checkpoints.iter().zip(&layouts) {
            bytes_read += scan_file(&c.path, layout)?;
        }
        let check_seconds = t0.elapsed().as_secs_f64();
        tracing::info!(
            checkpoints = self.checkpoints.len(),
            seconds = check_seconds,
            "checkpoints checked"
        );

        // 3. The run.
        let t1 = Instant::now();
        let existed = self.out.exists();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        bytes_read += self.load_first(&vs, &layouts[0])?;
        let mut rec = match self.recorder().build(&vs) {
            Ok(rec) => rec,
            Err(e) => return Err(self.discard(existed, e)),
        };
        let written = self.write_rest(&mut rec, &vs, &layouts);
        let finished = rec.finish();
        let run = match (written, finished) {
            (Ok(read), Ok(run)) => {
                bytes_read += read;
                run
            }
            (Err(e), _) | (Ok(_), Err(e)) => return Err(self.discard(existed, e)),
        };
        let m = Manifest::read(&self.out)?;
        let parameters = m.total_numel();
        let trainable_parameters = m
            .tensors
            .iter()
            .filter(|t| t.trainable)
            .map(|t| t.numel)
            .sum();
        Ok(ImportSummary {
            dir: self.out.clone(),
            run_id: m.run_id,
            checkpoints: self.checkpoints.clone(),
            tensors: m.tensors,
            not_recorded: m.skipped,
            parameters,
            trainable_parameters,
            bytes_read,
            bytes_written: run.bytes,
            check_seconds,
            write_seconds: t1.elapsed().as_secs_f64(),
        })
    }

    fn recorder(&self) -> crate::RecorderBuilder {
        let mut b = Recorder::builder(&self.out)
            .overwrite(self.overwrite)
            .fsync(self.fsync);
        for (k, v) in &self.user {
            b = b.metadata(k, v);
        }
        let files: Vec<String> = self
            .checkpoints
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        let mut list = serde_json::to_string(&files).unwrap_or_default();
        if list.len() > 1 << 20 {
            // The manifest stays small: the first and last names suffice.
            list = format!(
                "{} files, from {} to {}",
                files.len(),
                files[0],
                files[files.len() - 1]
            );
        }
        b = b
            .metadata("source", "import")
            .metadata("import.checkpoints", list)
            .metadata("import.count", self.checkpoints.len().to_string());
        if let Some(p) = &self.pattern {
            b = b.metadata("import.epoch_pattern", p.as_str());
        }
        b
    }

    /// Creates the VarStore's variables from the first checkpoint, with its
    /// values. Returns the bytes read.
    fn load_first(&self, vs: &tch::nn::VarStore, layout: &Layout) -> Result<u64> {
        let path = &self.checkpoints[0].path;
        let root = vs.root();
        let mut names = HashSet::new();
        let read = read_values(path, layout, |entry, bytes| {
            let t =
                Tensor::f_from_data_size(bytes, &entry.shape, entry.dtype.kind()).map_err(|e| {
                    Error::torch(
                        format!("reading tensor '{}' of {}", entry.name, path.display()),
                        e,
                    )
                })?;
            let mut parts: Vec<&str> = entry.name.split('.').collect();
            let last = parts.pop().unwrap_or_default();
            let mut p = root.clone();
            for part in parts {
                p = p.sub(part);
            }
            let trainable = entry.dtype.is_float() && !is_buffer_name(&entry.name);
            let _variable = p.add(last, t, trainable);
            names.insert(entry.name.clone());
            Ok(())
        })?;
        // The VarStore names must be the checkpoint's names exactly.
        let vars = vs.variables();
        if let Some(n) = vars.keys().find(|k| !names.contains(*k)) {
            return Err(bad(
                path,
                format!("tensor names cannot all be kept (VarStore named one '{n}')"),
            ));
        }
        Ok(read)
    }

    /// Snapshot 0 is stamped with the first checkpoint's epoch; each further
    /// checkpoint is copied into the variables and recorded. Returns the
    /// bytes read.
    fn write_rest(
        &self,
        rec: &mut Recorder,
        vs: &tch::nn::VarStore,
        layouts: &[Layout],
    ) -> Result<u64> {
        let first = self.checkpoints[0].epoch;
        if first != 0 {
            // The recorder stamps θ₀ as epoch 0; the imported θ₀ has its own.
            restamp_first_snapshot(&self.out, rec.manifest(), first, self.fsync)?;
        }
        let vars = vs.variables();
        let mut read = 0;
        for (c, layout) in self.checkpoints.iter().zip(layouts).skip(1) {
            read += tch::no_grad(|| {
                read_values(&c.path, layout, |entry, bytes| {
                    if !entry.dtype.is_float() {
                        return Ok(()); // not recorded
                    }
                    let err = |e| {
                        Error::torch(
                            format!("reading tensor '{}' of {}", entry.name, c.path.display()),
                            e,
                        )
                    };
                    let t = Tensor::f_from_data_size(bytes, &entry.shape, entry.dtype.kind())
                        .map_err(err)?;
                    let mut var = vars
                        .get(&entry.name)
                        .ok_or_else(|| Error::UnknownTensor {
                            tensor: entry.name.clone(),
                            place: "the first checkpoint".into(),
                        })?
                        .shallow_clone();
                    var.f_copy_(&t).map_err(err)
                })
            })?;
            rec.on_epoch_end(c.epoch, &[])?;
        }
        Ok(read)
    }

    /// Removes what a failed import wrote (the manifest first, so a crash
    /// in between leaves no run) and returns the error to report. `existed`:
    /// whether the output directory existed before (else it is removed too).
    /// Nothing is removed when the failure was another writer's lock or run.
    fn discard(&self, existed: bool, e: Error) -> Error {
        let out = &self.out;
        if matches!(e, Error::AlreadyExists { .. } | Error::Locked { .. }) || !out.is_dir() {
            return e;
        }
        match remove_run_files(out) {
            Ok(()) => {
                if !existed {
                    let _ = std::fs::remove_file(out.join(LOCK_FILE));
                    let _ = std::fs::remove_dir(out);
                }
                tracing::warn!(dir = %out.display(), "import failed; what it wrote was removed");
                e
            }
            Err(e2) => Error::corrupt(
                out,
                format!("the import failed ({e}) and removing its incomplete run failed too ({e2}); remove {} by hand", out.display()),
            ),
        }
    }
}

/// Removes the run the recorder wrote in `out` (the manifest first), under
/// the directory's lock.
fn remove_run_files(out: &Path) -> Result<()> {
    let _lock = DirLock::acquire(out)?;
    let manifest = Manifest::path_in(out);
    if manifest.exists() {
        std::fs::remove_file(&manifest).map_err(|e| Error::io("removing", &manifest, e))?;
    }
    for p in [out.join(SNAPSHOT_DIR), out.join(METRICS_DIR)] {
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(|e| Error::io("removing", &p, e))?;
        }
    }
    let p = out.join(METRICS_FILE);
    if p.exists() {
        std::fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
    }
    Ok(())
}

/// Whether a tensor of this name is imported as a buffer (non-trainable).
pub fn is_buffer_name(name: &str) -> bool {
    BUFFER_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// True when `path` starts like a file written by PyTorch's `torch.save` (its
/// zip archive or legacy pickle), which cannot be imported as it is (see
/// [`CONVERT_PYTHON`]). False for anything else, unreadable files included.
pub fn is_torch_save_file(path: &Path) -> bool {
    let mut head = [0u8; 8];
    open_regular(path)
        .and_then(|mut f| {
            f.read_exact(&mut head)
                .map_err(|e| Error::io("reading", path, e))
        })
        .is_ok()
        && sniff(&head).is_some()
}

/// The error for a checkpoint: "invalid checkpoint PATH: REASON".
fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::invalid(format!("checkpoint {}", path.display()), reason)
}

/// Refuses checkpoints inside the parts of `out` that the recorder replaces
/// (they would be deleted before they are read).
fn check_outside_run_files(out: &Path, checkpoints: &[Checkpoint]) -> Result<()> {
    let Ok(out) = out.canonicalize() else {
        return Ok(()); // does not exist yet: nothing of it can be replaced
    };
    for c in checkpoints {
        let Ok(p) = c.path.canonicalize() else {
            continue; // reported when it is opened
        };
        let Ok(rel) = p.strip_prefix(&out) else {
            continue;
        };
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let owned = match first.as_deref() {
            Some(SNAPSHOT_DIR | METRICS_DIR) => true,
            Some(name) if rel.components().count() == 1 => {
                name == crate::store::manifest::MANIFEST_FILE
                    || name == METRICS_FILE
                    || name == LOCK_FILE
                    || is_temp_name(name)
            }
            _ => false,
        };
        if owned {
            return Err(bad(
                &c.path,
                format!(
                    "lies in the part of {} that the import replaces; move it elsewhere first",
                    out.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(p: &str, name: &str) -> Option<u64> {
        EpochPattern::parse(p)
            .unwrap()
            .epoch_of(Path::new(name))
            .ok()
    }

    #[test]
    fn epoch_patterns_match_file_names() {
        assert_eq!(
            epoch("epoch_{}.safetensors", "/a/b/epoch_12.safetensors"),
            Some(12)
        );
        assert_eq!(
            epoch("epoch_{}.safetensors", "epoch_007.safetensors"),
            Some(7)
        );
        assert_eq!(epoch("epoch_{}.safetensors", "epoch_.safetensors"), None);
        assert_eq!(epoch("epoch_{}.safetensors", "epoch_1x.safetensors"), None);
        assert_eq!(epoch("epoch_{}.safetensors", "xepoch_1.safetensors"), None);
        assert_eq!(
            epoch("epoch_{}.safetensors", "epoch_1.safetensors.bak"),
            None
        );
        assert_eq!(epoch("*_e{}_*.st", "run3_e42_acc91.5.st"), Some(42));
        assert_eq!(epoch("{}0.st", "1200.st"), Some(120));
        assert_eq!(epoch("*{}.st", "model12.st"), Some(12));
        assert_eq!(epoch("m{}.st", "m99999999999999999999.st"), None); // > u64
        let e = EpochPattern::parse("m{}.st")
            .unwrap()
            .epoch_of(Path::new("m99999999999999999999.st"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not fit 64 bits") && e.contains("m99999999999999999999.st"),
            "{e}"
        );
        for p in ["epoch.st", "{}{}.st", "a/{}.st", "epoch_(\\d+).st"] {
            assert!(EpochPattern::parse(p).is_err(), "{p}");
        }
        // The matcher stays fast on a hostile name (without memory of the
        // failed states this takes minutes).
        let t = std::time::Instant::now();
        let name = format!("{}.st", "a".repeat(250));
        assert_eq!(epoch("*a*a*a*a*a*{}.st", &name), None);
        assert!(t.elapsed().as_secs_f64() < 1.0, "{:?}", t.elapsed());
    }

    #[test]
    fn non_finite_values_are_found_in_every_float_dtype() {
        let mut nf = NonFiniteCount::default();
        let v: Vec<u8> = [1.0f32, f32::NAN, 2.0, f32::INFINITY]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        scan(Dtype::F32, &v, 10, &mut nf);
        assert_eq!(nf.count, 2);
        assert_eq!(nf.first.map(|f| f.0), Some(11));
        let mut nf = NonFiniteCount::default();
        let v: Vec<u8> = [1.0f64, f64::NEG_INFINITY]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        scan(Dtype::F64, &v, 0, &mut nf);
        assert_eq!((nf.count, nf.first), (1, Some((1, f64::NEG_INFINITY))));
        // float16: 1.0 = 0x3c00, 65504 = 0x7bff (finite), +inf = 0x7c00, NaN = 0x7e00.
        let mut nf = NonFiniteCount::default();
        let v: Vec<u8> = [0x3c00u16, 0x7bff, 0x7c00, 0x7e00]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        scan(Dtype::F16, &v, 0, &mut nf);
        assert_eq!((nf.count, nf.first), (2, Some((2, f64::INFINITY))));
        // bfloat16: 1.0 = 0x3f80, max = 0x7f7f, -inf = 0xff80.
        let mut nf = NonFiniteCount::default();
        let v: Vec<u8> = [0x3f80u16, 0x7f7f, 0xff80]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        scan(Dtype::Bf16, &v, 0, &mut nf);
        assert_eq!((nf.count, nf.first), (1, Some((2, f64::NEG_INFINITY))));
    }

    #[test]
    fn a_failed_import_removes_what_it_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        for existed in [false, true] {
            let out = tmp.path().join(format!("run-{existed}"));
            if existed {
                std::fs::create_dir(&out).unwrap();
                std::fs::write(out.join("notes.txt"), "mine").unwrap();
            }
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let _w = vs.root().zeros("w", &[2, 2]);
            let mut rec = Recorder::builder(&out).fsync(false).build(&vs).unwrap();
            rec.on_epoch_end(1, &[("loss", 1.0)]).unwrap();
            rec.finish().unwrap();
            assert!(crate::Run::open(&out).is_ok());
            let import = Import::builder(&out)
                .checkpoints(["x.safetensors"])
                .build()
                .unwrap();
            let e = import.discard(existed, Error::invalid("test", "the failure"));
            assert!(e.to_string().contains("the failure"), "{e}");
            assert!(crate::Run::open(&out).is_err());
            if existed {
                let mut names: Vec<_> = std::fs::read_dir(&out)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                assert_eq!(names, [LOCK_FILE, "notes.txt"]);
            } else {
                assert!(!out.exists());
            }
            // Another writer's run or lock is never removed.
            let mut rec = Recorder::builder(&out).fsync(false).build(&vs).unwrap();
            let e = import.discard(existed, Error::AlreadyExists { path: out.clone() });
            assert!(matches!(e, Error::AlreadyExists { .. }));
            rec.on_epoch_end(1, &[]).unwrap();
            rec.finish().unwrap();
            assert_eq!(crate::Run::open(&out).unwrap().len(), 2);
        }
    }

    #[test]
    fn buffers_are_recognised_by_name() {
        assert!(is_buffer_name("layer1.0.bn1.running_mean"));
        assert!(is_buffer_name("bn.running_var"));
        assert!(is_buffer_name("bn.num_batches_tracked"));
        assert!(!is_buffer_name("bn.weight"));
    }
}
