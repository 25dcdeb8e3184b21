//! The eigenvalue spectral density by stochastic Lanczos quadrature
//! (Ghorbani et al. 2019; PyHessian's method): per random probe, a Lanczos
//! run gives quadrature nodes (Ritz values) and weights (squared first
//! components of the Ritz vectors); the density is the Gaussian-broadened
//! quadrature, averaged over probes.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::krylov::{Krylov, Ritz};
use super::vector::{dot, rademacher, unit};
use crate::error::{Error, Result};

/// Validated settings of stochastic Lanczos quadrature (defaults:
/// PyHessian's); built with [`Slq::builder`], run on any symmetric operator
/// with [`Slq::run`] or on a Hessian with
/// [`Hessian::density`](super::Hessian::density).
///
/// ```
/// # use tch_landscape::analysis::hessian::Slq;
/// # fn main() -> tch_landscape::Result<()> {
/// let slq = Slq::builder().probes(2).steps(10).bins(200).build()?;
/// let d = slq.run(3, |v| Ok(vec![v[0], 2.0 * v[1], 4.0 * v[2]]))?;
/// assert!((d.mean_eigenvalue() - 7.0 / 3.0).abs() < 1e-9);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SlqBuilder")]
pub struct Slq {
    probes: usize,
    steps: usize,
    seed: u64,
    bins: usize,
    sigma_squared: f64,
}

/// Builder of [`Slq`]; every setting has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[must_use]
pub struct SlqBuilder {
    probes: usize,
    steps: usize,
    seed: u64,
    bins: usize,
    sigma_squared: f64,
}

impl Default for SlqBuilder {
    fn default() -> Self {
        SlqBuilder {
            probes: 1,
            steps: 100,
            seed: 0,
            bins: 10_000,
            sigma_squared: 1e-5,
        }
    }
}

impl SlqBuilder {
    /// Number of random probes (at least 1; default 1).
    pub fn probes(mut self, probes: usize) -> Self {
        self.probes = probes;
        self
    }

    /// Lanczos steps per probe (at least 1; default 100; capped at the
    /// dimension).
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Seed of the probes (ChaCha8 Rademacher vectors; default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of points of the density grid (at least 2; default 10,000).
    pub fn bins(mut self, bins: usize) -> Self {
        self.bins = bins;
        self
    }

    /// Gaussian broadening (> 0): the variance is `sigma_squared·max(1,
    /// width)` with `width` the grid's extent (default 1e-5).
    pub fn sigma_squared(mut self, sigma_squared: f64) -> Self {
        self.sigma_squared = sigma_squared;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Slq> {
        for (name, value, min) in [
            ("probes", self.probes, 1),
            ("steps", self.steps, 1),
            ("bins", self.bins, 2),
        ] {
            if value < min {
                return Err(Error::invalid(
                    format!("density {name}"),
                    format!("must be at least {min}, got {value}"),
                ));
            }
        }
        if !(self.sigma_squared > 0.0 && self.sigma_squared.is_finite()) {
            return Err(Error::invalid(
                "density sigma_squared",
                format!("must be > 0, got {}", self.sigma_squared),
            ));
        }
        Ok(Slq {
            probes: self.probes,
            steps: self.steps,
            seed: self.seed,
            bins: self.bins,
            sigma_squared: self.sigma_squared,
        })
    }
}

impl TryFrom<SlqBuilder> for Slq {
    type Error = Error;

    fn try_from(b: SlqBuilder) -> Result<Slq> {
        b.build()
    }
}

impl Default for Slq {
    /// 1 probe, 100 steps, seed 0, 10,000 bins, σ² 1e-5.
    fn default() -> Self {
        let b = SlqBuilder::default();
        Slq {
            probes: b.probes,
            steps: b.steps,
            seed: b.seed,
            bins: b.bins,
            sigma_squared: b.sigma_squared,
        }
    }
}

/// An eigenvalue spectral density from stochastic Lanczos quadrature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralDensity {
    /// Evenly spaced eigenvalue grid, from the smallest node − 0.01 to the
    /// largest + 0.01.
    pub grid: Vec<f64>,
    /// Density on `grid` (integrates to 1 over it), averaged over probes.
    pub density: Vec<f64>,
    /// Quadrature nodes (Ritz values, ascending) per probe.
    pub nodes: Vec<Vec<f64>>,
    /// Quadrature weights (squared first eigenvector components, summing to
    /// 1) per probe.
    pub weights: Vec<Vec<f64>>,
    /// Variance of the Gaussians used.
    pub variance: f64,
    /// Dimension of the Hessian.
    pub dim: usize,
    /// Hessian-vector products used.
    pub hvps: usize,
    /// The settings used (seed included).
    pub options: Slq,
}

/// Quadrature nodes and weights per probe.
type Quadrature = Vec<(Vec<f64>, Vec<f64>)>;

impl Slq {
    /// The default settings' builder.
    pub fn builder() -> SlqBuilder {
        SlqBuilder::default()
    }

    /// Number of probes.
    pub fn probes(&self) -> usize {
        self.probes
    }

    /// Lanczos steps per probe.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Seed of the probes.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of points of the density grid.
    pub fn bins(&self) -> usize {
        self.bins
    }

    /// Gaussian broadening factor.
    pub fn sigma_squared(&self) -> f64 {
        self.sigma_squared
    }

    /// The spectral density of the symmetric operator `op` (`v ↦ Av`,
    /// length `dim`).
    pub fn run<F>(&self, dim: usize, op: F) -> Result<SpectralDensity>
    where
        F: FnMut(&[f64]) -> Result<Vec<f64>>,
    {
        let (quad, hvps) = self.nodes(dim, op)?;
        Ok(self.density(quad, dim, hvps))
    }

    /// Quadrature nodes and weights per probe, and the operator applications.
    fn nodes<F>(&self, dim: usize, mut op: F) -> Result<(Quadrature, usize)>
    where
        F: FnMut(&[f64]) -> Result<Vec<f64>>,
    {
        if dim == 0 {
            return Err(Error::invalid("density", "the operator has dimension 0"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut out = Vec::with_capacity(self.probes);
        let mut hvps = 0;
        for p in 0..self.probes {
            let _span = tracing::debug_span!("slq_probe", probe = p).entered();
            let v = unit(rademacher(&mut rng, dim));
            let krylov = Krylov {
                dim,
                max_steps: self.steps,
                restart: None,
            };
            let k = krylov.run(&mut op, v, |_| false)?;
            hvps += k.steps;
            let ritz = Ritz::new(&k.alpha, &k.beta);
            let weights = ritz.first.iter().map(|s| s * s).collect();
            out.push((ritz.values, weights));
        }
        Ok((out, hvps))
    }

    /// The Gaussian-broadened quadrature on an evenly spaced grid, each
    /// probe's density normalized to 1, averaged over probes.
    fn density(&self, quad: Quadrature, dim: usize, hvps: usize) -> SpectralDensity {
        let all = quad.iter().flat_map(|(n, _)| n.iter().copied());
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        let (lo, hi) = (lo - 0.01, hi + 0.01);
        let variance = self.sigma_squared * (hi - lo).max(1.0);
        let step = (hi - lo) / (self.bins - 1) as f64;
        let grid: Vec<f64> = (0..self.bins).map(|i| lo + step * i as f64).collect();
        let mut density = vec![0.0; self.bins];
        let norm_c = (2.0 * std::f64::consts::PI * variance).sqrt();
        for (nodes, weights) in &quad {
            let one: Vec<f64> = grid
                .iter()
                .map(|&t| {
                    nodes
                        .iter()
                        .zip(weights)
                        .map(|(x0, w)| w * (-(t - x0).powi(2) / (2.0 * variance)).exp() / norm_c)
                        .sum::<f64>()
                })
                .collect();
            let total = one.iter().sum::<f64>() * step;
            for (d, o) in density.iter_mut().zip(&one) {
                *d += if total > 0.0 { o / total } else { 0.0 } / quad.len() as f64;
            }
        }
        let (nodes, weights) = quad.into_iter().unzip();
        SpectralDensity {
            grid,
            density,
            nodes,
            weights,
            variance,
            dim,
            hvps,
            options: self.clone(),
        }
    }
}

impl SpectralDensity {
    /// The quadrature estimate of `tr(H)/dim` (the mean eigenvalue):
    /// `Σ w_i θ_i`, averaged over probes.
    pub fn mean_eigenvalue(&self) -> f64 {
        let per: Vec<f64> = self
            .nodes
            .iter()
            .zip(&self.weights)
            .map(|(n, w)| dot(n, w))
            .collect();
        per.iter().sum::<f64>() / per.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag_op(d: Vec<f64>) -> impl FnMut(&[f64]) -> Result<Vec<f64>> {
        move |v: &[f64]| Ok(v.iter().zip(&d).map(|(x, l)| x * l).collect())
    }

    #[test]
    fn slq_weights_sum_to_one_and_nodes_are_exact_for_small_problems() {
        let d = vec![1.0, 2.0, 4.0, 8.0];
        let slq = Slq::builder().probes(3).bins(500).build().unwrap();
        let sd = slq.run(4, diag_op(d.clone())).unwrap();
        assert_eq!((sd.nodes.len(), sd.hvps), (3, 12));
        for (nodes, weights) in sd.nodes.iter().zip(&sd.weights) {
            approx::assert_relative_eq!(weights.iter().sum::<f64>(), 1.0, max_relative = 1e-12);
            for (n, e) in nodes.iter().zip(&d) {
                approx::assert_relative_eq!(*n, *e, max_relative = 1e-10);
            }
            // Rademacher probes: every eigenvector gets weight 1/4.
            for w in weights {
                approx::assert_relative_eq!(*w, 0.25, max_relative = 1e-10);
            }
        }
        let step = sd.grid[1] - sd.grid[0];
        approx::assert_relative_eq!(
            sd.density.iter().sum::<f64>() * step,
            1.0,
            max_relative = 1e-9
        );
        approx::assert_relative_eq!(sd.mean_eigenvalue(), 15.0 / 4.0, max_relative = 1e-10);
        assert_eq!(sd.grid.len(), 500);
        approx::assert_relative_eq!(sd.grid[0], 0.99, max_relative = 1e-12);
        approx::assert_relative_eq!(sd.grid[499], 8.01, max_relative = 1e-12);
    }

    #[test]
    fn one_node_gives_one_gaussian_of_the_stated_variance() {
        // The identity: every probe's Krylov space is one vector, node 1.
        let sd = Slq::builder()
            .probes(2)
            .bins(201)
            .sigma_squared(1e-3)
            .build()
            .unwrap()
            .run(6, diag_op(vec![1.0; 6]))
            .unwrap();
        for nodes in &sd.nodes {
            assert_eq!(nodes.len(), 1);
            approx::assert_relative_eq!(nodes[0], 1.0, max_relative = 1e-12);
        }
        assert_eq!(sd.hvps, 2);
        // Grid [0.99, 1.01]: width < 1, so the variance is sigma_squared.
        approx::assert_relative_eq!(sd.variance, 1e-3, max_relative = 1e-12);
        let peak = sd.density[100];
        assert!(sd.density.iter().all(|d| *d <= peak));
    }

    #[test]
    fn settings_are_validated_and_name_the_option() {
        let err = |b: SlqBuilder| b.build().unwrap_err().to_string();
        assert!(err(Slq::builder().probes(0)).contains("probes"));
        assert!(err(Slq::builder().steps(0)).contains("steps"));
        assert!(err(Slq::builder().bins(1)).contains("bins"));
        assert!(err(Slq::builder().sigma_squared(0.0)).contains("sigma_squared"));
        assert!(Slq::default().run(0, |v| Ok(v.to_vec())).is_err());
        let json = serde_json::to_string(&Slq::default()).unwrap();
        assert_eq!(
            json,
            r#"{"probes":1,"steps":100,"seed":0,"bins":10000,"sigma_squared":0.00001}"#
        );
        assert_eq!(serde_json::from_str::<Slq>(&json).unwrap(), Slq::default());
    }
}
