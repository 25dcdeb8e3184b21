//! The set-up shared by the experiments: data sets, networks, the training
//! of one recorded run and the trained model the analyses take.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

use crate::analysis::evaluator::ClassifierEvaluator;
use crate::analysis::params::ParamSet;
use crate::analysis::supervised::Data as Samples;
use crate::data::digits::Digits;
use crate::demo::{train_recorded, TrainConfig, TrainJob};
use crate::error::{Error, Result};
use crate::models::{CifarResNet, Mlp, ResNetConfig};
use crate::recorder::Recorder;

use super::Scale;

/// A data set split into train and test, with the image shape for conv nets.
#[derive(Debug)]
pub(crate) struct Data {
    /// Name used in metadata and tables.
    pub(crate) name: String,
    /// Training split.
    pub(crate) train: Digits,
    /// Held-out split.
    pub(crate) test: Digits,
    /// (channels, height, width) of one image.
    pub(crate) image: (i64, i64, i64),
}

impl Data {
    /// The UCI digits: 1437 train, 360 test, 1 × 8 × 8.
    pub(crate) fn digits() -> Result<Data> {
        let (train, test) = Digits::load()?.split_at(1437)?;
        Ok(Data {
            name: "uci-digits".into(),
            train,
            test,
            image: (1, 8, 8),
        })
    }

    /// The first `n_train` MNIST digits for training and the last `n_test`
    /// for testing, 1 × 28 × 28.
    pub(crate) fn mnist(n_train: usize, n_test: usize) -> Result<Data> {
        let all = crate::data::mnist::load()?;
        let total = all.len();
        if n_train + n_test > total || n_train == 0 || n_test == 0 {
            return Err(Error::invalid(
                "MNIST split",
                format!("{n_train} + {n_test} samples requested, {total} available"),
            ));
        }
        Ok(Data {
            name: format!("mnist-{n_train}"),
            train: all.range(0, n_train),
            test: all.range(total - n_test, n_test),
            image: (1, 28, 28),
        })
    }

    /// The samples of `split` with inputs shaped for `arch` (flat for MLPs,
    /// images for conv nets).
    fn samples(&self, arch: &Arch, split: &Digits, what: &str) -> Result<Samples> {
        let x = match arch {
            Arch::Mlp(_) => split.x.shallow_clone(),
            Arch::ResNet { .. } => {
                let (c, h, w) = self.image;
                split
                    .x
                    .f_reshape([-1, c, h, w])
                    .map_err(|e| Error::torch(format!("shaping the {what} images"), e))?
            }
        };
        Samples::new(what, &x, &split.y)
    }
}

/// A network of the experiments (defined in [`crate::models`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arch {
    /// ReLU MLP with these layer sizes (input first).
    Mlp(Vec<i64>),
    /// CIFAR-style ResNet: `n` blocks per stage (depth 6n + 2), channel
    /// multiplier `width`, skip connections on or off.
    ResNet {
        /// Blocks per stage.
        n: usize,
        /// Width multiplier (16, 32, 64 channels × width).
        width: i64,
        /// Skip connections.
        skip: bool,
    },
}

impl Arch {
    /// Short name, e.g. `resnet-14` or `resnet-14-noshort-w2`.
    pub(crate) fn name(&self) -> String {
        match self {
            Arch::Mlp(s) => format!(
                "mlp-{}",
                s.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            ),
            Arch::ResNet { n, width, skip } => format!(
                "resnet-{}{}{}",
                6 * n + 2,
                if *skip { "" } else { "-noshort" },
                if *width > 1 {
                    format!("-w{width}")
                } else {
                    String::new()
                }
            ),
        }
    }

    /// Builds the network in `vs` for `data` (10 classes).
    fn build(&self, vs: &VarStore, data: &Data) -> Box<dyn ModuleT> {
        match self {
            Arch::Mlp(sizes) => Box::new(Mlp::new(&vs.root(), sizes)),
            Arch::ResNet { n, width, skip } => Box::new(CifarResNet::from_config(
                &vs.root(),
                &ResNetConfig {
                    blocks: *n,
                    width: *width,
                    skip: *skip,
                    in_channels: data.image.0,
                    classes: 10,
                },
            )),
        }
    }
}

/// How a trained run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trained {
    /// Run name.
    pub name: String,
    /// Network.
    pub arch: String,
    /// Training settings.
    pub train: TrainConfig,
    /// Final loss and accuracy (%) on the train split (eval mode).
    pub train_loss: f64,
    /// Final train accuracy (%).
    pub train_acc: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Final test accuracy (%).
    pub test_acc: f64,
    /// L2 norm of all parameters at the end.
    pub weight_norm: f64,
}

impl Trained {
    /// Test error (%).
    pub fn test_error(&self) -> f64 {
        100.0 - self.test_acc
    }
}

/// A model ready for analyses: its VarStore, network and samples.
pub(crate) struct Model {
    /// Variables (at the final snapshot once trained).
    pub(crate) vs: VarStore,
    /// The network.
    pub(crate) net: Box<dyn ModuleT>,
    /// Train samples, inputs shaped for the network.
    pub(crate) train: Samples,
    /// Test samples, inputs shaped for the network.
    pub(crate) test: Samples,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").finish_non_exhaustive()
    }
}

impl Model {
    /// A freshly initialized `arch` for `data` (libtorch's generator).
    pub(crate) fn new(arch: &Arch, data: &Data) -> Result<Model> {
        let vs = VarStore::new(Device::Cpu);
        let net = arch.build(&vs, data);
        Ok(Model {
            vs,
            net,
            train: data.samples(arch, &data.train, "train split")?,
            test: data.samples(arch, &data.test, "test split")?,
        })
    }

    /// An evaluator of train and test loss/accuracy.
    pub(crate) fn evaluator(&self) -> Result<ClassifierEvaluator<'_>> {
        ClassifierEvaluator::new(self.net.as_ref())
            .split("train", &self.train.x, &self.train.y)?
            .split("test", &self.test.x, &self.test.y)?
            .batch(512)
    }

    /// The model's parameters.
    pub(crate) fn params(&self) -> Result<ParamSet> {
        ParamSet::from_varstore(&self.vs)
    }

    /// The first `n` training samples (all when there are fewer).
    pub(crate) fn train_prefix(&self, n: i64) -> Result<(Tensor, Tensor)> {
        let n = n.min(self.train.len());
        let err = |e| Error::torch("taking the first training samples", e);
        Ok((
            self.train.x.f_narrow(0, 0, n).map_err(err)?,
            self.train.y.f_narrow(0, 0, n).map_err(err)?,
        ))
    }
}

/// What an experiment works with: its output directory, sizes and data.
#[derive(Debug)]
pub(crate) struct Setup<'a> {
    /// The experiment's directory: one run directory per run, the
    /// comparison report, `summary.json`.
    pub(crate) out: &'a Path,
    /// Sizes.
    pub(crate) scale: &'a Scale,
    /// The data set.
    pub(crate) data: &'a Data,
}

impl Setup<'_> {
    /// The directory of run `name`.
    pub(crate) fn run_dir(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Trains `arch` as `cfg` says with the recorder writing run `name` (θ₀
    /// and one snapshot per epoch, with train/test loss and accuracy and the
    /// learning rate as metrics); returns the final figures and the model.
    pub(crate) fn train(
        &self,
        name: &str,
        arch: &Arch,
        cfg: &TrainConfig,
    ) -> Result<(Trained, Model)> {
        tracing::info!(name, arch = arch.name(), "training");
        tch::manual_seed(cfg.seed);
        let model = Model::new(arch, self.data)?;
        let rec = Recorder::builder(self.run_dir(name))
            .overwrite(true)
            .metadata("model", arch.name())
            .metadata("data", self.data.name.clone())
            .metadata("experiment_run", name)
            .metadata("train", serde_json::to_string(cfg).unwrap_or_default())
            .build(&model.vs)?;
        let job = TrainJob {
            net: model.net.as_ref(),
            train: &model.train,
            test: Some(&model.test),
            eval_batch: 256,
            every_step: false,
        };
        train_recorded(&model.vs, cfg, &job, rec)?;
        let ((train_loss, train_acc), (test_loss, test_acc)) =
            (job.train_figures()?, job.test_figures()?);
        let trained = Trained {
            name: name.to_string(),
            arch: arch.name(),
            train: cfg.clone(),
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            weight_norm: model.params()?.norm()?,
        };
        tracing::info!(?trained, "trained");
        Ok((trained, model))
    }
}
