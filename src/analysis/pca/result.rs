//! The result of a trajectory PCA: the path, per-tensor figures, the
//! components and the PCA plane as [`Directions`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::fit::{Fit, SignRule};
use super::gram::GramPrecision;
use super::project::components;
use super::stream::{JointChunks, Trajectory};
use super::TrajectoryPca;
use crate::analysis::directions::{normalize, DirectionKind, Directions, Normalization};
use crate::analysis::params::ParamSet;
use crate::error::{Error, Result};
use crate::store::fsutil::DirLock;
use crate::store::manifest::rfc3339_utc;
use crate::store::pca::{self, PathPoint, PcaFiles, PcaRun, PcaSummary, PcaTables, TensorPca};
use crate::store::run::{Run, Selection};
use crate::tensor::Role;

/// The result of [`TrajectoryPca::fit`].
#[derive(Debug, Clone)]
pub struct PcaResult {
    /// Id of the run analysed (the first run of a joint PCA, whose final
    /// snapshot is the centre).
    pub run_id: String,
    /// The run directory (the first run's for a joint PCA).
    pub run_dir: PathBuf,
    /// Every run analysed, in path order (one unless joint).
    pub runs: Vec<PcaRun>,
    /// Whether the centre was an all-zero row of the matrix (the reference
    /// code's variant).
    pub include_final: bool,
    /// Tensors analysed.
    pub selection: Selection,
    /// Chunk size used.
    pub chunk: usize,
    /// Components asked for.
    pub requested: usize,
    /// Number of selected parameters.
    pub numel: u64,
    /// Number of non-zero principal components (≤ n−2).
    pub rank: usize,
    /// Explained variance of the returned components (min(requested, rank)).
    pub explained_variance: Vec<f64>,
    /// Explained variance ratio of the returned components.
    pub explained_variance_ratio: Vec<f64>,
    /// Explained variance of every non-zero component (the full spectrum).
    pub spectrum: Vec<f64>,
    /// Cumulative explained variance ratio over all `rank` components.
    pub cumulative_ratio: Vec<f64>,
    /// Total variance Σλ / (n−2).
    pub total_variance: f64,
    /// Every snapshot of every run (the centre included, at the origin).
    pub path: Vec<PathPoint>,
    /// Per-tensor figures, in manifest order.
    pub tensors: Vec<TensorPca>,
    /// Wall time of the pass(es) and the decomposition, in seconds.
    pub seconds: f64,
    /// How the component signs were fixed.
    pub signs: SignRule,
    /// Precision of the chunk products.
    pub precision: GramPrecision,
    /// Passes over the snapshots the fit made (1; 2 with
    /// [`SignRule::Components`] or very many tensors).
    pub passes: usize,
    /// u_k = v_k / √λ_k (sign fixed), so pc_k = Mcᵀ u_k.
    weights: Vec<Vec<f64>>,
    /// libtorch threads of the products (the fit's, for the components).
    threads: usize,
    /// The fit's progress hook, told about the directions pass too.
    progress: Option<super::ProgressHook>,
}

impl PcaResult {
    /// Labels `fit` with the runs' snapshots and tensors (`runs` is not
    /// empty: the fit has at least two rows).
    pub(super) fn assemble(
        runs: &[&Run],
        pca: &TrajectoryPca,
        fit: Fit,
        seconds: f64,
    ) -> PcaResult {
        let run = runs[0];
        let manifest = run.manifest();
        let path = runs
            .iter()
            .flat_map(|r| r.snapshots().iter().map(move |s| (r, s)))
            .zip(fit.coords)
            .zip(fit.residuals.iter().zip(&fit.in_fit))
            .map(|(((r, snap), coords), (&residual, &in_fit))| PathPoint {
                run_id: r.manifest().run_id.clone(),
                snapshot: snap.meta().index,
                epoch: snap.meta().epoch,
                coords,
                residual,
                in_fit,
            })
            .collect();
        let tensors = fit
            .tensors
            .into_iter()
            .map(|t| {
                let info = &manifest.tensors[t.tensor];
                TensorPca {
                    name: info.name.clone(),
                    role: info.role,
                    numel: info.numel,
                    variance: t.trace / fit.dof,
                    variance_fraction: t.trace / fit.trace,
                    own_ratio: t.own_ratio,
                    share: t.share,
                }
            })
            .collect::<Vec<_>>();
        let sp = &fit.spectrum;
        let spectrum = sp.explained_variance(fit.dof);
        let ncomp = fit.weights.len();
        PcaResult {
            run_id: manifest.run_id.clone(),
            run_dir: run.dir().to_path_buf(),
            runs: runs
                .iter()
                .map(|r| PcaRun {
                    run_id: r.manifest().run_id.clone(),
                    dir: r.dir().display().to_string(),
                    snapshots: r.len(),
                })
                .collect(),
            include_final: pca.includes_final(),
            selection: pca.selection().clone(),
            chunk: pca.chunk(),
            requested: pca.components(),
            numel: tensors.iter().map(|t| t.numel).sum(),
            rank: sp.rank,
            explained_variance: spectrum[..ncomp].to_vec(),
            explained_variance_ratio: sp.ratios(ncomp),
            spectrum,
            cumulative_ratio: sp.cumulative_ratio(),
            total_variance: sp.total() / fit.dof,
            path,
            tensors,
            seconds,
            signs: pca.signs(),
            precision: pca.precision(),
            passes: fit.passes,
            weights: fit.weights,
            threads: pca.threads(),
            progress: pca.progress.clone(),
        }
    }

    /// Number of components returned (min(requested, rank)).
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// Explained variance ratio of PC1 + PC2 (of PC1 alone for a rank-1
    /// trajectory): the figure the paper quotes (40–90 %).
    pub fn plane_ratio(&self) -> f64 {
        self.explained_variance_ratio.iter().take(2).sum()
    }

    /// Writes into `out` (created if needed): [`VARIANCE_FILE`](super::VARIANCE_FILE),
    /// [`PATH_FILE`](super::PATH_FILE), [`TENSORS_FILE`](super::TENSORS_FILE)
    /// (zstd Parquet with the settings under [`PCA_META_KEY`](super::PCA_META_KEY)),
    /// [`SUMMARY_FILE`](super::SUMMARY_FILE), and both variants of the
    /// directions ([`DIRECTIONS_RAW_FILE`](super::DIRECTIONS_RAW_FILE),
    /// [`DIRECTIONS_FILTER_FILE`](super::DIRECTIONS_FILTER_FILE)), whose
    /// components take one more pass over `run`.
    pub fn save(&self, run: &Run, out: &Path) -> Result<PcaFiles> {
        self.save_joint(&[run], out)
    }

    /// [`PcaResult::save`] for a joint PCA ([`TrajectoryPca::fit_joint`]):
    /// `runs` are the runs it was fitted to, in the same order. The
    /// directions are centred on the first run's final snapshot.
    pub fn save_joint(&self, runs: &[&Run], out: &Path) -> Result<PcaFiles> {
        self.save_joint_with(runs, out, true)
    }

    /// [`PcaResult::save_joint`], the directions only when `directions`
    /// (they take one more pass over the snapshots); without them, direction
    /// files of an earlier PCA in `out` are removed, so none can be mistaken
    /// for this one's.
    pub fn save_joint_with(&self, runs: &[&Run], out: &Path, directions: bool) -> Result<PcaFiles> {
        let _lock = DirLock::create(out)?;
        let comps = if directions {
            Some(self.components_of(runs)?)
        } else {
            None
        };
        let fitted = self
            .runs
            .iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let tables = PcaTables {
            fitted: &fitted,
            settings: &self.settings_json(),
            spectrum: &self.spectrum,
            total_variance: self.total_variance,
            cumulative_ratio: &self.cumulative_ratio,
            summary: &self.summary(),
        };
        let files = pca::write(out, tables)?;
        match comps {
            Some(comps) => {
                self.directions_from(runs, &comps, false)?
                    .save(&files.directions_raw)?;
                self.directions_from(runs, &comps, true)?
                    .save(&files.directions_filter)?;
            }
            None => {
                for stale in [&files.directions_raw, &files.directions_filter] {
                    match std::fs::remove_file(stale) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(Error::io("removing the earlier PCA's", stale, e))
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(files)
    }

    /// The settings written under [`PCA_META_KEY`](super::PCA_META_KEY).
    fn settings_json(&self) -> String {
        let centre = self
            .runs
            .first()
            .and_then(|r| self.path.get(r.snapshots.checked_sub(1)?));
        serde_json::json!({
            "schema_version": pca::SCHEMA_VERSION,
            "run_id": self.run_id,
            "runs": self.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
            "include_final": self.include_final,
            "centre_snapshot": centre.map(|p| p.snapshot),
            "centre_epoch": centre.map(|p| p.epoch),
            "selection": self.selection.to_string(),
            "components": self.requested,
            "returned_components": self.n_components(),
            "rank": self.rank,
            "chunk": self.chunk,
            "snapshots": self.path.len(),
            "numel": self.numel,
        })
        .to_string()
    }

    /// The trajectory of `runs` this PCA was computed from, or an error
    /// when `runs` are other runs.
    fn trajectory<'a>(&self, runs: &[&'a Run]) -> Result<Trajectory<JointChunks<'a>>> {
        let same = runs.len() == self.runs.len()
            && runs
                .iter()
                .zip(&self.runs)
                .all(|(r, p)| r.manifest().run_id == p.run_id && r.len() == p.snapshots);
        if !same {
            let list = |it: &mut dyn Iterator<Item = (String, usize)>| {
                it.map(|(id, n)| format!("{id} ({n} snapshots)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::invalid(
                "run",
                format!(
                    "the PCA was computed from run(s) {}, got {}",
                    list(&mut self.runs.iter().map(|r| (r.run_id.clone(), r.snapshots))),
                    list(&mut runs.iter().map(|r| (r.manifest().run_id.clone(), r.len())))
                ),
            ));
        }
        let mut traj = Trajectory::of_runs(runs, &self.selection, self.chunk, self.include_final)?;
        traj.progress = self.progress.clone();
        Ok(traj)
    }

    /// The unit-norm principal components over the selected tensors
    /// (flattened and concatenated in manifest order), formed by one more
    /// streaming pass over `run`. Each holds [`numel`](Self::numel) floats.
    pub fn components(&self, run: &Run) -> Result<Vec<Vec<f32>>> {
        self.components_of(&[run])
    }

    /// [`PcaResult::components`] of a PCA of `runs` (one, or the runs of a
    /// joint PCA in order).
    pub fn components_of(&self, runs: &[&Run]) -> Result<Vec<Vec<f32>>> {
        let traj = self.trajectory(runs)?;
        let _span = tracing::debug_span!("pca components").entered();
        super::with_torch_threads(self.threads, || components(&traj, &self.weights))
    }

    /// The PCA plane as [`Directions`]: centre = the final snapshot (every
    /// recorded tensor), directions PC1 and PC2 (PC1 only for a rank-1
    /// trajectory) over all recorded tensors, zero on unselected ones; kind
    /// [`DirectionKind::Pca`].
    ///
    /// `filter_normalized: false` gives the raw unit-norm components, whose
    /// grid coordinates are the path coordinates of [`PcaResult::path`];
    /// `true` rescales every filter of each weight tensor (dim ≥ 2) to the
    /// norm of the centre's filter ([`Normalization::Filter`]); selected 1-D
    /// tensors keep their raw values. `meta.extra` records which
    /// (`pca.normalization` = `raw_unit_norm` or `filter`) and the explained
    /// variance.
    pub fn directions(&self, run: &Run, filter_normalized: bool) -> Result<Directions> {
        self.directions_of(&[run], filter_normalized)
    }

    /// [`PcaResult::directions`] of a PCA of `runs` (one, or the runs of a
    /// joint PCA in order: centred on the first run's final snapshot).
    pub fn directions_of(&self, runs: &[&Run], filter_normalized: bool) -> Result<Directions> {
        let comps = self.components_of(runs)?;
        self.directions_from(runs, &comps, filter_normalized)
    }

    /// [`PcaResult::directions`] from components already formed.
    pub(crate) fn directions_from(
        &self,
        runs: &[&Run],
        comps: &[Vec<f32>],
        filter_normalized: bool,
    ) -> Result<Directions> {
        let traj = self.trajectory(runs)?;
        let run = runs[0];
        let last = traj.centre;
        let centre = ParamSet::from_run(run, last)?;
        let offsets: HashMap<&str, (usize, usize)> = traj
            .selected
            .iter()
            .map(|s| {
                let name = run.manifest().tensors[s.tensor].name.as_str();
                (name, (s.offset, s.numel))
            })
            .collect();
        let mut dirs = Vec::with_capacity(2);
        for c in comps.iter().take(2) {
            dirs.push(centre.map(|t| {
                let Some(&(off, len)) = offsets.get(t.name.as_str()) else {
                    return Ok(t.tensor.zeros_like());
                };
                let d = Tensor::from_slice(&c[off..off + len]).f_reshape(t.tensor.size());
                let d = match (filter_normalized, t.role) {
                    (true, Role::Weight) => {
                        d.and_then(|d| normalize(d, &t.tensor, Normalization::Filter))
                    }
                    _ => d,
                };
                d.map_err(|e| Error::torch(format!("forming the PCA direction of '{}'", t.name), e))
            })?);
        }
        let snap = run.snapshot(last)?.meta();
        let what = match self.runs.len() {
            1 => format!("run {}", self.run_id),
            _ => format!(
                "runs {} (joint)",
                self.runs
                    .iter()
                    .map(|r| r.run_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let description = format!(
            "trajectory PCA of {what}: centre = final snapshot {} (epoch {}) of run {}, directions PC1/PC2 over {} tensors ({}), zero elsewhere",
            snap.index,
            snap.epoch,
            self.run_id,
            offsets.len(),
            self.selection
        );
        let mut d = Directions::custom(centre, dirs, DirectionKind::Pca, description)?;
        self.describe_directions(&mut d.meta.extra, filter_normalized);
        Ok(d)
    }

    /// The `pca.*` keys of the directions' `extra` metadata.
    fn describe_directions(
        &self,
        extra: &mut std::collections::BTreeMap<String, String>,
        filter_normalized: bool,
    ) {
        let json = |v: &[f64]| serde_json::to_string(v).unwrap_or_default();
        let normalization = if filter_normalized {
            "filter"
        } else {
            "raw_unit_norm"
        };
        let two = self.explained_variance.len().min(2);
        extra.insert("pca.normalization".into(), normalization.into());
        extra.insert(
            "pca.explained_variance".into(),
            json(&self.explained_variance[..two]),
        );
        extra.insert(
            "pca.explained_variance_ratio".into(),
            json(&self.explained_variance_ratio[..two]),
        );
        extra.insert("pca.run_id".into(), self.run_id.clone());
        extra.insert("pca.include_final".into(), self.include_final.to_string());
        if self.runs.len() > 1 {
            let ids: Vec<&str> = self.runs.iter().map(|r| r.run_id.as_str()).collect();
            extra.insert("pca.runs".into(), ids.join(","));
        }
        extra.insert("pca.selection".into(), self.selection.to_string());
    }

    /// The settings and results as a JSON-serialisable summary.
    pub fn summary(&self) -> PcaSummary {
        PcaSummary {
            format: "tch-landscape-pca".into(),
            schema_version: pca::SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            run_dir: self.run_dir.display().to_string(),
            runs: self.runs.clone(),
            include_final: self.include_final,
            selection: self.selection.to_string(),
            components: self.requested,
            chunk: self.chunk,
            snapshots: self.path.len(),
            numel: self.numel,
            rank: self.rank,
            explained_variance: self.explained_variance.clone(),
            explained_variance_ratio: self.explained_variance_ratio.clone(),
            plane_ratio: self.plane_ratio(),
            cumulative_ratio: self.cumulative_ratio.clone(),
            total_variance: self.total_variance,
            sign_convention: self.signs.describe().into(),
            signs: self.signs.as_str().into(),
            gram_precision: self.precision.as_str().into(),
            passes: self.passes,
            coordinates: format!(
                "pc_k of snapshot i = <theta_i - theta_centre, pc_k> (not mean-centred), theta_centre = the final snapshot of run {}; matrix rows: theta_i - theta_centre for every snapshot{}, mean-centred",
                self.run_id,
                if self.include_final { " (the centre included as an all-zero row, as the reference code)" } else { " except the centre" }
            ),
            path: self.path.clone(),
            tensors: self.tensors.clone(),
            seconds: self.seconds,
            created_utc: rfc3339_utc(std::time::SystemTime::now()),
        }
    }
}
