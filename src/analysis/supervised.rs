//! The one evaluation core: the supervised loss of a `ModuleT` over
//! in-memory inputs and targets, in batches. The surface evaluator
//! ([`ClassifierEvaluator`](crate::analysis::evaluator::ClassifierEvaluator)),
//! the Hessian objective
//! ([`SupervisedObjective`](crate::analysis::hessian::SupervisedObjective))
//! and the training helpers all compute their losses here.
//!
//! Conventions (benchmarks W1–W4): batches are consecutive slices in natural
//! order, the last one short; the loss of a split is Σ_b mean_loss(b)·|b| / N
//! and the accuracy 100·correct / N.
//!
//! dtype policy: the loss is computed in the dtype of the model's output
//! (float32 for a float32 model, float64 for a float64 one), so gradients and
//! Hessian-vector products keep the model's precision; sums over batches are
//! accumulated in f64.

use tch::nn::ModuleT;
use tch::{Kind, Reduction, Tensor};

use crate::error::{Error, Result};

/// The loss computed on a supervised model's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Cross-entropy on logits with int64 class targets; accuracy reported.
    CrossEntropy,
    /// Mean squared error with float targets of the output's shape; no accuracy.
    Mse,
}

impl LossKind {
    /// True when the loss has an accuracy (classification).
    pub fn has_accuracy(self) -> bool {
        self == LossKind::CrossEntropy
    }
}

/// A model held by reference or owned (one replica per thread).
#[derive(Debug)]
pub(crate) enum ModelRef<'m> {
    /// The caller's model.
    Borrowed(&'m dyn ModuleT),
    /// A model owned by the evaluator.
    Owned(Box<dyn ModuleT>),
}

impl ModelRef<'_> {
    /// The model.
    pub(crate) fn module(&self) -> &dyn ModuleT {
        match self {
            ModelRef::Borrowed(m) => *m,
            ModelRef::Owned(m) => m.as_ref(),
        }
    }
}

/// Inputs and targets with the same, non-zero number of samples.
#[derive(Debug)]
pub(crate) struct Data {
    /// Inputs, first dimension = samples.
    pub(crate) x: Tensor,
    /// Targets, first dimension = samples.
    pub(crate) y: Tensor,
}

impl Data {
    /// Checks that `x` and `y` are non-empty with the same first dimension;
    /// `what` names them in the error ("split 'train'").
    pub(crate) fn new(what: &str, x: &Tensor, y: &Tensor) -> Result<Data> {
        let (nx, ny) = (x.size().first().copied(), y.size().first().copied());
        if nx.is_none() || nx != ny || nx == Some(0) {
            return Err(Error::invalid(
                what,
                format!(
                    "inputs {:?} and targets {:?} must be non-empty with the same first dimension",
                    x.size(),
                    y.size()
                ),
            ));
        }
        Ok(Data {
            x: x.shallow_clone(),
            y: y.shallow_clone(),
        })
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> i64 {
        self.x.size()[0]
    }

    /// Number of batches of `batch` samples.
    pub(crate) fn num_batches(&self, batch: i64) -> usize {
        (self.len() as usize).div_ceil(batch.max(1) as usize)
    }

    /// Batch `b` of `batch` samples: (inputs, targets, samples).
    pub(crate) fn batch(&self, b: usize, batch: i64) -> Result<(Tensor, Tensor, i64)> {
        let nb = self.num_batches(batch);
        if b >= nb {
            return Err(Error::invalid(
                "batch index",
                format!("{b} is out of range: there are {nb} batches"),
            ));
        }
        let start = b as i64 * batch;
        let len = batch.min(self.len() - start);
        let err = |e| Error::torch(format!("slicing batch {b}"), e);
        let xb = self.x.f_narrow(0, start, len).map_err(err)?;
        let yb = self.y.f_narrow(0, start, len).map_err(err)?;
        Ok((xb, yb, len))
    }
}

/// Checks a batch size option.
pub(crate) fn check_batch(batch: i64) -> Result<i64> {
    if batch < 1 {
        return Err(Error::invalid(
            "batch",
            format!("must be at least 1, got {batch}"),
        ));
    }
    Ok(batch)
}

/// The mean loss of `out` against targets `y`, in the output's dtype.
pub(crate) fn loss_of(
    out: &Tensor,
    y: &Tensor,
    loss: LossKind,
) -> std::result::Result<Tensor, tch::TchError> {
    match loss {
        LossKind::CrossEntropy => out
            .f_kind()
            .and_then(|k| out.f_log_softmax(-1, k))
            .and_then(|l| l.f_nll_loss::<Tensor>(y, None, Reduction::Mean, -100)),
        LossKind::Mse => out.f_mse_loss(y, Reduction::Mean),
    }
}

/// The number of rows of `out` whose arg-max equals the class target.
pub(crate) fn correct_of(out: &Tensor, y: &Tensor) -> std::result::Result<i64, tch::TchError> {
    out.f_argmax(-1, false)
        .and_then(|p| p.f_eq_tensor(y))
        .and_then(|c| c.f_sum(Kind::Int64))
        .and_then(|c| c.f_int64_value(&[]))
}

/// Mean loss and accuracy (percent, classification only) of `model` in
/// evaluation mode over `data`, in batches of `batch`, without gradients;
/// `what` names the data in errors.
pub(crate) fn evaluate(
    model: &dyn ModuleT,
    data: &Data,
    batch: i64,
    loss: LossKind,
    what: &str,
) -> Result<(f64, Option<f64>)> {
    tch::no_grad(|| {
        let err = |e| Error::torch(format!("evaluating {what}"), e);
        let (mut loss_sum, mut correct) = (0.0f64, 0i64);
        for b in 0..data.num_batches(batch) {
            let (xb, yb, len) = data.batch(b, batch)?;
            let out = model.forward_t(&xb, false);
            let l = loss_of(&out, &yb, loss).map_err(err)?;
            loss_sum += l.f_double_value(&[]).map_err(err)? * len as f64;
            if loss.has_accuracy() {
                correct += correct_of(&out, &yb).map_err(err)?;
            }
        }
        let n = data.len() as f64;
        Ok((
            loss_sum / n,
            loss.has_accuracy().then(|| 100.0 * correct as f64 / n),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed linear model: logits = x·W.
    #[derive(Debug)]
    struct Linear(Tensor);
    impl ModuleT for Linear {
        fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
            xs.matmul(&self.0)
        }
    }

    #[test]
    fn batched_loss_is_the_full_batch_loss_and_accuracy_counts() {
        let x = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0, 0.0, 3.0])
            .reshape([5, 2]);
        let y = Tensor::from_slice(&[0i64, 1, 1, 0, 1]);
        let w = Tensor::from_slice(&[2.0f32, -1.0, 0.5, 1.0]).reshape([2, 2]);
        let model = Linear(w);
        let data = Data::new("test data", &x, &y).unwrap();
        let full = loss_of(&model.forward_t(&x, false), &y, LossKind::CrossEntropy)
            .unwrap()
            .double_value(&[]);
        for batch in [1, 2, 3, 5, 8] {
            let (l, acc) = evaluate(&model, &data, batch, LossKind::CrossEntropy, "t").unwrap();
            approx::assert_abs_diff_eq!(l, full, epsilon = 1e-6);
            // logits rows [2,-1] [0.5,1] [2.5,0] [4,-2] [1.5,3] predict 0,1,0,0,1;
            // targets 0,1,1,0,1: four of five right.
            approx::assert_abs_diff_eq!(acc.unwrap(), 80.0, epsilon = 1e-12);
        }
    }

    #[test]
    fn loss_keeps_the_output_dtype_and_mse_has_no_accuracy() {
        let out = Tensor::from_slice(&[1.0f64, 2.0]).reshape([2, 1]);
        let y = Tensor::from_slice(&[0.0f64, 0.0]).reshape([2, 1]);
        let l = loss_of(&out, &y, LossKind::Mse).unwrap();
        assert_eq!(l.kind(), Kind::Double);
        approx::assert_abs_diff_eq!(l.double_value(&[]), 2.5, epsilon = 1e-15);
        assert!(!LossKind::Mse.has_accuracy());
    }

    #[test]
    fn mismatched_data_is_refused_by_name() {
        let x = Tensor::zeros([3, 2], tch::kind::FLOAT_CPU);
        let y = Tensor::zeros([2], tch::kind::INT64_CPU);
        let e = Data::new("split 'train'", &x, &y).unwrap_err().to_string();
        assert!(e.contains("split 'train'"), "{e}");
        let d = Data::new("d", &x, &Tensor::zeros([3], tch::kind::INT64_CPU)).unwrap();
        assert_eq!(d.num_batches(2), 2);
        assert!(d.batch(2, 2).is_err());
        assert!(check_batch(0).is_err());
    }
}
