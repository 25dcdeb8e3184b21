//! Hessian eigenvalues and curvature summaries (§6 and Figure 7 of Li et al.,
//! "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018).
//!
//! Everything here works with Hessian-vector products (HVPs) computed by
//! double backward through tch's autograd — the Hessian itself is never
//! formed:
//!
//! 1. [`Hessian::hvp`]: `g = ∂L/∂θ` with `create_graph = true`, then
//!    `Hv = ∂⟨g, v⟩/∂θ`;
//! 2. [`Lanczos`]: Lanczos with full reorthogonalization gives the extreme
//!    eigenvalues λmax and λmin (and the top/bottom k) together, with a
//!    relative residual tolerance, an iteration cap and a seeded start
//!    vector; it fails with [`Error::NotConverged`](crate::Error::NotConverged)
//!    instead of returning an unconverged value;
//! 3. [`Hutchinson`]: Hutchinson's trace estimate with Rademacher probes
//!    and its standard error;
//! 4. [`Slq`]: the eigenvalue spectral density by stochastic Lanczos
//!    quadrature (Ghorbani et al. 2019; PyHessian's method);
//! 5. [`Curvature`]: maps of λmin, λmax and |λmin/λmax| over the grid and
//!    directions of a loss surface (Figure 7), resumable like surfaces; their
//!    file format is [`crate::store::curvature`]'s.
//!
//! The settings of 2–5 are built once and validated (`X::builder()…build()?`);
//! [`Lanczos`], [`Hutchinson`] and [`Slq`] run on any symmetric operator
//! (`run(dim, |v| …)`) as well as on a [`Hessian`].
//!
//! The loss comes from an [`Objective`]: a number of batches, each giving a
//! scalar mean loss with its autograd graph and the batch size.
//! [`SupervisedObjective`] is the ready one for a `ModuleT` over in-memory
//! inputs and targets (cross-entropy or MSE, eval mode). The parameters are
//! chosen with the crate's one [`Selection`](crate::tensor::Selection)
//! ([`HessianParams::select`]).
//!
//! **Batches are averaged, not summed.** The HVP is
//! `Σ_b H_b v · |b| / N`, the Hessian of the full-data mean loss
//! `Σ_b mean_loss(b)·|b| / N` (the loss that surfaces plot). The reference
//! code sums per-batch Hessians, so its eigenvalues grow with the number of
//! batches (≈ 14× for 15 batches of W1) although the ratio |λmin/λmax| does
//! not; here the values do not depend on how the data is batched.
//!
//! ```no_run
//! # use tch_landscape::analysis::hessian::*;
//! # use tch_landscape::tensor::Selection;
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
//! # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
//! let objective = SupervisedObjective::new(&model, &x, &y)?.batch(128)?;
//! let mut h = Hessian::at(&vs, objective, &Selection::Weights)?;
//! let s = h.eigenvalues(&Lanczos::builder().tol(1e-3).build()?)?;
//! println!("λmax {} λmin {} ({} HVPs)", s.lambda_max, s.lambda_min, s.hvps);
//! # Ok(()) }
//! ```

mod curvature;
mod curvature_map;
mod density;
mod krylov;
mod lanczos;
mod objective;
mod operator;
mod params;
mod trace;
mod vector;

pub use curvature::{merge_curvature_shards, Curvature, CurvatureBuilder};
pub use curvature_map::{CurvatureMap, CurvatureSpec};
pub use density::{Slq, SlqBuilder, SpectralDensity};
pub use lanczos::{Lanczos, LanczosBuilder, Spectrum};
pub use objective::{Objective, SupervisedObjective};
pub use operator::Hessian;
pub use params::HessianParams;
pub use trace::{Hutchinson, HutchinsonBuilder, TraceEstimate};

// The file format's names and records, where users of the maps have always
// found them.
pub use crate::store::curvature::{
    curvature_schema, is_reference, CurvaturePoint, CurvatureValues, SolverFigures, CURVATURE_FILE,
    CURVATURE_META_KEY, SPLIT_ABS_RATIO, SPLIT_LAMBDA_MAX, SPLIT_LAMBDA_MIN,
};
