//! Extreme eigenvalues of a symmetric operator by Lanczos with full
//! reorthogonalization: λmax and λmin (and the top/bottom k) together, with a
//! relative residual tolerance, an iteration cap and a seeded start vector.
//! It fails with [`Error::NotConverged`] instead of returning an unconverged
//! value.

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::krylov::{Krylov, KrylovRun, Ritz, Step};
use super::vector::{random_normal, unit};
use crate::error::{Error, Result};

/// Ritz values smaller than this fraction of the largest |θ| are judged
/// against `tol·FLOOR·max|θ|` instead of `tol·|θ|`, so eigenvalues at zero
/// (rank-deficient Hessians) can converge.
const FLOOR: f64 = 1e-6;

/// Validated settings of the Lanczos eigenvalue search; built with
/// [`Lanczos::builder`], run on any symmetric operator with [`Lanczos::run`]
/// or on a Hessian with [`Hessian::eigenvalues`](super::Hessian::eigenvalues).
///
/// ```
/// # use tch_landscape::analysis::hessian::Lanczos;
/// # fn main() -> tch_landscape::Result<()> {
/// let lanczos = Lanczos::builder().tol(1e-2).max_iter(100).top_k(2).build()?;
/// let diag = [3.0, -1.0, 0.5, 2.0];
/// let s = lanczos.run(4, |v| Ok(v.iter().zip(&diag).map(|(x, d)| x * d).collect()))?;
/// assert!((s.lambda_max - 3.0).abs() < 1e-9 && (s.lambda_min + 1.0).abs() < 1e-9);
/// # Ok(()) }
/// ```
///
/// Its JSON form (in curvature maps' metadata) is
/// `{"tol":…,"max_iter":…,"seed":…,"top_k":…,"bottom_k":…}`, validated when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LanczosBuilder")]
pub struct Lanczos {
    tol: f64,
    max_iter: usize,
    seed: u64,
    top_k: usize,
    bottom_k: usize,
}

/// Builder of [`Lanczos`]; every setting has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[must_use]
pub struct LanczosBuilder {
    tol: f64,
    max_iter: usize,
    seed: u64,
    top_k: usize,
    bottom_k: usize,
}

impl Default for LanczosBuilder {
    fn default() -> Self {
        LanczosBuilder {
            tol: 1e-3,
            max_iter: 300,
            seed: 0,
            top_k: 1,
            bottom_k: 1,
        }
    }
}

impl LanczosBuilder {
    /// Relative tolerance in (0, 1): a Ritz value θ is accepted when its
    /// residual bound `|β_m·s_m|` is at most `tol·|θ|` (default 1e-3; the
    /// reference uses 1e-2).
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Iteration cap = most operator applications (default 300).
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Seed of the start vector (ChaCha8, standard normal entries; default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of largest eigenvalues wanted (default 1).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Number of smallest eigenvalues wanted (default 1).
    pub fn bottom_k(mut self, k: usize) -> Self {
        self.bottom_k = k;
        self
    }

    /// Checks the settings: `tol` in (0, 1), `max_iter`, `top_k` and
    /// `bottom_k` at least 1 (the k are checked against the operator's
    /// dimension when it runs).
    pub fn build(self) -> Result<Lanczos> {
        if !(self.tol > 0.0 && self.tol < 1.0) {
            return Err(Error::invalid(
                "Lanczos tol",
                format!("must be in (0, 1), got {}", self.tol),
            ));
        }
        if self.max_iter == 0 {
            return Err(Error::invalid("Lanczos max_iter", "must be at least 1"));
        }
        for (name, k) in [("top_k", self.top_k), ("bottom_k", self.bottom_k)] {
            if k == 0 {
                return Err(Error::invalid(
                    format!("Lanczos {name}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(Lanczos {
            tol: self.tol,
            max_iter: self.max_iter,
            seed: self.seed,
            top_k: self.top_k,
            bottom_k: self.bottom_k,
        })
    }
}

impl TryFrom<LanczosBuilder> for Lanczos {
    type Error = Error;

    fn try_from(b: LanczosBuilder) -> Result<Lanczos> {
        b.build()
    }
}

impl Default for Lanczos {
    /// tol 1e-3, max_iter 300, seed 0, top_k 1, bottom_k 1.
    fn default() -> Self {
        let b = LanczosBuilder::default();
        Lanczos {
            tol: b.tol,
            max_iter: b.max_iter,
            seed: b.seed,
            top_k: b.top_k,
            bottom_k: b.bottom_k,
        }
    }
}

impl fmt::Display for Lanczos {
    /// `Lanczos tol … max_iter … seed … top_k … bottom_k …` (part of the
    /// description a resumed curvature map must match).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Lanczos tol {} max_iter {} seed {} top_k {} bottom_k {}",
            self.tol, self.max_iter, self.seed, self.top_k, self.bottom_k
        )
    }
}

/// Extreme eigenvalues found by [`Lanczos::run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    /// Largest eigenvalue (= `top[0]`).
    pub lambda_max: f64,
    /// Smallest eigenvalue (= `bottom[0]`).
    pub lambda_min: f64,
    /// The `top_k` largest eigenvalues, descending.
    pub top: Vec<f64>,
    /// The `bottom_k` smallest eigenvalues, ascending.
    pub bottom: Vec<f64>,
    /// Residual bounds `|β_m·s_m|` of `top`.
    pub top_residuals: Vec<f64>,
    /// Residual bounds of `bottom`.
    pub bottom_residuals: Vec<f64>,
    /// Operator applications (Hessian-vector products) used.
    pub hvps: usize,
    /// Dimension of the operator.
    pub dim: usize,
    /// True when the Krylov space became invariant (all of it was explored,
    /// e.g. a problem smaller than the iteration count): the values are then
    /// exact up to rounding.
    pub exhausted: bool,
    /// The settings used (seed, tolerance, cap, k).
    pub options: Lanczos,
}

impl Spectrum {
    /// `|λmin / λmax|`, the paper's measure of non-convexity (Figure 7).
    pub fn abs_ratio(&self) -> f64 {
        (self.lambda_min / self.lambda_max).abs()
    }
}

impl Lanczos {
    /// The default settings' builder.
    pub fn builder() -> LanczosBuilder {
        LanczosBuilder::default()
    }

    /// Relative residual tolerance.
    pub fn tol(&self) -> f64 {
        self.tol
    }

    /// Iteration cap.
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }

    /// Seed of the start vector.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of largest eigenvalues wanted.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// Number of smallest eigenvalues wanted.
    pub fn bottom_k(&self) -> usize {
        self.bottom_k
    }

    /// Checks the settings against an operator of dimension `dim`.
    pub(crate) fn check_dim(&self, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(Error::invalid(
                "Lanczos dimension",
                "the operator has dimension 0",
            ));
        }
        for (name, k) in [("top_k", self.top_k), ("bottom_k", self.bottom_k)] {
            if k > dim {
                return Err(Error::invalid(
                    format!("Lanczos {name}"),
                    format!("must be between 1 and the dimension {dim}, got {k}"),
                ));
            }
        }
        Ok(())
    }

    /// The extreme eigenvalues of a symmetric operator `op` (`v ↦ Av`,
    /// length `dim`) by Lanczos with full reorthogonalization.
    ///
    /// - Start vector: standard normal entries from ChaCha8 seeded with
    ///   `seed`, normalized; the same seed gives the same result.
    /// - Each iteration applies `op` once, orthogonalizes against every
    ///   previous Lanczos vector (twice: "twice is enough"), and solves the
    ///   tridiagonal eigenproblem (nalgebra `SymmetricEigen`).
    /// - Converged when the `top_k` largest and `bottom_k` smallest Ritz
    ///   values θ all have residual bounds `|β_m·s_m| ≤ tol·max(|θ|, 1e-6·max|θ|)`.
    /// - When β vanishes (the Krylov space is invariant: after `dim` steps,
    ///   or early for repeated eigenvalues) the Ritz values are exact. After
    ///   `dim` steps the run stops. Earlier, with `top_k = bottom_k = 1` it
    ///   stops too (a random start reaches every distinct eigenvalue);
    ///   otherwise it goes on from a fresh random vector orthogonal to all
    ///   previous ones, which finds the multiplicities a single Krylov space
    ///   cannot show.
    /// - Not converged within `max_iter` iterations: an
    ///   [`Error::NotConverged`] naming the current estimates, never a value.
    pub fn run<F>(&self, dim: usize, mut op: F) -> Result<Spectrum>
    where
        F: FnMut(&[f64]) -> Result<Vec<f64>>,
    {
        self.check_dim(dim)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let start = unit(random_normal(&mut rng, dim));
        let mut last: Option<(Ritz, f64)> = None;
        let krylov = Krylov {
            dim,
            max_steps: self.max_iter,
            restart: Some(&mut rng),
        };
        let run = krylov.run(&mut op, start, |step| {
            let ritz = Ritz::new(step.alpha, step.beta);
            let converged = self.converged(&ritz, step);
            let m = ritz.values.len();
            tracing::trace!(
                iteration = m,
                theta_max = ritz.values[m - 1],
                theta_min = ritz.values[0],
                coupling = step.coupling,
                "Lanczos step"
            );
            last = Some((ritz, step.coupling));
            converged
        })?;
        let (ritz, coupling) =
            last.ok_or_else(|| Error::invalid("Lanczos", "made no iteration"))?;
        let s = self.spectrum(&ritz, coupling, &run, dim)?;
        tracing::info!(
            lambda_max = s.lambda_max,
            lambda_min = s.lambda_min,
            hvps = s.hvps,
            "Lanczos converged"
        );
        Ok(s)
    }

    fn wanted(&self) -> usize {
        self.top_k.max(self.bottom_k)
    }

    /// The stopping rule after a step.
    fn converged(&self, ritz: &Ritz, step: &Step<'_>) -> bool {
        let m = ritz.values.len();
        // A breakdown (coupling exactly 0 before the space is exhausted) means
        // an invariant subspace: with a random start it holds every distinct
        // eigenvalue, so λmax and λmin are exact, but top/bottom k > 1 may
        // miss multiplicities, which only the restarted block can show.
        let breakdown = step.coupling == 0.0 && !step.exhausted;
        if step.exhausted {
            return true;
        }
        if m < self.wanted() || (breakdown && self.wanted() > 1) {
            return false;
        }
        let scale = ritz.values.iter().fold(0.0f64, |a, t| a.max(t.abs()));
        let ok = |i: usize| {
            let theta = ritz.values[i];
            (step.coupling * ritz.last[i]).abs() <= self.tol * theta.abs().max(FLOOR * scale)
        };
        (0..self.bottom_k).all(ok) && (m - self.top_k..m).all(ok)
    }

    /// The spectrum from the last Ritz values, or the reason there is none.
    fn spectrum(
        &self,
        ritz: &Ritz,
        coupling: f64,
        run: &KrylovRun,
        dim: usize,
    ) -> Result<Spectrum> {
        let m = ritz.values.len();
        let residual = |i: usize| (coupling * ritz.last[i]).abs();
        if !run.converged {
            let asked = (0..self.bottom_k.min(m)).chain(m.saturating_sub(self.top_k)..m);
            return Err(Error::NotConverged {
                method: "Lanczos",
                iterations: run.steps,
                residual: asked.map(residual).fold(0.0, f64::max),
                tol: self.tol,
                detail: format!(
                    "λmax ≈ {:.6e} with residual {:.2e}, λmin ≈ {:.6e} with residual {:.2e}",
                    ritz.values[m - 1],
                    residual(m - 1),
                    ritz.values[0],
                    residual(0)
                ),
            });
        }
        if m < self.wanted() {
            return Err(Error::invalid(
                "Lanczos top_k/bottom_k",
                format!(
                    "the Krylov space was exhausted after {m} values, fewer than the {} asked for",
                    self.wanted()
                ),
            ));
        }
        let top_idx: Vec<usize> = (m - self.top_k..m).rev().collect();
        let bottom_idx: Vec<usize> = (0..self.bottom_k).collect();
        Ok(Spectrum {
            lambda_max: ritz.values[m - 1],
            lambda_min: ritz.values[0],
            top: top_idx.iter().map(|&i| ritz.values[i]).collect(),
            bottom: bottom_idx.iter().map(|&i| ritz.values[i]).collect(),
            top_residuals: top_idx.iter().map(|&i| residual(i)).collect(),
            bottom_residuals: bottom_idx.iter().map(|&i| residual(i)).collect(),
            hvps: run.steps,
            dim,
            exhausted: run.exhausted,
            options: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use nalgebra::DMatrix;

    use super::*;

    fn diag_op(d: Vec<f64>) -> impl FnMut(&[f64]) -> Result<Vec<f64>> {
        move |v: &[f64]| Ok(v.iter().zip(&d).map(|(x, l)| x * l).collect())
    }

    /// `v ↦ Av` for an explicit matrix.
    fn matrix_op(a: DMatrix<f64>) -> impl FnMut(&[f64]) -> Result<Vec<f64>> {
        move |v: &[f64]| {
            Ok((&a * nalgebra::DVector::from_column_slice(v))
                .as_slice()
                .to_vec())
        }
    }

    /// `Q diag(eig) Qᵀ` with `Q` orthogonal (a product of Givens rotations).
    fn rotated(eig: &[f64]) -> DMatrix<f64> {
        let n = eig.len();
        let mut q = DMatrix::<f64>::identity(n, n);
        for i in 0..n - 1 {
            let (c, s) = ((0.3 + i as f64).cos(), (0.3 + i as f64).sin());
            let mut g = DMatrix::<f64>::identity(n, n);
            g[(i, i)] = c;
            g[(i + 1, i + 1)] = c;
            g[(i, i + 1)] = -s;
            g[(i + 1, i)] = s;
            q = g * q;
        }
        &q * DMatrix::from_diagonal(&nalgebra::DVector::from_row_slice(eig)) * q.transpose()
    }

    fn lanczos(tol: f64, top_k: usize, bottom_k: usize) -> Lanczos {
        Lanczos::builder()
            .tol(tol)
            .top_k(top_k)
            .bottom_k(bottom_k)
            .build()
            .unwrap()
    }

    #[test]
    fn lanczos_on_a_diagonal_matrix() {
        let d: Vec<f64> = (0..200)
            .map(|i| -1.0 + 0.01 * i as f64)
            .chain([5.0, 7.0])
            .collect();
        let s = lanczos(1e-10, 2, 1)
            .run(d.len(), diag_op(d.clone()))
            .unwrap();
        approx::assert_relative_eq!(s.lambda_max, 7.0, max_relative = 1e-9);
        approx::assert_relative_eq!(s.top[1], 5.0, max_relative = 1e-9);
        approx::assert_relative_eq!(s.lambda_min, -1.0, max_relative = 1e-9);
        assert!(s.hvps < d.len(), "{} HVPs", s.hvps);
        assert_eq!(s.top_residuals.len(), 2);
    }

    #[test]
    fn a_dense_symmetric_matrix_with_a_known_spectrum() {
        let eig = [-2.5, -0.75, 0.1, 0.4, 1.0, 2.0, 3.5, 6.0];
        let s = lanczos(1e-10, 2, 2)
            .run(eig.len(), matrix_op(rotated(&eig)))
            .unwrap();
        for (got, want) in s.top.iter().zip([6.0, 3.5]) {
            approx::assert_relative_eq!(*got, want, max_relative = 1e-8);
        }
        for (got, want) in s.bottom.iter().zip([-2.5, -0.75]) {
            approx::assert_relative_eq!(*got, want, max_relative = 1e-8);
        }
        approx::assert_relative_eq!(s.abs_ratio(), 2.5 / 6.0, max_relative = 1e-8);
    }

    #[test]
    fn a_rank_deficient_matrix_converges_to_a_zero_eigenvalue() {
        // Rank 3 of 10: seven zero eigenvalues, judged against the floor.
        let mut eig = vec![0.0; 10];
        eig[2] = 1.5;
        eig[5] = 4.0;
        eig[8] = 0.5;
        let s = lanczos(1e-6, 1, 1)
            .run(10, matrix_op(rotated(&eig)))
            .unwrap();
        approx::assert_relative_eq!(s.lambda_max, 4.0, max_relative = 1e-8);
        approx::assert_abs_diff_eq!(s.lambda_min, 0.0, epsilon = 1e-8);
    }

    #[test]
    fn small_problems_exhaust_the_krylov_space_exactly() {
        let s = lanczos(1e-12, 3, 1)
            .run(3, diag_op(vec![3.0, -2.0, 0.5]))
            .unwrap();
        assert!(s.exhausted);
        assert_eq!(s.hvps, 3);
        for (a, b) in s.top.iter().zip([3.0, 0.5, -2.0]) {
            approx::assert_relative_eq!(*a, b, max_relative = 1e-12);
        }
    }

    #[test]
    fn repeated_eigenvalues_restart_and_find_the_multiplicity() {
        // Eigenvalues {2, 2, 2, 1, 1}: the first Krylov space has dimension 2.
        let s = lanczos(1e-12, 3, 2)
            .run(5, diag_op(vec![2.0, 2.0, 2.0, 1.0, 1.0]))
            .unwrap();
        for t in &s.top {
            approx::assert_relative_eq!(*t, 2.0, max_relative = 1e-10);
        }
        for b in &s.bottom {
            approx::assert_relative_eq!(*b, 1.0, max_relative = 1e-10);
        }
    }

    #[test]
    fn a_breakdown_does_not_hide_a_repeated_top_eigenvalue() {
        // The first Krylov space holds 3 and 1 once each; top-2 is [3, 3].
        let d = vec![3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 1.0, 1.0];
        let s = lanczos(1e-12, 2, 1).run(8, diag_op(d)).unwrap();
        approx::assert_relative_eq!(s.top[0], 3.0, max_relative = 1e-10);
        approx::assert_relative_eq!(s.top[1], 3.0, max_relative = 1e-10);
        approx::assert_relative_eq!(s.lambda_min, 1.0, max_relative = 1e-10);
    }

    #[test]
    fn zero_operator_converges_to_zero() {
        let s = Lanczos::default().run(10, diag_op(vec![0.0; 10])).unwrap();
        assert_eq!((s.lambda_max, s.lambda_min), (0.0, 0.0));
    }

    #[test]
    fn the_iteration_cap_is_a_not_converged_error() {
        let d: Vec<f64> = (0..50).map(|i| 1.0 + i as f64 * 0.37).collect();
        let l = Lanczos::builder().tol(1e-9).max_iter(3).build().unwrap();
        match l.run(50, diag_op(d)) {
            Err(e @ Error::NotConverged { iterations: 3, .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("did not converge to tol"), "{msg}");
                assert!(msg.contains("raise max_iter or tol"), "{msg}");
            }
            other => panic!("expected NotConverged, got {other:?}"),
        }
    }

    #[test]
    fn settings_are_validated_and_name_the_option() {
        let err = |b: LanczosBuilder| b.build().unwrap_err().to_string();
        assert!(err(Lanczos::builder().tol(0.0)).contains("tol"));
        assert!(err(Lanczos::builder().tol(f64::NAN)).contains("tol"));
        assert!(err(Lanczos::builder().max_iter(0)).contains("max_iter"));
        assert!(err(Lanczos::builder().top_k(0)).contains("top_k"));
        assert!(err(Lanczos::builder().bottom_k(0)).contains("bottom_k"));
        let l = Lanczos::builder().top_k(5).build().unwrap();
        let e = l.run(4, diag_op(vec![1.0; 4])).unwrap_err().to_string();
        assert!(e.contains("top_k") && e.contains("dimension 4"), "{e}");
        assert!(Lanczos::default().run(0, |v| Ok(v.to_vec())).is_err());
    }

    #[test]
    fn json_form_is_unchanged_and_validated_when_read() {
        let l = Lanczos::builder().tol(1e-2).seed(7).build().unwrap();
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(
            json,
            r#"{"tol":0.01,"max_iter":300,"seed":7,"top_k":1,"bottom_k":1}"#
        );
        assert_eq!(serde_json::from_str::<Lanczos>(&json).unwrap(), l);
        let bad = r#"{"tol":0.0,"max_iter":300,"seed":7,"top_k":1,"bottom_k":1}"#;
        assert!(serde_json::from_str::<Lanczos>(bad).is_err());
        assert_eq!(
            l.to_string(),
            "Lanczos tol 0.01 max_iter 300 seed 7 top_k 1 bottom_k 1"
        );
    }
}
