//! How well the PCA plane represents the trajectory: the loss at every
//! snapshot against the loss at its projection onto the plane.

use tch::{Kind, Tensor};

use std::path::Path;

use super::result::PcaResult;
use super::stream::selected_tensors;
use crate::analysis::directions::combine;
use crate::analysis::evaluator::{Evaluator, SplitResult};
use crate::analysis::params::RestoreGuard;
use crate::error::{Error, Result};
use crate::store::pca::{self, PathPoint, PlaneCheckRow};
use crate::store::run::Run;

/// The result of [`plane_check`]; [`PlaneCheck::save`] writes it as
/// [`PLANE_CHECK_FILE`](super::PLANE_CHECK_FILE).
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneCheck {
    /// One row per snapshot and split, snapshot-major.
    pub rows: Vec<PlaneCheckRow>,
    /// The evaluator's description.
    pub evaluator: String,
}

impl PlaneCheck {
    /// Writes the table as zstd Parquet
    /// ([`plane_check_schema`](super::plane_check_schema)), the evaluator's
    /// description under [`PCA_META_KEY`](super::PCA_META_KEY).
    pub fn save(&self, path: &Path) -> Result<()> {
        pca::write_plane_check(path, &self.rows, &self.evaluator)
    }
}

/// A selected tensor set on the plane: the model's variable, θ_final and
/// the (one or two) components restricted to it, in float64.
struct Target {
    var: Tensor,
    name: String,
    centre: Tensor,
    dirs: Vec<Tensor>,
}

/// How well the PCA plane represents the trajectory: for every snapshot θᵢ,
/// the loss L(θᵢ) and the loss at its projection onto the plane,
/// θ_final + xᵢ·pc1 + yᵢ·pc2, evaluated by `eval` on the model whose
/// variables are `vs`.
///
/// Only the selected tensors are projected: the others (biases under the
/// default selection, and BatchNorm running statistics) are taken from θᵢ
/// itself, since the PCA says nothing about them. The final snapshot's
/// projection is θ_final itself, so its two losses are equal.
///
/// `vs` must hold every recorded tensor ([`Run::load_into`]); its variables
/// are restored bit-exactly afterwards, also on error.
pub fn plane_check(
    run: &Run,
    pca: &PcaResult,
    vs: &tch::nn::VarStore,
    eval: &mut dyn Evaluator,
) -> Result<PlaneCheck> {
    let _span = tracing::info_span!("pca plane check", run = %run.dir().display()).entered();
    let targets = plane_targets(run, pca, vs)?;
    let description = eval.describe();
    let guard = RestoreGuard::new(vs);
    let mut rows = Vec::new();
    for (i, p) in pca.path.iter().enumerate() {
        let _s = tracing::debug_span!("snapshot", index = p.snapshot).entered();
        run.load_into(i, vs)?;
        let truth = eval.evaluate()?;
        set_plane_point(&targets, p.x(), p.y())?;
        let plane = eval.evaluate()?;
        rows.extend(check_rows(p, truth, plane)?);
    }
    drop(guard);
    Ok(PlaneCheck {
        rows,
        evaluator: description,
    })
}

/// The selected tensors of `run`, looked up in `vs`, with θ_final and the
/// first two components.
fn plane_targets(run: &Run, pca: &PcaResult, vs: &tch::nn::VarStore) -> Result<Vec<Target>> {
    let comps = pca.components(run)?;
    let manifest = run.manifest();
    let final_values = run.tensors(run.len() - 1)?;
    let vars = vs.variables();
    let mut targets = Vec::new();
    for s in selected_tensors(manifest, &pca.selection)? {
        let info = &manifest.tensors[s.tensor];
        let var = crate::tensor::model_variable(
            &vars,
            &info.name,
            &info.shape,
            "the VarStore given to the plane check",
        )?;
        let torch = |e| Error::torch(format!("forming the PCA plane of '{}'", info.name), e);
        let mut dirs = Vec::with_capacity(2);
        for c in comps.iter().take(2) {
            let d = Tensor::from_slice(&c[s.offset..s.offset + s.numel])
                .f_reshape(info.shape.as_slice())
                .and_then(|d| d.f_to_kind(Kind::Double))
                .map_err(torch)?;
            dirs.push(d);
        }
        let centre = final_values[s.tensor]
            .1
            .f_to_kind(Kind::Double)
            .map_err(torch)?;
        targets.push(Target {
            var,
            name: info.name.clone(),
            centre,
            dirs,
        });
    }
    Ok(targets)
}

/// Sets every target variable to θ_final + x·pc1 (+ y·pc2).
fn set_plane_point(targets: &[Target], x: f64, y: f64) -> Result<()> {
    tch::no_grad(|| {
        for t in targets {
            let dirs: Vec<&Tensor> = t.dirs.iter().collect();
            let mut var = t.var.shallow_clone();
            combine(&t.centre, &dirs, x, y)
                .and_then(|v| var.f_copy_(&v))
                .map_err(|e| Error::torch(format!("setting '{}' on the PCA plane", t.name), e))?;
        }
        Ok(())
    })
}

/// The rows of snapshot `p`: its true and plane results, split by split.
fn check_rows(
    p: &PathPoint,
    truth: Vec<SplitResult>,
    plane: Vec<SplitResult>,
) -> Result<Vec<PlaneCheckRow>> {
    if truth.len() != plane.len() {
        return Err(Error::invalid(
            "evaluator",
            "returned a different number of splits on two calls",
        ));
    }
    Ok(truth
        .into_iter()
        .zip(plane)
        .map(|(t, q)| PlaneCheckRow {
            snapshot: p.snapshot,
            epoch: p.epoch,
            x: p.x(),
            y: p.y(),
            residual: p.residual,
            split: t.split,
            true_loss: t.loss,
            plane_loss: q.loss,
            true_accuracy: t.accuracy,
            plane_accuracy: q.accuracy,
        })
        .collect())
}
