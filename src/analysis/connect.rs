//! Mode connectivity (Garipov et al., NeurIPS 2018; Draxler et al., ICML
//! 2018): a low-loss curve between two trained models θ_A and θ_B.
//!
//! The curve has one bend θ_c, trained with SGD to minimize
//! E_{t~U(0,1)} L(φ(t)) while θ_A and θ_B stay fixed:
//!
//! - quadratic Bézier: φ(t) = (1−t)²θ_A + 2t(1−t)θ_c + t²θ_B, ∂φ/∂θ_c = 2t(1−t);
//! - polygonal chain: φ(t) = θ_A + 2t(θ_c − θ_A) for t ≤ ½, θ_c + (2t−1)(θ_B − θ_c)
//!   after, ∂φ/∂θ_c = 2t or 2(1−t).
//!
//! Each step samples t, sets the model's variables to φ(t), backpropagates
//! the batch loss to g = ∂L/∂φ and steps θ_c along (∂φ/∂θ_c)·g (momentum
//! SGD). The bend starts at the midpoint (θ_A + θ_B)/2, where the curve is
//! the straight line. Every draw (batch order, t) comes from the seed and
//! the epoch, and the state is saved after every epoch, so a run resumed
//! after a kill ends with the same bend as one never interrupted.
//!
//! Any model works: the trainer needs its VarStore, a `ModuleT` and the
//! training tensors; the paths are evaluated with any
//! [`Evaluator`](crate::analysis::evaluator::Evaluator) (BatchNorm
//! recalibration at each t is the evaluator's setting,
//! [`ClassifierEvaluator::recalibrate_bn`](crate::analysis::evaluator::ClassifierEvaluator::recalibrate_bn)).
//! Running statistics (buffers) are not trained: between the ends they
//! follow the curve's formula with the bend's buffers at the midpoint.
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! use tch_landscape::analysis::connect::{evaluate_paths, Curve, CurveKind, CurveTrainer};
//! # let (vs, model, x, y, a, b): (tch::nn::VarStore, tch_landscape::models::Mlp, tch::Tensor, tch::Tensor,
//! #     tch_landscape::analysis::params::ParamSet, tch_landscape::analysis::params::ParamSet) = todo!();
//! # let mut eval: tch_landscape::analysis::evaluator::ClassifierEvaluator = todo!();
//! let mut curve = Curve::midpoint(CurveKind::Bezier, a, b)?;
//! let log = CurveTrainer::new(&vs, &model, &x, &y).epochs(20).train(&mut curve, None)?;
//! let rows = evaluate_paths(&curve, &vs, &mut eval, 61)?;
//! # Ok(()) }
//! ```

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Kind, Tensor};

use crate::analysis::evaluator::Evaluator;
use crate::analysis::params::{NamedTensor, ParamSet, RestoreGuard};
use crate::analysis::supervised::{check_batch, loss_of, LossKind};
use crate::error::{Error, Result};
use crate::store::connect::{load_state, save_state, CurveState};

/// The shape of the curve between the two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveKind {
    /// Quadratic Bézier curve with control point θ_c.
    #[default]
    Bezier,
    /// Two straight segments θ_A → θ_c → θ_B.
    Polychain,
}

impl CurveKind {
    /// The name used in files and options (`bezier`, `polychain`).
    pub fn name(self) -> &'static str {
        match self {
            CurveKind::Bezier => "bezier",
            CurveKind::Polychain => "polychain",
        }
    }

    /// The coefficients (c_A, c_c, c_B) of φ(t) = c_A θ_A + c_c θ_c + c_B θ_B.
    pub fn coefficients(self, t: f64) -> (f64, f64, f64) {
        match self {
            CurveKind::Bezier => ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t),
            CurveKind::Polychain if t <= 0.5 => (1.0 - 2.0 * t, 2.0 * t, 0.0),
            CurveKind::Polychain => (0.0, 2.0 - 2.0 * t, 2.0 * t - 1.0),
        }
    }
}

impl std::fmt::Display for CurveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CurveKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<CurveKind> {
        match s {
            "bezier" => Ok(CurveKind::Bezier),
            "polychain" => Ok(CurveKind::Polychain),
            _ => Err(Error::invalid(
                "curve",
                format!("'{s}' is not one of bezier, polychain"),
            )),
        }
    }
}

/// A curve between two models: its ends and its bend.
#[derive(Debug, Clone)]
pub struct Curve {
    /// The shape.
    pub kind: CurveKind,
    /// θ_A (t = 0).
    pub a: ParamSet,
    /// θ_B (t = 1).
    pub b: ParamSet,
    /// θ_c, the trained bend.
    pub bend: ParamSet,
}

impl Curve {
    /// The curve with its bend at the midpoint (θ_A + θ_B)/2: the straight
    /// line. An error when the ends differ in names or shapes.
    pub fn midpoint(kind: CurveKind, a: ParamSet, b: ParamSet) -> Result<Curve> {
        a.check_compatible(&b, "θ_B")?;
        let bend = combine(&[(0.5, &a), (0.5, &b)])?;
        Ok(Curve { kind, a, b, bend })
    }

    /// φ(t) for t in [0, 1]; the ends exactly at t = 0 and 1.
    pub fn point(&self, t: f64) -> Result<ParamSet> {
        check_t(t)?;
        if t == 0.0 {
            return Ok(self.a.clone());
        }
        if t == 1.0 {
            return Ok(self.b.clone());
        }
        let (ca, cc, cb) = self.kind.coefficients(t);
        combine(&[(ca, &self.a), (cc, &self.bend), (cb, &self.b)])
    }

    /// The straight line's point (1−t)θ_A + tθ_B; the ends exactly at t = 0
    /// and 1.
    pub fn line_point(&self, t: f64) -> Result<ParamSet> {
        check_t(t)?;
        if t == 0.0 {
            return Ok(self.a.clone());
        }
        if t == 1.0 {
            return Ok(self.b.clone());
        }
        combine(&[(1.0 - t, &self.a), (t, &self.b)])
    }
}

fn check_t(t: f64) -> Result<()> {
    if (0.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(Error::invalid("t", format!("must be in [0, 1], got {t}")))
    }
}

/// Σ cᵢ·setᵢ, tensor by tensor (the sets compatible, as checked by the
/// curve's constructor).
fn combine(terms: &[(f64, &ParamSet)]) -> Result<ParamSet> {
    let first = terms[0].1;
    let tensors = first
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t0)| {
            let mut acc: Option<Tensor> = None;
            for (c, set) in terms {
                let term = set.tensors[i]
                    .tensor
                    .f_mul_scalar(*c)
                    .map_err(|e| Error::torch(format!("combining '{}'", t0.name), e))?;
                acc = Some(match acc {
                    None => term,
                    Some(a) => a
                        .f_add(&term)
                        .map_err(|e| Error::torch(format!("combining '{}'", t0.name), e))?,
                });
            }
            Ok(NamedTensor {
                name: t0.name.clone(),
                role: t0.role,
                tensor: acc.unwrap_or_else(|| t0.tensor.zeros_like()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ParamSet { tensors })
}

/// The bend's training settings (stored with the result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Passes over the training data.
    pub epochs: usize,
    /// SGD learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay on θ_c.
    pub weight_decay: f64,
    /// Training batch size.
    pub batch: i64,
    /// Seed of the batch order and of the t draws.
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 20,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
            batch: 128,
            seed: 0,
        }
    }
}

/// One epoch of the bend's training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training-batch loss at the sampled t.
    pub loss: f64,
}

/// Trains a curve's bend on a model's training data.
pub struct CurveTrainer<'a> {
    vs: &'a VarStore,
    model: &'a dyn ModuleT,
    x: &'a Tensor,
    y: &'a Tensor,
    settings: TrainSettings,
    loss: LossKind,
}

impl std::fmt::Debug for CurveTrainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveTrainer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<'a> CurveTrainer<'a> {
    /// A trainer of `model` (whose variables are `vs`) on inputs `x` and
    /// class targets `y`, cross-entropy loss, [`TrainSettings::default`].
    pub fn new(vs: &'a VarStore, model: &'a dyn ModuleT, x: &'a Tensor, y: &'a Tensor) -> Self {
        CurveTrainer {
            vs,
            model,
            x,
            y,
            settings: TrainSettings::default(),
            loss: LossKind::CrossEntropy,
        }
    }

    /// The training loss (default cross-entropy; the evaluator's should be
    /// the same).
    pub fn loss(mut self, loss: LossKind) -> Self {
        self.loss = loss;
        self
    }

    /// All settings at once.
    pub fn settings(mut self, s: TrainSettings) -> Self {
        self.settings = s;
        self
    }

    /// Passes over the training data (default 20).
    pub fn epochs(mut self, n: usize) -> Self {
        self.settings.epochs = n;
        self
    }

    /// Seed of the batch order and the t draws (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// Learning rate (default 0.05).
    pub fn lr(mut self, lr: f64) -> Self {
        self.settings.lr = lr;
        self
    }

    /// The settings in use.
    pub fn current(&self) -> &TrainSettings {
        &self.settings
    }

    /// Trains `curve`'s bend, the model's variables restored afterwards.
    /// With `state`, the bend, the momentum and the log are saved there
    /// (atomically) after every epoch, and a state already there for the
    /// same ends, curve and settings is resumed from (also to train a
    /// finished curve for more epochs: the result is the same as training
    /// that many epochs at once); one for other settings is an error.
    /// libtorch's (process-wide) generator is seeded at every epoch, for the
    /// model's own randomness (dropout): train one curve at a time.
    pub fn train(&self, curve: &mut Curve, state: Option<&Path>) -> Result<Vec<EpochLog>> {
        let s = &self.settings;
        if s.epochs == 0 || !(s.lr > 0.0 && s.lr.is_finite()) {
            return Err(Error::invalid(
                "curve training",
                format!(
                    "needs epochs ≥ 1 and a positive finite lr, got {} and {}",
                    s.epochs, s.lr
                ),
            ));
        }
        if !(0.0..1.0).contains(&s.momentum) || !(0.0..f64::INFINITY).contains(&s.weight_decay) {
            return Err(Error::invalid(
                "curve training",
                format!(
                    "momentum must be in [0, 1) and weight decay ≥ 0, got {} and {}",
                    s.momentum, s.weight_decay
                ),
            ));
        }
        let batch = check_batch(s.batch)?;
        let n = self.x.size().first().copied().unwrap_or(0);
        if n == 0 || self.y.size().first() != Some(&n) {
            return Err(Error::invalid(
                "curve training data",
                format!(
                    "needs as many targets as inputs, at least one: {:?} and {:?}",
                    self.x.size(),
                    self.y.size()
                ),
            ));
        }
        let _restore = RestoreGuard::new(self.vs);
        let trainable: Vec<bool> = {
            let vars = self.vs.variables();
            curve
                .bend
                .tensors
                .iter()
                .map(|t| vars.get(&t.name).is_some_and(|v| v.requires_grad()))
                .collect()
        };
        let mut momentum: Vec<Tensor> = curve
            .bend
            .tensors
            .iter()
            .map(|t| t.tensor.zeros_like())
            .collect();
        let key = StateKey::of(curve, s, self.loss);
        let mut log = Vec::new();
        if let Some(path) = state {
            if let Some(st) = load_state(path, &curve.bend)? {
                if st.key != key.to_json() {
                    return Err(Error::invalid(
                        "curve state",
                        format!(
                            "{} holds the training of another curve or settings ({}); this one is {} \
                             (remove it or choose another output)",
                            path.display(),
                            st.key,
                            key.to_json()
                        ),
                    ));
                }
                if st.log.len() > s.epochs {
                    return Err(Error::invalid(
                        "curve state",
                        format!(
                            "{} holds {} trained epochs, more than the {} asked for",
                            path.display(),
                            st.log.len(),
                            s.epochs
                        ),
                    ));
                }
                curve.bend = st.bend;
                momentum = st.momentum;
                log = st.log;
            }
        }
        let vars = self.vs.variables();
        for epoch in log.len() + 1..=s.epochs {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                s.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            tch::manual_seed((s.seed as i64).wrapping_add(epoch as i64));
            let mut order: Vec<i64> = (0..n).collect();
            order.shuffle(&mut rng);
            let (mut sum, mut batches) = (0.0, 0usize);
            for chunk in order.chunks(batch as usize) {
                let t: f64 = rng.random::<f64>();
                curve.point(t)?.copy_into(self.vs)?;
                let idx = Tensor::from_slice(chunk).to_device(self.x.device());
                let loss = self.step_loss(&idx)?;
                sum += loss;
                batches += 1;
                let w = curve.kind.coefficients(t).1;
                tch::no_grad(|| -> Result<()> {
                    for (k, p) in curve.bend.tensors.iter_mut().enumerate() {
                        if !trainable[k] {
                            continue;
                        }
                        let var = &vars[&p.name];
                        let g = var.grad();
                        if !g.defined() {
                            continue;
                        }
                        let err = |e| Error::torch(format!("stepping the bend of '{}'", p.name), e);
                        let g = g.f_to_device(tch::Device::Cpu).map_err(err)?;
                        let mut upd = g.f_mul_scalar(w).map_err(err)?;
                        if s.weight_decay > 0.0 {
                            upd = upd
                                .f_add(&p.tensor.f_mul_scalar(s.weight_decay).map_err(err)?)
                                .map_err(err)?;
                        }
                        let m = momentum[k]
                            .f_mul_scalar(s.momentum)
                            .and_then(|m| m.f_add(&upd))
                            .map_err(err)?;
                        p.tensor = p
                            .tensor
                            .f_sub(&m.f_mul_scalar(s.lr).map_err(err)?)
                            .map_err(err)?;
                        momentum[k] = m;
                    }
                    Ok(())
                })?;
            }
            let mean = sum / batches.max(1) as f64;
            if !mean.is_finite() {
                return Err(Error::invalid(
                    "curve training",
                    format!(
                        "the loss became {mean} in epoch {epoch}: lower the learning rate (--lr)"
                    ),
                ));
            }
            log.push(EpochLog { epoch, loss: mean });
            tracing::info!(epoch, loss = mean, "curve epoch");
            if let Some(path) = state {
                save_state(
                    path,
                    &CurveState {
                        key: key.to_json(),
                        bend: curve.bend.clone(),
                        momentum: momentum.iter().map(Tensor::copy).collect(),
                        log: log.clone(),
                    },
                )?;
            }
        }
        Ok(log)
    }

    /// Loss of the batch `idx` at the model's current variables, gradients
    /// of the variables set (train mode: BatchNorm uses batch statistics).
    fn step_loss(&self, idx: &Tensor) -> Result<f64> {
        let err = |e| Error::torch("a curve training step", e);
        for mut v in self.vs.trainable_variables() {
            v.zero_grad();
        }
        let xb = self.x.f_index_select(0, idx).map_err(err)?;
        let yb = self.y.f_index_select(0, idx).map_err(err)?;
        let out = self.model.forward_t(&xb, true);
        let loss = loss_of(&out, &yb, self.loss).map_err(err)?;
        loss.f_backward().map_err(err)?;
        loss.f_to_kind(Kind::Double)
            .and_then(|l| l.f_double_value(&[]))
            .map_err(err)
    }
}

/// What a saved training state must match to be resumed: everything but
/// the number of epochs (a longer training continues a shorter one, as
/// every epoch's draws depend only on the seed and the epoch).
#[derive(Debug, Serialize)]
struct StateKey {
    kind: CurveKind,
    loss: String,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    batch: i64,
    seed: u64,
    /// Checksums of the two ends' values.
    ends: [u32; 2],
}

impl StateKey {
    fn of(curve: &Curve, s: &TrainSettings, loss: LossKind) -> StateKey {
        StateKey {
            kind: curve.kind,
            loss: format!("{loss:?}"),
            lr: s.lr,
            momentum: s.momentum,
            weight_decay: s.weight_decay,
            batch: s.batch,
            seed: s.seed,
            ends: [digest(&curve.a), digest(&curve.b)],
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// CRC32 of a parameter set's names and float32 values.
fn digest(p: &ParamSet) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for t in &p.tensors {
        h.update(t.name.as_bytes());
        if let Ok(v) = Vec::<f32>::try_from(t.tensor.flatten(0, -1)) {
            for x in v {
                h.update(&x.to_le_bytes());
            }
        }
    }
    h.finalize()
}

/// One evaluated point of a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathRow {
    /// `curve` or `line`.
    pub path: &'static str,
    /// Position on the path, 0 (θ_A) to 1 (θ_B).
    pub t: f64,
    /// Data split.
    pub split: String,
    /// Loss.
    pub loss: f64,
    /// Accuracy in percent, when the loss has one.
    pub accuracy: Option<f64>,
}

/// Evaluates the curve and the straight line between the same ends at
/// `points` evenly spaced t in [0, 1] (both ends included), the model's
/// variables restored afterwards. At t = 0 and 1 both paths are the ends
/// exactly.
pub fn evaluate_paths(
    curve: &Curve,
    vs: &VarStore,
    eval: &mut dyn Evaluator,
    points: usize,
) -> Result<Vec<PathRow>> {
    if points < 2 {
        return Err(Error::invalid(
            "points",
            format!("a path needs at least 2 points (its ends), got {points}"),
        ));
    }
    let _restore = RestoreGuard::new(vs);
    let mut rows = Vec::new();
    for path in ["curve", "line"] {
        for i in 0..points {
            let t = if i + 1 == points {
                1.0
            } else {
                i as f64 / (points - 1) as f64
            };
            let theta = if path == "curve" {
                curve.point(t)?
            } else {
                curve.line_point(t)?
            };
            theta.copy_into(vs)?;
            for r in eval.evaluate()? {
                rows.push(PathRow {
                    path,
                    t,
                    split: r.split,
                    loss: r.loss,
                    accuracy: r.accuracy,
                });
            }
        }
    }
    Ok(rows)
}

/// The barrier of `path` on `split`: the largest loss along it minus the
/// mean of the two ends' losses (`None` without rows for both).
pub fn barrier(rows: &[PathRow], path: &str, split: &str) -> Option<f64> {
    let of: Vec<&PathRow> = rows
        .iter()
        .filter(|r| r.path == path && r.split == split)
        .collect();
    let end = |t: f64| of.iter().find(|r| r.t == t).map(|r| r.loss);
    let (a, b) = (end(0.0)?, end(1.0)?);
    let max = of.iter().map(|r| r.loss).fold(f64::NEG_INFINITY, f64::max);
    Some(max - 0.5 * (a + b))
}

/// A barrier along one path on one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Barrier {
    /// `curve` or `line`.
    pub path: String,
    /// Data split.
    pub split: String,
    /// max_t L(t) − (L(0) + L(1))/2.
    pub height: f64,
    /// Where the largest loss is.
    pub at_t: f64,
}

/// What `connect.json` (and `curve.parquet`'s metadata) hold.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectSummary {
    /// The curve's shape.
    pub curve: CurveKind,
    /// The bend's training settings (seed included).
    pub settings: TrainSettings,
    /// Evaluated points per path.
    pub points: usize,
    /// θ_A and θ_B, described (run id, snapshot).
    pub ends: [String; 2],
    /// The evaluator (model, data, loss, BatchNorm policy).
    pub evaluator: String,
    /// Barrier of both paths on every split.
    pub barriers: Vec<Barrier>,
    /// The bend's training, one row per epoch.
    pub log: Vec<EpochLog>,
    /// Wall time of training and evaluation, in seconds.
    pub seconds: f64,
}

impl ConnectSummary {
    /// The barriers of `rows` for both paths and every split.
    pub fn barriers_of(rows: &[PathRow]) -> Vec<Barrier> {
        let mut splits: Vec<&str> = Vec::new();
        for r in rows {
            if !splits.contains(&r.split.as_str()) {
                splits.push(&r.split);
            }
        }
        let mut out = Vec::new();
        for path in ["curve", "line"] {
            for split in &splits {
                if let Some(height) = barrier(rows, path, split) {
                    let at_t = rows
                        .iter()
                        .filter(|r| r.path == path && r.split == *split)
                        .fold((f64::NEG_INFINITY, 0.0), |(m, at), r| {
                            if r.loss > m {
                                (r.loss, r.t)
                            } else {
                                (m, at)
                            }
                        })
                        .1;
                    out.push(Barrier {
                        path: path.into(),
                        split: split.to_string(),
                        height,
                        at_t,
                    });
                }
            }
        }
        out
    }

    /// The barrier of `path` on `split`.
    pub fn barrier(&self, path: &str, split: &str) -> Option<f64> {
        self.barriers
            .iter()
            .find(|b| b.path == path && b.split == split)
            .map(|b| b.height)
    }

    /// Writes `curve.parquet` (the rows, this summary in its metadata) and
    /// `connect.json` into `dir` (which holds the training state already
    /// when the trainer was given `dir`/[`STATE_FILE`](crate::store::connect::STATE_FILE)).
    pub fn save(&self, dir: &Path, rows: &[PathRow]) -> Result<()> {
        crate::store::fsutil::create_output_dir(dir)?;
        crate::store::connect::write_curve(
            &dir.join(crate::store::connect::CURVE_FILE),
            rows,
            self,
        )?;
        crate::store::fsutil::write_json(&dir.join(crate::store::connect::SUMMARY_FILE), self, true)
    }
}
