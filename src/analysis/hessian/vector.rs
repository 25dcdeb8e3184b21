//! Dense float64 vector helpers of the Krylov methods, and their seeded
//! random vectors (ChaCha8: the same seed gives the same vectors everywhere).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Inner product with eight independent partial sums, so the compiler can
/// vectorize it (a single running sum fixes the order of additions and
/// cannot); the reorthogonalization spends most of its time here.
pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f64; 8];
    for (x, y) in ca.zip(cb) {
        for ((s, xi), yi) in acc.iter_mut().zip(x).zip(y) {
            *s += xi * yi;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Euclidean norm.
pub(super) fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y += c·x`.
pub(super) fn axpy(c: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += c * xi;
    }
}

/// `v / ‖v‖` (the zero vector stays zero).
pub(super) fn unit(mut v: Vec<f64>) -> Vec<f64> {
    let n = norm(&v);
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Classical Gram–Schmidt of `w` against every (orthonormal) basis vector,
/// applied twice ("twice is enough").
pub(super) fn orthogonalize(basis: &[Vec<f64>], w: &mut [f64]) {
    for _ in 0..2 {
        for q in basis {
            let c = dot(w, q);
            axpy(-c, q, w);
        }
    }
}

/// `dim` standard normal entries.
pub(super) fn random_normal(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f64> {
    (0..dim).map(|_| StandardNormal.sample(rng)).collect()
}

/// `dim` Rademacher entries (±1 with equal probability).
pub(super) fn rademacher(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|_| if rng.next_u32() & 1 == 1 { 1.0 } else { -1.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_for_every_tail_length() {
        for n in [0usize, 1, 7, 8, 9, 17] {
            let a: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
            let b: Vec<f64> = (0..n).map(|i| 2.0 - i as f64).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            approx::assert_relative_eq!(dot(&a, &b), plain, max_relative = 1e-12);
        }
    }

    #[test]
    fn orthogonalize_removes_the_basis_components() {
        let basis = vec![vec![1.0, 0.0, 0.0], unit(vec![0.0, 1.0, 1.0])];
        let mut w = vec![3.0, 2.0, -1.0];
        orthogonalize(&basis, &mut w);
        for q in &basis {
            approx::assert_abs_diff_eq!(dot(&w, q), 0.0, epsilon = 1e-14);
        }
        approx::assert_relative_eq!(norm(&w), 1.5 * 2.0f64.sqrt(), max_relative = 1e-12);
    }

    #[test]
    fn random_vectors_are_seeded() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (random_normal(&mut rng, 5), rademacher(&mut rng, 5))
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert!(draw(3).1.iter().all(|x| x.abs() == 1.0));
    }
}
