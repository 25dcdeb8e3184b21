//! The loss whose Hessian is analysed: the [`Objective`] trait (batches of
//! scalar mean losses with their autograd graph) and the ready
//! [`SupervisedObjective`] for a `ModuleT` over in-memory tensors.

use tch::nn::ModuleT;
use tch::Tensor;

use crate::analysis::bn::{BnRecalibration, Recalibrator};
use crate::analysis::supervised::{check_batch, loss_of, Data, LossKind, ModelRef};
use crate::error::{Error, Result};

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

    /// Called at the current parameters before each computation of the
    /// [`Hessian`](super::Hessian) (loss, gradient, eigenvalues, trace,
    /// density), e.g. to re-estimate BatchNorm statistics there. Default:
    /// nothing.
    fn prepare(&mut self) -> Result<()> {
        Ok(())
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
    fn prepare(&mut self) -> Result<()> {
        (**self).prepare()
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
    fn prepare(&mut self) -> Result<()> {
        (**self).prepare()
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
    bn: Option<Recalibrator>,
}

impl<'m> SupervisedObjective<'m> {
    /// The objective of `model` on inputs `x` and targets `y` (same non-zero
    /// first dimension, checked), cross-entropy, batches of 128.
    pub fn new(model: &'m dyn ModuleT, x: &Tensor, y: &Tensor) -> Result<Self> {
        Self::with_model(ModelRef::Borrowed(model), x, y)
    }

    /// An objective that owns its model (e.g. one replica per thread in
    /// [`Curvature::evaluate_parallel`](super::Curvature::evaluate_parallel)).
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
            bn: None,
        })
    }

    /// Re-estimates the BatchNorm running statistics at each point before
    /// the Hessian is computed there ([`Objective::prepare`],
    /// [`analysis::bn`](crate::analysis::bn)): `vs` holds the model's
    /// variables, `x` the training inputs.
    pub fn recalibrate_bn(
        mut self,
        vs: &tch::nn::VarStore,
        x: &Tensor,
        settings: BnRecalibration,
    ) -> Result<Self> {
        self.bn = Some(Recalibrator::new(vs, x, settings)?);
        Ok(self)
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
        let mut text = format!(
            "{:?} loss of a ModuleT in eval mode on {} samples, batches of {}",
            self.loss,
            self.data.len(),
            self.batch
        );
        if let Some(bn) = &self.bn {
            text.push_str(&format!("; {}", bn.settings()));
        }
        text
    }

    fn prepare(&mut self) -> Result<()> {
        match &self.bn {
            Some(bn) => bn.run(self.model.module()),
            None => Ok(()),
        }
    }
}
