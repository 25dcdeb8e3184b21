//! Evaluating a model at the current parameters: the [`Evaluator`] trait the
//! user implements for any model, and [`ClassifierEvaluator`], the ready one
//! for the common case (a `ModuleT`, tensors of inputs and targets).
//!
//! Conventions: eval mode (BatchNorm uses running stats, no dropout), no
//! gradients; batching and the dtype policy are those of the evaluation core,
//! [`supervised`](crate::analysis::supervised).

use tch::nn::ModuleT;
use tch::Tensor;

use crate::analysis::bn::{BnRecalibration, Recalibrator};
use crate::analysis::supervised::{self, check_batch, Data, ModelRef};
use crate::error::{Error, Result};

// One split's row of the surface format, defined with it.
pub use crate::store::surface::SplitResult;

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

pub use crate::analysis::supervised::LossKind;

/// One named data split.
#[derive(Debug)]
pub struct Split {
    /// Split name.
    pub name: String,
    data: Data,
}

impl Split {
    /// Inputs, first dimension = samples.
    pub fn x(&self) -> &Tensor {
        &self.data.x
    }

    /// Targets, first dimension = samples.
    pub fn y(&self) -> &Tensor {
        &self.data.y
    }
}

/// The ready evaluator: a `ModuleT` in eval mode over in-memory splits.
#[derive(Debug)]
pub struct ClassifierEvaluator<'m> {
    model: ModelRef<'m>,
    splits: Vec<Split>,
    batch: i64,
    loss: LossKind,
    bn: Option<Recalibrator>,
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
            bn: None,
        }
    }

    /// Re-estimates the BatchNorm running statistics before every evaluation
    /// ([`analysis::bn`](crate::analysis::bn)): `vs` holds the model's
    /// variables, `x` the training inputs the batches are drawn from. The
    /// settings are part of [`Evaluator::describe`], stored with results.
    pub fn recalibrate_bn(
        mut self,
        vs: &tch::nn::VarStore,
        x: &Tensor,
        settings: BnRecalibration,
    ) -> Result<Self> {
        self.bn = Some(Recalibrator::new(vs, x, settings)?);
        Ok(self)
    }

    /// Adds a split (e.g. `"train"`, `"test"`). Inputs and targets must have
    /// the same number of samples (checked).
    pub fn split(mut self, name: impl Into<String>, x: &Tensor, y: &Tensor) -> Result<Self> {
        let name = name.into();
        let data = Data::new(&format!("split '{name}'"), x, y)?;
        self.splits.push(Split { name, data });
        Ok(self)
    }

    /// Evaluation batch size (default 128).
    pub fn batch(mut self, batch: i64) -> Result<Self> {
        self.batch = check_batch(batch)?;
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
        let what = format!("split '{}'", s.name);
        let (loss, accuracy) =
            supervised::evaluate(self.model.module(), &s.data, self.batch, self.loss, &what)?;
        Ok(SplitResult {
            split: s.name.clone(),
            loss,
            accuracy,
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
        if let Some(bn) = &self.bn {
            bn.run(self.model.module())?;
        }
        self.splits.iter().map(|s| self.evaluate_split(s)).collect()
    }

    fn describe(&self) -> String {
        let splits: Vec<String> = self
            .splits
            .iter()
            .map(|s| format!("{} ({} samples)", s.name, s.data.len()))
            .collect();
        let mut text = format!(
            "{:?} loss, batch {}, splits: {}",
            self.loss,
            self.batch,
            splits.join(", ")
        );
        if let Some(bn) = &self.bn {
            text.push_str(&format!("; {}", bn.settings()));
        }
        text
    }
}
