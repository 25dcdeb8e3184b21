//! The training helpers of the demo and the experiments: SGD with momentum,
//! weight decay and learning-rate drops over in-memory data, with the
//! recording hook attached; their losses come from the evaluation core
//! ([`supervised`](crate::analysis::supervised)).

use std::path::Path;

use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::analysis::supervised::{self, loss_of, Data, LossKind};
use crate::data::digits::Digits;
use crate::error::{Error, Result};
use crate::models::{Mlp, W1_SIZES};
use crate::recorder::Recorder;

/// The `model` metadata of runs recorded by [`train_digits`]; `landscape
/// surface` computes surfaces for runs that carry it.
pub const DIGITS_MLP_MODEL: &str = "mlp 64-256-256-10 relu";

/// Settings of a training run (the demo's and the experiments').
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainConfig {
    /// Seed for initialization and batch order.
    pub seed: i64,
    /// Number of epochs.
    pub epochs: u64,
    /// Mini-batch size.
    pub batch: i64,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Epochs after which the learning rate is multiplied by 0.1.
    pub lr_drops: Vec<u64>,
}

impl Default for TrainConfig {
    /// The demo's run: W1's optimizer (SGD 0.1, momentum 0.9, batch 64, seed 0)
    /// for 20 epochs with a learning-rate drop after epoch 12.
    fn default() -> Self {
        TrainConfig {
            seed: 0,
            epochs: 20,
            batch: 64,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            lr_drops: vec![12],
        }
    }
}

/// Loss (mean cross-entropy) and accuracy (%) over all of `x`, `y`, in batches
/// of `batch`, weighted by batch size, computed by the evaluation core
/// ([`supervised`](crate::analysis::supervised)).
/// The model runs in evaluation mode (BatchNorm uses its running statistics).
pub fn evaluate(model: &dyn ModuleT, x: &Tensor, y: &Tensor, batch: i64) -> Result<(f64, f64)> {
    evaluate_data(model, &Data::new("evaluation data", x, y)?, batch)
}

fn evaluate_data(model: &dyn ModuleT, data: &Data, batch: i64) -> Result<(f64, f64)> {
    let (loss, acc) = supervised::evaluate(model, data, batch, LossKind::CrossEntropy, "the data")?;
    Ok((loss, acc.unwrap_or(f64::NAN)))
}

/// The mean cross-entropy of `model` (training mode) on the samples `idx`
/// of `x`, `y`: the mini-batch loss of the training helpers.
pub(crate) fn batch_loss(
    model: &dyn ModuleT,
    x: &Tensor,
    y: &Tensor,
    idx: &Tensor,
) -> Result<Tensor> {
    let err = |e| Error::torch("computing a mini-batch loss", e);
    let xb = x.f_index_select(0, idx).map_err(err)?;
    let yb = y.f_index_select(0, idx).map_err(err)?;
    loss_of(&model.forward_t(&xb, true), &yb, LossKind::CrossEntropy).map_err(err)
}

/// A network to train with the recorder attached, and what is recorded.
pub(crate) struct TrainJob<'a> {
    /// The network, its variables in the VarStore the recorder watches.
    pub(crate) net: &'a dyn ModuleT,
    /// The training split (the metrics `train_loss`, `train_acc`).
    pub(crate) train: &'a Data,
    /// A held-out split, when recorded (`test_loss`, `test_acc`).
    pub(crate) test: Option<&'a Data>,
    /// Batch size of the per-epoch evaluations.
    pub(crate) eval_batch: i64,
    /// Records a snapshot after every step too (not only every epoch).
    pub(crate) every_step: bool,
}

impl TrainJob<'_> {
    /// The metrics recorded after an epoch: train loss and accuracy, test
    /// loss and accuracy when there is a held-out split, the learning rate.
    fn epoch_metrics(&self, epoch: u64, lr: f64) -> Result<Vec<(&'static str, f64)>> {
        let (loss, acc) = evaluate_data(self.net, self.train, self.eval_batch)?;
        let mut metrics = vec![("train_loss", loss), ("train_acc", acc)];
        if let Some(test) = self.test {
            let (test_loss, test_acc) = evaluate_data(self.net, test, self.eval_batch)?;
            metrics.extend([("test_loss", test_loss), ("test_acc", test_acc)]);
        }
        metrics.push(("lr", lr));
        tracing::info!(epoch, ?metrics, "epoch done");
        Ok(metrics)
    }

    /// Final loss and accuracy (%) on the training split.
    pub(crate) fn train_figures(&self) -> Result<(f64, f64)> {
        evaluate_data(self.net, self.train, self.eval_batch)
    }

    /// Final loss and accuracy (%) on the held-out split (NaN without one).
    #[cfg(feature = "experiments")]
    pub(crate) fn test_figures(&self) -> Result<(f64, f64)> {
        match self.test {
            Some(test) => evaluate_data(self.net, test, self.eval_batch),
            None => Ok((f64::NAN, f64::NAN)),
        }
    }
}

/// Runs SGD on the variables of `vs` as `cfg` says (momentum, weight decay,
/// learning-rate drops) and finishes `rec`: each epoch visits the training
/// samples in a fresh random order (libtorch's generator) in mini-batches,
/// then records the epoch's metrics, before any learning-rate drop. The
/// same metrics of the untrained model are recorded for θ₀ first.
pub(crate) fn train_recorded(
    vs: &nn::VarStore,
    cfg: &TrainConfig,
    job: &TrainJob<'_>,
    mut rec: Recorder,
) -> Result<()> {
    supervised::check_batch(cfg.batch)?;
    let mut opt = nn::Sgd {
        momentum: cfg.momentum,
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(vs, cfg.lr)
    .map_err(|e| Error::torch("building the optimizer", e))?;
    let n = job.train.len();
    let mut lr = cfg.lr;
    let mut step = 0u64;
    // θ₀'s metrics: the metrics have a row at every snapshot.
    rec.on_train_start(&job.epoch_metrics(0, lr)?)?;
    for epoch in 1..=cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let mut start = 0;
        while start < n {
            let len = cfg.batch.min(n - start);
            let idx = perm.narrow(0, start, len);
            opt.backward_step(&batch_loss(job.net, &job.train.x, &job.train.y, &idx)?);
            step += 1;
            if job.every_step {
                rec.on_step_end(epoch, step, &[])?;
            }
            start += len;
        }
        rec.on_epoch_end(epoch, &job.epoch_metrics(epoch, lr)?)?;
        if cfg.lr_drops.contains(&epoch) {
            lr *= 0.1;
            opt.set_lr(lr);
        }
    }
    rec.finish()?;
    Ok(())
}

/// Trains W1's MLP on `data` with the recorder writing to `run_dir` (a
/// snapshot after every step and every epoch, the epoch's train loss,
/// accuracy and learning rate as metrics). Returns the final (loss,
/// accuracy) over the full data.
pub fn train_digits(run_dir: &Path, data: &Digits, cfg: &TrainConfig) -> Result<(f64, f64)> {
    tch::manual_seed(cfg.seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    let rec = Recorder::builder(run_dir)
        .overwrite(true)
        .metadata("model", DIGITS_MLP_MODEL)
        .metadata("data", "uci digits (1797 x 64) / 16")
        .metadata("seed", cfg.seed.to_string())
        .build(&vs)?;
    let train = Data::new("training data", &data.x, &data.y)?;
    let job = TrainJob {
        net: &model,
        train: &train,
        test: None,
        eval_batch: 128,
        every_step: true,
    };
    train_recorded(&vs, cfg, &job, rec)?;
    job.train_figures()
}
