//! The Gram matrix G = Mc Mcᵀ of the centred trajectory, accumulated
//! block-wise in float64, and its eigen-decomposition G = V Λ Vᵀ.

use nalgebra::{DMatrix, DMatrixView, SymmetricEigen};

/// Rows of the Gram matrix per block: block pairs are the unit of work.
const BLOCK: usize = 32;
/// Below this many multiply-adds a chunk's Gram update stays on one thread.
const PARALLEL_MIN_FMAS: usize = 1 << 21;

/// One block pair (I, J ≤ I) of a [`Gram`] matrix.
type BlockPair = (usize, usize, DMatrix<f64>);

/// The lower block triangle of an m×m Gram matrix, accumulated in float64:
/// block pairs (I, J ≤ I) of at most [`BLOCK`] rows are the unit of work,
/// each always computed by one gemm, so the sums do not depend on the
/// number of threads.
#[derive(Debug, Clone)]
pub(crate) struct Gram {
    m: usize,
    bounds: Vec<usize>,
    pairs: Vec<BlockPair>,
}

impl Gram {
    /// A zero m×m Gram matrix.
    pub(crate) fn new(m: usize) -> Gram {
        let nb = m.div_ceil(BLOCK).max(1);
        let bounds: Vec<usize> = (0..=nb).map(|b| b * m / nb).collect();
        let mut pairs = Vec::with_capacity(nb * (nb + 1) / 2);
        for i in 0..nb {
            for j in 0..=i {
                let shape = (bounds[i + 1] - bounds[i], bounds[j + 1] - bounds[j]);
                pairs.push((i, j, DMatrix::zeros(shape.0, shape.1)));
            }
        }
        Gram { m, bounds, pairs }
    }

    /// G += X Xᵀ for the m×len matrix X stored element-major:
    /// `xt[t·m + i]` = Xᵢₜ (see [`Centred`](super::stream::Centred)).
    pub(crate) fn add(&mut self, xt: &[f64], len: usize, threads: usize) {
        self.add_with(xt, len, threads, PARALLEL_MIN_FMAS);
    }

    /// [`Gram::add`], using threads from `parallel_min` multiply-adds on.
    fn add_with(&mut self, xt: &[f64], len: usize, threads: usize, parallel_min: usize) {
        let m = self.m;
        if len == 0 {
            return;
        }
        let bounds = &self.bounds;
        let work = move |pair: &mut BlockPair| {
            let (i0, i1) = (bounds[pair.0], bounds[pair.0 + 1]);
            let (j0, j1) = (bounds[pair.1], bounds[pair.1 + 1]);
            // X's rows i0..i1 (a) times X's rows j0..j1 transposed (b).
            // `a` must have unit row stride: nalgebra 0.35's fallback for
            // dimensions ≤ 5 reads past the columns of `a` otherwise.
            let a = DMatrixView::from_slice_with_strides(
                &xt[i0..(len - 1) * m + i1],
                i1 - i0,
                len,
                1,
                m,
            );
            let b = DMatrixView::from_slice_with_strides(
                &xt[j0..(len - 1) * m + j1],
                len,
                j1 - j0,
                m,
                1,
            );
            pair.2.gemm(1.0, &a, &b, 1.0);
        };
        let threads = threads.min(self.pairs.len());
        if threads <= 1 || m * m * len < parallel_min {
            self.pairs.iter_mut().for_each(work);
            return;
        }
        let mut lists: Vec<Vec<&mut BlockPair>> = (0..threads).map(|_| Vec::new()).collect();
        for (p, pair) in self.pairs.iter_mut().enumerate() {
            lists[p % threads].push(pair);
        }
        std::thread::scope(|s| {
            let mut lists = lists.into_iter();
            let mine = lists.next().unwrap_or_default();
            for list in lists {
                s.spawn(move || list.into_iter().for_each(work));
            }
            mine.into_iter().for_each(work);
        });
    }

    /// G += other (same size).
    pub(crate) fn add_gram(&mut self, other: &Gram) {
        for (a, b) in self.pairs.iter_mut().zip(&other.pairs) {
            a.2 += &b.2;
        }
    }

    /// The full symmetric matrix.
    pub(crate) fn to_full(&self) -> DMatrix<f64> {
        let mut g = DMatrix::zeros(self.m, self.m);
        for (i, j, block) in &self.pairs {
            let (i0, j0) = (self.bounds[*i], self.bounds[*j]);
            for r in 0..block.nrows() {
                for c in 0..block.ncols() {
                    g[(i0 + r, j0 + c)] = block[(r, c)];
                    g[(j0 + c, i0 + r)] = block[(r, c)];
                }
            }
        }
        g
    }
}

/// The eigen-decomposition of a Gram matrix, eigenvalues in descending
/// order (ties by index).
#[derive(Debug, Clone)]
pub(crate) struct Spectrum {
    /// Eigenvalues λ, descending; the negative ones rounding leaves are 0.
    pub(crate) lambda: Vec<f64>,
    /// Column k: the unit eigenvector of `lambda[k]`.
    pub(crate) vectors: DMatrix<f64>,
    /// Number of eigenvalues above working precision: the rank.
    pub(crate) rank: usize,
}

impl Spectrum {
    /// Decomposes the symmetric `g` with nalgebra's `SymmetricEigen`.
    pub(crate) fn of(g: DMatrix<f64>) -> Spectrum {
        let m = g.nrows();
        let eig = SymmetricEigen::new(g);
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| {
            eig.eigenvalues[b]
                .total_cmp(&eig.eigenvalues[a])
                .then(a.cmp(&b))
        });
        let lambda: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
        let vectors = DMatrix::from_fn(m, m, |r, c| eig.eigenvectors[(r, order[c])]);
        // Eigenvalues of G are exact to about ε·‖G‖; smaller ones are zero.
        let tol = lambda.first().copied().unwrap_or(0.0) * m as f64 * f64::EPSILON * 16.0;
        let rank = lambda.iter().take_while(|&&l| l > tol).count();
        Spectrum {
            lambda,
            vectors,
            rank,
        }
    }

    /// Σλ: the total variance times the degrees of freedom.
    pub(crate) fn total(&self) -> f64 {
        self.lambda.iter().sum()
    }

    /// λₖ / `dof` for the `rank` non-zero components: their explained
    /// variance.
    pub(crate) fn explained_variance(&self, dof: f64) -> Vec<f64> {
        self.lambda[..self.rank].iter().map(|l| l / dof).collect()
    }

    /// λₖ / Σλ for the first `k` components.
    pub(crate) fn ratios(&self, k: usize) -> Vec<f64> {
        let total = self.total();
        self.lambda[..k].iter().map(|l| l / total).collect()
    }

    /// Σⱼ≤ₖ λⱼ / Σλ for the `rank` non-zero components.
    pub(crate) fn cumulative_ratio(&self) -> Vec<f64> {
        let total = self.total();
        self.lambda[..self.rank]
            .iter()
            .scan(0.0, |acc, l| {
                *acc += l;
                Some(*acc / total)
            })
            .collect()
    }
}

/// The trace of a tensor's own Gram matrix `g` and the explained variance
/// ratios of its first two components (0 for a tensor that does not move).
pub(crate) fn own_ratios(g: &DMatrix<f64>) -> (f64, [f64; 2]) {
    let trace = g.trace();
    let mut ev: Vec<f64> = g
        .symmetric_eigenvalues()
        .iter()
        .map(|l| l.max(0.0))
        .collect();
    ev.sort_by(|a, b| b.total_cmp(a));
    let ratio = |i: usize| {
        if trace > 0.0 {
            ev.get(i).map_or(0.0, |l| l / trace)
        } else {
            0.0
        }
    };
    (trace, [ratio(0), ratio(1)])
}

#[cfg(test)]
mod tests {
    use approx::assert_relative_eq;

    use super::*;

    fn gram_naive(xt: &[f64], m: usize, len: usize) -> DMatrix<f64> {
        DMatrix::from_fn(m, m, |i, j| {
            (0..len).map(|t| xt[t * m + i] * xt[t * m + j]).sum()
        })
    }

    #[test]
    fn blocked_gram_matches_naive_and_ignores_threads() {
        for (m, len) in [(2, 257), (5, 3), (33, 1), (70, 257)] {
            let x: Vec<f64> = (0..m * len)
                .map(|i| ((i * 7919 % 1013) as f64 / 1013.0) - 0.5)
                .collect();
            let (mut one, mut many) = (Gram::new(m), Gram::new(m));
            one.add(&x, len, 1);
            // Force the threaded path even for small sizes.
            many.add_with(&x, len, 3, 0);
            let naive = gram_naive(&x, m, len);
            let (a, b) = (one.to_full(), many.to_full());
            assert_eq!(a, b, "m = {m}: thread count changed the sums");
            assert!(
                (a - &naive).abs().max() <= 1e-12 * naive.abs().max(),
                "m = {m}"
            );
        }
    }

    #[test]
    fn gram_of_two_halves_adds_up() {
        let (m, len) = (40, 9);
        let x: Vec<f64> = (0..m * len).map(|i| (i as f64 * 0.37).sin()).collect();
        let (head, tail) = x.split_at(m * 4);
        let (mut a, mut b) = (Gram::new(m), Gram::new(m));
        a.add(head, 4, 1);
        b.add(tail, len - 4, 1);
        a.add_gram(&b);
        let naive = gram_naive(&x, m, len);
        assert_relative_eq!(a.to_full(), naive, max_relative = 1e-12);
    }

    #[test]
    fn spectrum_of_a_rotated_diagonal_is_sorted_with_its_rank() {
        // G = R diag(1, 4, 0) Rᵀ with R a rotation about z by 30°.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let r = DMatrix::from_row_slice(3, 3, &[c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]);
        let d = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 4.0, 0.0]));
        let g = &r * d * r.transpose();
        let sp = Spectrum::of(g.clone());
        assert_relative_eq!(sp.lambda[0], 4.0, max_relative = 1e-12);
        assert_relative_eq!(sp.lambda[1], 1.0, max_relative = 1e-12);
        assert!(sp.lambda[2].abs() < 1e-12);
        assert_eq!(sp.rank, 2);
        // Each column is a unit eigenvector: the second column of R for 4.
        for k in 0..2 {
            let v = sp.vectors.column(k);
            assert_relative_eq!(&g * v, v * sp.lambda[k], epsilon = 1e-12);
        }
        assert_relative_eq!(
            sp.vectors.column(0).dot(&r.column(1)).abs(),
            1.0,
            epsilon = 1e-12
        );
        assert_eq!(sp.total(), sp.lambda.iter().sum::<f64>());
        assert_relative_eq!(
            sp.explained_variance(2.0)[..],
            [2.0, 0.5][..],
            max_relative = 1e-12
        );
        assert_relative_eq!(sp.ratios(2)[..], [0.8, 0.2][..], max_relative = 1e-12);
        assert_relative_eq!(
            sp.cumulative_ratio()[..],
            [0.8, 1.0][..],
            max_relative = 1e-12
        );
    }

    #[test]
    fn own_ratios_are_shares_of_the_trace() {
        let g = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 3.0, 6.0]));
        let (trace, r) = own_ratios(&g);
        assert_eq!(trace, 10.0);
        assert_relative_eq!(r[..], [0.6, 0.3][..], max_relative = 1e-12);
        assert_eq!(own_ratios(&DMatrix::zeros(2, 2)), (0.0, [0.0, 0.0]));
    }
}
