//! The projection pass: pc_k = Mcᵀ u_k chunk by chunk, for the components
//! themselves (the PCA plane's directions), the per-tensor shares and the
//! signs of [`SignRule::Components`](super::SignRule::Components).
//!
//! As u_k ⊥ 1 (v_k is an eigenvector of the centred Gram matrix with λ > 0),
//! Mcᵀ u_k = Δᵀ u_k: each chunk's components are one libtorch product of the
//! uncentred chunk ([`Deltas`]) with the m×k weight matrix.

use tch::{Device, Tensor};

use super::gram::{GramPrecision, GramValue};
use super::stream::{Chunks, Deltas, Trajectory};
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
/// v_k / √λ_k (`weights[k]`, m values each), products in `precision`; with
/// `store` (one vector of the selection's length per component), also
/// writes the components, as float32, into it.
pub(crate) fn project_pass<C: Chunks>(
    traj: &Trajectory<C>,
    weights: &[Vec<f64>],
    precision: GramPrecision,
    store: Option<&mut [Vec<f32>]>,
) -> Result<Pass2> {
    let mut out = match precision {
        GramPrecision::Float32 => project_with::<f32, C>(traj, weights, store)?,
        GramPrecision::Float64 => project_with::<f64, C>(traj, weights, store)?,
    };
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

fn project_with<T: GramValue, C: Chunks>(
    traj: &Trajectory<C>,
    weights: &[Vec<f64>],
    store: Option<&mut [Vec<f32>]>,
) -> Result<Pass2> {
    let (m, ncomp) = (traj.m, weights.len());
    let torch = |e| Error::torch("projecting a trajectory chunk on the components", e);
    // U: m×k, row i = (u_1i, …, u_ki).
    let u: Vec<f64> = (0..m)
        .flat_map(|i| weights.iter().map(move |w| w[i]))
        .collect();
    let u = Tensor::f_from_slice(&u)
        .and_then(|t| t.f_reshape([m as i64, ncomp as i64]))
        .and_then(|t| t.f_to_kind(T::KIND))
        .map_err(torch)?;
    let mut out = Pass2 {
        largest: vec![(-1.0, 0.0); ncomp],
        shares: Vec::new(),
    };
    let mut current = None;
    let mut store = store;
    traj.for_each_prepared(|d: &Deltas<T>| {
        if d.len == 0 {
            return Ok(());
        }
        if current != Some(d.tensor) {
            current = Some(d.tensor);
            out.shares.push(vec![0.0; ncomp]);
        }
        if d.xt.len() != d.len * m {
            return Err(Error::invalid(
                "pca",
                format!(
                    "a chunk holds {} values, expected {} × {m}",
                    d.xt.len(),
                    d.len
                ),
            ));
        }
        // SAFETY: `d.xt` holds len·m initialised values of `T::KIND`, is
        // only read, and outlives `x`, dropped at the end of this closure.
        let x = unsafe {
            Tensor::f_from_blob(
                d.xt.as_ptr().cast::<u8>(),
                &[d.len as i64, m as i64],
                &[m as i64, 1],
                T::KIND,
                Device::Cpu,
            )
        }
        .map_err(torch)?;
        let p = x
            .f_mm(&u)
            .and_then(|p| p.f_to_kind(tch::Kind::Double))
            .map_err(torch)?;
        drop(x);
        // Row-major len×k: p[t·k + k'].
        let p = Vec::<f64>::try_from(&p.reshape([-1])).map_err(torch)?;
        let shares = out.shares.last_mut();
        let mut sq = vec![0.0; ncomp];
        for row in p.chunks_exact(ncomp) {
            for (k, &v) in row.iter().enumerate() {
                sq[k] += v * v;
                let best = &mut out.largest[k];
                if v.abs() > best.0 {
                    *best = (v.abs(), v);
                }
            }
        }
        if let Some(s) = shares {
            s.iter_mut().zip(&sq).for_each(|(a, b)| *a += b);
        }
        if let Some(store) = store.as_deref_mut() {
            for (k, comp) in store.iter_mut().enumerate() {
                let dst = &mut comp[d.global_start..d.global_start + d.len];
                for (o, row) in dst.iter_mut().zip(p.chunks_exact(ncomp)) {
                    *o = row[k] as f32;
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
    precision: GramPrecision,
) -> Result<Vec<Vec<f32>>> {
    let numel = traj.selected.iter().map(|s| s.numel).sum::<usize>();
    let mut store = vec![vec![0f32; numel]; weights.len()];
    project_pass(traj, weights, precision, Some(&mut store))?;
    Ok(store)
}
