//! Does this model fit this run? Matches the floating-point variables of a
//! `VarStore` with the tensors of a recorded run, by name, before any
//! computation starts, and reports every mismatch at once: variables the run
//! lacks, tensors the model lacks, other shapes, other dtypes.
//!
//! Names match exactly, or the run's name equals the model's with `.` written
//! as `_`: `tch::TrainableCModule` registers `conv1.weight` of a TorchScript
//! model as `conv1_weight`, so runs recorded through it fit a
//! [`ScriptModel`](crate::ScriptModel) of the same file.
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! use tch_landscape::analysis::model_check::ModelMatch;
//! let run = tch_landscape::Run::open("runs/cnn")?;
//! let m = ModelMatch::check(&run, &vs, false)?; // an error lists every mismatch
//! m.load(&run, run.len() - 1, &vs)?;             // the last snapshot into the model
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use tch::nn::VarStore;

use crate::analysis::params::{NamedTensor, ParamSet};
use crate::error::{Error, Result};
use crate::store::run::Run;
use crate::tensor::kind_name;

/// The most names listed per kind of mismatch in an error.
const LISTED: usize = 8;

/// True for a BatchNorm running statistic (re-estimated by recalibration).
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// The pairing of a run's tensors with a model's variables.
#[derive(Debug, Clone)]
pub struct ModelMatch {
    /// (index of the run's tensor in its manifest, the model's variable name).
    pub pairs: Vec<(usize, String)>,
    /// Running statistics of the model that the run does not hold (allowed
    /// only when they are re-estimated: BatchNorm recalibration).
    pub missing_running_stats: Vec<String>,
}

impl ModelMatch {
    /// Matches every floating-point variable of `vs` with a tensor of `run`
    /// (same shape and dtype) and every tensor of `run` with a variable.
    /// With `running_stats_optional`, BatchNorm running statistics the run
    /// lacks are allowed (they will be recalibrated). The error lists every
    /// mismatch, by name.
    pub fn check(run: &Run, vs: &VarStore, running_stats_optional: bool) -> Result<ModelMatch> {
        let manifest = run.manifest();
        let by_name: HashMap<&str, usize> = manifest
            .tensors
            .iter()
            .enumerate()
            .map(|(k, t)| (t.name.as_str(), k))
            .collect();
        let mut vars: Vec<(String, tch::Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.is_floating_point())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut pairs, mut missing, mut optional, mut shapes, mut dtypes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut used = vec![false; manifest.tensors.len()];
        for (name, var) in &vars {
            let found = by_name
                .get(name.as_str())
                .or_else(|| by_name.get(name.replace('.', "_").as_str()));
            let Some(&k) = found else {
                if running_stats_optional && is_running_stat(name) {
                    optional.push(name.clone());
                } else {
                    missing.push(name.clone());
                }
                continue;
            };
            if used[k] {
                missing.push(name.clone());
                continue;
            }
            used[k] = true;
            let info = &manifest.tensors[k];
            if info.shape != var.size() {
                shapes.push(format!(
                    "{name} is {:?} in the model, {:?} in the run",
                    var.size(),
                    info.shape
                ));
            }
            let kind = kind_name(var.kind()).unwrap_or("?");
            if info.dtype != kind {
                dtypes.push(format!(
                    "{name} is {kind} in the model, {} in the run",
                    info.dtype
                ));
            }
            pairs.push((k, name.clone()));
        }
        let extra: Vec<String> = manifest
            .tensors
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(t, _)| t.name.clone())
            .collect();
        let mut problems = Vec::new();
        for (what, list) in [
            ("missing in the run", &missing),
            ("not in the model", &extra),
            ("other shape", &shapes),
            ("other dtype", &dtypes),
        ] {
            if list.is_empty() {
                continue;
            }
            let mut text = list
                .iter()
                .take(LISTED)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if list.len() > LISTED {
                text.push_str(&format!(" and {} more", list.len() - LISTED));
            }
            problems.push(format!("{what} ({}): {text}", list.len()));
        }
        if !problems.is_empty() {
            let mut reason = problems.join("; ");
            if missing.iter().any(|n| is_running_stat(n)) {
                reason.push_str(
                    " (a run recorded through tch::TrainableCModule holds no buffers: re-estimate them with BatchNorm recalibration, `--bn recalibrate`)",
                );
            }
            return Err(Error::invalid(
                format!("model for run {}", run.dir().display()),
                reason,
            ));
        }
        Ok(ModelMatch {
            pairs,
            missing_running_stats: optional,
        })
    }

    /// Snapshot `i` of the run as a parameter set named as the model's
    /// variables (sorted by name).
    pub fn params_at(&self, run: &Run, i: usize) -> Result<ParamSet> {
        let recorded = ParamSet::from_run(run, i)?;
        let manifest = run.manifest();
        let mut by_name: HashMap<&str, &NamedTensor> = recorded
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut tensors = Vec::with_capacity(self.pairs.len());
        for (k, model_name) in &self.pairs {
            let run_name = manifest.tensors[*k].name.as_str();
            let t = by_name
                .remove(run_name)
                .ok_or_else(|| Error::UnknownTensor {
                    tensor: run_name.to_string(),
                    place: format!("snapshot {i}"),
                })?;
            tensors.push(NamedTensor {
                name: model_name.clone(),
                role: t.role,
                tensor: t.tensor.shallow_clone(),
            });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ParamSet { tensors })
    }

    /// Copies snapshot `i` of the run into the model's variables.
    pub fn load(&self, run: &Run, i: usize, vs: &VarStore) -> Result<()> {
        self.params_at(run, i)?.copy_into(vs)
    }
}
