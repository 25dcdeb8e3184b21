//! Evaluating a model at the current parameters: the [`Evaluator`] trait the
//! user implements for any model, and [`ClassifierEvaluator`], the ready one
//! for the common case (a `ModuleT`, tensors of inputs and targets).
//!
//! Conventions (benchmarks W1–W4): eval mode (BatchNorm uses running stats,
//! no dropout), no gradients, batches are consecutive slices in natural order
//! (the last one short), loss = Σ_b mean_loss(b)·|b| / N, accuracy =
//! 100·correct/N.

use tch::nn::ModuleT;
use tch::{Kind, Reduction, Tensor};

use crate::error::{Error, Result};

/// Loss and accuracy of the model on one data split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitResult {
    /// Split name, e.g. `train` or `test`.
    pub split: String,
    /// Mean loss over the split.
    pub loss: f64,
    /// Accuracy in percent, when the task has one.
    pub accuracy: Option<f64>,
}

/// Evaluates a model at whatever parameters its variables hold now.
///
/// The surface and curvature code sets the parameters, calls `evaluate`, and
/// restores them afterwards; an implementation only runs the model.
pub trait Evaluator {
    /// Loss (and accuracy) on every split, in a fixed order.
    fn evaluate(&mut self) -> Result<Vec<SplitResult>>;

    /// A short description stored with results (model, data, loss).
    fn describe(&self) -> String {
        "user-defined evaluator".to_string()
    }
}

/// The loss a [`ClassifierEvaluator`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Cross-entropy on logits with int64 class targets; accuracy reported.
    CrossEntropy,
    /// Mean squared error with float targets of the output's shape; no accuracy.
    Mse,
}

/// One named data split.
#[derive(Debug)]
pub struct Split {
    /// Split name.
    pub name: String,
    /// Inputs, first dimension = samples.
    pub x: Tensor,
    /// Targets, first dimension = samples.
    pub y: Tensor,
}

#[derive(Debug)]
enum ModelRef<'m> {
    Borrowed(&'m dyn ModuleT),
    Owned(Box<dyn ModuleT>),
}

/// The ready evaluator: a `ModuleT` in eval mode over in-memory splits.
#[derive(Debug)]
pub struct ClassifierEvaluator<'m> {
    model: ModelRef<'m>,
    splits: Vec<Split>,
    batch: i64,
    loss: LossKind,
}

impl<'m> ClassifierEvaluator<'m> {
    /// An evaluator of `model` with cross-entropy loss and batch size 128.
    pub fn new(model: &'m dyn ModuleT) -> Self {
        Self::with_model(ModelRef::Borrowed(model))
    }

    /// An evaluator that owns its model (e.g. one replica per thread in
    /// [`Surface::evaluate_parallel`](crate::analysis::surface::Surface::evaluate_parallel)).
    pub fn owning(model: impl ModuleT + 'static) -> ClassifierEvaluator<'static> {
        ClassifierEvaluator::with_model(ModelRef::Owned(Box::new(model)))
    }

    fn with_model(model: ModelRef<'m>) -> Self {
        ClassifierEvaluator {
            model,
            splits: Vec::new(),
            batch: 128,
            loss: LossKind::CrossEntropy,
        }
    }

    fn module(&self) -> &dyn ModuleT {
        match &self.model {
            ModelRef::Borrowed(m) => *m,
            ModelRef::Owned(m) => m.as_ref(),
        }
    }

    /// Adds a split (e.g. `"train"`, `"test"`). Inputs and targets must have
    /// the same number of samples (checked).
    pub fn split(mut self, name: impl Into<String>, x: &Tensor, y: &Tensor) -> Result<Self> {
        let name = name.into();
        let (nx, ny) = (x.size().first().copied(), y.size().first().copied());
        if nx.is_none() || nx != ny || nx == Some(0) {
            return Err(Error::invalid(
                format!("split '{name}'"),
                format!(
                    "inputs {:?} and targets {:?} must be non-empty with the same first dimension",
                    x.size(),
                    y.size()
                ),
            ));
        }
        self.splits.push(Split {
            name,
            x: x.shallow_clone(),
            y: y.shallow_clone(),
        });
        Ok(self)
    }

    /// Evaluation batch size (default 128).
    pub fn batch(mut self, batch: i64) -> Result<Self> {
        if batch < 1 {
            return Err(Error::invalid(
                "batch",
                format!("must be at least 1, got {batch}"),
            ));
        }
        self.batch = batch;
        Ok(self)
    }

    /// The loss (default cross-entropy).
    pub fn loss(mut self, loss: LossKind) -> Self {
        self.loss = loss;
        self
    }

    /// The splits.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    fn evaluate_split(&self, s: &Split) -> Result<SplitResult> {
        let n = s.x.size()[0];
        let (mut loss_sum, mut correct) = (0.0f64, 0i64);
        let mut start = 0;
        while start < n {
            let len = self.batch.min(n - start);
            let xb = s.x.narrow(0, start, len);
            let yb = s.y.narrow(0, start, len);
            let out = self.module().forward_t(&xb, false);
            let err = |e| Error::torch(format!("evaluating split '{}'", s.name), e);
            let loss = match self.loss {
                LossKind::CrossEntropy => out
                    .f_log_softmax(-1, Kind::Float)
                    .and_then(|l| l.f_nll_loss::<Tensor>(&yb, None, Reduction::Mean, -100))
                    .map_err(err)?,
                LossKind::Mse => out.f_mse_loss(&yb, Reduction::Mean).map_err(err)?,
            };
            loss_sum += loss.f_double_value(&[]).map_err(err)? * len as f64;
            if self.loss == LossKind::CrossEntropy {
                correct += out
                    .f_argmax(-1, false)
                    .and_then(|p| p.f_eq_tensor(&yb))
                    .and_then(|c| c.f_sum(Kind::Int64))
                    .and_then(|c| c.f_int64_value(&[]))
                    .map_err(err)?;
            }
            start += len;
        }
        Ok(SplitResult {
            split: s.name.clone(),
            loss: loss_sum / n as f64,
            accuracy: (self.loss == LossKind::CrossEntropy)
                .then(|| 100.0 * correct as f64 / n as f64),
        })
    }
}

impl Evaluator for ClassifierEvaluator<'_> {
    fn evaluate(&mut self) -> Result<Vec<SplitResult>> {
        if self.splits.is_empty() {
            return Err(Error::invalid(
                "evaluator",
                "has no data split; add one with .split(name, x, y)",
            ));
        }
        tch::no_grad(|| self.splits.iter().map(|s| self.evaluate_split(s)).collect())
    }

    fn describe(&self) -> String {
        let splits: Vec<String> = self
            .splits
            .iter()
            .map(|s| format!("{} ({} samples)", s.name, s.x.size()[0]))
            .collect();
        format!(
            "{:?} loss, batch {}, splits: {}",
            self.loss,
            self.batch,
            splits.join(", ")
        )
    }
}
