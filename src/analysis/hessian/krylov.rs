//! The Lanczos recurrence with full reorthogonalization, shared by the
//! extreme-eigenvalue search ([`Lanczos`](super::Lanczos)) and stochastic
//! Lanczos quadrature ([`Slq`](super::Slq)), and the eigen-decomposition of
//! the tridiagonal matrix it builds (Ritz values).

use nalgebra::{DMatrix, SymmetricEigen};
use rand_chacha::ChaCha8Rng;

use super::vector::{axpy, dot, norm, orthogonalize, random_normal, unit};
use crate::error::{Error, Result};

/// β below this fraction of ‖T‖ is a breakdown: the Krylov space is invariant.
const BREAKDOWN: f64 = 1e-10;

/// Eigen-decomposition of a tridiagonal matrix: Ritz values (ascending) with
/// the first and last components of their eigenvectors.
pub(super) struct Ritz {
    /// Ritz values, ascending.
    pub(super) values: Vec<f64>,
    /// First component of each Ritz vector (SLQ's quadrature weights are
    /// their squares).
    pub(super) first: Vec<f64>,
    /// Last component of each Ritz vector (residual bounds are `|β_m·s_m|`).
    pub(super) last: Vec<f64>,
}

impl Ritz {
    /// Decomposes the tridiagonal matrix with diagonal `alpha` and
    /// off-diagonal `beta` (`beta.len() + 1 == alpha.len()`).
    pub(super) fn new(alpha: &[f64], beta: &[f64]) -> Ritz {
        let m = alpha.len();
        let mut t = DMatrix::<f64>::zeros(m, m);
        for i in 0..m {
            t[(i, i)] = alpha[i];
            if i + 1 < m {
                t[(i, i + 1)] = beta[i];
                t[(i + 1, i)] = beta[i];
            }
        }
        let e = SymmetricEigen::new(t);
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| e.eigenvalues[a].total_cmp(&e.eigenvalues[b]));
        Ritz {
            values: order.iter().map(|&i| e.eigenvalues[i]).collect(),
            first: order.iter().map(|&i| e.eigenvectors[(0, i)]).collect(),
            last: order.iter().map(|&i| e.eigenvectors[(m - 1, i)]).collect(),
        }
    }
}

/// The state after one Lanczos step, handed to the stopping rule.
pub(super) struct Step<'s> {
    /// Diagonal of the tridiagonal matrix so far.
    pub(super) alpha: &'s [f64],
    /// Its off-diagonal.
    pub(super) beta: &'s [f64],
    /// β_m coupling the matrix to the next vector (0 at a breakdown).
    pub(super) coupling: f64,
    /// True when the whole space has been explored.
    pub(super) exhausted: bool,
}

/// The outcome of a Lanczos recurrence.
pub(super) struct KrylovRun {
    /// Diagonal of the final tridiagonal matrix.
    pub(super) alpha: Vec<f64>,
    /// Its off-diagonal.
    pub(super) beta: Vec<f64>,
    /// Operator applications.
    pub(super) steps: usize,
    /// True when the stopping rule said stop.
    pub(super) converged: bool,
    /// True when the Krylov space became invariant and could not be extended.
    pub(super) exhausted: bool,
}

/// One Lanczos recurrence on a symmetric operator of dimension `dim`, for
/// at most `max_steps` steps (capped at `dim`). At a breakdown a fresh
/// random vector orthogonal to the basis continues the run when `restart`
/// is given; otherwise the run stops.
pub(super) struct Krylov<'r> {
    pub(super) dim: usize,
    pub(super) max_steps: usize,
    pub(super) restart: Option<&'r mut ChaCha8Rng>,
}

impl Krylov<'_> {
    /// Runs the recurrence from the unit vector `start`. After each step
    /// `stop` sees the [`Step`]; returning true ends the run as converged.
    pub(super) fn run<F>(
        mut self,
        op: &mut F,
        start: Vec<f64>,
        mut stop: impl FnMut(&Step<'_>) -> bool,
    ) -> Result<KrylovRun>
    where
        F: FnMut(&[f64]) -> Result<Vec<f64>>,
    {
        let max_steps = self.max_steps.min(self.dim);
        let mut basis: Vec<Vec<f64>> = vec![start];
        let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        let mut scale = 0.0f64;
        loop {
            let j = basis.len() - 1;
            let mut w = apply(op, &basis[j], self.dim)?;
            let a = dot(&w, &basis[j]);
            axpy(-a, &basis[j], &mut w);
            if j > 0 {
                axpy(-beta[j - 1], &basis[j - 1], &mut w);
            }
            orthogonalize(&basis, &mut w);
            let b = norm(&w);
            alpha.push(a);
            scale = scale.max(a.abs() + b + beta.last().copied().unwrap_or(0.0));
            let breakdown = b <= BREAKDOWN * scale;
            let next = self.next_vector(&basis, w, b, breakdown);
            let exhausted = next.is_none();
            let coupling = if breakdown || exhausted { 0.0 } else { b };
            if breakdown && !exhausted {
                tracing::debug!(
                    step = alpha.len(),
                    "Lanczos breakdown: invariant Krylov space, restarting"
                );
            }
            let step = Step {
                alpha: &alpha,
                beta: &beta,
                coupling,
                exhausted,
            };
            let converged = stop(&step);
            let steps = alpha.len();
            match next {
                Some(v) if !converged && steps < max_steps => {
                    beta.push(coupling);
                    basis.push(v);
                }
                _ => {
                    return Ok(KrylovRun {
                        alpha,
                        beta,
                        steps,
                        converged,
                        exhausted,
                    })
                }
            }
        }
    }

    /// The next basis vector: `w / b`, or after a breakdown a fresh random
    /// vector orthogonal to the basis (when restarts are on); `None` when the
    /// space is exhausted.
    fn next_vector(
        &mut self,
        basis: &[Vec<f64>],
        w: Vec<f64>,
        b: f64,
        breakdown: bool,
    ) -> Option<Vec<f64>> {
        if basis.len() == self.dim {
            return None;
        }
        if !breakdown {
            return Some(w.iter().map(|x| x / b).collect());
        }
        let rng = self.restart.as_deref_mut()?;
        let mut r = unit(random_normal(rng, self.dim));
        orthogonalize(basis, &mut r);
        let n = norm(&r);
        (n > 1e-8).then(|| r.iter().map(|x| x / n).collect())
    }
}

/// `op(v)`, checked to have `dim` finite values.
fn apply<F>(op: &mut F, v: &[f64], dim: usize) -> Result<Vec<f64>>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    let w = op(v)?;
    if w.len() != dim {
        return Err(Error::invalid(
            "operator",
            format!("returned {} values for a vector of {dim}", w.len()),
        ));
    }
    if w.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid("operator", "returned non-finite values"));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ritz_values_of_a_tridiagonal_matrix_are_its_eigenvalues() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3, eigenvectors (1, ∓1)/√2.
        let r = Ritz::new(&[2.0, 2.0], &[1.0]);
        approx::assert_relative_eq!(r.values[0], 1.0, max_relative = 1e-12);
        approx::assert_relative_eq!(r.values[1], 3.0, max_relative = 1e-12);
        for (f, l) in r.first.iter().zip(&r.last) {
            approx::assert_relative_eq!(f * f, 0.5, max_relative = 1e-12);
            approx::assert_relative_eq!(l * l, 0.5, max_relative = 1e-12);
        }
    }

    #[test]
    fn the_recurrence_stops_when_asked_and_at_the_dimension() {
        let mut op = |v: &[f64]| Ok(v.iter().enumerate().map(|(i, x)| x * i as f64).collect());
        let start = unit(vec![1.0; 6]);
        let k = Krylov {
            dim: 6,
            max_steps: 100,
            restart: None,
        };
        let run = k
            .run(&mut op, start.clone(), |s| s.alpha.len() == 2)
            .unwrap();
        assert!(run.converged && !run.exhausted);
        assert_eq!((run.steps, run.alpha.len(), run.beta.len()), (2, 2, 1));
        let k = Krylov {
            dim: 6,
            max_steps: 100,
            restart: None,
        };
        let run = k.run(&mut op, start, |_| false).unwrap();
        assert!(run.exhausted && !run.converged);
        assert_eq!(run.steps, 6);
        // Six distinct eigenvalues 0..5, all reached from an all-ones start.
        let r = Ritz::new(&run.alpha, &run.beta);
        for (i, v) in r.values.iter().enumerate() {
            approx::assert_abs_diff_eq!(*v, i as f64, epsilon = 1e-10);
        }
    }

    #[test]
    fn a_wrong_length_or_non_finite_operator_is_an_error() {
        let k = || Krylov {
            dim: 3,
            max_steps: 3,
            restart: None,
        };
        let start = unit(vec![1.0; 3]);
        let mut short = |_: &[f64]| Ok(vec![1.0; 2]);
        assert!(k().run(&mut short, start.clone(), |_| false).is_err());
        let mut nan = |_: &[f64]| Ok(vec![f64::NAN; 3]);
        assert!(k().run(&mut nan, start, |_| false).is_err());
    }
}
