//! Hessian eigenvalues and curvature summaries (§6 and Figure 7 of Li et al.,
//! "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018).
//!
//! Everything here works with Hessian-vector products (HVPs) computed by
//! double backward through tch's autograd — the Hessian itself is never
//! formed:
//!
//! 1. `g = ∂L/∂θ` with `create_graph = true`, then `Hv = ∂⟨g, v⟩/∂θ`;
//! 2. [`lanczos`]: Lanczos with full reorthogonalization gives the extreme
//!    eigenvalues λmax and λmin (and the top/bottom k) together, with a
//!    relative residual tolerance, an iteration cap and a seeded start
//!    vector; it fails with an error instead of returning an unconverged value;
//! 3. [`Hessian::trace`]: Hutchinson's trace estimate with Rademacher probes
//!    and its standard error;
//! 4. [`Hessian::density`]: the eigenvalue spectral density by stochastic
//!    Lanczos quadrature (Ghorbani et al. 2019; PyHessian's method);
//! 5. [`Curvature`]: maps of λmin, λmax and |λmin/λmax| over the grid and
//!    directions of a loss surface (Figure 7), resumable like surfaces.
//!
//! The loss comes from an [`Objective`]: a number of batches, each giving a
//! scalar mean loss with its autograd graph and the batch size.
//! [`SupervisedObjective`] is the ready one for a `ModuleT` over in-memory
//! inputs and targets (cross-entropy or MSE, eval mode).
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
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
//! # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
//! let objective = SupervisedObjective::new(&model, &x, &y)?.batch(128)?;
//! let mut h = Hessian::at(&vs, objective, &ParamSelection::MultiDim)?;
//! let s = h.eigenvalues(&LanczosOptions::default())?;
//! println!("λmax {} λmin {} ({} HVPs)", s.lambda_max, s.lambda_min, s.hvps);
//! # Ok(()) }
//! ```

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use nalgebra::{DMatrix, SymmetricEigen};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::analysis::directions::{Directions, DirectionsMeta};
use crate::analysis::evaluator::{Evaluator, SplitResult};
use crate::analysis::grid::Grid;
use crate::analysis::shard::{covers, Shard};
use crate::analysis::supervised::{check_batch, loss_of, Data, LossKind, ModelRef};
#[cfg(feature = "mpi")]
use crate::analysis::surface::Runner;
use crate::analysis::surface::{Surface, SurfaceBuilder, SurfaceResult};
use crate::error::{Error, Result};
use crate::store::fsutil::write_atomic;
use crate::store::table::read_parquet;

// ---------------------------------------------------------------------------
// Objectives
// ---------------------------------------------------------------------------

/// The loss whose Hessian is analysed, split into batches.
///
/// The analysed loss is the full-data mean `Σ_b loss(b)·|b| / N` with
/// `N = Σ_b |b|`, so `batch_loss` must return the *mean* loss of batch `b`.
/// Implement it for any model and data; [`SupervisedObjective`] covers a
/// `ModuleT` over in-memory tensors.
pub trait Objective {
    /// Number of batches (at least 1).
    fn num_batches(&self) -> usize;

    /// The scalar mean loss of batch `b` (`0 ≤ b < num_batches()`), computed
    /// from the model's variables with its autograd graph (the caller enables
    /// gradients), and the number of samples in the batch.
    fn batch_loss(&mut self, b: usize) -> Result<(Tensor, usize)>;

    /// A short description stored with results (model, data, loss, batches).
    fn describe(&self) -> String {
        "user-defined objective".to_string()
    }
}

impl<O: Objective + ?Sized> Objective for &mut O {
    fn num_batches(&self) -> usize {
        (**self).num_batches()
    }
    fn batch_loss(&mut self, b: usize) -> Result<(Tensor, usize)> {
        (**self).batch_loss(b)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<O: Objective + ?Sized> Objective for Box<O> {
    fn num_batches(&self) -> usize {
        (**self).num_batches()
    }
    fn batch_loss(&mut self, b: usize) -> Result<(Tensor, usize)> {
        (**self).batch_loss(b)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// The ready [`Objective`]: a `ModuleT` in eval mode (`forward_t(x, false)`)
/// over in-memory inputs and targets, cross-entropy (int64 class targets) or
/// MSE (float targets shaped like the output), batched as the evaluation core
/// [`supervised`](crate::analysis::supervised) does (its dtype policy too).
#[derive(Debug)]
pub struct SupervisedObjective<'m> {
    model: ModelRef<'m>,
    data: Data,
    batch: i64,
    loss: LossKind,
}

impl<'m> SupervisedObjective<'m> {
    /// The objective of `model` on inputs `x` and targets `y` (same non-zero
    /// first dimension, checked), cross-entropy, batches of 128.
    pub fn new(model: &'m dyn ModuleT, x: &Tensor, y: &Tensor) -> Result<Self> {
        Self::with_model(ModelRef::Borrowed(model), x, y)
    }

    /// An objective that owns its model (e.g. one replica per thread in
    /// [`Curvature::evaluate_parallel`]).
    pub fn owning(
        model: impl ModuleT + 'static,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<SupervisedObjective<'static>> {
        SupervisedObjective::with_model(ModelRef::Owned(Box::new(model)), x, y)
    }

    fn with_model(model: ModelRef<'m>, x: &Tensor, y: &Tensor) -> Result<Self> {
        Ok(SupervisedObjective {
            model,
            data: Data::new("objective data", x, y)?,
            batch: 128,
            loss: LossKind::CrossEntropy,
        })
    }

    /// Batch size (default 128); the batches' Hessians are averaged, weighted
    /// by size, so the result does not depend on it (up to rounding).
    pub fn batch(mut self, batch: i64) -> Result<Self> {
        self.batch = check_batch(batch)?;
        Ok(self)
    }

    /// The loss (default cross-entropy).
    pub fn loss(mut self, loss: LossKind) -> Self {
        self.loss = loss;
        self
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len() as usize
    }

    /// True when there is no sample (never, for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }
}

impl Objective for SupervisedObjective<'_> {
    fn num_batches(&self) -> usize {
        self.data.num_batches(self.batch)
    }

    fn batch_loss(&mut self, b: usize) -> Result<(Tensor, usize)> {
        let (xb, yb, len) = self.data.batch(b, self.batch)?;
        let out = self.model.module().forward_t(&xb, false);
        let loss = loss_of(&out, &yb, self.loss)
            .map_err(|e| Error::torch(format!("computing the loss of batch {b}"), e))?;
        Ok((loss, len as usize))
    }

    fn describe(&self) -> String {
        format!(
            "{:?} loss of a ModuleT in eval mode on {} samples, batches of {}",
            self.loss,
            self.data.len(),
            self.batch
        )
    }
}

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/// Which of the model's variables the Hessian is taken with respect to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamSelection {
    /// Trainable floating-point tensors with more than one dimension (weights,
    /// not biases or BatchNorm γ/β): the reference's choice and the default.
    #[default]
    MultiDim,
    /// Every trainable floating-point tensor.
    Trainable,
    /// The named tensors (each must exist, be floating point and require grad).
    Names(Vec<String>),
}

impl ParamSelection {
    /// A short description, e.g. `dim>1 tensors`.
    pub fn describe(&self) -> String {
        match self {
            ParamSelection::MultiDim => "dim>1 tensors".into(),
            ParamSelection::Trainable => "all trainable tensors".into(),
            ParamSelection::Names(n) => format!("tensors {n:?}"),
        }
    }
}

/// The selected variables of a VarStore: handles to the live tensors (their
/// current values are used at every HVP), sorted by name. Vectors of the
/// Hessian's space are these tensors flattened and concatenated in this order.
#[derive(Debug)]
pub struct HessianParams {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    numels: Vec<usize>,
    numel: usize,
    selection: ParamSelection,
}

impl HessianParams {
    /// Selects variables of `vs`. Errors when the selection is empty, names
    /// an unknown tensor, or names one that is not floating point or does not
    /// require grad.
    pub fn select(vs: &VarStore, selection: &ParamSelection) -> Result<HessianParams> {
        let vars = vs.variables();
        let mut all: Vec<(&String, &Tensor)> = vars.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        let chosen: Vec<(String, Tensor)> = match selection {
            ParamSelection::MultiDim | ParamSelection::Trainable => all
                .into_iter()
                .filter(|(_, t)| t.is_floating_point() && t.requires_grad())
                .filter(|(_, t)| *selection == ParamSelection::Trainable || t.dim() > 1)
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            ParamSelection::Names(names) => {
                let mut names = names.clone();
                names.sort();
                if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                    return Err(Error::invalid(
                        "parameter selection",
                        format!("names tensor '{}' twice", w[0]),
                    ));
                }
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let t = vars.get(&name).ok_or_else(|| Error::UnknownTensor {
                        tensor: name.clone(),
                        place: "the model's VarStore (Hessian parameter selection)".into(),
                    })?;
                    if !t.is_floating_point() || !t.requires_grad() {
                        return Err(Error::invalid(
                            "parameter selection",
                            format!(
                                "tensor '{name}' ({:?}, requires_grad {}) cannot be differentiated; expected a floating-point tensor with requires_grad on",
                                t.kind(),
                                t.requires_grad()
                            ),
                        ));
                    }
                    out.push((name, t.shallow_clone()));
                }
                out
            }
        };
        if chosen.is_empty() {
            let mut names: Vec<&String> = vars.keys().collect();
            names.sort();
            return Err(Error::invalid(
                "parameter selection",
                format!(
                    "{} selects no tensor; the model's variables are {names:?} (only floating-point tensors with requires_grad on can be selected)",
                    selection.describe()
                ),
            ));
        }
        let numels: Vec<usize> = chosen.iter().map(|(_, t)| t.numel()).collect();
        let (names, tensors) = chosen.into_iter().unzip();
        Ok(HessianParams {
            names,
            tensors,
            numel: numels.iter().sum(),
            numels,
            selection: selection.clone(),
        })
    }

    /// Names of the selected tensors, in vector order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Dimension of the Hessian (total number of selected values).
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// Number of selected tensors.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when nothing is selected (never, for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The selection this was made from.
    pub fn selection(&self) -> &ParamSelection {
        &self.selection
    }

    /// The current values, flattened and concatenated (float64).
    pub fn values(&self) -> Result<Vec<f64>> {
        tch::no_grad(|| {
            let flat: Vec<Tensor> = self
                .tensors
                .iter()
                .map(|t| t.detach().to_kind(Kind::Double).flatten(0, -1))
                .collect();
            to_vec(&Tensor::cat(&flat, 0), "reading parameter values")
        })
    }

    /// Splits a flat vector into tensors shaped, typed and placed like the
    /// parameters.
    fn split(&self, v: &[f64]) -> Result<Vec<Tensor>> {
        if v.len() != self.numel {
            return Err(Error::invalid(
                "vector",
                format!(
                    "has {} values, expected {} (the selected parameters' count)",
                    v.len(),
                    self.numel
                ),
            ));
        }
        let mut out = Vec::with_capacity(self.tensors.len());
        let mut pos = 0;
        for (t, &n) in self.tensors.iter().zip(&self.numels) {
            let part = Tensor::from_slice(&v[pos..pos + n])
                .f_reshape(t.size())
                .and_then(|p| p.f_to_kind(t.kind()))
                .and_then(|p| p.f_to_device(t.device()))
                .map_err(|e| Error::torch("building a Hessian-vector product's input", e))?;
            out.push(part);
            pos += n;
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} tensors, {} values)",
            self.selection.describe(),
            self.len(),
            self.numel
        )
    }
}

fn to_vec(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    t.f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Double))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| Vec::<f64>::try_from(&t))
        .map_err(|e| Error::torch(what, e))
}

// ---------------------------------------------------------------------------
// The Hessian operator
// ---------------------------------------------------------------------------

/// The Hessian of an [`Objective`]'s full-data mean loss with respect to
/// selected parameters, as an operator `v ↦ Hv` (double backward), with the
/// analyses built on it. Each method uses the parameters' values at the time
/// of the call.
pub struct Hessian<O> {
    objective: O,
    params: HessianParams,
    hvps: usize,
    /// Within one analysis and with a single batch, the gradient graph is
    /// kept between HVPs (as PyHessian does), saving a forward and a backward
    /// pass each time; it is dropped when the analysis ends, so values set
    /// into the parameters afterwards are always seen.
    caching: bool,
    cache: Option<(Vec<Tensor>, usize)>,
}

impl<O> std::fmt::Debug for Hessian<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hessian")
            .field("params", &self.params.names)
            .field("dim", &self.params.numel)
            .field("hvps", &self.hvps)
            .finish()
    }
}

impl<O: Objective> Hessian<O> {
    /// The Hessian of `objective` with respect to `params`.
    pub fn new(objective: O, params: HessianParams) -> Hessian<O> {
        Hessian {
            objective,
            params,
            hvps: 0,
            caching: false,
            cache: None,
        }
    }

    /// The Hessian of `objective` with respect to the variables of `vs`
    /// chosen by `selection`.
    pub fn at(vs: &VarStore, objective: O, selection: &ParamSelection) -> Result<Hessian<O>> {
        Ok(Self::new(objective, HessianParams::select(vs, selection)?))
    }

    /// The selected parameters.
    pub fn params(&self) -> &HessianParams {
        &self.params
    }

    /// Dimension of the Hessian.
    pub fn dim(&self) -> usize {
        self.params.numel
    }

    /// Number of Hessian-vector products computed so far (all methods).
    pub fn hvps(&self) -> usize {
        self.hvps
    }

    /// The objective.
    pub fn objective(&self) -> &O {
        &self.objective
    }

    /// The objective, mutably.
    pub fn objective_mut(&mut self) -> &mut O {
        &mut self.objective
    }

    /// Gives the objective back.
    pub fn into_objective(self) -> O {
        self.objective
    }

    /// A description of the operator (objective and parameters).
    pub fn describe(&self) -> String {
        format!(
            "{} w.r.t. {}",
            self.objective.describe(),
            self.params.describe()
        )
    }

    /// The full-data mean loss `Σ_b loss(b)·|b| / N` at the current parameters.
    pub fn loss(&mut self) -> Result<f64> {
        let nb = self.checked_batches()?;
        let (mut sum, mut n) = (0.0, 0usize);
        for b in 0..nb {
            let (loss, size) = tch::no_grad(|| self.objective.batch_loss(b))?;
            check_loss(&loss, size, b, false)?;
            sum += loss
                .f_double_value(&[])
                .map_err(|e| Error::torch("reading the loss", e))?
                * size as f64;
            n += size;
        }
        Ok(sum / n as f64)
    }

    /// The gradient of the full-data mean loss, flattened (float64).
    pub fn gradient(&mut self) -> Result<Vec<f64>> {
        let nb = self.checked_batches()?;
        tch::with_grad(|| {
            let mut acc = self.zeros();
            let mut total = 0usize;
            for b in 0..nb {
                let (loss, size) = self.objective.batch_loss(b)?;
                check_loss(&loss, size, b, true)?;
                let grads = Tensor::f_run_backward(&[&loss], &self.params.tensors, false, false)
                    .map_err(|e| {
                        Error::torch(format!("differentiating the loss of batch {b}"), e)
                    })?;
                check_reached(&grads, b)?;
                accumulate(&mut acc, &grads, size as f64);
                total += size;
            }
            self.finish_sum(acc, total as f64)
        })
    }

    /// One Hessian-vector product `Hv` of the full-data mean loss:
    /// `Σ_b H_b v · |b| / N`. `v` is flat, in [`HessianParams`] order.
    pub fn hvp(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        let nb = self.checked_batches()?;
        let vt = self.params.split(v)?;
        self.hvps += 1;
        tch::with_grad(|| {
            let cache_this = self.caching && nb == 1;
            let mut acc = self.zeros();
            let mut total = 0usize;
            for b in 0..nb {
                let (grads, size) = match self.cache.take() {
                    Some(c) if cache_this => c,
                    _ => {
                        let (loss, size) = self.objective.batch_loss(b)?;
                        check_loss(&loss, size, b, true)?;
                        let grads =
                            Tensor::f_run_backward(&[&loss], &self.params.tensors, true, true)
                                .map_err(|e| {
                                    Error::torch(
                                        format!("differentiating the loss of batch {b}"),
                                        e,
                                    )
                                })?;
                        check_reached(&grads, b)?;
                        (grads, size)
                    }
                };
                // ⟨g, v⟩ over the tensors whose gradient still depends on θ;
                // the others have a zero Hessian block row.
                let mut dot: Option<Tensor> = None;
                for (g, v) in grads.iter().zip(&vt) {
                    if g.defined() && g.requires_grad() {
                        let term = (g * v).sum(g.kind());
                        dot = Some(match dot {
                            Some(d) => d + term,
                            None => term,
                        });
                    }
                }
                if let Some(dot) = dot {
                    let hv =
                        Tensor::f_run_backward(&[&dot], &self.params.tensors, cache_this, false)
                            .map_err(|e| {
                                Error::torch(format!("differentiating ⟨g, v⟩ of batch {b}"), e)
                            })?;
                    accumulate(&mut acc, &hv, size as f64);
                }
                total += size;
                if cache_this {
                    self.cache = Some((grads, size));
                }
            }
            self.finish_sum(acc, total as f64)
        })
    }

    fn checked_batches(&self) -> Result<usize> {
        match self.objective.num_batches() {
            0 => Err(Error::invalid(
                "objective",
                "has no batches; expected at least 1",
            )),
            n => Ok(n),
        }
    }

    fn zeros(&self) -> Vec<Tensor> {
        self.params
            .tensors
            .iter()
            .map(|t| Tensor::zeros(t.size(), (Kind::Double, t.device())))
            .collect()
    }

    fn finish_sum(&self, acc: Vec<Tensor>, divisor: f64) -> Result<Vec<f64>> {
        let flat: Vec<Tensor> = acc.iter().map(|t| t.flatten(0, -1)).collect();
        let out = to_vec(
            &(Tensor::cat(&flat, 0) / divisor),
            "reading a Hessian-vector product",
        )?;
        if out.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "Hessian-vector product",
                "has non-finite values (the loss or its derivatives overflow at these parameters)",
            ));
        }
        Ok(out)
    }

    /// Runs `f` with the single-batch gradient graph cached between HVPs.
    fn cached<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.caching = true;
        let r = f(self);
        self.caching = false;
        self.cache = None;
        r
    }

    /// λmax and λmin (and the top/bottom k) by Lanczos; see [`lanczos`].
    pub fn eigenvalues(&mut self, opts: &LanczosOptions) -> Result<Spectrum> {
        let _span = tracing::info_span!(
            "hessian_eigenvalues",
            dim = self.dim(),
            tol = opts.tol,
            seed = opts.seed
        )
        .entered();
        let dim = self.dim();
        self.cached(|h| lanczos(dim, |v| h.hvp(v), opts))
    }

    /// Hutchinson's estimate of the trace, `E[zᵀHz]` over Rademacher probes
    /// `z` (entries ±1), with the standard error of the mean.
    pub fn trace(&mut self, opts: &TraceOptions) -> Result<TraceEstimate> {
        let _span = tracing::info_span!(
            "hessian_trace",
            dim = self.dim(),
            probes = opts.probes,
            seed = opts.seed
        )
        .entered();
        if opts.probes < 2 {
            return Err(Error::invalid(
                "trace probes",
                format!(
                    "must be at least 2 (for a standard error), got {}",
                    opts.probes
                ),
            ));
        }
        let dim = self.dim();
        let start = self.hvps;
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let values = self.cached(|h| {
            (0..opts.probes)
                .map(|_| {
                    let z = rademacher(&mut rng, dim);
                    Ok(dot(&z, &h.hvp(&z)?))
                })
                .collect::<Result<Vec<f64>>>()
        })?;
        let n = values.len() as f64;
        let estimate = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - estimate).powi(2)).sum::<f64>() / (n - 1.0);
        let std_error = (var / n).sqrt();
        tracing::info!(estimate, std_error, "Hutchinson trace");
        Ok(TraceEstimate {
            estimate,
            std_error,
            probes: opts.probes,
            seed: opts.seed,
            dim,
            hvps: self.hvps - start,
            values,
        })
    }

    /// The eigenvalue spectral density by stochastic Lanczos quadrature.
    pub fn density(&mut self, opts: &DensityOptions) -> Result<SpectralDensity> {
        let _span = tracing::info_span!(
            "hessian_density",
            dim = self.dim(),
            probes = opts.probes,
            steps = opts.steps
        )
        .entered();
        let dim = self.dim();
        let start = self.hvps;
        let quad = self.cached(|h| slq_nodes(dim, |v| h.hvp(v), opts))?;
        Ok(SpectralDensity::from_quadrature(
            quad,
            opts,
            dim,
            self.hvps - start,
        ))
    }
}

fn check_loss(loss: &Tensor, size: usize, b: usize, needs_grad: bool) -> Result<()> {
    if loss.numel() != 1 {
        return Err(Error::invalid(
            "objective",
            format!(
                "batch_loss({b}) returned a tensor of shape {:?}; expected a scalar mean loss",
                loss.size()
            ),
        ));
    }
    if size == 0 {
        return Err(Error::invalid(
            "objective",
            format!("batch_loss({b}) reported a batch of 0 samples"),
        ));
    }
    if needs_grad && !loss.requires_grad() {
        return Err(Error::invalid(
            "objective",
            format!("the loss of batch {b} does not require grad: it does not depend on the selected parameters, or was computed with gradients off"),
        ));
    }
    Ok(())
}

/// A loss that reaches none of the selected parameters (e.g. an objective
/// built on another copy of the model) would give a silent zero Hessian.
fn check_reached(grads: &[Tensor], b: usize) -> Result<()> {
    if grads.iter().any(|g| g.defined()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "objective",
            format!("the loss of batch {b} does not depend on any selected parameter; is the objective's model the one whose VarStore was given?"),
        ))
    }
}

fn accumulate(acc: &mut [Tensor], parts: &[Tensor], weight: f64) {
    tch::no_grad(|| {
        for (a, p) in acc.iter_mut().zip(parts) {
            if p.defined() {
                *a += p.detach().to_kind(Kind::Double) * weight;
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Lanczos
// ---------------------------------------------------------------------------

/// Settings of [`lanczos`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanczosOptions {
    /// Relative tolerance: a Ritz value θ is accepted when its residual
    /// bound `|β_m·s_m|` is at most `tol·|θ|` (default 1e-3; the reference
    /// uses 1e-2).
    pub tol: f64,
    /// Iteration cap = most Hessian-vector products (default 300).
    pub max_iter: usize,
    /// Seed of the start vector (ChaCha8, standard normal entries; default 0).
    pub seed: u64,
    /// Number of largest eigenvalues wanted (default 1).
    pub top_k: usize,
    /// Number of smallest eigenvalues wanted (default 1).
    pub bottom_k: usize,
}

impl Default for LanczosOptions {
    fn default() -> Self {
        LanczosOptions {
            tol: 1e-3,
            max_iter: 300,
            seed: 0,
            top_k: 1,
            bottom_k: 1,
        }
    }
}

impl LanczosOptions {
    /// Checks the settings for an operator of dimension `dim`.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if !(self.tol > 0.0 && self.tol < 1.0) {
            return Err(Error::invalid(
                "Lanczos tol",
                format!("must be in (0, 1), got {}", self.tol),
            ));
        }
        if self.max_iter == 0 {
            return Err(Error::invalid("Lanczos max_iter", "must be at least 1"));
        }
        if dim == 0 {
            return Err(Error::invalid(
                "Lanczos dimension",
                "the operator has dimension 0",
            ));
        }
        for (name, k) in [("top_k", self.top_k), ("bottom_k", self.bottom_k)] {
            if k == 0 || k > dim {
                return Err(Error::invalid(
                    format!("Lanczos {name}"),
                    format!("must be between 1 and the dimension {dim}, got {k}"),
                ));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "Lanczos tol {} max_iter {} seed {} top_k {} bottom_k {}",
            self.tol, self.max_iter, self.seed, self.top_k, self.bottom_k
        )
    }
}

/// Extreme eigenvalues found by [`lanczos`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    /// Largest eigenvalue (= `top[0]`).
    pub lambda_max: f64,
    /// Smallest eigenvalue (= `bottom[0]`).
    pub lambda_min: f64,
    /// The `top_k` largest eigenvalues, descending.
    pub top: Vec<f64>,
    /// The `bottom_k` smallest eigenvalues, ascending.
    pub bottom: Vec<f64>,
    /// Residual bounds `|β_m·s_m|` of `top`.
    pub top_residuals: Vec<f64>,
    /// Residual bounds of `bottom`.
    pub bottom_residuals: Vec<f64>,
    /// Operator applications (Hessian-vector products) used.
    pub hvps: usize,
    /// Dimension of the operator.
    pub dim: usize,
    /// True when the Krylov space became invariant (all of it was explored,
    /// e.g. a problem smaller than the iteration count): the values are then
    /// exact up to rounding.
    pub exhausted: bool,
    /// The settings used (seed, tolerance, cap, k).
    pub options: LanczosOptions,
}

impl Spectrum {
    /// `|λmin / λmax|`, the paper's measure of non-convexity (Figure 7).
    pub fn abs_ratio(&self) -> f64 {
        (self.lambda_min / self.lambda_max).abs()
    }
}

/// β below this fraction of ‖T‖ is a breakdown: the Krylov space is invariant.
const BREAKDOWN: f64 = 1e-10;
/// Ritz values smaller than this fraction of the largest |θ| are judged
/// against `tol·FLOOR·max|θ|` instead of `tol·|θ|`, so eigenvalues at zero
/// (rank-deficient Hessians) can converge.
const FLOOR: f64 = 1e-6;

/// The extreme eigenvalues of a symmetric operator `op` (`v ↦ Av`, length
/// `dim`) by Lanczos with full reorthogonalization.
///
/// - Start vector: standard normal entries from ChaCha8 seeded with
///   `opts.seed`, normalized; the same seed gives the same result.
/// - Each iteration applies `op` once, orthogonalizes against every previous
///   Lanczos vector (twice: "twice is enough"), and solves the tridiagonal
///   eigenproblem (nalgebra `SymmetricEigen`).
/// - Converged when the `top_k` largest and `bottom_k` smallest Ritz values θ
///   all have residual bounds `|β_m·s_m| ≤ tol·max(|θ|, 1e-6·max|θ|)`.
/// - When β vanishes (the Krylov space is invariant: after `dim` steps, or
///   early for repeated eigenvalues) the Ritz values are exact. After `dim`
///   steps the run stops. Earlier, with `top_k = bottom_k = 1` it stops too
///   (a random start reaches every distinct eigenvalue); otherwise it goes on
///   from a fresh random vector orthogonal to all previous ones, which finds
///   the multiplicities a single Krylov space cannot show.
/// - Not converged within `opts.max_iter` iterations: an
///   [`Error::InvalidArgument`] naming the current estimates, never a value.
pub fn lanczos<F>(dim: usize, mut op: F, opts: &LanczosOptions) -> Result<Spectrum>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    opts.validate(dim)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let start = unit(random_normal(&mut rng, dim));
    let wanted = opts.top_k.max(opts.bottom_k);
    let mut last: Option<(Ritz, f64)> = None;
    let k = krylov(
        dim,
        &mut op,
        start,
        opts.max_iter,
        Some(&mut rng),
        |alpha, beta, coupling, exhausted| {
            let ritz = Ritz::new(alpha, beta);
            let m = alpha.len();
            // A breakdown (coupling exactly 0 before the space is exhausted) means
            // an invariant subspace: with a random start it holds every distinct
            // eigenvalue, so λmax and λmin are exact, but top/bottom k > 1 may
            // miss multiplicities, which only the restarted block can show.
            let breakdown = coupling == 0.0 && !exhausted;
            let converged = if exhausted {
                true
            } else if m < wanted || (breakdown && wanted > 1) {
                false
            } else {
                let scale = ritz.values.iter().fold(0.0f64, |a, t| a.max(t.abs()));
                let ok = |i: usize| {
                    let theta = ritz.values[i];
                    (coupling * ritz.last[i]).abs() <= opts.tol * theta.abs().max(FLOOR * scale)
                };
                (0..opts.bottom_k).all(ok) && (m - opts.top_k..m).all(ok)
            };
            tracing::trace!(
                iteration = m,
                theta_max = ritz.values[m - 1],
                theta_min = ritz.values[0],
                coupling,
                "Lanczos step"
            );
            last = Some((ritz, coupling));
            converged
        },
    )?;
    let (ritz, coupling) = last.ok_or_else(|| Error::invalid("Lanczos", "made no iteration"))?;
    let m = ritz.values.len();
    let residual = |i: usize| (coupling * ritz.last[i]).abs();
    if !k.converged {
        return Err(Error::invalid(
            "Lanczos max_iter",
            format!(
                "{} iterations did not converge to tol {} (λmax ≈ {:.6e} with residual {:.2e}, λmin ≈ {:.6e} with residual {:.2e}); raise max_iter or tol",
                opts.max_iter,
                opts.tol,
                ritz.values[m - 1],
                residual(m - 1),
                ritz.values[0],
                residual(0)
            ),
        ));
    }
    if m < wanted {
        return Err(Error::invalid(
            "Lanczos",
            format!("the Krylov space was exhausted after {m} values, fewer than the {wanted} asked for"),
        ));
    }
    let top_idx: Vec<usize> = (m - opts.top_k..m).rev().collect();
    let bottom_idx: Vec<usize> = (0..opts.bottom_k).collect();
    let s = Spectrum {
        lambda_max: ritz.values[m - 1],
        lambda_min: ritz.values[0],
        top: top_idx.iter().map(|&i| ritz.values[i]).collect(),
        bottom: bottom_idx.iter().map(|&i| ritz.values[i]).collect(),
        top_residuals: top_idx.iter().map(|&i| residual(i)).collect(),
        bottom_residuals: bottom_idx.iter().map(|&i| residual(i)).collect(),
        hvps: k.steps,
        dim,
        exhausted: k.exhausted,
        options: opts.clone(),
    };
    tracing::info!(
        lambda_max = s.lambda_max,
        lambda_min = s.lambda_min,
        hvps = s.hvps,
        "Lanczos converged"
    );
    Ok(s)
}

/// Eigen-decomposition of a tridiagonal matrix: Ritz values (ascending) with
/// the first and last components of their eigenvectors.
struct Ritz {
    values: Vec<f64>,
    first: Vec<f64>,
    last: Vec<f64>,
}

impl Ritz {
    fn new(alpha: &[f64], beta: &[f64]) -> Ritz {
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

/// The outcome of a Lanczos recurrence.
struct Krylov {
    alpha: Vec<f64>,
    beta: Vec<f64>,
    steps: usize,
    converged: bool,
    exhausted: bool,
}

/// Runs the Lanczos recurrence with full reorthogonalization from the unit
/// vector `start` for at most `max_steps` steps. After each step `done` gets
/// the tridiagonal matrix (α, off-diagonal β), the coupling β_m to the next
/// vector (0 at a breakdown) and whether the space is exhausted; returning
/// true stops. At a breakdown a fresh random vector orthogonal to the basis
/// continues the run when `restart` is given; otherwise the run stops.
fn krylov<F>(
    dim: usize,
    op: &mut F,
    start: Vec<f64>,
    max_steps: usize,
    mut restart: Option<&mut ChaCha8Rng>,
    mut done: impl FnMut(&[f64], &[f64], f64, bool) -> bool,
) -> Result<Krylov>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    let max_steps = max_steps.min(dim);
    let mut basis: Vec<Vec<f64>> = vec![start];
    let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut scale = 0.0f64;
    loop {
        let j = basis.len() - 1;
        let mut w = op(&basis[j])?;
        if w.len() != dim {
            return Err(Error::invalid(
                "operator",
                format!("returned {} values for a vector of {dim}", w.len()),
            ));
        }
        if w.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid("operator", "returned non-finite values"));
        }
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
        let mut exhausted = basis.len() == dim;
        let mut next = None;
        if !exhausted {
            if !breakdown {
                next = Some(w.iter().map(|x| x / b).collect::<Vec<f64>>());
            } else if let Some(rng) = restart.as_deref_mut() {
                let mut r = unit(random_normal(rng, dim));
                orthogonalize(&basis, &mut r);
                let n = norm(&r);
                if n > 1e-8 {
                    next = Some(r.iter().map(|x| x / n).collect());
                } else {
                    exhausted = true;
                }
            } else {
                exhausted = true;
            }
        }
        let coupling = if breakdown || exhausted { 0.0 } else { b };
        if breakdown && !exhausted {
            tracing::debug!(
                step = alpha.len(),
                "Lanczos breakdown: invariant Krylov space, restarting"
            );
        }
        let stop = done(&alpha, &beta, coupling, exhausted);
        let steps = alpha.len();
        if stop || exhausted || steps >= max_steps || next.is_none() {
            return Ok(Krylov {
                alpha,
                beta,
                steps,
                converged: stop,
                exhausted,
            });
        }
        beta.push(coupling);
        basis.extend(next);
    }
}

/// Classical Gram–Schmidt against every basis vector, applied twice.
fn orthogonalize(basis: &[Vec<f64>], w: &mut [f64]) {
    for _ in 0..2 {
        for q in basis {
            let c = dot(w, q);
            axpy(-c, q, w);
        }
    }
}

/// Inner product with eight independent partial sums, so the compiler can
/// vectorize it (a single running sum fixes the order of additions and
/// cannot); the reorthogonalization spends most of its time here.
fn dot(a: &[f64], b: &[f64]) -> f64 {
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

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn axpy(c: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += c * xi;
    }
}

fn unit(mut v: Vec<f64>) -> Vec<f64> {
    let n = norm(&v);
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn random_normal(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f64> {
    (0..dim).map(|_| StandardNormal.sample(rng)).collect()
}

fn rademacher(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|_| if rng.next_u32() & 1 == 1 { 1.0 } else { -1.0 })
        .collect()
}

// ---------------------------------------------------------------------------
// Trace and spectral density
// ---------------------------------------------------------------------------

/// Settings of [`Hessian::trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceOptions {
    /// Number of Rademacher probes (= HVPs; at least 2; default 100).
    pub probes: usize,
    /// Seed of the probes (ChaCha8; default 0).
    pub seed: u64,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            probes: 100,
            seed: 0,
        }
    }
}

/// A Hutchinson trace estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEstimate {
    /// Mean of the probe values `zᵀHz`.
    pub estimate: f64,
    /// Standard error of the mean: sample standard deviation / √probes.
    pub std_error: f64,
    /// Number of probes.
    pub probes: usize,
    /// Seed of the probes.
    pub seed: u64,
    /// Dimension of the Hessian.
    pub dim: usize,
    /// Hessian-vector products used.
    pub hvps: usize,
    /// Every probe's value `zᵀHz`, in order.
    pub values: Vec<f64>,
}

/// Settings of [`Hessian::density`] (defaults: PyHessian's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensityOptions {
    /// Number of random probes (default 1).
    pub probes: usize,
    /// Lanczos steps per probe (default 100; capped at the dimension).
    pub steps: usize,
    /// Seed of the probes (ChaCha8 Rademacher vectors; default 0).
    pub seed: u64,
    /// Number of points of the density grid (default 10,000).
    pub bins: usize,
    /// Gaussian broadening: the variance is `sigma_squared·max(1, width)`
    /// with `width` the grid's extent (default 1e-5).
    pub sigma_squared: f64,
}

impl Default for DensityOptions {
    fn default() -> Self {
        DensityOptions {
            probes: 1,
            steps: 100,
            seed: 0,
            bins: 10_000,
            sigma_squared: 1e-5,
        }
    }
}

/// An eigenvalue spectral density from stochastic Lanczos quadrature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralDensity {
    /// Evenly spaced eigenvalue grid, from the smallest node − 0.01 to the
    /// largest + 0.01.
    pub grid: Vec<f64>,
    /// Density on `grid` (integrates to 1 over it), averaged over probes.
    pub density: Vec<f64>,
    /// Quadrature nodes (Ritz values, ascending) per probe.
    pub nodes: Vec<Vec<f64>>,
    /// Quadrature weights (squared first eigenvector components, summing to
    /// 1) per probe.
    pub weights: Vec<Vec<f64>>,
    /// Variance of the Gaussians used.
    pub variance: f64,
    /// Dimension of the Hessian.
    pub dim: usize,
    /// Hessian-vector products used.
    pub hvps: usize,
    /// The settings used (seed included).
    pub options: DensityOptions,
}

type Quadrature = Vec<(Vec<f64>, Vec<f64>)>;

fn slq_nodes<F>(dim: usize, mut op: F, opts: &DensityOptions) -> Result<Quadrature>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    if opts.probes == 0 || opts.steps == 0 || opts.bins < 2 {
        return Err(Error::invalid(
            "density options",
            format!("need probes ≥ 1, steps ≥ 1 and bins ≥ 2; got {opts:?}"),
        ));
    }
    if !(opts.sigma_squared > 0.0 && opts.sigma_squared.is_finite()) {
        return Err(Error::invalid(
            "density sigma_squared",
            format!("must be > 0, got {}", opts.sigma_squared),
        ));
    }
    if dim == 0 {
        return Err(Error::invalid("density", "the operator has dimension 0"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut out = Vec::with_capacity(opts.probes);
    for p in 0..opts.probes {
        let _span = tracing::debug_span!("slq_probe", probe = p).entered();
        let v = unit(rademacher(&mut rng, dim));
        let k = krylov(dim, &mut op, v, opts.steps, None, |_, _, _, _| false)?;
        let ritz = Ritz::new(&k.alpha, &k.beta);
        let weights = ritz.first.iter().map(|s| s * s).collect();
        out.push((ritz.values, weights));
    }
    Ok(out)
}

impl SpectralDensity {
    fn from_quadrature(
        quad: Quadrature,
        opts: &DensityOptions,
        dim: usize,
        hvps: usize,
    ) -> SpectralDensity {
        let all = quad.iter().flat_map(|(n, _)| n.iter().copied());
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        let (lo, hi) = (lo - 0.01, hi + 0.01);
        let variance = opts.sigma_squared * (hi - lo).max(1.0);
        let step = (hi - lo) / (opts.bins - 1) as f64;
        let grid: Vec<f64> = (0..opts.bins).map(|i| lo + step * i as f64).collect();
        let mut density = vec![0.0; opts.bins];
        let norm_c = (2.0 * std::f64::consts::PI * variance).sqrt();
        for (nodes, weights) in &quad {
            let one: Vec<f64> = grid
                .iter()
                .map(|&t| {
                    nodes
                        .iter()
                        .zip(weights)
                        .map(|(x0, w)| w * (-(t - x0).powi(2) / (2.0 * variance)).exp() / norm_c)
                        .sum::<f64>()
                })
                .collect();
            let total = one.iter().sum::<f64>() * step;
            for (d, o) in density.iter_mut().zip(&one) {
                *d += if total > 0.0 { o / total } else { 0.0 } / quad.len() as f64;
            }
        }
        let (nodes, weights) = quad.into_iter().unzip();
        SpectralDensity {
            grid,
            density,
            nodes,
            weights,
            variance,
            dim,
            hvps,
            options: opts.clone(),
        }
    }

    /// The quadrature estimate of `tr(H)/dim` (the mean eigenvalue):
    /// `Σ w_i θ_i`, averaged over probes.
    pub fn mean_eigenvalue(&self) -> f64 {
        let per: Vec<f64> = self
            .nodes
            .iter()
            .zip(&self.weights)
            .map(|(n, w)| dot(n, w))
            .collect();
        per.iter().sum::<f64>() / per.len().max(1) as f64
    }
}

// ---------------------------------------------------------------------------
// Curvature maps
// ---------------------------------------------------------------------------

/// Split name of λmax in the surface rows of a curvature map.
pub const SPLIT_LAMBDA_MAX: &str = "lambda_max";
/// Split name of λmin.
pub const SPLIT_LAMBDA_MIN: &str = "lambda_min";
/// Split name of |λmin/λmax|.
pub const SPLIT_ABS_RATIO: &str = "abs_ratio";
/// Name of the curvature table in a curvature map's directory.
pub const CURVATURE_FILE: &str = "curvature.parquet";
/// Metadata key of the [`CurvatureSpec`] in `curvature.parquet`.
pub const CURVATURE_META_KEY: &str = "tch_landscape.curvature";

/// An [`Evaluator`] whose "evaluation" is a Lanczos run at the model's
/// current parameters: it lets [`Surface`] lay curvature over a grid, with
/// its resuming, restoring, parallel replicas and shards. Each call returns
/// three rows: `lambda_max`, `lambda_min` and `abs_ratio`, the value in
/// `loss`, accuracy `None`.
#[derive(Debug)]
pub struct CurvatureEvaluator<O> {
    hessian: Hessian<O>,
    opts: LanczosOptions,
    last: Option<Spectrum>,
}

impl<O: Objective> CurvatureEvaluator<O> {
    /// An evaluator of the Hessian of `objective` with respect to the
    /// variables of `vs` chosen by `selection`, with the Lanczos settings `opts`.
    pub fn new(
        vs: &VarStore,
        objective: O,
        selection: &ParamSelection,
        opts: LanczosOptions,
    ) -> Result<Self> {
        let hessian = Hessian::at(vs, objective, selection)?;
        opts.validate(hessian.dim())?;
        Ok(CurvatureEvaluator {
            hessian,
            opts,
            last: None,
        })
    }

    /// The spectrum found by the last call of `evaluate`.
    pub fn last_spectrum(&self) -> Option<&Spectrum> {
        self.last.as_ref()
    }

    /// Hessian-vector products used by all calls so far.
    pub fn hvps(&self) -> usize {
        self.hessian.hvps()
    }

    /// The Hessian operator.
    pub fn hessian(&mut self) -> &mut Hessian<O> {
        &mut self.hessian
    }
}

impl<O: Objective> Evaluator for CurvatureEvaluator<O> {
    fn evaluate(&mut self) -> Result<Vec<SplitResult>> {
        // The surface code sets points under no_grad; HVPs need autograd.
        let s = tch::with_grad(|| self.hessian.eigenvalues(&self.opts))?;
        let row = |split: &str, loss: f64| SplitResult {
            split: split.to_string(),
            loss,
            accuracy: None,
        };
        let rows = vec![
            row(SPLIT_LAMBDA_MAX, s.lambda_max),
            row(SPLIT_LAMBDA_MIN, s.lambda_min),
            row(SPLIT_ABS_RATIO, s.abs_ratio()),
        ];
        self.last = Some(s);
        Ok(rows)
    }

    fn describe(&self) -> String {
        format!(
            "Hessian curvature ({}) of {}",
            self.opts.describe(),
            self.hessian.describe()
        )
    }
}

/// What a curvature map holds: everything that determines its values.
/// Stored as JSON under [`CURVATURE_META_KEY`] in `curvature.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvatureSpec {
    /// Always `tch-landscape-curvature`.
    pub format: String,
    /// On-disk schema version.
    pub schema_version: u32,
    /// The directions' provenance and settings (id, seed, normalization).
    pub directions: DirectionsMeta,
    /// The grid.
    pub grid: Grid,
    /// Lanczos settings (seed, tol, max_iter).
    pub lanczos: LanczosOptions,
    /// The parameters the Hessian is taken with respect to.
    pub params: ParamSelection,
    /// Full description of the evaluator (objective, batches, parameters).
    pub evaluator: String,
    /// The shard, when only every n-th point from i was computed (stored
    /// as `[i, n]`).
    pub shard: Option<Shard>,
    /// When the computation was first started (RFC 3339 UTC).
    pub created_utc: String,
}

/// Curvature at one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvaturePoint {
    /// Flat index `iy * nx + ix`.
    pub index: usize,
    /// Column.
    pub ix: usize,
    /// Row.
    pub iy: usize,
    /// x coordinate (α).
    pub x: f64,
    /// y coordinate (β).
    pub y: f64,
    /// Smallest Hessian eigenvalue.
    pub lambda_min: f64,
    /// Largest Hessian eigenvalue.
    pub lambda_max: f64,
    /// `|λmin / λmax|`.
    pub abs_ratio: f64,
}

/// A computed curvature map.
#[derive(Debug, Clone)]
pub struct CurvatureMap {
    /// The output directory.
    pub dir: PathBuf,
    /// Its specification.
    pub spec: CurvatureSpec,
    /// Every computed point, by flat index.
    pub points: Vec<CurvaturePoint>,
    /// Points computed by this call (the rest were resumed from disk).
    pub computed: usize,
    /// Seconds this call spent computing.
    pub seconds: f64,
    /// True when every point (of the shard) is done and `curvature.parquet`
    /// was written.
    pub complete: bool,
}

impl CurvatureMap {
    fn values(&self, f: impl Fn(&CurvaturePoint) -> f64) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.spec.grid.len()];
        for p in &self.points {
            out[p.index] = f(p);
        }
        out
    }

    /// λmin in flat grid order (x fastest; NaN where not computed).
    pub fn lambda_min(&self) -> Vec<f64> {
        self.values(|p| p.lambda_min)
    }

    /// λmax in flat grid order.
    pub fn lambda_max(&self) -> Vec<f64> {
        self.values(|p| p.lambda_max)
    }

    /// |λmin/λmax| in flat grid order.
    pub fn abs_ratio(&self) -> Vec<f64> {
        self.values(|p| p.abs_ratio)
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.spec.grid
    }

    /// The point in column `ix`, row `iy`, if computed.
    pub fn get(&self, ix: usize, iy: usize) -> Option<&CurvaturePoint> {
        self.points.iter().find(|p| p.ix == ix && p.iy == iy)
    }

    /// The point at (0, 0), when the grid has one and it was computed.
    pub fn centre(&self) -> Option<&CurvaturePoint> {
        self.points.iter().find(|p| p.x == 0.0 && p.y == 0.0)
    }

    /// Reads `curvature.parquet` of a finished map directory.
    pub fn load(dir: impl AsRef<Path>) -> Result<CurvatureMap> {
        let dir = dir.as_ref();
        let path = dir.join(CURVATURE_FILE);
        let corrupt = |r: String| Error::corrupt(&path, r);
        let table = read_parquet(&path, &curvature_schema(), "a curvature map")?;
        let spec: CurvatureSpec = table.json_meta(&path, CURVATURE_META_KEY, "a curvature map")?;
        let mut points = Vec::new();
        for batch in &table.batches {
            let u = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .cloned()
            };
            let f = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .cloned()
            };
            let (Some(index), Some(ix), Some(iy)) = (u(0), u(1), u(2)) else {
                return Err(corrupt("index columns are not uint32".into()));
            };
            let (Some(x), Some(y), Some(lmin), Some(lmax), Some(ratio)) =
                (f(3), f(4), f(5), f(6), f(7))
            else {
                return Err(corrupt("value columns are not float64".into()));
            };
            for r in 0..batch.num_rows() {
                let i = index.value(r) as usize;
                if i >= spec.grid.len() {
                    return Err(corrupt(format!(
                        "point index {i} outside the {}-point grid",
                        spec.grid.len()
                    )));
                }
                points.push(CurvaturePoint {
                    index: i,
                    ix: ix.value(r) as usize,
                    iy: iy.value(r) as usize,
                    x: x.value(r),
                    y: y.value(r),
                    lambda_min: lmin.value(r),
                    lambda_max: lmax.value(r),
                    abs_ratio: ratio.value(r),
                });
            }
        }
        Ok(CurvatureMap {
            dir: dir.to_path_buf(),
            spec,
            points,
            computed: 0,
            seconds: 0.0,
            complete: true,
        })
    }
}

/// Columns of `curvature.parquet`.
pub fn curvature_schema() -> SchemaRef {
    let u = |n: &str| Field::new(n, DataType::UInt32, false);
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        u("index"),
        u("ix"),
        u("iy"),
        f("x"),
        f("y"),
        f("lambda_min"),
        f("lambda_max"),
        f("abs_ratio"),
    ]))
}

/// Configures and computes a curvature map: λmin, λmax and |λmin/λmax| of
/// the Hessian at every point θ* + αδ + βη of a grid (Figure 7).
///
/// ```no_run
/// # use tch_landscape::analysis::{directions::*, hessian::*};
/// # fn main() -> tch_landscape::Result<()> {
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch_landscape::models::Mlp::new(&vs.root(), &[64, 10]);
/// # let (x, y) = (tch::Tensor::zeros([8, 64], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU));
/// let dirs = Directions::random_plane_at(&vs, 123, Normalization::Filter, Ignore::BiasAndBn)?;
/// let objective = SupervisedObjective::new(&model, &x, &y)?;
/// let map = Curvature::new(&dirs)
///     .grid(-0.5..=0.5, 7, -0.5..=0.5, 7)
///     .lanczos(LanczosOptions { tol: 1e-2, ..Default::default() })
///     .evaluate(&vs, objective, "runs/mlp/curvature")?; // resumable
/// println!("{:?}", map.abs_ratio());
/// # Ok(()) }
/// ```
///
/// It runs on [`Surface`] with a [`CurvatureEvaluator`], so its directory is
/// a surface directory (`surface.json`, `directions.parquet`, `points/`,
/// `surface.parquet` with one row per point and quantity) plus
/// `curvature.parquet`: columns `index, ix, iy, x, y, lambda_min,
/// lambda_max, abs_ratio`, zstd, with the [`CurvatureSpec`] in metadata.
/// A killed computation resumes where it stopped; the model's variables are
/// restored bit-exactly afterwards.
pub struct Curvature<'a> {
    surface: SurfaceBuilder<'a>,
    selection: ParamSelection,
    opts: LanczosOptions,
    shard: Option<Shard>,
    stopped: bool,
}

impl std::fmt::Debug for Curvature<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Curvature")
            .field("surface", &self.surface)
            .field("selection", &self.selection)
            .field("lanczos", &self.opts)
            .finish()
    }
}

impl<'a> Curvature<'a> {
    /// A curvature map along `dirs` (default grid: as [`Surface::builder`]).
    pub fn new(dirs: &'a Directions) -> Curvature<'a> {
        Curvature {
            surface: Surface::builder(dirs).with_sharpness(false),
            selection: ParamSelection::default(),
            opts: LanczosOptions::default(),
            shard: None,
            stopped: false,
        }
    }

    /// A 2-D grid of `nx` × `ny` points over the given ranges.
    pub fn grid(
        mut self,
        x: RangeInclusive<f64>,
        nx: usize,
        y: RangeInclusive<f64>,
        ny: usize,
    ) -> Self {
        self.surface = self.surface.grid(x, nx, y, ny);
        self
    }

    /// A 1-D slice of `nx` points along the first direction.
    pub fn line(mut self, x: RangeInclusive<f64>, nx: usize) -> Self {
        self.surface = self.surface.line(x, nx);
        self
    }

    /// The parameters the Hessian is taken with respect to (default
    /// [`ParamSelection::MultiDim`]).
    pub fn params(mut self, selection: ParamSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Lanczos settings (default [`LanczosOptions::default`]).
    pub fn lanczos(mut self, opts: LanczosOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Points per segment file (default 16).
    pub fn flush_every(mut self, n: usize) -> Self {
        self.surface = self.surface.flush_every(n);
        self
    }

    /// Compute only `shard`: the points whose flat index ≡ i (mod n).
    pub fn shard(mut self, shard: Shard) -> Self {
        self.surface = self.surface.shard(shard);
        self.shard = Some(shard);
        self
    }

    /// Calls `f(done, total)` after each point.
    pub fn on_progress(mut self, f: impl FnMut(usize, usize) + 'a) -> Self {
        self.surface = self.surface.on_progress(f);
        self
    }

    /// Stops (as if killed) after computing `n` points; for tests of resuming.
    #[doc(hidden)]
    pub fn stop_after(mut self, n: usize) -> Self {
        // (Replaces the progress callback: stops after `n` computed points.)
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(n == 0));
        let (set, mut computed) = (flag.clone(), 0usize);
        self.surface = self.surface.cancel_on(flag).on_progress(move |_, _| {
            computed += 1;
            if computed >= n {
                set.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        self.stopped = true;
        self
    }

    /// Computes the map with one model: sets each point into the variables of
    /// `vs`, runs Lanczos on the Hessian of `objective` (which must compute
    /// its loss from those variables), writes into `out`. Resumes from what
    /// `out` already holds.
    pub fn evaluate<O: Objective>(
        self,
        vs: &VarStore,
        objective: O,
        out: impl AsRef<Path>,
    ) -> Result<CurvatureMap> {
        let out = out.as_ref();
        let _span = tracing::info_span!("curvature_map", out = %out.display()).entered();
        let mut eval = CurvatureEvaluator::new(vs, objective, &self.selection, self.opts.clone())?;
        let (selection, opts, shard, stopped) =
            (self.selection, self.opts, self.shard, self.stopped);
        let result = self.surface.build()?.evaluate(vs, &mut eval, out)?;
        finish_map(result, selection, opts, shard, stopped)
    }

    /// Computes the map with `runner` (e.g. every MPI rank, see
    /// `Mpi::evaluate_curvature`): the writing process gets `Some(map)`,
    /// the others `None`.
    #[cfg(feature = "mpi")]
    pub(crate) fn evaluate_on<O: Objective>(
        self,
        runner: &dyn Runner,
        vs: &VarStore,
        objective: O,
        out: &Path,
    ) -> Result<Option<CurvatureMap>> {
        let _span = tracing::info_span!("curvature_map", out = %out.display()).entered();
        let mut eval = CurvatureEvaluator::new(vs, objective, &self.selection, self.opts.clone())?;
        let (selection, opts, shard, stopped) =
            (self.selection, self.opts, self.shard, self.stopped);
        match runner.evaluate(&self.surface.build()?, vs, &mut eval, out)? {
            Some(result) => finish_map(result, selection, opts, shard, stopped).map(Some),
            None => Ok(None),
        }
    }

    /// Computes the map with `replicas` copies of the model, each on its own
    /// thread (see [`Surface::evaluate_parallel`]). `factory` builds one
    /// replica — its VarStore and an objective computing its loss from it —
    /// on the thread that uses it. Set `tch::set_num_threads` to cores /
    /// replicas.
    pub fn evaluate_parallel<F>(
        self,
        replicas: usize,
        factory: F,
        out: impl AsRef<Path>,
    ) -> Result<CurvatureMap>
    where
        F: Fn() -> Result<(VarStore, Box<dyn Objective>)> + Sync,
    {
        let out = out.as_ref();
        let _span = tracing::info_span!("curvature_map", out = %out.display(), replicas).entered();
        let (selection, opts, shard, stopped) = (
            self.selection.clone(),
            self.opts.clone(),
            self.shard,
            self.stopped,
        );
        let make = || -> Result<(VarStore, Box<dyn Evaluator>)> {
            let (vs, objective) = factory()?;
            let eval: Box<dyn Evaluator> = Box::new(CurvatureEvaluator::new(
                &vs,
                objective,
                &selection,
                opts.clone(),
            )?);
            Ok((vs, eval))
        };
        let result = self
            .surface
            .build()?
            .evaluate_parallel(replicas, make, out)?;
        finish_map(result, selection, opts, shard, stopped)
    }
}

/// Combines curvature-map shards (computed with [`Curvature::shard`]) into
/// `out`, which then holds what one process computing the whole map writes.
/// Refuses shards of different maps (directions, grid, Hessian settings,
/// parameters, objective), missing or repeated shards and unfinished ones,
/// as [`merge_shards`](crate::analysis::surface::merge_shards) does.
pub fn merge_curvature_shards(
    shards: &[impl AsRef<Path>],
    out: impl AsRef<Path>,
) -> Result<CurvatureMap> {
    let mut first: Option<(PathBuf, CurvatureSpec)> = None;
    for dir in shards {
        let dir = dir.as_ref();
        if !dir.join(CURVATURE_FILE).exists() {
            continue; // unfinished: merge_shards says so, with its progress
        }
        let spec = CurvatureMap::load(dir)?.spec;
        match &first {
            None => first = Some((dir.to_path_buf(), spec)),
            Some((fdir, f)) => {
                if f.lanczos != spec.lanczos || f.params != spec.params {
                    return Err(Error::invalid(
                        "shards",
                        format!(
                            "{} and {} are shards of different curvature maps: Lanczos {:?} / parameters {} vs {:?} / {}",
                            fdir.display(),
                            dir.display(),
                            f.lanczos,
                            f.params.describe(),
                            spec.lanczos,
                            spec.params.describe()
                        ),
                    ));
                }
            }
        }
    }
    let result = crate::analysis::surface::merge_shards(shards, out)?;
    let (_, spec) = first.expect("merge_shards refuses unfinished shards");
    finish_map(result, spec.params, spec.lanczos, None, false)
}

/// Turns the surface rows into curvature points and, when the grid (or
/// shard) is complete, writes `curvature.parquet`.
fn finish_map(
    result: SurfaceResult,
    selection: ParamSelection,
    opts: LanczosOptions,
    shard: Option<Shard>,
    stopped: bool,
) -> Result<CurvatureMap> {
    let spec = CurvatureSpec {
        format: "tch-landscape-curvature".into(),
        schema_version: 1,
        directions: result.spec.directions.clone(),
        grid: result.spec.grid,
        lanczos: opts,
        params: selection,
        evaluator: result.spec.evaluator.clone(),
        shard,
        created_utc: result.spec.created_utc.clone(),
    };
    let mut points = Vec::with_capacity(result.points.len());
    for p in &result.points {
        let get = |name: &str| {
            p.splits
                .iter()
                .find(|s| s.split == name)
                .map(|s| s.loss)
                .ok_or_else(|| {
                    Error::corrupt(
                        result.dir.join(crate::analysis::surface::RESULT_FILE),
                        format!(
                            "point {} has no '{name}' row: not a curvature map",
                            p.point.index
                        ),
                    )
                })
        };
        points.push(CurvaturePoint {
            index: p.point.index,
            ix: p.point.ix,
            iy: p.point.iy,
            x: p.point.x,
            y: p.point.y,
            lambda_min: get(SPLIT_LAMBDA_MIN)?,
            lambda_max: get(SPLIT_LAMBDA_MAX)?,
            abs_ratio: get(SPLIT_ABS_RATIO)?,
        });
    }
    let wanted = (0..spec.grid.len()).filter(|&i| covers(shard, i));
    let have: std::collections::HashSet<usize> = points.iter().map(|p| p.index).collect();
    let complete = !stopped && wanted.into_iter().all(|i| have.contains(&i));
    if complete {
        write_curvature(&result.dir.join(CURVATURE_FILE), &spec, &points)?;
        tracing::info!(points = points.len(), dir = %result.dir.display(), "curvature map written");
    }
    Ok(CurvatureMap {
        dir: result.dir,
        spec,
        points,
        computed: result.computed,
        seconds: result.seconds,
        complete,
    })
}

fn write_curvature(path: &Path, spec: &CurvatureSpec, points: &[CurvaturePoint]) -> Result<()> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            points.iter().map(|p| p.index as u32),
        )),
        Arc::new(UInt32Array::from_iter_values(
            points.iter().map(|p| p.ix as u32),
        )),
        Arc::new(UInt32Array::from_iter_values(
            points.iter().map(|p| p.iy as u32),
        )),
        Arc::new(Float64Array::from_iter_values(points.iter().map(|p| p.x))),
        Arc::new(Float64Array::from_iter_values(points.iter().map(|p| p.y))),
        Arc::new(Float64Array::from_iter_values(
            points.iter().map(|p| p.lambda_min),
        )),
        Arc::new(Float64Array::from_iter_values(
            points.iter().map(|p| p.lambda_max),
        )),
        Arc::new(Float64Array::from_iter_values(
            points.iter().map(|p| p.abs_ratio),
        )),
    ];
    let json_err = |source| Error::Json {
        path: path.to_path_buf(),
        source,
    };
    let mut kv = vec![KeyValue::new(
        CURVATURE_META_KEY.to_string(),
        serde_json::to_string(spec).map_err(json_err)?,
    )];
    // Flat copies of the most asked-for settings, for tools that show metadata.
    let d = &spec.directions;
    let flat = [
        ("directions_id", d.id.clone()),
        ("seed", d.seed.map(|s| s.to_string()).unwrap_or_default()),
        ("lanczos_seed", spec.lanczos.seed.to_string()),
        ("tol", spec.lanczos.tol.to_string()),
        ("max_iter", spec.lanczos.max_iter.to_string()),
        ("params", spec.params.describe()),
        ("hvp", spec.evaluator.clone()),
    ];
    for (k, v) in flat {
        kv.push(KeyValue::new(format!("tch_landscape.{k}"), v));
    }
    // The same key/values on the Arrow schema, so pyarrow's
    // `read_table(..).schema.metadata` shows them too.
    let schema = Arc::new(Schema::new_with_metadata(
        curvature_schema().fields().clone(),
        kv.iter()
            .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
            .collect::<std::collections::HashMap<String, String>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::arrow(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_key_value_metadata(Some(kv))
        .build();
    let pq_err = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    write_atomic(path, true, |w| {
        let mut writer = ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(pq_err)?;
        writer.write(&batch).map_err(pq_err)?;
        writer.close().map_err(pq_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag_op(d: Vec<f64>) -> impl FnMut(&[f64]) -> Result<Vec<f64>> {
        move |v: &[f64]| Ok(v.iter().zip(&d).map(|(x, l)| x * l).collect())
    }

    #[test]
    fn lanczos_on_a_diagonal_matrix() {
        let d: Vec<f64> = (0..200)
            .map(|i| -1.0 + 0.01 * i as f64)
            .chain([5.0, 7.0])
            .collect();
        let opts = LanczosOptions {
            tol: 1e-10,
            top_k: 2,
            ..Default::default()
        };
        let s = lanczos(d.len(), diag_op(d.clone()), &opts).unwrap();
        approx::assert_relative_eq!(s.lambda_max, 7.0, max_relative = 1e-9);
        approx::assert_relative_eq!(s.top[1], 5.0, max_relative = 1e-9);
        approx::assert_relative_eq!(s.lambda_min, -1.0, max_relative = 1e-9);
        assert!(s.hvps < d.len(), "{} HVPs", s.hvps);
    }

    #[test]
    fn small_problems_exhaust_the_krylov_space_exactly() {
        let d = vec![3.0, -2.0, 0.5];
        let opts = LanczosOptions {
            tol: 1e-12,
            top_k: 3,
            ..Default::default()
        };
        let s = lanczos(3, diag_op(d), &opts).unwrap();
        assert!(s.exhausted);
        assert_eq!(s.hvps, 3);
        for (a, b) in s.top.iter().zip([3.0, 0.5, -2.0]) {
            approx::assert_relative_eq!(*a, b, max_relative = 1e-12);
        }
    }

    #[test]
    fn repeated_eigenvalues_restart_and_find_the_multiplicity() {
        // Eigenvalues {2, 2, 2, 1, 1}: the first Krylov space has dimension 2.
        let d = vec![2.0, 2.0, 2.0, 1.0, 1.0];
        let opts = LanczosOptions {
            tol: 1e-12,
            top_k: 3,
            bottom_k: 2,
            ..Default::default()
        };
        let s = lanczos(5, diag_op(d), &opts).unwrap();
        for t in &s.top {
            approx::assert_relative_eq!(*t, 2.0, max_relative = 1e-10);
        }
        for b in &s.bottom {
            approx::assert_relative_eq!(*b, 1.0, max_relative = 1e-10);
        }
    }

    #[test]
    fn a_breakdown_does_not_hide_a_repeated_top_eigenvalue() {
        // The first Krylov space holds 3 and 1 once each; top-2 is [3, 3].
        let d = vec![3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 1.0, 1.0];
        let opts = LanczosOptions {
            tol: 1e-12,
            top_k: 2,
            ..Default::default()
        };
        let s = lanczos(8, diag_op(d), &opts).unwrap();
        approx::assert_relative_eq!(s.top[0], 3.0, max_relative = 1e-10);
        approx::assert_relative_eq!(s.top[1], 3.0, max_relative = 1e-10);
        approx::assert_relative_eq!(s.lambda_min, 1.0, max_relative = 1e-10);
    }

    #[test]
    fn zero_operator_converges_to_zero() {
        let s = lanczos(10, diag_op(vec![0.0; 10]), &LanczosOptions::default()).unwrap();
        assert_eq!((s.lambda_max, s.lambda_min), (0.0, 0.0));
    }

    #[test]
    fn slq_weights_sum_to_one_and_nodes_are_exact_for_small_problems() {
        let d = vec![1.0, 2.0, 4.0, 8.0];
        let opts = DensityOptions {
            probes: 3,
            bins: 500,
            ..Default::default()
        };
        let quad = slq_nodes(4, diag_op(d.clone()), &opts).unwrap();
        for (nodes, weights) in &quad {
            approx::assert_relative_eq!(weights.iter().sum::<f64>(), 1.0, max_relative = 1e-12);
            for (n, e) in nodes.iter().zip(&d) {
                approx::assert_relative_eq!(*n, *e, max_relative = 1e-10);
            }
            // Rademacher probes: every eigenvector gets weight 1/4.
            for w in weights {
                approx::assert_relative_eq!(*w, 0.25, max_relative = 1e-10);
            }
        }
        let sd = SpectralDensity::from_quadrature(quad, &opts, 4, 12);
        let step = sd.grid[1] - sd.grid[0];
        approx::assert_relative_eq!(
            sd.density.iter().sum::<f64>() * step,
            1.0,
            max_relative = 1e-9
        );
        approx::assert_relative_eq!(sd.mean_eigenvalue(), 15.0 / 4.0, max_relative = 1e-10);
    }
}
