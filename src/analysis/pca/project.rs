//! The projection pass: pc_k = Mcᵀ u_k chunk by chunk, for the components'
//! signs, the snapshots' distances to the PC1/PC2 plane, the per-tensor
//! shares, and (on request) the components themselves.

use super::stream::{Centred, Chunks, Trajectory};
use crate::error::Result;

/// What the pass projects on: the component weights u_k = v_k / √λ_k (so
/// pc_k = Mcᵀ u_k) and the current path coordinates (one row per snapshot,
/// at least the first m).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Projection<'a> {
    /// u_k per component.
    pub(crate) weights: &'a [Vec<f64>],
    /// ⟨Δᵢ, pc_k⟩ per snapshot i and component k.
    pub(crate) coords: &'a [Vec<f64>],
}

/// The results of [`project_pass`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pass2 {
    /// ‖Δᵢ − PΔᵢ‖² per snapshot i < m, P the projection onto the plane of
    /// the first two components (of PC1 alone for one component).
    pub(crate) residual2: Vec<f64>,
    /// Per component: (|value|, value) of its largest-magnitude coordinate
    /// (the first one on ties).
    pub(crate) largest: Vec<(f64, f64)>,
    /// Per selected tensor (stream order), per component: ‖pc_k|tensor‖².
    pub(crate) shares: Vec<Vec<f64>>,
}

/// The state of a projection pass.
struct Projector<'a> {
    m: usize,
    weights: &'a [Vec<f64>],
    /// Plane coordinates by component (at most 2), for loops over snapshots.
    plane: Vec<Vec<f64>>,
    /// The current chunk of every component.
    pcs: Vec<Vec<f64>>,
    current: Option<usize>,
    out: Pass2,
}

impl Projector<'_> {
    /// Forms the chunk of every component, updates the largest coordinates
    /// and shares, and copies the values into `store` when given.
    fn components(&mut self, c: &Centred, store: Option<&mut [Vec<f32>]>) {
        let ncomp = self.weights.len();
        if self.current != Some(c.tensor) {
            self.current = Some(c.tensor);
            self.out.shares.push(vec![0.0; ncomp]);
        }
        let m = self.m;
        let mut store = store;
        for (k, pc) in self.pcs.iter_mut().enumerate() {
            pc.clear();
            pc.extend(c.xt.chunks_exact(m).map(|col| {
                col.iter()
                    .zip(&self.weights[k])
                    .map(|(x, u)| x * u)
                    .sum::<f64>()
            }));
            let best = &mut self.out.largest[k];
            let mut sq = 0.0;
            for &p in pc.iter() {
                sq += p * p;
                if p.abs() > best.0 {
                    *best = (p.abs(), p);
                }
            }
            if let Some(s) = self.out.shares.last_mut() {
                s[k] += sq;
            }
            if let Some(store) = store.as_deref_mut() {
                let range = c.global_start..c.global_start + c.len;
                for (o, &p) in store[k][range].iter_mut().zip(pc.iter()) {
                    *o = p as f32;
                }
            }
        }
    }

    /// Adds the chunk's part of ‖Δᵢ − PΔᵢ‖² for every snapshot i < m
    /// (Δᵢₜ = Mcᵢₜ + μₜ).
    fn residuals(&mut self, c: &Centred) {
        let m = self.m;
        let r2 = &mut self.out.residual2;
        for (t, (col, &u)) in c.xt.chunks_exact(m).zip(&c.mu).enumerate() {
            match self.plane.as_slice() {
                [a0, a1] => {
                    let (p0, p1) = (self.pcs[0][t], self.pcs[1][t]);
                    for (((x, r2), a0), a1) in col.iter().zip(r2.iter_mut()).zip(a0).zip(a1) {
                        let r = x + u - a0 * p0 - a1 * p1;
                        *r2 += r * r;
                    }
                }
                [a0] => {
                    let p0 = self.pcs[0][t];
                    for ((x, r2), a0) in col.iter().zip(r2.iter_mut()).zip(a0) {
                        let r = x + u - a0 * p0;
                        *r2 += r * r;
                    }
                }
                _ => {
                    for (x, r2) in col.iter().zip(r2.iter_mut()) {
                        *r2 += (x + u) * (x + u);
                    }
                }
            }
        }
    }
}

/// The projection pass over `traj`; with `store` (one vector of the
/// selection's length per component), also writes the components, as
/// float32, into it.
pub(crate) fn project_pass<C: Chunks>(
    traj: &Trajectory<C>,
    proj: Projection<'_>,
    store: Option<&mut [Vec<f32>]>,
) -> Result<Pass2> {
    let (m, ncomp) = (traj.m, proj.weights.len());
    let mut p = Projector {
        m,
        weights: proj.weights,
        plane: (0..ncomp.min(2))
            .map(|k| proj.coords[..m].iter().map(|c| c[k]).collect())
            .collect(),
        pcs: vec![Vec::new(); ncomp],
        current: None,
        out: Pass2 {
            residual2: vec![0.0; m],
            largest: vec![(-1.0, 0.0); ncomp],
            shares: Vec::new(),
        },
    };
    let mut store = store;
    traj.for_each_centred(|c| {
        p.components(c, store.as_deref_mut());
        p.residuals(c);
        Ok(())
    })?;
    let mut out = p.out;
    // Tensors without elements produce no chunk; keep one share row each.
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

/// The unit-norm components pc_k = Mcᵀ u_k over the selection (flattened
/// and concatenated in manifest order), as float32, by one more pass.
pub(crate) fn components<C: Chunks>(
    traj: &Trajectory<C>,
    proj: Projection<'_>,
) -> Result<Vec<Vec<f32>>> {
    let numel = traj.selected.iter().map(|s| s.numel).sum::<usize>();
    let mut store = vec![vec![0f32; numel]; proj.weights.len()];
    project_pass(traj, proj, Some(&mut store))?;
    Ok(store)
}
