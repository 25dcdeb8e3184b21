//! The PCA itself, over any re-streamable source of chunks ([`Chunks`]):
//! one pass accumulates the Gram matrices (`pass`), from which the spectrum, the
//! path coordinates, the residuals and the per-tensor shares follow; a
//! second pass only when the signs are fixed by the components
//! ([`SignRule::Components`]) or the per-tensor Gram matrices would not fit
//! their memory bound. Pure arithmetic on the chunks: the run-specific parts
//! (snapshot indices, tensor names) are added by
//! [`PcaResult`](super::PcaResult).

use super::gram::{centre, GramPrecision, Spectrum};
use super::pass::{gram_pass, keeps_tensor_grams, Pass1, TensorFit};
use super::project::project_pass;
use super::stream::{Chunks, Trajectory};
use crate::error::{Error, Result};

/// How the sign of each principal component is fixed (the eigenvectors are
/// defined up to sign).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignRule {
    /// The matrix row (snapshot) with the largest |centred coordinate| has a
    /// positive coordinate (the first of those within 1e-9 relative of the
    /// largest: ties are not left to the rounding): scikit-learn's
    /// `svd_flip(u_based_decision=True)`,
    /// its PCA's rule before version 1.5 and so the rule of the paper's
    /// reference code. Follows from the Gram matrix: one pass.
    #[default]
    Path,
    /// The component's entry with the largest magnitude is positive:
    /// `svd_flip(u_based_decision=False)`, scikit-learn's PCA from 1.5 on.
    /// Needs the components: a second pass over the snapshots.
    Components,
}

impl SignRule {
    /// `path` or `components`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignRule::Path => "path",
            SignRule::Components => "components",
        }
    }

    /// The rule in words, as stored in `pca.json`.
    pub fn describe(self) -> &'static str {
        match self {
            SignRule::Path => "largest |centred path coordinate| of each component positive (sklearn svd_flip, u_based_decision=True: sklearn < 1.5 and the paper's reference code)",
            SignRule::Components => "largest |coordinate| of each component positive (sklearn svd_flip, u_based_decision=False)",
        }
    }
}

impl std::str::FromStr for SignRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "path" => Ok(SignRule::Path),
            "components" => Ok(SignRule::Components),
            _ => Err(Error::invalid(
                "--signs",
                format!("expected path or components, got '{s}'"),
            )),
        }
    }
}

/// A fitted trajectory PCA, before the run's labels are attached.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    /// The decomposed global Gram matrix.
    pub(crate) spectrum: Spectrum,
    /// Degrees of freedom: m − 1.
    pub(crate) dof: f64,
    /// u_k = v_k / √λ_k (sign fixed), so pc_k = Mcᵀ u_k.
    pub(crate) weights: Vec<Vec<f64>>,
    /// Per snapshot (n chunk rows, the centre at the origin): ⟨Δᵢ, pc_k⟩.
    pub(crate) coords: Vec<Vec<f64>>,
    /// Per snapshot: was it a row of the matrix.
    pub(crate) in_fit: Vec<bool>,
    /// Per snapshot: ‖Δᵢ − PΔᵢ‖ / ‖Δᵢ‖ (0 when Δᵢ = 0).
    pub(crate) residuals: Vec<f64>,
    /// Per selected tensor, in manifest order.
    pub(crate) tensors: Vec<TensorFit>,
    /// Σ of the tensors' traces (= Σλ up to rounding).
    pub(crate) trace: f64,
    /// Passes over the snapshots (1, or 2: see [`SignRule`]).
    pub(crate) passes: usize,
}

/// How [`fit`] computes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FitOptions {
    /// Precision of the chunk products.
    pub(crate) precision: GramPrecision,
    /// How the component signs are fixed.
    pub(crate) signs: SignRule,
}

/// Fits the PCA of `traj` with up to `components` components (fewer when
/// the trajectory's rank is lower, with a warning).
///
/// Errors: fewer than 3 snapshots (one centred row carries no variation),
/// or snapshots before the final one that are all identical.
pub(crate) fn fit<C: Chunks>(
    traj: &Trajectory<C>,
    components: usize,
    opts: FitOptions,
) -> Result<Fit> {
    check_rows(traj)?;
    let keep = keeps_tensor_grams(traj.selected.len(), traj.m);
    let pass1 = {
        let _s = tracing::debug_span!("pca gram pass").entered();
        match opts.precision {
            GramPrecision::Float32 => gram_pass::<f32, C>(traj, keep)?,
            GramPrecision::Float64 => gram_pass::<f64, C>(traj, keep)?,
        }
    };
    fit_grams(traj, pass1, components, opts)
}

/// An error unless `traj` has at least two matrix rows.
pub(crate) fn check_rows<C>(traj: &Trajectory<C>) -> Result<()> {
    if traj.m < 2 {
        return Err(Error::invalid(
            "pca",
            format!(
                "needs at least {} snapshots (the final one is the reference, the matrix rows are centred), {} has {}",
                (traj.n - traj.m) + 2,
                traj.name,
                traj.n
            ),
        ));
    }
    Ok(())
}

/// The fit from the Gram matrices of `traj` (`pass1`, however they were
/// obtained): the spectrum, the path coordinates, the residuals and the
/// per-tensor shares; a projection pass over `traj` only for
/// [`SignRule::Components`] or when `pass1` holds no per-tensor matrices.
/// Same errors as [`fit`].
pub(crate) fn fit_grams<C: Chunks>(
    traj: &Trajectory<C>,
    pass1: Pass1,
    components: usize,
    opts: FitOptions,
) -> Result<Fit> {
    check_rows(traj)?;
    let m = traj.m;
    if pass1.gram.nrows() != m || pass1.tensors.len() != traj.selected.len() {
        return Err(Error::invalid(
            "pca",
            format!(
                "Gram matrices of {} rows and {} tensors given for {} ({m} rows, {} tensors)",
                pass1.gram.nrows(),
                pass1.tensors.len(),
                traj.name,
                traj.selected.len()
            ),
        ));
    }
    let trace: f64 = pass1.tensors.iter().map(|t| t.trace).sum();
    if trace.is_nan() || trace <= 0.0 {
        return Err(Error::invalid(
            "pca",
            format!(
                "the {m} snapshots (rows of the trajectory matrix) of {} are identical over the selected tensors ({}): there is no variation to analyse",
                traj.name, traj.selection
            ),
        ));
    }
    let centred = centre(&pass1.gram);
    let mut spectrum = Spectrum::of_with(centred.gram, opts.precision.eps());
    // trace > 0, so λ₁ > 0 and rank ≥ 1.
    let ncomp = components.min(spectrum.rank);
    if ncomp < components {
        tracing::warn!(
            requested = components,
            rank = spectrum.rank,
            "the trajectory has fewer non-zero principal components than requested"
        );
    }
    if opts.signs == SignRule::Path {
        fix_path_signs(&mut spectrum, ncomp);
    }
    let (mut weights, mut row_coords) = path_coordinates(&spectrum, &centred.w, ncomp);
    let mut tensors = pass1.tensors;
    let residual_rows = one_pass_residuals(&row_coords, &centred.norms2);
    let mut passes = 1;
    match pass1.tensor_grams {
        Some(grams) if opts.signs == SignRule::Path => {
            for (t, g) in tensors.iter_mut().zip(&grams) {
                t.share = weights
                    .iter()
                    .map(|u| {
                        let u = nalgebra::DVector::from_column_slice(u);
                        (u.transpose() * g * &u)[(0, 0)].max(0.0)
                    })
                    .collect();
            }
        }
        _ => {
            let _s = tracing::debug_span!("pca projection pass").entered();
            let pass2 = project_pass(traj, &weights, None)?;
            passes = 2;
            if opts.signs == SignRule::Components {
                let largest: Vec<f64> = pass2.largest.iter().map(|&(_, v)| v).collect();
                fix_signs(&mut weights, &mut row_coords, &largest);
            }
            for (t, share) in tensors.iter_mut().zip(pass2.shares) {
                t.share = share;
            }
        }
    }
    // Chunk rows outside the matrix: only the centre so far. The centre
    // (Δ = 0, a zero row with `include_final`) is at the origin exactly.
    let of = traj.matrix_row_of();
    let row = |j: usize| of[j].filter(|_| j != traj.centre);
    let coords = (0..traj.n)
        .map(|j| row(j).map_or_else(|| vec![0.0; ncomp], |i| row_coords[i].clone()))
        .collect();
    let residuals = (0..traj.n)
        .map(|j| row(j).map_or(0.0, |i| residual_rows[i]))
        .collect();
    Ok(Fit {
        spectrum,
        dof: (m - 1) as f64,
        weights,
        residuals,
        in_fit: of.iter().map(Option::is_some).collect(),
        coords,
        tensors,
        trace,
        passes,
    })
}

/// Magnitudes within this relative distance of the largest are tied for
/// [`SignRule::Path`]: the first of them decides, not the rounding (with 3
/// snapshots the two centred rows are always ±a: an exact tie).
const SIGN_TIE: f64 = 1e-9;

/// Fixes the sign of each of the first `ncomp` eigenvectors so that its
/// entry of largest magnitude (the first one on ties, within [`SIGN_TIE`])
/// is positive: the centred path coordinate √λ·v_ki of largest magnitude is
/// positive.
fn fix_path_signs(sp: &mut Spectrum, ncomp: usize) {
    for k in 0..ncomp {
        let mut col = sp.vectors.column_mut(k);
        let most = col.iter().fold(0.0f64, |b, x| b.max(x.abs()));
        let big = col
            .iter()
            .copied()
            .find(|x| x.abs() >= most * (1.0 - SIGN_TIE))
            .unwrap_or(0.0);
        if big < 0.0 {
            col.iter_mut().for_each(|x| *x = -*x);
        }
    }
}

/// ‖Δᵢ − PΔᵢ‖ / ‖Δᵢ‖ per matrix row from the Gram figures: P projects on
/// the first two (orthonormal) components, so ‖Δᵢ − PΔᵢ‖² = ‖Δᵢ‖² −
/// Σₖ₍<₂₎ ⟨Δᵢ, pc_k⟩² (0 when Δᵢ = 0).
fn one_pass_residuals(coords: &[Vec<f64>], norms2: &[f64]) -> Vec<f64> {
    let r2: Vec<f64> = coords
        .iter()
        .zip(norms2)
        .map(|(c, &d2)| (d2 - c.iter().take(2).map(|x| x * x).sum::<f64>()).max(0.0))
        .collect();
    residuals(&r2, norms2)
}

/// The weights u_k = v_k / √λ_k of the first `ncomp` components and the
/// path coordinates ⟨Δᵢ, pc_k⟩ of the m matrix rows, before the signs are
/// fixed. With `w` = Mc μ:
/// ⟨Δᵢ, pc_k⟩ = ⟨Mcᵢ, pc_k⟩ + ⟨μ, pc_k⟩ = √λ v_ki + (Mc μ)·v_k / √λ.
fn path_coordinates(sp: &Spectrum, w: &[f64], ncomp: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let m = w.len();
    let mut weights = Vec::with_capacity(ncomp);
    let mut coords = vec![vec![0.0; ncomp]; m];
    for k in 0..ncomp {
        let v = sp.vectors.column(k);
        let s = sp.lambda[k].sqrt();
        let offset = w.iter().zip(v.iter()).map(|(a, b)| a * b).sum::<f64>() / s;
        for (i, row) in coords.iter_mut().enumerate() {
            row[k] = s * v[i] + offset;
        }
        weights.push(v.iter().map(|x| x / s).collect());
    }
    (weights, coords)
}

/// Flips every component whose largest-magnitude coordinate (`largest[k]`)
/// is negative (scikit-learn's `svd_flip`, `u_based_decision=False`):
/// its weights and its column of `coords`.
fn fix_signs(weights: &mut [Vec<f64>], coords: &mut [Vec<f64>], largest: &[f64]) {
    for (k, &value) in largest.iter().enumerate() {
        if value < 0.0 {
            weights[k].iter_mut().for_each(|x| *x = -*x);
            coords.iter_mut().for_each(|c| c[k] = -c[k]);
        }
    }
}

/// ‖Δᵢ − PΔᵢ‖ / ‖Δᵢ‖ per matrix row from the squared norms (0 when
/// Δᵢ = 0).
fn residuals(residual2: &[f64], norms2: &[f64]) -> Vec<f64> {
    residual2
        .iter()
        .zip(norms2)
        .map(|(&r2, &d2)| if d2 > 0.0 { (r2 / d2).sqrt() } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use approx::{assert_abs_diff_eq, assert_relative_eq};
    use nalgebra::DMatrix;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    use super::super::project::components;
    use super::super::stream::tests::chunks_of;
    use super::super::stream::Selected;
    use super::*;
    use crate::store::run::Chunk;

    /// Float64 products, signs from the path: one pass.
    const EXACT: FitOptions = FitOptions {
        precision: GramPrecision::Float64,
        signs: SignRule::Path,
    };
    /// Float64 products, signs from the components: two passes.
    const EXACT_COMPONENTS: FitOptions = FitOptions {
        precision: GramPrecision::Float64,
        signs: SignRule::Components,
    };

    /// A trajectory over tensors of the given sizes from `rows[s]` (all
    /// tensors of snapshot s, concatenated), streamed `chunk` values at a
    /// time.
    fn trajectory(rows: &[Vec<f32>], sizes: &[usize], chunk: usize) -> Trajectory<Vec<Chunk>> {
        let (mut chunks, mut selected, mut offset) = (Vec::new(), Vec::new(), 0);
        for (tensor, &numel) in sizes.iter().enumerate() {
            let part: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| r[offset..offset + numel].to_vec())
                .collect();
            if numel > 0 {
                chunks.extend(chunks_of(tensor, offset, &part, chunk));
            }
            selected.push(Selected {
                tensor,
                offset,
                numel,
            });
            offset += numel;
        }
        let n = rows.len();
        Trajectory {
            m: n - 1,
            n,
            centre: n - 1,
            rows: (0..n - 1).collect(),
            selected,
            chunks,
            name: "the test trajectory".into(),
            selection: "all".into(),
            progress: None,
        }
    }

    fn random_rows(n: usize, p: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..p).map(|_| StandardNormal.sample(&mut rng)).collect())
            .collect()
    }

    /// Δ = θᵢ − θ_final (m × P) in float64.
    fn deltas(rows: &[Vec<f32>]) -> DMatrix<f64> {
        let (m, p) = (rows.len() - 1, rows[0].len());
        DMatrix::from_fn(m, p, |i, t| rows[i][t] as f64 - rows[m][t] as f64)
    }

    #[test]
    fn a_line_has_one_component_and_exact_coordinates() {
        // θᵢ = a + tᵢ·u: rank 1, x_i = (tᵢ − t_final)·‖u‖, no residual.
        let u = [3.0f32, -1.0, 0.5, 2.0, 0.0];
        let t = [0.0f32, 1.0, 3.0, 4.0, 6.0];
        let rows: Vec<Vec<f32>> = t
            .iter()
            .map(|&ti| {
                u.iter()
                    .enumerate()
                    .map(|(j, &uj)| j as f32 + ti * uj)
                    .collect()
            })
            .collect();
        let traj = trajectory(&rows, &[2, 3], 2);
        let f = fit(&traj, 2, EXACT_COMPONENTS).unwrap();
        assert_eq!((f.spectrum.rank, f.weights.len()), (1, 1));
        let norm_u = u.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        for (i, row) in f.coords.iter().enumerate() {
            assert_abs_diff_eq!(row[0], (t[i] - t[4]) as f64 * norm_u, epsilon = 1e-9);
        }
        for r in &f.residuals {
            assert_abs_diff_eq!(*r, 0.0, epsilon = 1e-6);
        }
        // Sample variance of t₀…t₃ (dof 3) times ‖u‖².
        let mean = (0.0 + 1.0 + 3.0 + 4.0) / 4.0;
        let var = [0.0, 1.0, 3.0, 4.0]
            .iter()
            .map(|x: &f64| (x - mean).powi(2))
            .sum::<f64>()
            / 3.0;
        assert_relative_eq!(
            f.spectrum.explained_variance(f.dof)[0],
            var * norm_u * norm_u,
            max_relative = 1e-9
        );
        // The component is u/‖u‖, its largest coordinate (3) positive.
        let pc = components(&traj, &f.weights).unwrap();
        for (p, &x) in pc[0].iter().zip(&u) {
            assert_abs_diff_eq!(*p as f64, x as f64 / norm_u, epsilon = 1e-6);
        }
        let shares: f64 = f.tensors.iter().map(|t| t.share[0]).sum();
        assert_relative_eq!(shares, 1.0, max_relative = 1e-9);
    }

    #[test]
    fn matches_the_svd_of_the_explicit_matrix() {
        let (n, sizes) = (9, [40usize, 0, 27, 13]);
        let rows = random_rows(n, sizes.iter().sum(), 11);
        let traj = trajectory(&rows, &sizes, 16);
        let f = fit(&traj, 3, EXACT_COMPONENTS).unwrap();
        let d = deltas(&rows);
        let m = d.nrows();
        let mean = d.row_mean();
        let mc = DMatrix::from_fn(m, d.ncols(), |i, j| d[(i, j)] - mean[j]);
        let svd = mc.clone().svd(false, true);
        let mut sigma: Vec<f64> = svd.singular_values.iter().copied().collect();
        sigma.sort_by(|a, b| b.total_cmp(a));
        // m rows centred: rank m − 1.
        assert_eq!(f.spectrum.rank, m - 1);
        for (l, s) in f.spectrum.lambda.iter().zip(&sigma).take(m - 1) {
            assert_relative_eq!(*l, s * s, max_relative = 1e-9);
        }
        let pcs = components(&traj, &f.weights).unwrap();
        let vt = svd.v_t.unwrap();
        let pcs: Vec<Vec<f64>> = pcs
            .iter()
            .map(|p| p.iter().map(|&x| x as f64).collect())
            .collect();
        for (k, pc) in pcs.iter().enumerate() {
            // The same axis as the SVD's, up to sign; the largest |entry| positive.
            let row = (0..vt.nrows())
                .find(|&r| (svd.singular_values[r] - sigma[k]).abs() < 1e-9)
                .unwrap();
            let dot: f64 = pc.iter().zip(vt.row(row).iter()).map(|(a, b)| a * b).sum();
            assert_relative_eq!(dot.abs(), 1.0, max_relative = 1e-5);
            let big = pc
                .iter()
                .copied()
                .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
            assert!(big > 0.0, "PC{} has a negative largest coordinate", k + 1);
            // Coordinates are ⟨Δᵢ, pc_k⟩, the final snapshot at the origin.
            for i in 0..m {
                let want: f64 = d.row(i).iter().zip(pc).map(|(a, b)| a * b).sum();
                assert_abs_diff_eq!(f.coords[i][k], want, epsilon = 1e-4);
            }
            assert_eq!(f.coords[m][k], 0.0);
        }
        // Residuals: the distance of Δᵢ to the plane of PC1 and PC2.
        for i in 0..m {
            let di: Vec<f64> = d.row(i).iter().copied().collect();
            let mut r = di.clone();
            for pc in &pcs[..2] {
                let c: f64 = di.iter().zip(pc).map(|(a, b)| a * b).sum();
                r.iter_mut().zip(pc).for_each(|(x, p)| *x -= c * p);
            }
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert_abs_diff_eq!(f.residuals[i], norm(&r) / norm(&di), epsilon = 1e-5);
        }
        assert_eq!(f.residuals[m], 0.0);
        // Per-tensor traces are the squared Frobenius norms of Mc's blocks.
        let mut offset = 0;
        for (t, &numel) in f.tensors.iter().zip(&sizes) {
            let block = mc.columns(offset, numel).norm_squared();
            assert_relative_eq!(t.trace, block, max_relative = 1e-9, epsilon = 1e-12);
            offset += numel;
        }
        assert_relative_eq!(
            f.trace,
            sigma.iter().map(|s| s * s).sum::<f64>(),
            max_relative = 1e-9
        );
        assert_eq!(f.tensors[1].share, vec![0.0; 3], "the empty tensor");
    }

    #[test]
    fn chunking_and_precision_change_only_the_rounding() {
        let rows = random_rows(7, 300, 5);
        let a = fit(&trajectory(&rows, &[100, 200], 300), 2, EXACT).unwrap();
        let b = fit(&trajectory(&rows, &[100, 200], 7), 2, EXACT).unwrap();
        for (x, y) in a.coords.iter().flatten().zip(b.coords.iter().flatten()) {
            assert_relative_eq!(x, y, max_relative = 1e-10, epsilon = 1e-12);
        }
        // Float32 products: the snapshots' own precision.
        let c = fit(&trajectory(&rows, &[100, 200], 7), 2, FitOptions::default()).unwrap();
        for (x, y) in a.coords.iter().flatten().zip(c.coords.iter().flatten()) {
            assert_relative_eq!(x, y, max_relative = 1e-5, epsilon = 1e-5);
        }
        for (x, y) in a
            .spectrum
            .lambda
            .iter()
            .zip(&c.spectrum.lambda)
            .take(a.spectrum.rank)
        {
            assert_relative_eq!(x, y, max_relative = 1e-5);
        }
        assert_eq!((a.passes, c.passes), (1, 1));
    }

    #[test]
    fn path_signs_make_the_largest_centred_coordinate_positive_in_one_pass() {
        let (n, sizes) = (9, [40usize, 27]);
        let rows = random_rows(n, sizes.iter().sum(), 3);
        let traj = trajectory(&rows, &sizes, 16);
        let by_path = fit(&traj, 3, EXACT).unwrap();
        let by_comp = fit(&traj, 3, EXACT_COMPONENTS).unwrap();
        assert_eq!((by_path.passes, by_comp.passes), (1, 2));
        for k in 0..3 {
            let v = by_path.spectrum.vectors.column(k);
            let big = v
                .iter()
                .copied()
                .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
            assert!(
                big > 0.0,
                "PC{}: largest centred coordinate negative",
                k + 1
            );
            // The same component up to sign: coordinates, residuals and
            // shares of the one pass equal those of the projection pass.
            let s = by_path.weights[k][0].signum() * by_comp.weights[k][0].signum();
            for (a, b) in by_path.coords.iter().zip(&by_comp.coords) {
                assert_abs_diff_eq!(a[k], s * b[k], epsilon = 1e-9);
            }
            for (a, b) in by_path.tensors.iter().zip(&by_comp.tensors) {
                assert_relative_eq!(a.share[k], b.share[k], max_relative = 1e-9, epsilon = 1e-12);
            }
        }
        for (a, b) in by_path.residuals.iter().zip(&by_comp.residuals) {
            assert_abs_diff_eq!(a, b, epsilon = 1e-7);
        }
    }

    #[test]
    fn degenerate_trajectories_are_errors() {
        let rows = random_rows(2, 5, 1);
        let e = fit(&trajectory(&rows, &[5], 5), 2, EXACT).unwrap_err();
        assert!(e.to_string().contains("at least 3 snapshots"), "{e}");
        let mut same = vec![vec![1.0f32; 5]; 4];
        same.push(vec![2.0; 5]);
        let e = fit(&trajectory(&same, &[5], 5), 2, EXACT).unwrap_err();
        assert!(e.to_string().contains("identical"), "{e}");
    }

    #[test]
    fn signs_flip_weights_and_coordinates_and_residuals_end_at_zero() {
        let mut w = vec![vec![1.0, -2.0], vec![0.5, 0.5]];
        let mut c = vec![vec![1.0, 2.0], vec![-3.0, 4.0]];
        fix_signs(&mut w, &mut c, &[-1.0, 2.0]);
        assert_eq!(w, vec![vec![-1.0, 2.0], vec![0.5, 0.5]]);
        assert_eq!(c, vec![vec![-1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(residuals(&[1.0, 0.0], &[4.0, 0.0]), vec![0.5, 0.0]);
    }

    #[test]
    fn path_signs_leave_ties_to_the_first_entry_not_the_rounding() {
        // Two centred rows are ±a: the second entry larger by one ulp does
        // not decide; a clearly larger one does.
        let a = std::f64::consts::FRAC_1_SQRT_2;
        for (col, flipped) in [
            ([-a, a * (1.0 + f64::EPSILON)], true),
            ([a, -a * (1.0 + f64::EPSILON)], false),
            ([-0.6, 0.8], false),
            ([0.6, -0.8], true),
        ] {
            let mut sp = Spectrum {
                lambda: vec![1.0, 0.0],
                vectors: DMatrix::from_column_slice(2, 2, &[col[0], col[1], 0.0, 1.0]),
                rank: 1,
            };
            fix_path_signs(&mut sp, 1);
            assert_eq!(sp.vectors[(0, 0)] == -col[0], flipped, "{col:?}");
        }
    }
}
