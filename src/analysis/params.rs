//! Named parameter sets: θ at one point (a model's variables, a recorded
//! snapshot, a direction), as sorted CPU float32 tensors, and the guard
//! that restores a model's variables. No file is read here: snapshots come
//! through [`Run`].

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::store::run::Run;
use crate::tensor::{model_variable, Role};

/// One named tensor of a [`ParamSet`].
#[derive(Debug)]
pub struct NamedTensor {
    /// Variable name, e.g. `fc1.weight`.
    pub name: String,
    /// What kind of variable it is.
    pub role: Role,
    /// The values (CPU, float32, contiguous, no gradient).
    pub tensor: Tensor,
}

/// A named set of tensors sorted by name: a point θ of parameter space, or a
/// direction in it.
#[derive(Debug)]
pub struct ParamSet {
    /// The tensors, sorted by name.
    pub tensors: Vec<NamedTensor>,
}

impl Clone for ParamSet {
    fn clone(&self) -> Self {
        ParamSet {
            tensors: self
                .tensors
                .iter()
                .map(|t| NamedTensor {
                    name: t.name.clone(),
                    role: t.role,
                    tensor: t.tensor.copy(),
                })
                .collect(),
        }
    }
}

impl ParamSet {
    /// Deep copy of every floating-point variable of `vs` (to CPU float32).
    pub fn from_varstore(vs: &tch::nn::VarStore) -> Result<ParamSet> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tensors = Vec::with_capacity(vars.len());
        tch::no_grad(|| -> Result<()> {
            for (name, t) in vars {
                if !t.is_floating_point() {
                    continue;
                }
                let role = Role::classify(t.requires_grad(), t.dim());
                let tensor = t
                    .f_to_device(Device::Cpu)
                    .and_then(|t| t.f_to_kind(Kind::Float))
                    .and_then(|t| t.f_detach_copy())
                    .and_then(|t| t.f_contiguous())
                    .map_err(|e| Error::torch(format!("copying '{name}'"), e))?;
                tensors.push(NamedTensor { name, role, tensor });
            }
            Ok(())
        })?;
        Ok(ParamSet { tensors })
    }

    /// Snapshot `i` of a recorded run (every recorded tensor).
    pub fn from_run(run: &Run, i: usize) -> Result<ParamSet> {
        let manifest = run.manifest();
        let mut tensors = Vec::with_capacity(manifest.tensors.len());
        for ((name, t), info) in run.tensors(i)?.into_iter().zip(&manifest.tensors) {
            let tensor = t
                .f_to_kind(Kind::Float)
                .and_then(|t| t.f_contiguous())
                .map_err(|e| Error::torch(format!("converting '{name}' to float32"), e))?;
            tensors.push(NamedTensor {
                name,
                role: info.role,
                tensor,
            });
        }
        Ok(ParamSet { tensors })
    }

    /// Applies `f` to every tensor, keeping names and roles; stops at the
    /// first error.
    pub fn map(&self, mut f: impl FnMut(&NamedTensor) -> Result<Tensor>) -> Result<ParamSet> {
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            tensors.push(NamedTensor {
                name: t.name.clone(),
                role: t.role,
                tensor: f(t)?,
            });
        }
        Ok(ParamSet { tensors })
    }

    /// `self − other`, tensor by tensor; names and shapes must match.
    pub fn sub(&self, other: &ParamSet) -> Result<ParamSet> {
        self.check_compatible(other, "the second parameter set")?;
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            let tensor = a
                .tensor
                .f_sub(&b.tensor)
                .map_err(|e| Error::torch(format!("subtracting '{}'", a.name), e))?;
            tensors.push(NamedTensor {
                name: a.name.clone(),
                role: a.role,
                tensor,
            });
        }
        Ok(ParamSet { tensors })
    }

    /// Checks that `other` has the same tensor names and shapes as `self`.
    pub fn check_compatible(&self, other: &ParamSet, what: &str) -> Result<()> {
        if self.tensors.len() != other.tensors.len() {
            let mine: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
            let theirs: Vec<&str> = other.tensors.iter().map(|t| t.name.as_str()).collect();
            return Err(Error::invalid(
                what,
                format!("has tensors {theirs:?}, expected {mine:?}"),
            ));
        }
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            if a.name != b.name {
                return Err(Error::invalid(
                    what,
                    format!("has tensor '{}' where '{}' was expected", b.name, a.name),
                ));
            }
            if a.tensor.size() != b.tensor.size() {
                return Err(Error::ShapeChanged {
                    tensor: a.name.clone(),
                    expected: a.tensor.size(),
                    found: b.tensor.size(),
                    context: format!(" in {what}"),
                });
            }
        }
        Ok(())
    }

    /// Total number of elements.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.tensor.numel()).sum()
    }

    /// Euclidean norm over all tensors (float64 accumulation).
    pub fn norm(&self) -> Result<f64> {
        let mut sum = 0.0;
        for t in &self.tensors {
            sum += sum_of(&t.name, &t.tensor, &t.tensor)?;
        }
        Ok(sum.sqrt())
    }

    /// Inner product with `other` (float64 accumulation); names and shapes
    /// must match.
    pub fn dot(&self, other: &ParamSet) -> Result<f64> {
        self.check_compatible(other, "the second parameter set")?;
        let mut sum = 0.0;
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            sum += sum_of(&a.name, &a.tensor, &b.tensor)?;
        }
        Ok(sum)
    }

    /// Writes these values into the variables of `vs` (by name, under
    /// `no_grad`). Every tensor must exist in `vs` with the same shape.
    pub fn copy_into(&self, vs: &tch::nn::VarStore) -> Result<()> {
        let vars = vs.variables();
        tch::no_grad(|| {
            for t in &self.tensors {
                let mut var =
                    model_variable(&vars, &t.name, &t.tensor.size(), "the model's VarStore")?;
                var.f_copy_(&t.tensor)
                    .map_err(|e| Error::torch(format!("setting '{}'", t.name), e))?;
            }
            Ok(())
        })
    }
}

/// Σ aᵢbᵢ over one tensor pair, in float64.
fn sum_of(name: &str, a: &Tensor, b: &Tensor) -> Result<f64> {
    let double = |t: &Tensor| t.f_to_kind(Kind::Double);
    double(a)
        .and_then(|a| a.f_mul(&double(b)?))
        .and_then(|p| p.f_sum(Kind::Double))
        .and_then(|s| s.f_double_value(&[]))
        .map_err(|e| Error::torch(format!("summing over '{name}'"), e))
}

/// Deep copies of a VarStore's variables, written back on drop: the model is
/// restored bit-exactly whether an analysis succeeds, fails or panics.
pub struct RestoreGuard {
    saved: Vec<(Tensor, Tensor)>,
}

impl std::fmt::Debug for RestoreGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreGuard")
            .field("variables", &self.saved.len())
            .finish()
    }
}

impl RestoreGuard {
    /// Copies every variable of `vs` now.
    pub fn new(vs: &tch::nn::VarStore) -> RestoreGuard {
        let saved = tch::no_grad(|| {
            vs.variables()
                .into_values()
                .map(|v| {
                    let copy = v.detach().copy();
                    (v, copy)
                })
                .collect()
        });
        RestoreGuard { saved }
    }
}

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        tch::no_grad(|| {
            for (var, copy) in &mut self.saved {
                if let Err(e) = var.f_copy_(copy) {
                    tracing::error!(error = %e, "failed to restore a model variable");
                }
            }
        });
    }
}
