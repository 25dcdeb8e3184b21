//! BatchNorm recalibration: at each evaluated point, re-estimate the running
//! statistics on a seeded subset of training batches (train mode, no
//! gradient) before evaluating in eval mode, as mode-connectivity work and
//! stochastic weight averaging do. Running statistics held at θ* describe
//! the activations of θ*, not of a point far from it, so for BN networks
//! fixed statistics distort the landscape away from θ*.
//!
//! The estimate is the mean over the chosen batches of each batch's
//! statistics (PyTorch's `momentum=None` cumulative average, which
//! `torch.optim.swa_utils.update_bn` uses), whatever the layers' momentum:
//! before each batch the statistics are set to 0 and `num_batches_tracked`
//! to 0, so one train-mode forward leaves `f·s` in each buffer, `s` the
//! batch's statistic and `f` the layer's update factor, which is measured
//! once per recalibration (a second forward of the first batch from 1
//! leaves `(1−f) + f·s`). Works for PyTorch's BatchNorm in TorchScript
//! models ([`ScriptModel`](crate::ScriptModel)) and for tch's
//! `nn::batch_norm*`: any variable named `…running_mean` / `…running_var`.
//!
//! The subset (a seeded permutation of the training samples, cut into
//! `batches` batches of `batch`) is drawn once and used at every point.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Kind, Tensor};

use crate::analysis::model_check::is_running_stat;
use crate::error::{Error, Result};

/// Settings of BatchNorm recalibration, stored with results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BnRecalibration {
    /// Number of training batches (default 16).
    pub batches: usize,
    /// Samples per batch (default 128).
    pub batch: i64,
    /// Seed of the subset (ChaCha8; default 0).
    pub seed: u64,
}

impl Default for BnRecalibration {
    fn default() -> Self {
        BnRecalibration {
            batches: 16,
            batch: 128,
            seed: 0,
        }
    }
}

impl std::fmt::Display for BnRecalibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BN statistics recalibrated at each point on {} training batches of {} (seed {})",
            self.batches, self.batch, self.seed
        )
    }
}

impl BnRecalibration {
    /// Checks the settings (at least one batch of at least one sample).
    pub fn validate(&self) -> Result<()> {
        if self.batches == 0 || self.batches > 1_000_000 {
            return Err(Error::invalid(
                "BN recalibration batches",
                format!("expected 1 to 1000000, got {}", self.batches),
            ));
        }
        if self.batch < 1 {
            return Err(Error::invalid(
                "BN recalibration batch size",
                format!("must be at least 1, got {}", self.batch),
            ));
        }
        Ok(())
    }
}

/// Re-estimates the running statistics of a model's BatchNorm layers.
#[derive(Debug)]
pub struct Recalibrator {
    settings: BnRecalibration,
    /// The running-statistic variables (sharing storage with the model).
    stats: Vec<(String, Tensor)>,
    /// `num_batches_tracked` counters, reset before each batch.
    counters: Vec<Tensor>,
    /// The chosen batches of training inputs.
    inputs: Vec<Tensor>,
}

impl Recalibrator {
    /// A recalibrator of the running statistics among the variables of `vs`
    /// on the training inputs `x`; an error when the model has none.
    pub fn new(vs: &VarStore, x: &Tensor, settings: BnRecalibration) -> Result<Recalibrator> {
        settings.validate()?;
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let counters = vars
            .iter()
            .filter(|(n, _)| n.ends_with("num_batches_tracked"))
            .map(|(_, t)| t.shallow_clone())
            .collect();
        let stats: Vec<(String, Tensor)> = vars
            .into_iter()
            .filter(|(n, t)| is_running_stat(n) && t.is_floating_point())
            .collect();
        if stats.is_empty() {
            return Err(Error::invalid(
                "BN recalibration",
                "the model has no BatchNorm running statistics (no variable named …running_mean or …running_var); use fixed statistics",
            ));
        }
        let n = x.size().first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::invalid(
                "BN recalibration",
                "the training inputs are empty",
            ));
        }
        let mut order: Vec<i64> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(settings.seed));
        let take = (settings.batches as i64)
            .saturating_mul(settings.batch)
            .min(n) as usize;
        let inputs = order[..take]
            .chunks(settings.batch as usize)
            .map(|idx| {
                let idx = Tensor::from_slice(idx).to_device(x.device());
                x.f_index_select(0, &idx)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::torch("choosing the recalibration batches", e))?;
        Ok(Recalibrator {
            settings,
            stats,
            counters,
            inputs,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &BnRecalibration {
        &self.settings
    }

    /// The number of batches actually used (fewer than asked when the
    /// training split is smaller than `batches × batch`).
    pub fn batches_used(&self) -> usize {
        self.inputs.len()
    }

    fn fill(&self, value: f64) -> std::result::Result<(), tch::TchError> {
        for (_, t) in &self.stats {
            let _ = t.shallow_clone().f_fill_(value)?;
        }
        for c in &self.counters {
            let _ = c.shallow_clone().f_fill_(0)?;
        }
        Ok(())
    }

    /// Re-estimates the statistics at the model's current parameters (the
    /// model's variables must be those of the `VarStore` given to `new`);
    /// leaves the model's variables other than the statistics unchanged.
    pub fn run(&self, model: &dyn ModuleT) -> Result<()> {
        let err = |e| Error::torch("recalibrating BatchNorm statistics", e);
        tch::no_grad(|| -> Result<()> {
            let forward = |x: &Tensor| -> Result<()> {
                // A panic here is a model that cannot take its own training
                // inputs; the analyses check that before they start.
                let _ = model.forward_t(x, true);
                Ok(())
            };
            // The update factor f of each buffer, elementwise.
            let first = &self.inputs[0];
            self.fill(0.0).map_err(err)?;
            forward(first)?;
            let from_zero: Vec<Tensor> = self.stats.iter().map(|(_, t)| t.copy()).collect();
            self.fill(1.0).map_err(err)?;
            forward(first)?;
            let mut factors = Vec::with_capacity(self.stats.len());
            for ((name, t), a) in self.stats.iter().zip(&from_zero) {
                // b − a = 1 − f
                let f = t
                    .f_sub(a)
                    .and_then(|d| d.f_neg())
                    .and_then(|d| d.f_add_scalar(1.0))
                    .map_err(err)?;
                let smallest = f
                    .f_abs()
                    .and_then(|m| m.f_min())
                    .and_then(|m| m.f_double_value(&[]))
                    .map_err(err)?;
                if smallest.is_nan() || smallest <= 1e-6 {
                    return Err(Error::invalid(
                        "BN recalibration",
                        format!("'{name}' does not change in a train-mode forward (momentum 0, or the layer does not track running statistics)"),
                    ));
                }
                factors.push(f);
            }
            let mut sums: Vec<Tensor> = Vec::with_capacity(self.stats.len());
            for (b, x) in self.inputs.iter().enumerate() {
                self.fill(0.0).map_err(err)?;
                forward(x)?;
                for (k, ((_, t), f)) in self.stats.iter().zip(&factors).enumerate() {
                    let s = t.f_div(f).map_err(err)?;
                    if b == 0 {
                        sums.push(s.f_to_kind(Kind::Double).map_err(err)?);
                    } else {
                        sums[k] = sums[k].f_add(&s).map_err(err)?;
                    }
                }
            }
            let n = self.inputs.len() as f64;
            for ((_, t), s) in self.stats.iter().zip(&sums) {
                let mean = s.f_div_scalar(n).map_err(err)?;
                t.shallow_clone().f_copy_(&mean).map_err(err)?;
            }
            for c in &self.counters {
                let _ = c
                    .shallow_clone()
                    .f_fill_(self.inputs.len() as i64)
                    .map_err(err)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    /// A BatchNorm layer with the given momentum on 3 features.
    fn bn(momentum: f64) -> (VarStore, nn::BatchNorm) {
        let vs = VarStore::new(tch::Device::Cpu);
        let cfg = nn::BatchNormConfig {
            momentum,
            ..Default::default()
        };
        let layer = nn::batch_norm1d(&vs.root() / "bn", 3, cfg);
        (vs, layer)
    }

    #[test]
    fn statistics_are_the_mean_over_batches_whatever_the_momentum() {
        let x = Tensor::randn([40, 3], tch::kind::FLOAT_CPU) * 2.0 + 5.0;
        let settings = BnRecalibration {
            batches: 4,
            batch: 10,
            seed: 3,
        };
        let mut seen = Vec::new();
        for momentum in [0.1, 0.5, 1.0] {
            let (vs, layer) = bn(momentum);
            let r = Recalibrator::new(&vs, &x, settings).unwrap();
            assert_eq!(r.batches_used(), 4);
            r.run(&layer).unwrap();
            // All 40 samples in 4 equal batches: the mean of the batch means
            // is the mean of x, the variances the batches' unbiased ones.
            let want_mean = x.mean_dim(0, false, Kind::Float);
            let mut want_var = Tensor::zeros([3], tch::kind::FLOAT_CPU);
            for xb in &r.inputs {
                want_var += xb.var_dim(0, true, false) / 4.0;
            }
            let vars = vs.variables();
            let mean = &vars["bn.running_mean"];
            let var = &vars["bn.running_var"];
            assert!(
                mean.allclose(&want_mean, 1e-4, 1e-5, false),
                "{momentum}: {mean} vs {want_mean}"
            );
            assert!(
                var.allclose(&want_var, 1e-4, 1e-5, false),
                "{momentum}: {var} vs {want_var}"
            );
            seen.push(mean.copy());
        }
        // The same subset for the same seed, whatever the momentum.
        assert!(seen[0].allclose(&seen[2], 1e-5, 1e-6, false));
    }

    #[test]
    fn a_model_without_batchnorm_is_refused() {
        let vs = VarStore::new(tch::Device::Cpu);
        let _ = nn::linear(&vs.root() / "fc", 3, 2, Default::default());
        let x = Tensor::zeros([4, 3], tch::kind::FLOAT_CPU);
        let e = Recalibrator::new(&vs, &x, BnRecalibration::default()).unwrap_err();
        assert!(e.to_string().contains("no BatchNorm"), "{e}");
        let bad = BnRecalibration {
            batches: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
