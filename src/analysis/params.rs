//! Named parameter sets: θ at one point (a model's variables, a recorded
//! snapshot, a direction), as sorted CPU float32 tensors.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::store::manifest::Role;
use crate::store::run::Run;

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
        let tensors = run
            .tensors(i)?
            .into_iter()
            .zip(&manifest.tensors)
            .map(|((name, t), info)| NamedTensor {
                name,
                role: info.role,
                tensor: t.to_kind(Kind::Float).contiguous(),
            })
            .collect();
        Ok(ParamSet { tensors })
    }

    /// A set of zeros shaped like `self`.
    pub fn zeros_like(&self) -> ParamSet {
        self.map(|t| t.tensor.zeros_like())
    }

    /// Applies `f` to every tensor, keeping names and roles.
    pub fn map(&self, mut f: impl FnMut(&NamedTensor) -> Tensor) -> ParamSet {
        ParamSet {
            tensors: self
                .tensors
                .iter()
                .map(|t| NamedTensor {
                    name: t.name.clone(),
                    role: t.role,
                    tensor: f(t),
                })
                .collect(),
        }
    }

    /// `self − other`, tensor by tensor; names and shapes must match.
    pub fn sub(&self, other: &ParamSet) -> Result<ParamSet> {
        self.check_compatible(other, "the second parameter set")?;
        Ok(ParamSet {
            tensors: self
                .tensors
                .iter()
                .zip(&other.tensors)
                .map(|(a, b)| NamedTensor {
                    name: a.name.clone(),
                    role: a.role,
                    tensor: &a.tensor - &b.tensor,
                })
                .collect(),
        })
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
    pub fn norm(&self) -> f64 {
        self.tensors
            .iter()
            .map(|t| {
                t.tensor
                    .to_kind(Kind::Double)
                    .square()
                    .sum(Kind::Double)
                    .double_value(&[])
            })
            .sum::<f64>()
            .sqrt()
    }

    /// Inner product with `other` (float64 accumulation).
    pub fn dot(&self, other: &ParamSet) -> f64 {
        self.tensors
            .iter()
            .zip(&other.tensors)
            .map(|(a, b)| {
                (a.tensor.to_kind(Kind::Double) * b.tensor.to_kind(Kind::Double))
                    .sum(Kind::Double)
                    .double_value(&[])
            })
            .sum()
    }

    /// A cheap fingerprint of the values (norm and sum), used to recognise the
    /// same centre when a computation is resumed.
    pub fn fingerprint(&self) -> [f64; 2] {
        let sum = self
            .tensors
            .iter()
            .map(|t| {
                t.tensor
                    .to_kind(Kind::Double)
                    .sum(Kind::Double)
                    .double_value(&[])
            })
            .sum();
        [self.norm(), sum]
    }

    /// Writes these values into the variables of `vs` (by name, under
    /// `no_grad`). Every tensor must exist in `vs` with the same shape.
    pub fn copy_into(&self, vs: &tch::nn::VarStore) -> Result<()> {
        let vars = vs.variables();
        tch::no_grad(|| {
            for t in &self.tensors {
                let var = vars.get(&t.name).ok_or_else(|| Error::UnknownTensor {
                    tensor: t.name.clone(),
                    place: "the model's VarStore".into(),
                })?;
                let mut var = var.shallow_clone();
                var.f_copy_(&t.tensor)
                    .map_err(|e| Error::torch(format!("setting '{}'", t.name), e))?;
            }
            Ok(())
        })
    }
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
