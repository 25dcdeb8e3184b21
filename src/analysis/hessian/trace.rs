//! Hutchinson's trace estimate `tr(A) = E[zᵀAz]` over Rademacher probes `z`
//! (entries ±1), with the standard error of the mean.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::vector::{dot, rademacher};
use crate::error::{Error, Result};

/// Validated settings of Hutchinson's trace estimate; built with
/// [`Hutchinson::builder`], run on any symmetric operator with
/// [`Hutchinson::run`] or on a Hessian with
/// [`Hessian::trace`](super::Hessian::trace).
///
/// ```
/// # use tch_landscape::analysis::hessian::Hutchinson;
/// # fn main() -> tch_landscape::Result<()> {
/// let hutchinson = Hutchinson::builder().probes(10).seed(1).build()?;
/// // For a diagonal operator every probe gives the exact trace.
/// let t = hutchinson.run(3, |v| Ok(vec![v[0], 2.0 * v[1], -4.0 * v[2]]))?;
/// assert_eq!((t.estimate, t.std_error), (-1.0, 0.0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Hutchinson {
    probes: usize,
    seed: u64,
}

/// Builder of [`Hutchinson`]; every setting has a default.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct HutchinsonBuilder {
    probes: usize,
    seed: u64,
}

impl HutchinsonBuilder {
    /// Number of Rademacher probes (= operator applications; at least 2, for
    /// a standard error; default 100).
    pub fn probes(mut self, probes: usize) -> Self {
        self.probes = probes;
        self
    }

    /// Seed of the probes (ChaCha8; default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Hutchinson> {
        if self.probes < 2 {
            return Err(Error::invalid(
                "trace probes",
                format!(
                    "must be at least 2 (for a standard error), got {}",
                    self.probes
                ),
            ));
        }
        Ok(Hutchinson {
            probes: self.probes,
            seed: self.seed,
        })
    }
}

impl Default for Hutchinson {
    /// 100 probes, seed 0.
    fn default() -> Self {
        Hutchinson {
            probes: 100,
            seed: 0,
        }
    }
}

/// A Hutchinson trace estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEstimate {
    /// Mean of the probe values `zᵀHz`.
    pub estimate: f64,
    /// Standard error of the mean: sample standard deviation / √probes.
    pub std_error: f64,
    /// Number of probes.
    pub probes: usize,
    /// Seed of the probes.
    pub seed: u64,
    /// Dimension of the Hessian.
    pub dim: usize,
    /// Hessian-vector products used.
    pub hvps: usize,
    /// Every probe's value `zᵀHz`, in order.
    pub values: Vec<f64>,
}

impl Hutchinson {
    /// The default settings' builder.
    pub fn builder() -> HutchinsonBuilder {
        let d = Hutchinson::default();
        HutchinsonBuilder {
            probes: d.probes,
            seed: d.seed,
        }
    }

    /// Number of probes.
    pub fn probes(&self) -> usize {
        self.probes
    }

    /// Seed of the probes.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Estimates the trace of the symmetric operator `op` (`v ↦ Av`, length
    /// `dim`): the mean of `zᵀAz` over the probes, with its standard error
    /// (sample standard deviation / √probes).
    pub fn run<F>(&self, dim: usize, mut op: F) -> Result<TraceEstimate>
    where
        F: FnMut(&[f64]) -> Result<Vec<f64>>,
    {
        if dim == 0 {
            return Err(Error::invalid("trace", "the operator has dimension 0"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let values = (0..self.probes)
            .map(|_| {
                let z = rademacher(&mut rng, dim);
                let az = op(&z)?;
                if az.len() != dim {
                    return Err(Error::invalid(
                        "operator",
                        format!("returned {} values for a vector of {dim}", az.len()),
                    ));
                }
                Ok(dot(&z, &az))
            })
            .collect::<Result<Vec<f64>>>()?;
        let n = values.len() as f64;
        let estimate = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - estimate).powi(2)).sum::<f64>() / (n - 1.0);
        let std_error = (var / n).sqrt();
        tracing::info!(estimate, std_error, "Hutchinson trace");
        Ok(TraceEstimate {
            estimate,
            std_error,
            probes: self.probes,
            seed: self.seed,
            dim,
            hvps: self.probes,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagonal_operator_gives_the_exact_trace_with_no_spread() {
        let d = [0.5, -2.0, 3.0, 7.25, 0.0];
        let t = Hutchinson::builder()
            .probes(5)
            .seed(3)
            .build()
            .unwrap()
            .run(5, |v| Ok(v.iter().zip(&d).map(|(x, l)| x * l).collect()))
            .unwrap();
        // zᵀDz = Σ d_i z_i² = Σ d_i for every Rademacher z.
        for v in &t.values {
            approx::assert_relative_eq!(*v, 8.75, max_relative = 1e-12);
        }
        approx::assert_relative_eq!(t.estimate, 8.75, max_relative = 1e-12);
        approx::assert_abs_diff_eq!(t.std_error, 0.0, epsilon = 1e-12);
        assert_eq!((t.probes, t.hvps, t.dim), (5, 5, 5));
    }

    #[test]
    fn off_diagonal_terms_average_out_within_three_standard_errors() {
        // [[1, 2], [2, 3]]: zᵀAz = 4 ± 4, trace 4.
        let t = Hutchinson::builder()
            .probes(400)
            .build()
            .unwrap()
            .run(2, |v| Ok(vec![v[0] + 2.0 * v[1], 2.0 * v[0] + 3.0 * v[1]]))
            .unwrap();
        assert!(t.std_error > 0.0);
        assert!((t.estimate - 4.0).abs() <= 3.0 * t.std_error, "{t:?}");
        for v in &t.values {
            assert!(*v == 0.0 || *v == 8.0, "{v}");
        }
    }

    #[test]
    fn fewer_than_two_probes_are_refused() {
        let e = Hutchinson::builder().probes(1).build().unwrap_err();
        assert!(e.to_string().contains("probes"), "{e}");
    }
}
