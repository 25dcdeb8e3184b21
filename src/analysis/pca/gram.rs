//! The Gram matrix of the trajectory, accumulated chunk by chunk with
//! libtorch's matrix product (the BLAS it ships), centred afterwards, and its
//! eigen-decomposition G = V Λ Vᵀ.

use nalgebra::{DMatrix, SymmetricEigen};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// How each chunk's Gram product XᵀX is computed; the sums over chunks are
/// float64 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GramPrecision {
    /// Products in float32 (the snapshots' own precision) at the BLAS's full
    /// speed; relative error of the Gram entries about 1e-6, so components
    /// explaining less than ~1e-5 of the variance lose digits.
    #[default]
    Float32,
    /// Products in float64: exact to ~1e-12, about twice the time.
    Float64,
}

impl GramPrecision {
    /// The relative error of the Gram entries, for the rank: float32
    /// products carry the snapshots' own rounding (noise eigenvalues near
    /// 1e-9 of the total were measured on W3), float64 ones ~16 ulp.
    pub(crate) fn eps(self) -> f64 {
        match self {
            GramPrecision::Float32 => f64::from(f32::EPSILON),
            GramPrecision::Float64 => f64::EPSILON * 16.0,
        }
    }

    /// `f32` or `f64`, as stored in `pca.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            GramPrecision::Float32 => "f32",
            GramPrecision::Float64 => "f64",
        }
    }
}

impl std::str::FromStr for GramPrecision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(GramPrecision::Float32),
            "f64" | "float64" => Ok(GramPrecision::Float64),
            _ => Err(Error::invalid(
                "--precision",
                format!("expected f32 or f64, got '{s}'"),
            )),
        }
    }
}

/// G += XᵀX for the len×m matrix X stored row-major in `xt` (`xt[t·m + i]`
/// = Xₜᵢ: element-major, see [`Deltas`](super::stream::Deltas)), by one
/// libtorch matrix product in `T` on the current intra-op threads.
pub(crate) fn add_chunk<T: GramValue>(g: &mut DMatrix<f64>, xt: &[T], len: usize) -> Result<()> {
    let m = g.nrows();
    if len == 0 || m == 0 {
        return Ok(());
    }
    if xt.len() != len * m {
        return Err(Error::invalid(
            "pca",
            format!("a chunk holds {} values, expected {len} × {m}", xt.len()),
        ));
    }
    let torch = |e| Error::torch("the Gram product of a trajectory chunk", e);
    let prod = chunk_product(xt, (len, m), |x| {
        x.f_tr()
            .and_then(|xt| xt.f_mm(x))
            .and_then(|p| p.f_to_kind(Kind::Double))
    })
    .map_err(torch)?;
    let values = Vec::<f64>::try_from(&prod.reshape([-1])).map_err(torch)?;
    // Row-major m×m into nalgebra's column-major storage: G is symmetric,
    // so each entry lands on its mirror, which `centre` averages away.
    for (a, b) in g.as_mut_slice().iter_mut().zip(&values) {
        *a += b;
    }
    Ok(())
}

/// G += X[:, first..first+k]ᵀ X for the len×m matrix X stored as in
/// [`add_chunk`] (`g` is k×m): the products of k of the rows (columns of X)
/// with all m, by one libtorch matrix product in `T`. The live Gram's new
/// rows ([`LiveGram`](super::LiveGram)): k·m products per value rather than
/// m².
pub(crate) fn add_rows_chunk<T: GramValue>(
    g: &mut DMatrix<f64>,
    xt: &[T],
    len: usize,
    first: usize,
) -> Result<()> {
    let (k, m) = (g.nrows(), g.ncols());
    if len == 0 || k == 0 || m == 0 {
        return Ok(());
    }
    if xt.len() != len * m || first + k > m {
        return Err(Error::invalid(
            "pca",
            format!(
                "a chunk holds {} values, expected {len} × {m} (rows {first}..{} wanted)",
                xt.len(),
                first + k
            ),
        ));
    }
    let torch = |e| Error::torch("the Gram rows of a trajectory chunk", e);
    let prod = chunk_product(xt, (len, m), |x| {
        x.f_narrow(1, first as i64, k as i64)
            .and_then(|xk| xk.f_tr())
            .and_then(|xk| xk.f_mm(x))
            .and_then(|p| p.f_to_kind(Kind::Double))
            .and_then(|p| p.f_contiguous())
    })
    .map_err(torch)?;
    let values = Vec::<f64>::try_from(&prod.reshape([-1])).map_err(torch)?;
    // Row-major k×m into nalgebra's column-major storage.
    for (idx, v) in values.iter().enumerate() {
        g[(idx / m, idx % m)] += v;
    }
    Ok(())
}

/// `product(X)` for the len×m row-major matrix X whose values `xt` holds,
/// seen by libtorch in place (no copy); the product must be a new tensor
/// (not a view of X).
fn chunk_product<T: GramValue>(
    xt: &[T],
    (len, m): (usize, usize),
    product: impl FnOnce(&Tensor) -> std::result::Result<Tensor, tch::TchError>,
) -> std::result::Result<Tensor, tch::TchError> {
    debug_assert_eq!(xt.len(), len * m);
    // SAFETY: `xt` holds len·m initialised values of `T::KIND` and outlives
    // `x`, which `product` only reads and which is dropped before this
    // function returns; the result is a fresh tensor (a matrix product),
    // so nothing keeps a reference to `xt`.
    let x = unsafe {
        Tensor::f_from_blob(
            xt.as_ptr().cast::<u8>(),
            &[len as i64, m as i64],
            &[m as i64, 1],
            T::KIND,
            Device::Cpu,
        )
    }?;
    let out = product(&x);
    drop(x);
    out
}

/// An element type the chunk products are computed in.
pub(crate) trait GramValue: super::stream::DeltaValue {
    /// Its libtorch kind.
    const KIND: Kind;
}

impl GramValue for f32 {
    const KIND: Kind = Kind::Float;
}

impl GramValue for f64 {
    const KIND: Kind = Kind::Double;
}

/// The figures of the uncentred Gram matrix G = Δ Δᵀ of m rows that the
/// PCA needs: the centred Gram Gc = Mc Mcᵀ (Mc = Δ − 1μᵀ, μ the row mean),
/// the squared row norms ‖Δᵢ‖² and w = Mc μ.
pub(crate) struct Centred {
    /// (I − 11ᵀ/m) G (I − 11ᵀ/m), symmetrised.
    pub(crate) gram: DMatrix<f64>,
    /// ‖Δᵢ‖² (the diagonal of G).
    pub(crate) norms2: Vec<f64>,
    /// (Mc μ)ᵢ = (G1)ᵢ/m − 1ᵀG1/m².
    pub(crate) w: Vec<f64>,
}

/// Centres the uncentred Gram matrix `g` (see [`Centred`]).
pub(crate) fn centre(g: &DMatrix<f64>) -> Centred {
    let m = g.nrows();
    let mf = m as f64;
    let sym = (g + g.transpose()) * 0.5;
    let s: Vec<f64> = (0..m).map(|i| sym.row(i).sum()).collect();
    let total: f64 = s.iter().sum();
    let gram = DMatrix::from_fn(m, m, |i, j| {
        sym[(i, j)] - s[i] / mf - s[j] / mf + total / (mf * mf)
    });
    Centred {
        gram,
        norms2: (0..m).map(|i| sym[(i, i)]).collect(),
        w: s.iter().map(|si| si / mf - total / (mf * mf)).collect(),
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
    /// Decomposes the symmetric `g` with nalgebra's `SymmetricEigen`
    /// (entries exact to float64 rounding).
    #[cfg(test)]
    pub(crate) fn of(g: DMatrix<f64>) -> Spectrum {
        Spectrum::of_with(g, f64::EPSILON * 16.0)
    }

    /// Decomposes the symmetric `g`, whose entries carry a relative error of
    /// about `eps`: eigenvalues below λ₁·m·eps are noise, not rank.
    pub(crate) fn of_with(g: DMatrix<f64>, eps: f64) -> Spectrum {
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
        // Eigenvalues of G are exact to about eps·‖G‖; smaller ones are zero.
        let tol = lambda.first().copied().unwrap_or(0.0) * m as f64 * eps;
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

    /// Δ as element-major float32 (`xt[t·m + i]`) from rows.
    fn element_major(rows: &[Vec<f32>]) -> Vec<f32> {
        let len = rows[0].len();
        (0..len)
            .flat_map(|t| rows.iter().map(move |r| r[t]))
            .collect()
    }

    fn rows(m: usize, len: usize) -> Vec<Vec<f32>> {
        (0..m)
            .map(|i| {
                (0..len)
                    .map(|t| (((i * len + t) * 7919 % 1013) as f32 / 1013.0) - 0.5)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn chunk_products_match_the_naive_gram_in_both_precisions() {
        for (m, len) in [(1, 5), (2, 257), (5, 3), (33, 1), (70, 257)] {
            let r = rows(m, len);
            let naive = DMatrix::from_fn(m, m, |i, j| {
                (0..len)
                    .map(|t| r[i][t] as f64 * r[j][t] as f64)
                    .sum::<f64>()
            });
            let xt = element_major(&r);
            let xt64: Vec<f64> = xt.iter().map(|&x| f64::from(x)).collect();
            // Two chunks: the split at `len / 2` adds up.
            let half = len / 2;
            let (mut g32, mut g64) = (DMatrix::zeros(m, m), DMatrix::zeros(m, m));
            add_chunk(&mut g32, &xt[..half * m], half).unwrap();
            add_chunk(&mut g32, &xt[half * m..], len - half).unwrap();
            add_chunk(&mut g64, &xt64[..half * m], half).unwrap();
            add_chunk(&mut g64, &xt64[half * m..], len - half).unwrap();
            let scale = naive.abs().max();
            assert!((&g64 - &naive).abs().max() <= 1e-12 * scale, "m = {m}, f64");
            assert!((&g32 - &naive).abs().max() <= 1e-5 * scale, "m = {m}, f32");
        }
        let mut g = DMatrix::zeros(3, 3);
        assert!(add_chunk(&mut g, &[0f32; 5], 2).is_err());
    }

    #[test]
    fn row_products_are_the_rows_of_the_full_product() {
        for (m, len, first, k) in [(1, 5, 0, 1), (5, 3, 4, 1), (7, 257, 2, 3), (33, 70, 0, 33)] {
            let r = rows(m, len);
            let xt = element_major(&r);
            let xt64: Vec<f64> = xt.iter().map(|&x| f64::from(x)).collect();
            let mut full = DMatrix::zeros(m, m);
            add_chunk(&mut full, &xt64, len).unwrap();
            let (mut g32, mut g64) = (DMatrix::zeros(k, m), DMatrix::zeros(k, m));
            add_rows_chunk(&mut g32, &xt, len, first).unwrap();
            add_rows_chunk(&mut g64, &xt64, len, first).unwrap();
            let want = full.rows(first, k).into_owned();
            let scale = full.abs().max();
            assert!((&g64 - &want).abs().max() <= 1e-12 * scale, "m = {m}, f64");
            assert!((&g32 - &want).abs().max() <= 1e-5 * scale, "m = {m}, f32");
        }
        let mut g = DMatrix::zeros(2, 3);
        assert!(add_rows_chunk(&mut g, &[0f32; 6], 2, 2).is_err());
        assert!(add_rows_chunk(&mut g, &[0f32; 5], 2, 0).is_err());
    }

    #[test]
    fn centring_the_gram_matches_centring_the_rows() {
        let (m, len) = (6, 40);
        let r = rows(m, len);
        let d = DMatrix::from_fn(m, len, |i, t| r[i][t] as f64 + i as f64);
        let mu = d.row_mean();
        let mc = DMatrix::from_fn(m, len, |i, t| d[(i, t)] - mu[t]);
        let c = centre(&(&d * d.transpose()));
        assert_relative_eq!(c.gram, &mc * mc.transpose(), epsilon = 1e-9);
        for i in 0..m {
            assert_relative_eq!(c.norms2[i], d.row(i).norm_squared(), max_relative = 1e-12);
            let w: f64 = mc.row(i).iter().zip(mu.iter()).map(|(a, b)| a * b).sum();
            assert_relative_eq!(c.w[i], w, epsilon = 1e-9);
        }
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
