//! TorchScript models in a `VarStore`: any model exported from PyTorch with
//! `torch.jit.script(model).save("model.pt")` (or `torch.jit.trace`) becomes a
//! [`ScriptModel`] whose parameters **and buffers** are variables of a tch
//! `VarStore`, so the recorder, directions, surfaces, curvature and
//! interpolation treat it like any tch model.
//!
//! Why not `tch::TrainableCModule` alone: it registers only the parameters
//! (BatchNorm running statistics would be neither recorded nor set), and its
//! `forward_t` ignores the train flag and panics on a TorchScript error. Here
//! the parameters are registered as `TrainableCModule` does (trainable as the
//! module says), the floating-point and integer buffers as non-trainable
//! variables, all under their PyTorch names (`layer1.0.bn1.running_mean`),
//! sharing storage with the module: writing a variable changes the model.
//! [`ScriptModel::f_forward_t`] runs `forward` in train or eval mode and
//! returns errors as values.
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! use tch::nn::{ModuleT, VarStore};
//! let vs = VarStore::new(tch::Device::Cpu);
//! let model = tch_landscape::ScriptModel::load("model.pt", &vs)?;
//! let logits = model.f_forward_t(&tch::Tensor::zeros([4, 1, 8, 8], tch::kind::FLOAT_CPU), false)?;
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::store::fsutil;

type NamedCallback = extern "C" fn(*mut c_void, *const c_char, *mut c_void);

extern "C" {
    fn tl_free_string(s: *mut c_char);
    fn tl_script_load(path: *const c_char, device: c_int, err: *mut *mut c_char) -> *mut c_void;
    fn tl_script_free(m: *mut c_void);
    fn tl_script_named(
        m: *mut c_void,
        buffers: c_int,
        data: *mut c_void,
        f: NamedCallback,
        err: *mut *mut c_char,
    ) -> c_int;
    fn tl_script_forward(
        m: *mut c_void,
        inputs: *const *mut c_void,
        n: c_int,
        train: c_int,
        err: *mut *mut c_char,
    ) -> *mut c_void;
}

/// The largest TorchScript file loaded (4 GiB): bounds what a hostile path
/// can make libtorch read.
pub const MAX_SCRIPT_BYTES: u64 = 4 << 30;

/// A TorchScript module whose parameters and buffers are variables of a
/// `VarStore` (see the [module documentation](self)).
#[derive(Debug)]
pub struct ScriptModel {
    module: NonNull<c_void>,
    path: PathBuf,
    /// Names of the registered parameters and buffers, in the module's order.
    names: Vec<String>,
    /// Not `Sync`: libtorch's train/eval switch mutates the module.
    _not_sync: Cell<()>,
}

// SAFETY: the module is owned by this value alone and libtorch modules may be
// moved between threads (tch's CModule is Send too); the Cell keeps it !Sync.
unsafe impl Send for ScriptModel {}

impl Drop for ScriptModel {
    fn drop(&mut self) {
        // SAFETY: the pointer came from tl_script_load and is freed once.
        unsafe { tl_script_free(self.module.as_ptr()) }
    }
}

/// A C string from the shim, freed after it is copied.
fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the shim returns a NUL-terminated string from strdup.
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { tl_free_string(err) };
    // libtorch appends a C++ backtrace and the TorchScript source; the
    // Python-style error line (`RuntimeError: …`) says what went wrong, else
    // the first lines do.
    match text.lines().rev().map(str::trim).find(|l| is_error_line(l)) {
        Some(line) => line.to_string(),
        None => first_lines(&text, 3),
    }
}

/// `RuntimeError: …`, `ValueError: …`: the line of a TorchScript error that
/// says what went wrong.
fn is_error_line(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(kind, _)| {
        kind.ends_with("Error") && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    })
}

/// The first `n` non-empty lines of `text`, joined by " / ".
fn first_lines(text: &str, n: usize) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Exception raised from"))
        .take(n)
        .collect::<Vec<_>>()
        .join(" / ")
}

extern "C" fn collect(data: *mut c_void, name: *const c_char, tensor: *mut c_void) {
    // SAFETY: `data` is the Vec passed by `named`, `name` a valid C string
    // for the duration of the call, `tensor` a new torch::Tensor we own.
    let out = unsafe { &mut *(data as *mut Vec<(String, Tensor)>) };
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    let tensor = unsafe { Tensor::from_ptr(tensor as *mut torch_sys::C_tensor) };
    out.push((name, tensor));
}

/// libtorch's integer code of a device (as torch-sys encodes it).
fn device_code(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(-1),
        Device::Cuda(i) => {
            c_int::try_from(i).map_err(|_| Error::invalid("device", "CUDA index out of range"))
        }
        other => Err(Error::invalid(
            "device",
            format!("{other:?}: TorchScript models are loaded on the CPU or a CUDA device"),
        )),
    }
}

impl ScriptModel {
    /// Loads the TorchScript module in `path` onto the device of `vs` and adds
    /// its parameters (trainable when they require gradients) and buffers
    /// (non-trainable) to `vs` under their PyTorch names.
    ///
    /// Errors name the file: not a regular file, larger than
    /// [`MAX_SCRIPT_BYTES`], not a TorchScript archive, or a name that is
    /// already a variable of `vs`.
    pub fn load(path: impl AsRef<Path>, vs: &VarStore) -> Result<ScriptModel> {
        let path = path.as_ref();
        let what = || format!("TorchScript model {}", path.display());
        let meta = fsutil::open_regular(path)
            .and_then(|f| f.metadata().map_err(|e| Error::io("reading", path, e)))?;
        if meta.len() > MAX_SCRIPT_BYTES {
            return Err(Error::invalid(
                what(),
                format!(
                    "is {} bytes, more than the {MAX_SCRIPT_BYTES} accepted",
                    meta.len()
                ),
            ));
        }
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::invalid(what(), "the path contains a NUL byte"))?;
        let mut err = std::ptr::null_mut();
        // SAFETY: valid C string; the shim catches every C++ exception.
        let raw = unsafe { tl_script_load(c_path.as_ptr(), device_code(vs.device())?, &mut err) };
        let Some(module) = NonNull::new(raw) else {
            return Err(Error::invalid(
                what(),
                format!("is not a TorchScript module libtorch can load (save it with torch.jit.script(model).save(path)): {}", take_error(err)),
            ));
        };
        let mut model = ScriptModel {
            module,
            path: path.to_path_buf(),
            names: Vec::new(),
            _not_sync: Cell::new(()),
        };
        let existing = vs.variables();
        let root = vs.root();
        for buffers in [false, true] {
            for (name, tensor) in model.named(buffers)? {
                if existing.contains_key(&name) || model.names.contains(&name) {
                    return Err(Error::invalid(
                        what(),
                        format!("'{name}' is already a variable of the VarStore"),
                    ));
                }
                let trainable = !buffers && tensor.requires_grad();
                let mut parts: Vec<&str> = name.split('.').collect();
                let leaf = parts.pop().unwrap_or_default();
                if leaf.is_empty() || parts.iter().any(|p| p.is_empty()) {
                    return Err(Error::invalid(
                        what(),
                        format!("has a tensor with an empty name component: '{name}'"),
                    ));
                }
                let path = parts.iter().fold(root.clone(), |p, part| p.sub(*part));
                let _ = path.add(leaf, tensor, trainable);
                model.names.push(name);
            }
        }
        Ok(model)
    }

    /// The file the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the parameters and buffers added to the `VarStore`.
    pub fn variable_names(&self) -> &[String] {
        &self.names
    }

    /// The module's parameters or buffers, sharing storage with it.
    fn named(&self, buffers: bool) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        let mut err = std::ptr::null_mut();
        // SAFETY: `out` outlives the call; `collect` matches the callback type.
        let rc = unsafe {
            tl_script_named(
                self.module.as_ptr(),
                c_int::from(buffers),
                &mut out as *mut _ as *mut c_void,
                collect,
                &mut err,
            )
        };
        if rc != 0 {
            return Err(Error::invalid(
                format!("TorchScript model {}", self.path.display()),
                format!(
                    "listing its {}: {}",
                    if buffers { "buffers" } else { "parameters" },
                    take_error(err)
                ),
            ));
        }
        Ok(out)
    }

    /// `forward(xs)` in training (`train`: BatchNorm uses and updates batch
    /// statistics, dropout active) or evaluation mode; a TorchScript error
    /// (wrong input shape, …) is returned, not thrown.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let inputs = [xs.as_ptr() as *mut c_void];
        let mut err = std::ptr::null_mut();
        // SAFETY: the input pointer is a live torch::Tensor for the call.
        let out = unsafe {
            tl_script_forward(
                self.module.as_ptr(),
                inputs.as_ptr(),
                1,
                c_int::from(train),
                &mut err,
            )
        };
        if out.is_null() {
            return Err(Error::invalid(
                format!("TorchScript model {}", self.path.display()),
                format!(
                    "forward on input {:?} ({:?}) failed: {}",
                    xs.size(),
                    xs.kind(),
                    take_error(err)
                ),
            ));
        }
        // SAFETY: a new torch::Tensor owned by us.
        Ok(unsafe { Tensor::from_ptr(out as *mut torch_sys::C_tensor) })
    }
}

impl ModuleT for ScriptModel {
    /// As [`ScriptModel::f_forward_t`]; panics on a TorchScript error, as
    /// tch's own modules do (the analyses check the model on the data with
    /// `f_forward_t` before they start).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.f_forward_t(xs, train) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_torchscript_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.pt");
        std::fs::write(&path, b"not a zip archive").unwrap();
        let vs = VarStore::new(Device::Cpu);
        let e = ScriptModel::load(&path, &vs).unwrap_err().to_string();
        assert!(
            e.contains("model.pt") && e.contains("not a TorchScript module"),
            "{e}"
        );
        assert!(vs.variables().is_empty());
        let e = ScriptModel::load(dir.path().join("absent.pt"), &vs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.pt"), "{e}");
    }

    #[test]
    fn error_text_keeps_the_first_lines() {
        let t = "Expected 4D input\nException raised from foo\n\n  at bar\nmore\nand more";
        assert_eq!(first_lines(t, 3), "Expected 4D input / at bar / more");
        assert!(is_error_line(
            "RuntimeError: Expected 3D (unbatched) or 4D input"
        ));
        assert!(!is_error_line(
            "  File \"code/__torch__.py\", line 16, in forward"
        ));
    }
}
