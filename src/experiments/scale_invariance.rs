//! Experiment 2 (§4): scale invariance of a ReLU network, and how filter
//! normalization removes it from the slices.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Tensor;

use crate::analysis::directions::Normalization;
use crate::demo::TrainConfig;
use crate::error::{Error, Result};
use crate::report::run_report::{write_report, ReportOptions};

use super::surfaces::{slice, Slice, SliceSpec};
use super::train::{Arch, Data, Model, Setup, Trained};
use super::{write_summary, Scale};

/// Results of experiment 2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleSummary {
    /// The trained run.
    pub run: Trained,
    /// Largest |logit difference| between the original and the rescaled net
    /// over the test split, relative to the largest |logit|.
    pub max_rel_logit_diff: f64,
    /// Un-normalized slices (same seed): original, rescaled.
    pub raw: (Slice, Slice),
    /// Filter-normalized slices (same seed): original, rescaled.
    pub filter: (Slice, Slice),
    /// Largest |difference| of the train-loss curves, un-normalized.
    pub raw_max_diff: f64,
    /// Largest |difference| of the train-loss curves, filter-normalized.
    pub filter_max_diff: f64,
}

/// Experiment 2 (§4): an MLP 64-100-100-10 trained on the digits; fc1 (weights
/// and bias) is multiplied by 10 and fc2's weights by 1/10 (its bias kept),
/// which leaves a ReLU network's function unchanged. Compares 1-D slices of
/// both along an un-normalized and a filter-normalized direction (seed 7).
pub fn scale_invariance(out: &Path, scale: &Scale) -> Result<ScaleSummary> {
    scale.validate()?;
    let data = Data::digits()?;
    let setup = Setup {
        out,
        scale,
        data: &data,
    };
    let arch = Arch::Mlp(vec![64, 100, 100, 10]);
    let cfg = TrainConfig {
        lr_drops: vec![],
        ..scale.sgd(64, 0.05, 0.0)
    };
    let (run, model) = setup.train("original", &arch, &cfg)?;
    let rescaled = rescale(&model, &arch, &data)?;
    let max_rel_logit_diff = max_rel_logit_diff(&model, &rescaled)?;
    let pair = SlicePair {
        models: [&model, &rescaled],
        points: 2 * scale.points_1d + 1,
        dir: out.join("slices"),
    };
    let (raw, raw_max_diff) = pair.compare(Normalization::None, "raw")?;
    let (filter, filter_max_diff) = pair.compare(Normalization::Filter, "filter")?;
    write_report(&setup.run_dir("original"), &ReportOptions::default())?;
    let summary = ScaleSummary {
        run,
        max_rel_logit_diff,
        raw,
        filter,
        raw_max_diff,
        filter_max_diff,
    };
    write_summary(out, &summary)?;
    Ok(summary)
}

/// A copy of `model` with fc1 (weights and bias) multiplied by 10 and fc2's
/// weights by 1/10.
fn rescale(model: &Model, arch: &Arch, data: &Data) -> Result<Model> {
    let rescaled = Model::new(arch, data)?;
    let src = model.vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in rescaled.vs.variables() {
            let factor = match name.as_str() {
                "fc1.weight" | "fc1.bias" => 10.0,
                "fc2.weight" => 0.1,
                _ => 1.0,
            };
            let err = |e| Error::torch(format!("rescaling {name}"), e);
            let value = src.get(&name).ok_or_else(|| Error::UnknownTensor {
                tensor: name.clone(),
                place: "the trained model".into(),
            })?;
            t.f_copy_(&value.f_mul_scalar(factor).map_err(err)?)
                .map_err(err)?;
        }
        Ok(())
    })?;
    Ok(rescaled)
}

/// The largest |logit difference| of two models over the test split,
/// relative to the largest |logit| of the first.
fn max_rel_logit_diff(a: &Model, b: &Model) -> Result<f64> {
    let err = |e| Error::torch("comparing the logits", e);
    tch::no_grad(|| {
        let la = a.net.forward_t(&a.test.x, false);
        let lb = b.net.forward_t(&b.test.x, false);
        let max_abs = |t: Tensor| t.f_abs()?.f_max()?.f_double_value(&[]);
        let diff = max_abs(la.f_sub(&lb).map_err(err)?).map_err(err)?;
        Ok(diff / max_abs(la).map_err(err)?)
    })
}

/// The original and the rescaled model, sliced along the same directions.
struct SlicePair<'a> {
    /// Original, rescaled.
    models: [&'a Model; 2],
    /// Points per slice.
    points: usize,
    /// Directory of the slices.
    dir: PathBuf,
}

impl SlicePair<'_> {
    /// Slices both models along a direction of seed 7 normalized by `norm`
    /// (into `original-TAG` and `rescaled-TAG`); returns both slices' figures
    /// and the largest |difference| of their train-loss curves.
    fn compare(&self, norm: Normalization, tag: &str) -> Result<((Slice, Slice), f64)> {
        let one = |name: &str, model: &Model| {
            let spec = SliceSpec {
                name,
                norm,
                seed: 7,
                points: self.points,
            };
            slice(model, &spec, &self.dir.join(format!("{name}-{tag}")))
        };
        let (a, ra) = one("original", self.models[0])?;
        let (b, rb) = one("rescaled", self.models[1])?;
        let d = ra
            .loss("train")
            .iter()
            .zip(rb.loss("train"))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        Ok(((a, b), d))
    }
}
