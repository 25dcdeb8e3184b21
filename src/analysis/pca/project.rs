//! The projection pass: pc_k = Mcᵀ u_k chunk by chunk, for the components
//! themselves (the PCA plane's directions), the per-tensor shares and the
//! signs of [`SignRule::Components`](super::SignRule::Components).
//!
//! As u_k ⊥ 1 (v_k is an eigenvector of the centred Gram matrix with λ > 0),
//! Mcᵀ u_k = Δᵀ u_k: a weighted sum of the snapshots' rows, formed straight
//! from the chunks as they lie in the mapped files.

use super::stream::{Chunks, Trajectory};
use crate::error::{Error, Result};

/// The results of [`project_pass`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pass2 {
    /// Per component: (|value|, value) of its largest-magnitude coordinate
    /// (the first one on ties).
    pub(crate) largest: Vec<(f64, f64)>,
    /// Per selected tensor (stream order), per component: ‖pc_k|tensor‖².
    pub(crate) shares: Vec<Vec<f64>>,
}

/// The projection pass over `traj` with the component weights u_k =
/// v_k / √λ_k (`weights[k]`, m values each), sums in float64; with
/// `store` (one vector of the selection's length per component), also
/// writes the components, as float32, into it.
pub(crate) fn project_pass<C: Chunks>(
    traj: &Trajectory<C>,
    weights: &[Vec<f64>],
    store: Option<&mut [Vec<f32>]>,
) -> Result<Pass2> {
    let mut out = project_rows(traj, weights, store)?;
    // Tensors without elements produce no chunk; keep one share row each.
    let ncomp = weights.len();
    if out.shares.len() != traj.selected.len() {
        let mut it = out.shares.into_iter();
        out.shares = traj
            .selected
            .iter()
            .map(|s| match s.numel {
                0 => vec![0.0; ncomp],
                _ => it.next().unwrap_or_else(|| vec![0.0; ncomp]),
            })
            .collect();
    }
    Ok(out)
}

/// One pass on the calling thread over the chunks' rows as they lie in the
/// mapped files: pc_k[t] = Σᵢ u_ki·θ₍rows[i]₎[t] − (Σᵢ u_ki)·θ₍centre₎[t]
/// (= Σᵢ u_ki Δᵢₜ), row by row in float64. Two multiply-adds per value and
/// component: the pass costs about one read of the files, no transposition.
fn project_rows<C: Chunks>(
    traj: &Trajectory<C>,
    weights: &[Vec<f64>],
    store: Option<&mut [Vec<f32>]>,
) -> Result<Pass2> {
    let (m, ncomp) = (traj.m, weights.len());
    if weights.iter().any(|w| w.len() != m) || traj.rows.len() != m {
        return Err(Error::invalid(
            "pca",
            format!("component weights of {m} rows expected"),
        ));
    }
    let sums: Vec<f64> = weights.iter().map(|w| w.iter().sum()).collect();
    let mut out = Pass2 {
        largest: vec![(-1.0, 0.0); ncomp],
        shares: Vec::new(),
    };
    let mut current = None;
    let mut store = store;
    let mut pcs: Vec<Vec<f64>> = vec![Vec::new(); ncomp];
    let mut report = traj.reporter(if store.is_some() {
        "directions"
    } else {
        "projection"
    });
    traj.chunks.each(&mut |c| {
        let len = c.len;
        report.add(len);
        if len == 0 {
            return Ok(());
        }
        traj.check_chunk(c)?;
        if current != Some(c.tensor) {
            current = Some(c.tensor);
            out.shares.push(vec![0.0; ncomp]);
        }
        let fin = c.rows[traj.centre];
        for (k, pc) in pcs.iter_mut().enumerate() {
            pc.clear();
            pc.extend(fin.iter().map(|&f| -sums[k] * f64::from(f)));
            for (&r, &w) in traj.rows.iter().zip(&weights[k]) {
                for (p, &x) in pc.iter_mut().zip(c.rows[r]) {
                    *p += w * f64::from(x);
                }
            }
            let best = &mut out.largest[k];
            let mut sq = 0.0;
            for &v in pc.iter() {
                sq += v * v;
                if v.abs() > best.0 {
                    *best = (v.abs(), v);
                }
            }
            if let Some(s) = out.shares.last_mut() {
                s[k] += sq;
            }
            if let Some(store) = store.as_deref_mut() {
                let dst = &mut store[k][c.global_start..c.global_start + len];
                for (o, &v) in dst.iter_mut().zip(pc.iter()) {
                    *o = v as f32;
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The unit-norm components pc_k = Mcᵀ u_k over the selection (flattened
/// and concatenated in manifest order), as float32, by one more pass.
pub(crate) fn components<C: Chunks>(
    traj: &Trajectory<C>,
    weights: &[Vec<f64>],
) -> Result<Vec<Vec<f32>>> {
    let numel = traj.selected.iter().map(|s| s.numel).sum::<usize>();
    let mut store = vec![vec![0f32; numel]; weights.len()];
    project_pass(traj, weights, Some(&mut store))?;
    Ok(store)
}
