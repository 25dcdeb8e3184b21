//! The Hessian of an [`Objective`] as an operator `v ↦ Hv`: Hessian-vector
//! products by double backward through tch's autograd (`g = ∂L/∂θ` with
//! `create_graph = true`, then `Hv = ∂⟨g, v⟩/∂θ`), averaged over batches,
//! with the analyses built on it.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::density::{Slq, SpectralDensity};
use super::lanczos::{Lanczos, Spectrum};
use super::objective::Objective;
use super::params::{to_vec, HessianParams};
use super::trace::{Hutchinson, TraceEstimate};
use crate::error::{Error, Result};
use crate::tensor::Selection;

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
            .field("params", &self.params.names())
            .field("dim", &self.params.numel())
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
    /// chosen by `selection` (see [`HessianParams::select`]).
    pub fn at(vs: &VarStore, objective: O, selection: &Selection) -> Result<Hessian<O>> {
        Ok(Self::new(objective, HessianParams::select(vs, selection)?))
    }

    /// The selected parameters.
    pub fn params(&self) -> &HessianParams {
        &self.params
    }

    /// Dimension of the Hessian.
    pub fn dim(&self) -> usize {
        self.params.numel()
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
        self.objective.prepare()?;
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
        self.objective.prepare()?;
        tch::with_grad(|| {
            let mut acc = self.zeros()?;
            let mut total = 0usize;
            for b in 0..nb {
                let (grads, size) = self.batch_gradient(b, false)?;
                accumulate(&mut acc, &grads, size as f64)?;
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
            let mut acc = self.zeros()?;
            let mut total = 0usize;
            for b in 0..nb {
                let (grads, size) = match self.cache.take() {
                    Some(c) if cache_this => c,
                    _ => self.batch_gradient(b, true)?,
                };
                if let Some(dot) = grad_dot(&grads, &vt, b)? {
                    let hv =
                        Tensor::f_run_backward(&[&dot], self.params.tensors(), cache_this, false)
                            .map_err(|e| {
                            Error::torch(format!("differentiating ⟨g, v⟩ of batch {b}"), e)
                        })?;
                    accumulate(&mut acc, &hv, size as f64)?;
                }
                total += size;
                if cache_this {
                    self.cache = Some((grads, size));
                }
            }
            self.finish_sum(acc, total as f64)
        })
    }

    /// The gradient of batch `b`'s loss with respect to the parameters
    /// (with its graph when `create_graph`), and the batch size.
    fn batch_gradient(&mut self, b: usize, create_graph: bool) -> Result<(Vec<Tensor>, usize)> {
        let (loss, size) = self.objective.batch_loss(b)?;
        check_loss(&loss, size, b, true)?;
        let grads =
            Tensor::f_run_backward(&[&loss], self.params.tensors(), create_graph, create_graph)
                .map_err(|e| Error::torch(format!("differentiating the loss of batch {b}"), e))?;
        check_reached(&grads, b)?;
        Ok((grads, size))
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

    fn zeros(&self) -> Result<Vec<Tensor>> {
        self.params
            .tensors()
            .iter()
            .map(|t| Tensor::f_zeros(t.size(), (Kind::Double, t.device())))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::torch("allocating a Hessian-vector product", e))
    }

    fn finish_sum(&self, acc: Vec<Tensor>, divisor: f64) -> Result<Vec<f64>> {
        let what = "reading a Hessian-vector product";
        let sum = acc
            .iter()
            .map(|t| t.f_flatten(0, -1))
            .collect::<std::result::Result<Vec<_>, _>>()
            .and_then(|flat| Tensor::f_cat(&flat, 0))
            .and_then(|t| t.f_div_scalar(divisor))
            .map_err(|e| Error::torch(what, e))?;
        let out = to_vec(&sum, what)?;
        if out.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "Hessian-vector product",
                "has non-finite values (the loss or its derivatives overflow at these parameters)",
            ));
        }
        Ok(out)
    }

    /// Runs `f` with the single-batch gradient graph cached between HVPs.
    /// The objective's [`prepare`](Objective::prepare) runs first.
    fn cached<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.objective.prepare()?;
        self.caching = true;
        let r = f(self);
        self.caching = false;
        self.cache = None;
        r
    }

    /// λmax and λmin (and the top/bottom k) by Lanczos; see [`Lanczos::run`].
    pub fn eigenvalues(&mut self, lanczos: &Lanczos) -> Result<Spectrum> {
        let dim = self.dim();
        let _span = tracing::info_span!(
            "hessian_eigenvalues",
            dim,
            tol = lanczos.tol(),
            seed = lanczos.seed()
        )
        .entered();
        self.cached(|h| lanczos.run(dim, |v| h.hvp(v)))
    }

    /// Hutchinson's estimate of the trace, `E[zᵀHz]` over Rademacher probes
    /// `z` (entries ±1), with the standard error of the mean; see
    /// [`Hutchinson::run`].
    pub fn trace(&mut self, hutchinson: &Hutchinson) -> Result<TraceEstimate> {
        let dim = self.dim();
        let _span = tracing::info_span!(
            "hessian_trace",
            dim,
            probes = hutchinson.probes(),
            seed = hutchinson.seed()
        )
        .entered();
        self.cached(|h| hutchinson.run(dim, |v| h.hvp(v)))
    }

    /// The eigenvalue spectral density by stochastic Lanczos quadrature; see
    /// [`Slq::run`].
    pub fn density(&mut self, slq: &Slq) -> Result<SpectralDensity> {
        let dim = self.dim();
        let _span = tracing::info_span!(
            "hessian_density",
            dim,
            probes = slq.probes(),
            steps = slq.steps()
        )
        .entered();
        self.cached(|h| slq.run(dim, |v| h.hvp(v)))
    }
}

/// `⟨g, v⟩` over the tensors whose gradient still depends on θ (the others
/// have a zero Hessian block row); `None` when there is none.
fn grad_dot(grads: &[Tensor], v: &[Tensor], b: usize) -> Result<Option<Tensor>> {
    let mut dot: Option<Tensor> = None;
    for (g, v) in grads.iter().zip(v) {
        if g.defined() && g.requires_grad() {
            let term = g
                .f_mul(v)
                .and_then(|p| p.f_sum(g.kind()))
                .map_err(|e| Error::torch(format!("computing ⟨g, v⟩ of batch {b}"), e))?;
            dot = Some(match dot {
                Some(d) => d
                    .f_add(&term)
                    .map_err(|e| Error::torch(format!("computing ⟨g, v⟩ of batch {b}"), e))?,
                None => term,
            });
        }
    }
    Ok(dot)
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

/// `acc += weight · parts` (float64; undefined parts are zero).
fn accumulate(acc: &mut [Tensor], parts: &[Tensor], weight: f64) -> Result<()> {
    tch::no_grad(|| {
        for (a, p) in acc.iter_mut().zip(parts) {
            if p.defined() {
                p.f_detach()
                    .and_then(|t| t.f_to_kind(Kind::Double))
                    .and_then(|t| t.f_mul_scalar(weight))
                    .and_then(|term| a.f_add_(&term).map(drop))
                    .map_err(|e| Error::torch("accumulating over batches", e))?;
            }
        }
        Ok(())
    })
}
