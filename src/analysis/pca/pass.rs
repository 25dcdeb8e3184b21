//! The one pass over the snapshots ([`gram_pass`]): each chunk's Gram
//! product, summed per tensor, and each tensor's own figures; the Gram
//! matrices it hands to the fit ([`Pass1`]), which the live Gram
//! ([`LiveGram`](super::LiveGram)) builds from its rows instead.

use nalgebra::DMatrix;

use super::gram::{add_chunk, centre, own_ratios, GramValue};
use super::stream::{Chunks, Deltas, Trajectory};
use crate::error::Result;

/// Memory the per-tensor Gram matrices may take (kept for the per-tensor
/// shares, ‖pc_k|tensor‖² = u_kᵀ G_tensor u_k); above it the shares come
/// from a second pass.
const TENSOR_GRAMS_BUDGET: usize = 256 << 20;

/// Pass-1 figures of one selected tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorFit {
    /// Manifest index.
    pub(crate) tensor: usize,
    /// Trace of its own centred Gram matrix.
    pub(crate) trace: f64,
    /// Explained variance ratios of its own first two components.
    pub(crate) own_ratio: [f64; 2],
    /// ‖pc_k restricted to the tensor‖² per returned component.
    pub(crate) share: Vec<f64>,
}

/// A selected tensor's uncentred Gram matrix, while and after it is summed.
struct TensorGram {
    tensor: usize,
    gram: DMatrix<f64>,
}

/// The Gram matrices a fit starts from: what the one pass over the
/// snapshots accumulates ([`gram_pass`]), or what the live Gram derives from its
/// rows ([`LiveGram`](super::LiveGram)).
pub(crate) struct Pass1 {
    /// The uncentred Gram matrix Δ Δᵀ of all selected tensors (the sum of
    /// the tensors' own).
    pub(crate) gram: DMatrix<f64>,
    /// Per selected tensor, in manifest order: its trace and own ratios
    /// ([`tensor_fit`]), the shares still empty.
    pub(crate) tensors: Vec<TensorFit>,
    /// Each tensor's centred Gram matrix (manifest order), when within
    /// [`TENSOR_GRAMS_BUDGET`] ([`keeps_tensor_grams`]).
    pub(crate) tensor_grams: Option<Vec<DMatrix<f64>>>,
}

/// Whether the centred Gram matrices of `tensors` tensors over `m` matrix
/// rows fit in [`TENSOR_GRAMS_BUDGET`] (else the per-tensor shares come
/// from a projection pass).
pub(crate) fn keeps_tensor_grams(tensors: usize, m: usize) -> bool {
    tensors.saturating_mul(m.saturating_mul(m).saturating_mul(8)) <= TENSOR_GRAMS_BUDGET
}

/// A tensor's own figures from its uncentred Gram matrix `g`: its
/// [`TensorFit`] (trace and own ratios of the centred matrix, no shares yet)
/// and the centred matrix.
pub(crate) fn tensor_fit(tensor: usize, g: &DMatrix<f64>) -> (TensorFit, DMatrix<f64>) {
    let c = centre(g);
    let (trace, own_ratio) = own_ratios(&c.gram);
    let fit = TensorFit {
        tensor,
        trace,
        own_ratio,
        share: Vec::new(),
    };
    (fit, c.gram)
}

/// The one pass: each chunk's Gram product XᵀX (libtorch), summed per
/// tensor in float64; a tensor's own figures (trace, own ratios) once its
/// last chunk is in, its matrix then added to the global one.
pub(crate) fn gram_pass<T: GramValue, C: Chunks>(
    traj: &Trajectory<C>,
    keep_tensor_grams: bool,
) -> Result<Pass1> {
    let m = traj.m;
    let mut gram = DMatrix::zeros(m, m);
    let mut tensors = Vec::with_capacity(traj.selected.len());
    let mut kept = Vec::new();
    let mut current: Option<TensorGram> = None;
    let mut finish = |done: TensorGram, gram: &mut DMatrix<f64>| {
        let (fit, centred) = tensor_fit(done.tensor, &done.gram);
        tensors.push(fit);
        *gram += &done.gram;
        if keep_tensor_grams {
            kept.push((done.tensor, centred));
        }
    };
    traj.for_each_prepared(|d: &Deltas<T>| {
        if current.as_ref().is_none_or(|t| t.tensor != d.tensor) {
            let fresh = TensorGram {
                tensor: d.tensor,
                gram: DMatrix::zeros(m, m),
            };
            if let Some(done) = current.replace(fresh) {
                finish(done, &mut gram);
            }
        }
        if let Some(t) = current.as_mut() {
            add_chunk(&mut t.gram, &d.xt, d.len)?;
        }
        Ok(())
    })?;
    if let Some(done) = current.take() {
        finish(done, &mut gram);
    }
    // A selected tensor without elements yields no chunk: list it anyway.
    for s in &traj.selected {
        if !tensors.iter().any(|t| t.tensor == s.tensor) {
            tensors.push(TensorFit {
                tensor: s.tensor,
                trace: 0.0,
                own_ratio: [0.0; 2],
                share: Vec::new(),
            });
            if keep_tensor_grams {
                kept.push((s.tensor, DMatrix::zeros(m, m)));
            }
        }
    }
    tensors.sort_by_key(|t| t.tensor);
    kept.sort_by_key(|(t, _)| *t);
    Ok(Pass1 {
        gram,
        tensors,
        tensor_grams: keep_tensor_grams.then(|| kept.into_iter().map(|(_, g)| g).collect()),
    })
}
