//! The options every evaluating subcommand shares (`surface`, `interpolate`,
//! `curvature`): which model, which data, which loss, device and threads,
//! BatchNorm policy, shards and MPI; and the [`Session`] they open: the run,
//! the model in a `VarStore` checked against the run, the data.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use tch::nn::{ModuleT, VarStore};
use tch::Device;
use tch_landscape::analysis::bn::BnRecalibration;
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, LossKind};
use tch_landscape::analysis::grid::MAX_ABS_COORDINATE;
use tch_landscape::analysis::hessian::SupervisedObjective;
use tch_landscape::analysis::model_check::ModelMatch;
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::shard::Shard;
use tch_landscape::analysis::surface::SurfaceBuilder;
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::DIGITS_MLP_MODEL;
use tch_landscape::models::{Mlp, W1_SIZES};
use tch_landscape::store::dataset::{DataNames, DataSplit, Dataset, Targets};
use tch_landscape::store::fsutil::create_dir_in;
use tch_landscape::{Run, ScriptModel};

/// The most intra-op threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;

/// Model, data and evaluation options.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// TorchScript model of the run (`torch.jit.script(model).save("model.pt")`);
    /// its parameter and buffer names must match the run's tensors. Not needed
    /// for runs of `landscape demo`.
    #[arg(long, value_name = "MODEL.pt")]
    pub model: Option<PathBuf>,
    /// Data file (.safetensors or .npz) with x_train, y_train and optionally
    /// x_test, y_test (names: --x-train ...). Not needed for runs of
    /// `landscape demo` (the UCI digits).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Name of the training inputs in --data.
    #[arg(long, default_value = "x_train")]
    pub x_train: String,
    /// Name of the training targets in --data.
    #[arg(long, default_value = "y_train")]
    pub y_train: String,
    /// Name of the test inputs in --data (the test split is optional).
    #[arg(long, default_value = "x_test")]
    pub x_test: String,
    /// Name of the test targets in --data.
    #[arg(long, default_value = "y_test")]
    pub y_test: String,
    /// The loss: cross-entropy (integer classes, accuracy too) or mse.
    #[arg(long, value_enum, default_value_t = Loss::CrossEntropy)]
    pub loss: Loss,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: i64,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Intra-op threads of one model (default: one model replica per core,
    /// each on 1 thread; all cores, or cores / ranks per node under --mpi).
    /// Given, one replica uses this many threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// BatchNorm running statistics: as recorded (fixed; interpolated by
    /// `interpolate`) or re-estimated at each point on training batches.
    #[arg(long, value_enum, default_value_t = BnPolicy::Fixed)]
    pub bn: BnPolicy,
    /// Training batches for --bn recalibrate.
    #[arg(long, default_value_t = 16)]
    pub bn_batches: usize,
    /// Seed of the training batches for --bn recalibrate.
    #[arg(long, default_value_t = 0)]
    pub bn_seed: u64,
    /// Compute only shard i of n (points with flat index ≡ i mod n), for
    /// batch schedulers; `slurm` reads SLURM_ARRAY_TASK_ID/COUNT. Then `landscape merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Launched by mpirun: every rank evaluates a share, rank 0 writes.
    #[arg(long)]
    pub mpi: bool,
}

/// The most model replicas a surface uses by default.
const MAX_REPLICAS: usize = 16;

/// The parts of a [`Session`] a model replica is built from, shareable
/// across threads (the data as shallow clones behind a lock).
pub struct ReplicaSpec {
    model: Option<PathBuf>,
    device: Device,
    splits: std::sync::Mutex<Vec<(String, tch::Tensor, tch::Tensor)>>,
    loss: LossKind,
    batch: i64,
}

impl ReplicaSpec {
    /// A replica: its own VarStore holding a copy of `centre`'s variables
    /// (the session's, the snapshot loaded) and an evaluator owning its
    /// model, on the same data.
    pub fn build(
        &self,
        centre: &VarStore,
    ) -> tch_landscape::Result<(
        VarStore,
        Box<dyn tch_landscape::analysis::evaluator::Evaluator>,
    )> {
        let mut vs = VarStore::new(self.device);
        let eval = match &self.model {
            Some(path) => ClassifierEvaluator::owning(ScriptModel::load(path, &vs)?),
            None => ClassifierEvaluator::owning(Mlp::new(&vs.root(), &W1_SIZES)),
        };
        vs.copy(centre)
            .map_err(|e| tch_landscape::Error::torch("copying the model into a replica", e))?;
        let mut eval = eval.loss(self.loss).batch(self.batch)?;
        let splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        for (name, x, y) in splits.iter() {
            eval = eval.split(name.clone(), x, y)?;
        }
        Ok((vs, Box::new(eval)))
    }
}

/// `--loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Loss {
    CrossEntropy,
    Mse,
}

/// `--bn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BnPolicy {
    Fixed,
    Recalibrate,
}

/// An axis `a:b:n` (from a to b, n points).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisArg {
    pub from: f64,
    pub to: f64,
    pub points: usize,
}

impl std::str::FromStr for AxisArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [a, b, n] = parts[..] else {
            return Err(format!("'{s}': expected FROM:TO:POINTS, e.g. -1:1:25"));
        };
        let num = |t: &str| -> Result<f64, String> {
            let v: f64 = t
                .trim()
                .parse()
                .map_err(|_| format!("'{t}' is not a number"))?;
            if !v.is_finite() || v.abs() > MAX_ABS_COORDINATE {
                return Err(format!(
                    "{t}: coordinates must be finite, at most {MAX_ABS_COORDINATE:e} in size"
                ));
            }
            Ok(v)
        };
        let points: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("'{n}' is not a number of points"))?;
        Ok(AxisArg {
            from: num(a)?,
            to: num(b)?,
            points,
        })
    }
}

/// The model being evaluated: the demo's MLP or a TorchScript module.
enum Model {
    Demo(Mlp),
    Script(ScriptModel),
}

impl Model {
    fn module(&self) -> &dyn ModuleT {
        match self {
            Model::Demo(m) => m,
            Model::Script(m) => m,
        }
    }
}

/// An opened run with its model and data, checked against each other.
pub struct Session {
    pub run: Run,
    pub run_dir: PathBuf,
    pub vs: VarStore,
    model: Model,
    pub data: Dataset,
    pub matched: ModelMatch,
    pub loss: LossKind,
    pub batch: i64,
    pub bn: Option<BnRecalibration>,
    /// The shard of `--shard`, parsed before any work.
    pub shard: Option<Shard>,
    /// "model.pt on data.safetensors" / "the demo's digits MLP".
    pub description: String,
    /// The TorchScript file of `--model` (None: the demo's MLP).
    model_path: Option<PathBuf>,
    /// Whether `--threads` was given (then one replica uses them).
    threads_given: bool,
    #[cfg(feature = "mpi")]
    pub mpi: Option<tch_landscape::distributed::Mpi>,
}

/// `--shard i/n` or `--shard slurm`.
fn parse_shard(arg: Option<&str>) -> anyhow::Result<Option<Shard>> {
    Ok(match arg {
        None => None,
        Some("slurm") => Some(Shard::from_slurm_env()?.context(
            "--shard slurm: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not an array job?)",
        )?),
        Some(s) => Some(s.parse()?),
    })
}

fn parse_device(s: &str) -> anyhow::Result<Device> {
    let d = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => Device::Cuda(n),
            None => bail!("--device {s}: expected cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(n) = d {
        let count = tch::Cuda::device_count();
        if n as i64 >= count {
            bail!("--device {s}: this machine has {count} CUDA device(s) visible to libtorch");
        }
    }
    Ok(d)
}

impl Session {
    /// Opens `run_dir` with the model and data of `args`, checked against
    /// each other before anything is computed (running statistics the run
    /// lacks are allowed when they are recalibrated).
    pub fn open(run_dir: &Path, args: &ModelArgs) -> anyhow::Result<Session> {
        #[cfg(feature = "mpi")]
        let mpi = if args.mpi {
            Some(tch_landscape::distributed::Mpi::init()?)
        } else {
            None
        };
        #[cfg(not(feature = "mpi"))]
        if args.mpi {
            bail!("--mpi: this landscape was built without MPI; rebuild with `cargo build --release --features mpi,cli`");
        }
        if let Some(t) = args.threads {
            if !(1..=MAX_THREADS).contains(&t) {
                bail!("--threads {t}: expected 1 to {MAX_THREADS}");
            }
            tch::set_num_threads(t as i32);
        }
        let shard = parse_shard(args.shard.as_deref())?;
        if args.batch < 1 {
            bail!("--batch {}: expected at least 1", args.batch);
        }
        let bn = match args.bn {
            BnPolicy::Fixed => None,
            BnPolicy::Recalibrate => {
                let s = BnRecalibration {
                    batches: args.bn_batches,
                    batch: args.batch,
                    seed: args.bn_seed,
                };
                s.validate()?;
                Some(s)
            }
        };
        #[cfg(feature = "mpi")]
        let device = match &mpi {
            Some(m) => m.device(),
            None => parse_device(&args.device)?,
        };
        #[cfg(not(feature = "mpi"))]
        let device = parse_device(&args.device)?;
        let loss = match args.loss {
            Loss::CrossEntropy => LossKind::CrossEntropy,
            Loss::Mse => LossKind::Mse,
        };
        let run = Run::open(run_dir)?;
        let recorded_model = run.manifest().user.get("model").cloned();
        let is_demo = recorded_model.as_deref() == Some(DIGITS_MLP_MODEL);
        let vs = VarStore::new(device);
        let (model, description) = match &args.model {
            Some(path) => {
                tracing::info!(model = %path.display(), "loading the TorchScript model");
                (
                    Model::Script(ScriptModel::load(path, &vs)?),
                    format!("TorchScript model {}", path.display()),
                )
            }
            None if is_demo => (
                Model::Demo(Mlp::new(&vs.root(), &W1_SIZES)),
                "the digits MLP of `landscape demo`".to_string(),
            ),
            None => bail!(
                "{}: give the run's model with --model MODEL.pt (TorchScript: torch.jit.script(model).save(path)) and its data with --data FILE; only runs of `landscape demo` need neither (this run's model is {})",
                run_dir.display(),
                recorded_model.map_or("not recorded".to_string(), |m| format!("'{m}'"))
            ),
        };
        let targets = match loss {
            LossKind::CrossEntropy => Targets::Classes,
            LossKind::Mse => Targets::Values,
        };
        let data = match &args.data {
            Some(path) => {
                let names = DataNames {
                    x_train: args.x_train.clone(),
                    y_train: args.y_train.clone(),
                    x_test: args.x_test.clone(),
                    y_test: args.y_test.clone(),
                };
                Dataset::load(path, &names, targets)?
            }
            None if is_demo && args.model.is_none() => {
                let (train, test) = Digits::load()?.split_at(1437)?;
                Dataset {
                    path: PathBuf::from("(the bundled UCI digits)"),
                    splits: vec![
                        DataSplit {
                            name: "train".into(),
                            x: train.x,
                            y: train.y,
                        },
                        DataSplit {
                            name: "test".into(),
                            x: test.x,
                            y: test.y,
                        },
                    ],
                }
            }
            None => bail!("--data: the data to evaluate the model on is needed with --model (a .safetensors or .npz file with x_train, y_train, x_test, y_test)"),
        }
        .to_device(device)?;
        let matched = ModelMatch::check(&run, &vs, bn.is_some())?;
        let session = Session {
            run,
            run_dir: run_dir.to_path_buf(),
            vs,
            model,
            data,
            matched,
            loss,
            batch: args.batch,
            bn,
            shard,
            description,
            model_path: args.model.clone(),
            threads_given: args.threads.is_some(),
            #[cfg(feature = "mpi")]
            mpi,
        };
        session.check_data()?;
        Ok(session)
    }

    /// One forward of a few training samples: the data fits the model, and
    /// the classes its outputs.
    fn check_data(&self) -> anyhow::Result<()> {
        let x = &self.data.train().x;
        let n = x.size()[0].min(2);
        let xb = x.f_narrow(0, 0, n)?;
        let out = match &self.model {
            Model::Script(m) => tch::no_grad(|| m.f_forward_t(&xb, false)).map_err(|e| {
                anyhow::anyhow!(
                    "{}: the training inputs {:?} do not fit {}: {e}",
                    self.data.path.display(),
                    x.size(),
                    self.description
                )
            })?,
            Model::Demo(m) => tch::no_grad(|| m.forward_t(&xb, false)),
        };
        let shape = out.size();
        match self.loss {
            LossKind::CrossEntropy => {
                if shape.len() != 2 || shape[0] != n {
                    bail!(
                        "{}: the model's output on {n} samples is {shape:?}, expected [{n}, classes] for --loss cross-entropy",
                        self.data.path.display()
                    );
                }
                self.data.check_classes(shape[1])?;
            }
            LossKind::Mse => {
                let y = self.data.train().y.f_narrow(0, 0, n)?;
                if y.size() != shape {
                    bail!(
                        "{}: the model's output on {n} samples is {shape:?}, the targets are {:?}; --loss mse needs the same shape",
                        self.data.path.display(),
                        y.size()
                    );
                }
            }
        }
        Ok(())
    }

    /// The snapshot `at` (default: the last), checked.
    pub fn snapshot(&self, at: Option<usize>) -> anyhow::Result<usize> {
        let n = self.run.len();
        match at {
            None => n.checked_sub(1).context("the run has no snapshots"),
            Some(s) if s < n => Ok(s),
            Some(s) => bail!(
                "--at {s}: the run {} has snapshots 0 to {}",
                self.run_dir.display(),
                n.saturating_sub(1)
            ),
        }
    }

    /// Snapshot `i` as a parameter set named as the model's variables.
    pub fn params_at(&self, i: usize) -> anyhow::Result<ParamSet> {
        Ok(self.matched.params_at(&self.run, i)?)
    }

    /// Snapshot `i` in words: "snapshot 20 (epoch 20)", with "the final
    /// model" for the last one.
    pub fn describe(&self, i: usize) -> String {
        let epoch = self
            .run
            .snapshot(i)
            .map(|s| format!(" (epoch {})", s.meta().epoch))
            .unwrap_or_default();
        let last = if i + 1 == self.run.len() {
            ", the final model"
        } else {
            ""
        };
        format!("snapshot {i}{epoch}{last}")
    }

    /// Loads snapshot `i` into the model's variables.
    pub fn load(&self, i: usize) -> anyhow::Result<()> {
        Ok(self.matched.load(&self.run, i, &self.vs)?)
    }

    /// The model, as the module its variables belong to.
    pub fn module(&self) -> &dyn tch::nn::ModuleT {
        self.model.module()
    }

    /// The evaluator of every split (and BN recalibration when asked).
    pub fn evaluator(&self) -> anyhow::Result<ClassifierEvaluator<'_>> {
        let mut eval = ClassifierEvaluator::new(self.model.module())
            .loss(self.loss)
            .batch(self.batch)?;
        for s in &self.data.splits {
            eval = eval.split(s.name.clone(), &s.x, &s.y)?;
        }
        if let Some(bn) = self.bn {
            eval = eval.recalibrate_bn(&self.vs, &self.data.train().x, bn)?;
        }
        Ok(eval)
    }

    /// The training loss as a Hessian objective (BN recalibration when asked).
    pub fn objective(&self) -> anyhow::Result<SupervisedObjective<'_>> {
        let train = self.data.train();
        let mut o = SupervisedObjective::new(self.model.module(), &train.x, &train.y)?
            .batch(self.batch)?
            .loss(self.loss);
        if let Some(bn) = self.bn {
            o = o.recalibrate_bn(&self.vs, &train.x, bn)?;
        }
        Ok(o)
    }

    /// The output directory: `out`, or `RUN/<kind>/<name>`; inside the run,
    /// created without following a planted link.
    pub fn output(&self, out: Option<&Path>, kind: &str, name: &str) -> anyhow::Result<PathBuf> {
        let dir = match out {
            Some(o) => o.to_path_buf(),
            None => {
                if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                    bail!("--name '{name}': expected a plain directory name");
                }
                self.run_dir.join(kind).join(name)
            }
        };
        if dir.starts_with(&self.run_dir) {
            create_dir_in(&self.run_dir, &dir)?;
        }
        Ok(dir)
    }

    /// `builder` with the shard of `--shard` and a progress bar of its points
    /// (shown on the process that prints); `stage` names what is computed.
    pub fn configure<'a>(
        &self,
        mut builder: SurfaceBuilder<'a>,
        stage: &str,
    ) -> (SurfaceBuilder<'a>, ProgressBar) {
        if let Some(s) = self.shard {
            builder = builder.shard(s);
        }
        let pb = progress_bar(stage, self.is_root());
        let bar = pb.clone();
        let builder = builder.on_progress(move |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        });
        (builder, pb)
    }

    /// How many model replicas evaluate a surface in this process, each on
    /// one libtorch thread. Replicas × 1 thread beat one model on every
    /// thread (measured: W1 1.3×, W2 1.4× on two cores, and a two-thread
    /// model collapses under foreign load), so with two or more cores they
    /// are the default; one replica on all threads when `--threads` is
    /// given, under MPI (ranks are the replicas), on a GPU, or with
    /// `--bn recalibrate` (its evaluator holds the session's variables).
    pub fn replicas(&self) -> usize {
        #[cfg(feature = "mpi")]
        if self.mpi.is_some() {
            return 1;
        }
        if self.threads_given || self.vs.device() != Device::Cpu || self.bn.is_some() {
            return 1;
        }
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_REPLICAS)
    }

    /// What a replica is built from on its own thread.
    pub fn replica_spec(&self) -> ReplicaSpec {
        ReplicaSpec {
            model: self.model_path.clone(),
            device: self.vs.device(),
            splits: std::sync::Mutex::new(
                self.data
                    .splits
                    .iter()
                    .map(|s| (s.name.clone(), s.x.shallow_clone(), s.y.shallow_clone()))
                    .collect(),
            ),
            loss: self.loss,
            batch: self.batch,
        }
    }

    /// Number of processes evaluating (MPI ranks, or 1).
    pub fn processes(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            return m.size();
        }
        1
    }

    /// True on the process that prints (rank 0, or the only one).
    pub fn is_root(&self) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            return m.rank() == 0;
        }
        true
    }
}

/// A progress bar of points (hidden when stderr is not a terminal, and on
/// MPI workers); `stage` names what is computed.
pub fn progress_bar(stage: &str, show: bool) -> ProgressBar {
    let pb = if show {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} points ({per_sec}, eta {eta})")
    {
        pb.set_style(style);
    }
    pb.set_message(stage.to_string());
    pb
}
