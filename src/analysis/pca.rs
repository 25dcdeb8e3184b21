//! Trajectory PCA (§7 of the paper, "Visualizing optimization paths"): the
//! principal components of a recorded training path, exact for models of any
//! size in bounded memory.
//!
//! With snapshots θ₀ … θ₍ₙ₋₁₎ (θ₍ₙ₋₁₎ the final one, the reference point),
//! the trajectory matrix M has the rows Δᵢ = θᵢ − θ₍ₙ₋₁₎ for i = 0 … n−2,
//! over the selected tensors ([`Selection::Weights`] by default: the
//! reference ignores 1-D tensors). As in scikit-learn's `PCA`, the rows are
//! mean-centred (Mc = M − 1μᵀ) and
//!
//! - **pass 1** streams the run chunk by chunk ([`Run::stream`]) and
//!   accumulates the (n−1)×(n−1) Gram matrix G = Mc Mcᵀ in float64, one per
//!   tensor (for the per-layer figures) summed into the global one;
//! - G = V Λ Vᵀ is decomposed with nalgebra's `SymmetricEigen`, eigenvalues
//!   sorted in descending order;
//! - **pass 2** streams the run again and forms pc_k = Mcᵀ v_k / √λ_k (unit
//!   norm) chunk by chunk, to fix each component's sign and compute each
//!   snapshot's distance to the PC1/PC2 plane.
//!
//! Memory is O(n² + n·chunk) whatever the parameter count P: no pass ever
//! holds a whole snapshot (a tensor's own Gram matrix is dropped once its
//! last chunk is in). A second thread reads and centres the next chunk while
//! the current one is multiplied. Only [`PcaResult::components`] and
//! [`PcaResult::directions`] materialise components (P floats each), because
//! a surface needs them anyway. Values are read as float32 ([`Run::stream`]),
//! also from float64 runs; all arithmetic is float64.
//!
//! Conventions, chosen to match scikit-learn (the reference code uses
//! `sklearn.decomposition.PCA(2)`):
//! - explained variance λ_k / (n−2) (n−1 rows, one degree of freedom), ratio
//!   λ_k / Σλ;
//! - signs follow `svd_flip(u_based_decision=False)`: the coordinate of a
//!   component with the largest absolute value (first one on ties) is
//!   positive;
//! - the path coordinates are those of the reference plot, *not*
//!   mean-centred: xᵢ = ⟨θᵢ − θ₍ₙ₋₁₎, pc1⟩, yᵢ = ⟨θᵢ − θ₍ₙ₋₁₎, pc2⟩, so the
//!   final model sits at the origin.
//!
//! Results are deterministic: every Gram entry is accumulated in the same
//! order whatever the thread count; changing the chunk size changes only the
//! float64 rounding (agreement to ~1e-12 relative).
//!
//! Components whose eigenvalue is zero to working precision (snapshots on a
//! line give one component) are not returned: asking for k components of a
//! trajectory of rank r < k gives r, with a warning, never NaN.
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! use tch_landscape::analysis::pca::TrajectoryPca;
//! let run = tch_landscape::Run::open("runs/mlp")?;
//! let pca = TrajectoryPca::builder().components(2).build()?.fit(&run)?;
//! println!("PC1+PC2 explain {:.1} %", 100.0 * pca.plane_ratio());
//! let files = pca.save(&run, "runs/mlp/pca".as_ref())?; // tables + directions
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use nalgebra::{DMatrix, DMatrixView, SymmetricEigen};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::analysis::directions::{combine, normalize, DirectionKind, Directions, Normalization};
use crate::analysis::evaluator::Evaluator;
use crate::analysis::params::ParamSet;
use crate::error::{Error, Result};
use crate::store::fsutil::write_atomic;
use crate::store::manifest::{rfc3339_utc, Role};
use crate::store::run::{Chunk, Run, Selection};

/// Default number of values per tensor chunk streamed from each snapshot.
pub const DEFAULT_CHUNK: usize = 16_384;
/// Default number of principal components.
pub const DEFAULT_COMPONENTS: usize = 2;
/// Explained-variance table written by [`PcaResult::save`].
pub const VARIANCE_FILE: &str = "pca-variance.parquet";
/// Path table (coordinates and residuals) written by [`PcaResult::save`].
pub const PATH_FILE: &str = "pca-path.parquet";
/// Per-tensor table written by [`PcaResult::save`].
pub const TENSORS_FILE: &str = "pca-tensors.parquet";
/// JSON summary written by [`PcaResult::save`].
pub const SUMMARY_FILE: &str = "pca.json";
/// Raw (unit-norm) PCA directions written by [`PcaResult::save`].
pub const DIRECTIONS_RAW_FILE: &str = "directions-raw.parquet";
/// Filter-normalized PCA directions written by [`PcaResult::save`].
pub const DIRECTIONS_FILTER_FILE: &str = "directions-filter.parquet";
/// Suggested name of the [`plane_check`] table in a PCA output directory.
pub const PLANE_CHECK_FILE: &str = "plane-check.parquet";
/// Parquet metadata key holding the PCA settings (JSON).
pub const PCA_META_KEY: &str = "tch_landscape.pca";

/// Rows of the Gram matrix per block: block pairs are the unit of work.
const BLOCK: usize = 32;
/// Below this many multiply-adds a chunk's Gram update stays on one thread.
const PARALLEL_MIN_FMAS: usize = 1 << 21;

/// Configures a [`TrajectoryPca`]; options are checked once in
/// [`build`](PcaBuilder::build).
#[derive(Debug, Clone)]
pub struct PcaBuilder {
    components: usize,
    chunk: usize,
    selection: Selection,
    threads: Option<usize>,
}

impl PcaBuilder {
    /// Number of principal components (default 2, at least 1). Directions and
    /// the path plot use the first two.
    pub fn components(mut self, k: usize) -> Self {
        self.components = k;
        self
    }

    /// Values per tensor chunk read from each snapshot (default
    /// [`DEFAULT_CHUNK`], at least 1). Memory is about 40·n·chunk bytes (a
    /// few chunks in flight) plus O(n²).
    pub fn chunk(mut self, n: usize) -> Self {
        self.chunk = n;
        self
    }

    /// The tensors analysed (default [`Selection::Weights`], the reference's
    /// "ignore biasbn").
    pub fn selection(mut self, s: Selection) -> Self {
        self.selection = s;
        self
    }

    /// Threads for the Gram products (default: available cores, at most 8).
    /// The result does not depend on it.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<TrajectoryPca> {
        if self.components == 0 {
            return Err(Error::invalid(
                "pca components",
                "must be at least 1, got 0",
            ));
        }
        if self.chunk == 0 {
            return Err(Error::invalid(
                "pca chunk",
                "must be at least 1 value, got 0",
            ));
        }
        let threads = match self.threads {
            Some(0) => return Err(Error::invalid("pca threads", "must be at least 1, got 0")),
            Some(t) => t,
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
        };
        Ok(TrajectoryPca {
            components: self.components,
            chunk: self.chunk,
            selection: self.selection,
            threads,
        })
    }
}

/// Trajectory PCA with checked settings. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct TrajectoryPca {
    components: usize,
    chunk: usize,
    selection: Selection,
    threads: usize,
}

/// One snapshot of the path in PCA coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    /// Stored snapshot index.
    pub snapshot: u32,
    /// Epoch at which it was taken.
    pub epoch: u64,
    /// ⟨θᵢ − θ_final, pc_k⟩ for every returned component k (not mean-centred:
    /// the final snapshot is at the origin).
    pub coords: Vec<f64>,
    /// ‖Δᵢ − PΔᵢ‖ / ‖Δᵢ‖ with Δᵢ = θᵢ − θ_final and P the projection onto the
    /// PC1/PC2 plane (0 when Δᵢ = 0, e.g. for the final snapshot).
    pub residual: f64,
}

impl PathPoint {
    /// Coordinate along PC1.
    pub fn x(&self) -> f64 {
        self.coords.first().copied().unwrap_or(0.0)
    }

    /// Coordinate along PC2 (0 when the trajectory has rank 1).
    pub fn y(&self) -> f64 {
        self.coords.get(1).copied().unwrap_or(0.0)
    }
}

/// Per-tensor (per-layer) figures of a trajectory PCA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorPca {
    /// Tensor name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Number of elements.
    pub numel: u64,
    /// The tensor's total variance (trace of its centred Gram / (n−2)).
    pub variance: f64,
    /// Its share of the selection's total variance.
    pub variance_fraction: f64,
    /// Explained variance ratio of the first two principal components of this
    /// tensor's own trajectory (how close to 2-D the layer moves; 0 for a
    /// tensor that does not move).
    pub own_ratio: [f64; 2],
    /// ‖pc_k restricted to this tensor‖² for the global components: the share
    /// of each component lying in this tensor (sums to 1 over tensors).
    pub share: Vec<f64>,
}

/// The result of [`TrajectoryPca::fit`].
#[derive(Debug, Clone)]
pub struct PcaResult {
    /// Id of the run analysed.
    pub run_id: String,
    /// The run directory.
    pub run_dir: PathBuf,
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
    /// Every snapshot (the final one included, at the origin).
    pub path: Vec<PathPoint>,
    /// Per-tensor figures, in manifest order.
    pub tensors: Vec<TensorPca>,
    /// Wall time of the two passes and the decomposition, in seconds.
    pub seconds: f64,
    /// u_k = v_k / √λ_k (sign fixed), so pc_k = Mcᵀ u_k.
    weights: Vec<Vec<f64>>,
}

impl TrajectoryPca {
    /// Starts configuring: 2 components, chunk [`DEFAULT_CHUNK`],
    /// [`Selection::Weights`].
    pub fn builder() -> PcaBuilder {
        PcaBuilder {
            components: DEFAULT_COMPONENTS,
            chunk: DEFAULT_CHUNK,
            selection: Selection::Weights,
            threads: None,
        }
    }

    /// Components asked for.
    pub fn components(&self) -> usize {
        self.components
    }

    /// Chunk size.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Tensors analysed.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Computes the PCA of `run`'s trajectory (two streaming passes).
    ///
    /// Errors: fewer than 3 snapshots (one centred row carries no
    /// variation), an empty or unknown selection, or snapshots before the
    /// final one that are all identical over the selection.
    pub fn fit(&self, run: &Run) -> Result<PcaResult> {
        let t0 = Instant::now();
        let manifest = run.manifest();
        let _span = tracing::info_span!("pca", run = %run.dir().display(), k = self.components, chunk = self.chunk)
            .entered();
        let n = run.len();
        if n < 3 {
            return Err(Error::invalid(
                "pca",
                format!(
                    "needs at least 3 snapshots (the final one is the reference, the others are centred), run {} at {} has {n}",
                    manifest.run_id,
                    run.dir().display()
                ),
            ));
        }
        let m = n - 1;
        let selected = selected_tensors(run, &self.selection)?;
        let numel: u64 = selected.iter().map(|s| s.numel as u64).sum();

        // Pass 1: per-tensor Gram matrices, summed into the global one.
        let pass1 = {
            let _s = tracing::debug_span!("pca gram pass").entered();
            self.gram_pass(run, &selected, m)?
        };
        let trace: f64 = pass1.tensors.iter().map(|t| t.trace).sum();
        if trace.is_nan() || trace <= 0.0 {
            return Err(Error::invalid(
                "pca",
                format!(
                    "the {m} snapshots before the final one of run {} are identical over the selected tensors ({}): there is no variation to analyse",
                    manifest.run_id,
                    selection_label(&self.selection)
                ),
            ));
        }
        let eig = SymmetricEigen::new(pass1.gram.to_full());
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| {
            eig.eigenvalues[b]
                .total_cmp(&eig.eigenvalues[a])
                .then(a.cmp(&b))
        });
        let lambda: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
        let total: f64 = lambda.iter().sum();
        // Eigenvalues of G are exact to about ε·‖G‖; smaller ones are zero.
        let tol = lambda[0] * m as f64 * f64::EPSILON * 16.0;
        // trace > 0, so λ₁ > 0 and rank ≥ 1.
        let rank = lambda.iter().take_while(|&&l| l > tol).count();
        let ncomp = self.components.min(rank);
        if ncomp < self.components {
            tracing::warn!(
                requested = self.components,
                rank,
                "the trajectory has fewer non-zero principal components than requested"
            );
        }
        let dof = (m - 1) as f64;
        let mut weights: Vec<Vec<f64>> = Vec::with_capacity(ncomp);
        let mut coords = vec![vec![0.0; ncomp]; n];
        for (k, &col) in order.iter().take(ncomp).enumerate() {
            let v = eig.eigenvectors.column(col);
            let s = lambda[k].sqrt();
            // ⟨Δᵢ, pc_k⟩ = ⟨Mcᵢ, pc_k⟩ + ⟨μ, pc_k⟩ = √λ v_ki + (Mc μ)·v_k / √λ.
            let offset = pass1
                .w
                .iter()
                .zip(v.iter())
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / s;
            for i in 0..m {
                coords[i][k] = s * v[i] + offset;
            }
            weights.push(v.iter().map(|x| x / s).collect());
        }

        // Pass 2: components chunk by chunk for signs, residuals and shares.
        let pass2 = {
            let _s = tracing::debug_span!("pca projection pass").entered();
            project_pass(run, &self.selection, self.chunk, m, &weights, &coords, None)?
        };
        for (k, &(_, value)) in pass2.largest.iter().enumerate() {
            if value < 0.0 {
                weights[k].iter_mut().for_each(|x| *x = -*x);
                // The final snapshot stays at +0.
                coords[..m].iter_mut().for_each(|c| c[k] = -c[k]);
            }
        }
        let path = run
            .snapshots()
            .iter()
            .enumerate()
            .map(|(i, snap)| {
                let (r2, d2) = if i < m {
                    (pass2.residual2[i], pass1.norms2[i])
                } else {
                    (0.0, 0.0)
                };
                PathPoint {
                    snapshot: snap.meta().index,
                    epoch: snap.meta().epoch,
                    coords: coords[i].clone(),
                    residual: if d2 > 0.0 { (r2 / d2).sqrt() } else { 0.0 },
                }
            })
            .collect();
        let tensors = pass1
            .tensors
            .iter()
            .zip(&pass2.shares)
            .map(|(t, share)| TensorPca {
                name: manifest.tensors[t.tensor].name.clone(),
                role: manifest.tensors[t.tensor].role,
                numel: manifest.tensors[t.tensor].numel,
                variance: t.trace / dof,
                variance_fraction: t.trace / trace,
                own_ratio: t.own_ratio,
                share: share.clone(),
            })
            .collect();
        let spectrum: Vec<f64> = lambda[..rank].iter().map(|l| l / dof).collect();
        let cumulative_ratio = lambda[..rank]
            .iter()
            .scan(0.0, |acc, l| {
                *acc += l;
                Some(*acc / total)
            })
            .collect();
        let result = PcaResult {
            run_id: manifest.run_id.clone(),
            run_dir: run.dir().to_path_buf(),
            selection: self.selection.clone(),
            chunk: self.chunk,
            requested: self.components,
            numel,
            rank,
            explained_variance: spectrum[..ncomp].to_vec(),
            explained_variance_ratio: lambda[..ncomp].iter().map(|l| l / total).collect(),
            spectrum,
            cumulative_ratio,
            total_variance: total / dof,
            path,
            tensors,
            seconds: t0.elapsed().as_secs_f64(),
            weights,
        };
        tracing::info!(
            snapshots = n,
            numel,
            rank,
            ratio = ?result.explained_variance_ratio,
            seconds = result.seconds,
            "trajectory PCA done"
        );
        Ok(result)
    }

    fn gram_pass(&self, run: &Run, selected: &[Selected], m: usize) -> Result<Pass1> {
        let mut gram = Gram::new(m);
        let mut tensors = Vec::with_capacity(selected.len());
        let (mut norms2, mut w) = (vec![0.0; m], vec![0.0; m]);
        // A tensor's chunks arrive together: its Gram is decomposed (for its
        // own ratios) and added to the global one as soon as it is complete.
        let mut current: Option<(usize, Gram)> = None;
        let finish =
            |(tensor, g): (usize, Gram), gram: &mut Gram, tensors: &mut Vec<TensorPass1>| {
                let full = g.to_full();
                let trace = full.trace();
                let mut ev: Vec<f64> = full
                    .symmetric_eigenvalues()
                    .iter()
                    .map(|l| l.max(0.0))
                    .collect();
                ev.sort_by(|a, b| b.total_cmp(a));
                let ratio = |i: usize| {
                    if trace > 0.0 {
                        ev.get(i).map_or(0.0, |l| l / trace)
                    } else {
                        0.0
                    }
                };
                tensors.push(TensorPass1 {
                    tensor,
                    trace,
                    own_ratio: [ratio(0), ratio(1)],
                });
                gram.add_gram(&g);
            };
        for_each_centred(run, &self.selection, self.chunk, m, |c| {
            if current.as_ref().is_none_or(|(t, _)| *t != c.tensor) {
                if let Some(done) = current.replace((c.tensor, Gram::new(m))) {
                    finish(done, &mut gram, &mut tensors);
                }
            }
            for (col, &u) in c.xt.chunks_exact(m).zip(&c.mu) {
                for ((x, d2), w) in col.iter().zip(norms2.iter_mut()).zip(w.iter_mut()) {
                    *d2 += (x + u) * (x + u);
                    *w += x * u;
                }
            }
            if let Some((_, g)) = current.as_mut() {
                g.add(&c.xt, c.len, self.threads);
            }
            Ok(())
        })?;
        if let Some(done) = current.take() {
            finish(done, &mut gram, &mut tensors);
        }
        // A selected tensor without elements yields no chunk: list it anyway.
        for s in selected {
            if !tensors.iter().any(|t| t.tensor == s.tensor) {
                tensors.push(TensorPass1 {
                    tensor: s.tensor,
                    trace: 0.0,
                    own_ratio: [0.0; 2],
                });
            }
        }
        tensors.sort_by_key(|t| t.tensor);
        Ok(Pass1 {
            gram,
            tensors,
            norms2,
            w,
        })
    }
}

impl PcaResult {
    /// Number of components returned (min(requested, rank)).
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// Explained variance ratio of PC1 + PC2 (of PC1 alone for a rank-1
    /// trajectory): the figure the paper quotes (40–90 %).
    pub fn plane_ratio(&self) -> f64 {
        self.explained_variance_ratio.iter().take(2).sum()
    }

    /// Checks that `run` is the run this PCA was computed from.
    fn check_run(&self, run: &Run) -> Result<()> {
        if run.manifest().run_id != self.run_id || run.len() != self.path.len() {
            return Err(Error::invalid(
                "run",
                format!(
                    "the PCA was computed from run {} with {} snapshots, got run {} at {} with {}",
                    self.run_id,
                    self.path.len(),
                    run.manifest().run_id,
                    run.dir().display(),
                    run.len()
                ),
            ));
        }
        Ok(())
    }

    /// The unit-norm principal components over the selected tensors
    /// (flattened and concatenated in manifest order), formed by one more
    /// streaming pass over `run`. Each holds [`numel`](Self::numel) floats.
    pub fn components(&self, run: &Run) -> Result<Vec<Vec<f32>>> {
        self.check_run(run)?;
        let _span = tracing::debug_span!("pca components").entered();
        let mut store: Vec<Vec<f32>> = (0..self.weights.len())
            .map(|_| vec![0f32; self.numel as usize])
            .collect();
        let m = self.path.len() - 1;
        let coords: Vec<Vec<f64>> = self.path.iter().map(|p| p.coords.clone()).collect();
        project_pass(
            run,
            &self.selection,
            self.chunk,
            m,
            &self.weights,
            &coords,
            Some(&mut store),
        )?;
        Ok(store)
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
        let comps = self.components(run)?;
        self.directions_from(run, &comps, filter_normalized)
    }

    fn directions_from(
        &self,
        run: &Run,
        comps: &[Vec<f32>],
        filter_normalized: bool,
    ) -> Result<Directions> {
        let last = run.len() - 1;
        let centre = ParamSet::from_run(run, last)?;
        let offsets: HashMap<String, (usize, usize)> = selected_tensors(run, &self.selection)?
            .into_iter()
            .map(|s| {
                (
                    run.manifest().tensors[s.tensor].name.clone(),
                    (s.offset, s.numel),
                )
            })
            .collect();
        let dirs = comps
            .iter()
            .take(2)
            .map(|c| {
                centre.map(|t| match offsets.get(&t.name) {
                    Some(&(off, len)) => {
                        let d = Tensor::from_slice(&c[off..off + len]).reshape(t.tensor.size());
                        if filter_normalized && t.role == Role::Weight {
                            normalize(d, &t.tensor, Normalization::Filter)
                        } else {
                            d
                        }
                    }
                    None => t.tensor.zeros_like(),
                })
            })
            .collect();
        let snap = run.snapshot(last)?.meta();
        let description = format!(
            "trajectory PCA of run {}: centre = final snapshot {} (epoch {}), directions PC1/PC2 over {} tensors ({}), zero elsewhere",
            self.run_id,
            snap.index,
            snap.epoch,
            offsets.len(),
            selection_label(&self.selection)
        );
        let mut d = Directions::custom(centre, dirs, DirectionKind::Pca, description)?;
        let json = |v: &[f64]| serde_json::to_string(v).unwrap_or_default();
        let extra = &mut d.meta.extra;
        extra.insert(
            "pca.normalization".into(),
            if filter_normalized {
                "filter"
            } else {
                "raw_unit_norm"
            }
            .into(),
        );
        let two = self.explained_variance.len().min(2);
        extra.insert(
            "pca.explained_variance".into(),
            json(&self.explained_variance[..two]),
        );
        extra.insert(
            "pca.explained_variance_ratio".into(),
            json(&self.explained_variance_ratio[..two]),
        );
        extra.insert("pca.run_id".into(), self.run_id.clone());
        extra.insert("pca.selection".into(), selection_label(&self.selection));
        Ok(d)
    }

    /// The settings and results as a JSON-serialisable summary.
    pub fn summary(&self) -> PcaSummary {
        PcaSummary {
            format: "tch-landscape-pca".into(),
            schema_version: 1,
            run_id: self.run_id.clone(),
            run_dir: self.run_dir.display().to_string(),
            selection: selection_label(&self.selection),
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
            sign_convention: "largest |coordinate| of each component positive (sklearn svd_flip, u_based_decision=False)".into(),
            coordinates: "x_i = <theta_i - theta_final, pc1>, y_i = <theta_i - theta_final, pc2> (not mean-centred)".into(),
            path: self.path.clone(),
            tensors: self.tensors.clone(),
            seconds: self.seconds,
            created_utc: rfc3339_utc(std::time::SystemTime::now()),
        }
    }

    /// Writes into `out` (created if needed): [`VARIANCE_FILE`],
    /// [`PATH_FILE`], [`TENSORS_FILE`] (zstd Parquet with the settings under
    /// [`PCA_META_KEY`]), [`SUMMARY_FILE`], and both variants of the
    /// directions ([`DIRECTIONS_RAW_FILE`], [`DIRECTIONS_FILTER_FILE`]).
    pub fn save(&self, run: &Run, out: &Path) -> Result<PcaFiles> {
        self.check_run(run)?;
        std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
        let files = PcaFiles {
            variance: out.join(VARIANCE_FILE),
            path: out.join(PATH_FILE),
            tensors: out.join(TENSORS_FILE),
            summary: out.join(SUMMARY_FILE),
            directions_raw: out.join(DIRECTIONS_RAW_FILE),
            directions_filter: out.join(DIRECTIONS_FILTER_FILE),
        };
        let meta = serde_json::json!({
            "run_id": self.run_id,
            "selection": selection_label(&self.selection),
            "components": self.requested,
            "returned_components": self.n_components(),
            "rank": self.rank,
            "chunk": self.chunk,
            "snapshots": self.path.len(),
            "numel": self.numel,
        })
        .to_string();
        write_parquet(&files.variance, self.variance_batch(), &meta)?;
        write_parquet(&files.path, self.path_batch(), &meta)?;
        write_parquet(&files.tensors, self.tensors_batch(), &meta)?;
        let summary = serde_json::to_vec_pretty(&self.summary()).map_err(|source| Error::Json {
            path: files.summary.clone(),
            source,
        })?;
        write_atomic(&files.summary, true, |w| {
            std::io::Write::write_all(w, &summary)
                .map_err(|e| Error::io("writing", &files.summary, e))
        })?;
        let comps = self.components(run)?;
        self.directions_from(run, &comps, false)?
            .save(&files.directions_raw)?;
        self.directions_from(run, &comps, true)?
            .save(&files.directions_filter)?;
        Ok(files)
    }

    fn variance_batch(&self) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let n = self.spectrum.len();
        let dof_total = self.total_variance;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(1..=n as u32)),
            Arc::new(Float64Array::from(self.spectrum.clone())),
            Arc::new(Float64Array::from_iter_values(
                self.spectrum.iter().map(|v| v / dof_total),
            )),
            Arc::new(Float64Array::from(self.cumulative_ratio.clone())),
        ];
        RecordBatch::try_new(variance_schema(), cols)
    }

    fn path_batch(&self) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let p = &self.path;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(p.iter().map(|p| p.snapshot))),
            Arc::new(UInt64Array::from_iter_values(p.iter().map(|p| p.epoch))),
            Arc::new(Float64Array::from_iter_values(p.iter().map(PathPoint::x))),
            Arc::new(Float64Array::from_iter_values(p.iter().map(PathPoint::y))),
            Arc::new(Float64Array::from_iter_values(p.iter().map(|p| p.residual))),
        ];
        RecordBatch::try_new(path_schema(), cols)
    }

    fn tensors_batch(&self) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let t = &self.tensors;
        let f = |g: &dyn Fn(&TensorPca) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(t.iter().map(g)))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                t.iter().map(|t| t.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                t.iter().map(|t| t.role.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(t.iter().map(|t| t.numel))),
            f(&|t| t.variance),
            f(&|t| t.variance_fraction),
            f(&|t| t.own_ratio[0]),
            f(&|t| t.own_ratio[1]),
            f(&|t| t.share.first().copied().unwrap_or(0.0)),
            f(&|t| t.share.get(1).copied().unwrap_or(0.0)),
        ];
        RecordBatch::try_new(tensors_schema(), cols)
    }
}

/// What [`PcaResult::save`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaFiles {
    /// Explained variance per component.
    pub variance: PathBuf,
    /// Path coordinates and residuals per snapshot.
    pub path: PathBuf,
    /// Per-tensor figures.
    pub tensors: PathBuf,
    /// JSON summary.
    pub summary: PathBuf,
    /// Raw unit-norm directions.
    pub directions_raw: PathBuf,
    /// Filter-normalized directions.
    pub directions_filter: PathBuf,
}

/// The JSON summary of a PCA ([`SUMMARY_FILE`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaSummary {
    /// Always `tch-landscape-pca`.
    pub format: String,
    /// Version of this layout.
    pub schema_version: u32,
    /// Run id.
    pub run_id: String,
    /// Run directory.
    pub run_dir: String,
    /// The selection, as [`selection_label`] writes it.
    pub selection: String,
    /// Components asked for.
    pub components: usize,
    /// Chunk size.
    pub chunk: usize,
    /// Number of snapshots.
    pub snapshots: usize,
    /// Selected parameters.
    pub numel: u64,
    /// Non-zero components.
    pub rank: usize,
    /// Explained variance of the returned components.
    pub explained_variance: Vec<f64>,
    /// Explained variance ratio of the returned components.
    pub explained_variance_ratio: Vec<f64>,
    /// PC1 + PC2 ratio.
    pub plane_ratio: f64,
    /// Cumulative ratio over all non-zero components.
    pub cumulative_ratio: Vec<f64>,
    /// Total variance.
    pub total_variance: f64,
    /// How component signs are fixed.
    pub sign_convention: String,
    /// How path coordinates are defined.
    pub coordinates: String,
    /// The path.
    pub path: Vec<PathPoint>,
    /// Per-tensor figures.
    pub tensors: Vec<TensorPca>,
    /// Seconds the PCA took.
    pub seconds: f64,
    /// When the summary was written.
    pub created_utc: String,
}

impl PcaSummary {
    /// Reads the summary `pca.json` written by [`PcaResult::save`].
    pub fn load(path: &Path) -> Result<PcaSummary> {
        let mut file = crate::store::fsutil::open_regular(path)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| Error::io("reading", path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Schema of [`VARIANCE_FILE`].
pub fn variance_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("component", DataType::UInt32, false),
        Field::new("explained_variance", DataType::Float64, false),
        Field::new("explained_variance_ratio", DataType::Float64, false),
        Field::new("cumulative_ratio", DataType::Float64, false),
    ]))
}

/// Schema of [`PATH_FILE`].
pub fn path_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("residual", DataType::Float64, false),
    ]))
}

/// Schema of [`TENSORS_FILE`].
pub fn tensors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tensor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("numel", DataType::UInt64, false),
        Field::new("variance", DataType::Float64, false),
        Field::new("variance_fraction", DataType::Float64, false),
        Field::new("own_ratio_pc1", DataType::Float64, false),
        Field::new("own_ratio_pc2", DataType::Float64, false),
        Field::new("share_pc1", DataType::Float64, false),
        Field::new("share_pc2", DataType::Float64, false),
    ]))
}

/// Schema of the plane-check table ([`PlaneCheck::save`]).
pub fn plane_check_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("residual", DataType::Float64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("true_loss", DataType::Float64, false),
        Field::new("plane_loss", DataType::Float64, false),
        Field::new("true_accuracy", DataType::Float64, true),
        Field::new("plane_accuracy", DataType::Float64, true),
    ]))
}

/// A stable text form of a selection: `all`, `trainable`, `weights`,
/// `names:a,b`, `contains:text`.
pub fn selection_label(s: &Selection) -> String {
    match s {
        Selection::All => "all".into(),
        Selection::Trainable => "trainable".into(),
        Selection::Weights => "weights".into(),
        Selection::Names(v) => format!("names:{}", v.join(",")),
        Selection::NameContains(t) => format!("contains:{t}"),
    }
}

/// One row of the plane-vs-true check: a snapshot, one split.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneCheckRow {
    /// Stored snapshot index.
    pub snapshot: u32,
    /// Epoch.
    pub epoch: u64,
    /// PC1 coordinate.
    pub x: f64,
    /// PC2 coordinate.
    pub y: f64,
    /// Relative distance of the snapshot to the plane.
    pub residual: f64,
    /// Split name.
    pub split: String,
    /// L(θᵢ).
    pub true_loss: f64,
    /// L at θᵢ's projection onto the PCA plane.
    pub plane_loss: f64,
    /// Accuracy at θᵢ, when the evaluator reports one.
    pub true_accuracy: Option<f64>,
    /// Accuracy at the projection.
    pub plane_accuracy: Option<f64>,
}

/// The result of [`plane_check`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneCheck {
    /// One row per snapshot and split, snapshot-major.
    pub rows: Vec<PlaneCheckRow>,
    /// The evaluator's description.
    pub evaluator: String,
}

impl PlaneCheck {
    /// Writes the table as zstd Parquet ([`plane_check_schema`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let r = &self.rows;
        let f = |g: &dyn Fn(&PlaneCheckRow) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(r.iter().map(g)))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(r.iter().map(|r| r.snapshot))),
            Arc::new(UInt64Array::from_iter_values(r.iter().map(|r| r.epoch))),
            f(&|r| r.x),
            f(&|r| r.y),
            f(&|r| r.residual),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|r| r.split.as_str()),
            )),
            f(&|r| r.true_loss),
            f(&|r| r.plane_loss),
            Arc::new(r.iter().map(|r| r.true_accuracy).collect::<Float64Array>()),
            Arc::new(r.iter().map(|r| r.plane_accuracy).collect::<Float64Array>()),
        ];
        let meta = serde_json::json!({ "evaluator": self.evaluator }).to_string();
        write_parquet(
            path,
            RecordBatch::try_new(plane_check_schema(), cols),
            &meta,
        )
    }
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
    let comps = pca.components(run)?;
    let last = run.len() - 1;
    let manifest = run.manifest();
    let final_values = run.tensors(last)?;
    let vars = vs.variables();
    // (variable, name, θ_final, [pc1, pc2]) per selected tensor, in float64.
    let mut targets = Vec::new();
    for s in selected_tensors(run, &pca.selection)? {
        let info = &manifest.tensors[s.tensor];
        let var = crate::tensor::model_variable(
            &vars,
            &info.name,
            &info.shape,
            "the VarStore given to the plane check",
        )?;
        let dirs: Vec<Tensor> = comps
            .iter()
            .take(2)
            .map(|c| {
                Tensor::from_slice(&c[s.offset..s.offset + s.numel])
                    .reshape(info.shape.as_slice())
                    .to_kind(Kind::Double)
            })
            .collect();
        let centre = final_values[s.tensor].1.to_kind(Kind::Double);
        targets.push((var.shallow_clone(), info.name.clone(), centre, dirs));
    }
    let description = eval.describe();
    let guard = crate::analysis::params::RestoreGuard::new(vs);
    let mut rows = Vec::new();
    for (i, p) in pca.path.iter().enumerate() {
        let _s = tracing::debug_span!("snapshot", index = p.snapshot).entered();
        run.load_into(i, vs)?;
        let truth = eval.evaluate()?;
        tch::no_grad(|| {
            for (var, name, centre, dirs) in &targets {
                let dirs: Vec<&Tensor> = dirs.iter().collect();
                let v = combine(centre, &dirs, p.x(), p.y());
                let mut var = var.shallow_clone();
                var.f_copy_(&v)
                    .map_err(|e| Error::torch(format!("setting '{name}' on the PCA plane"), e))?;
            }
            Ok::<(), Error>(())
        })?;
        let plane = eval.evaluate()?;
        if truth.len() != plane.len() {
            return Err(Error::invalid(
                "evaluator",
                "returned a different number of splits on two calls",
            ));
        }
        for (t, q) in truth.into_iter().zip(plane) {
            rows.push(PlaneCheckRow {
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
            });
        }
    }
    drop(guard);
    Ok(PlaneCheck {
        rows,
        evaluator: description,
    })
}

/// A selected tensor and its place in the flat concatenation.
#[derive(Debug, Clone, Copy)]
struct Selected {
    tensor: usize,
    offset: usize,
    numel: usize,
}

fn selected_tensors(run: &Run, selection: &Selection) -> Result<Vec<Selected>> {
    let manifest = run.manifest();
    let mut offset = 0;
    Ok(selection
        .indices(manifest)?
        .into_iter()
        .map(|tensor| {
            let numel = manifest.tensors[tensor].numel as usize;
            let s = Selected {
                tensor,
                offset,
                numel,
            };
            offset += numel;
            s
        })
        .collect())
}

struct TensorPass1 {
    tensor: usize,
    trace: f64,
    own_ratio: [f64; 2],
}

struct Pass1 {
    gram: Gram,
    tensors: Vec<TensorPass1>,
    /// ‖Δᵢ‖².
    norms2: Vec<f64>,
    /// (Mc μ)ᵢ.
    w: Vec<f64>,
}

struct Pass2 {
    residual2: Vec<f64>,
    /// Per component: (|value|, value) of its largest-magnitude coordinate.
    largest: Vec<(f64, f64)>,
    /// Per selected tensor (manifest order), per component: ‖pc_k|tensor‖².
    shares: Vec<Vec<f64>>,
}

/// One chunk of the centred trajectory, as [`centre_chunk`] writes it.
#[derive(Default)]
struct Centred {
    /// Manifest index of the tensor.
    tensor: usize,
    /// First element in the flat concatenation of the selected tensors.
    global_start: usize,
    /// Number of elements.
    len: usize,
    /// `xt[t·m + i]` = Mcᵢₜ.
    xt: Vec<f64>,
    /// Row mean μₜ.
    mu: Vec<f64>,
}

/// Streams the selected tensors of `run`, centred, through `f`. A second
/// thread reads and centres (transposes) the next chunk while `f` works on
/// the current one; buffers are recycled, so memory stays at a few chunks.
fn for_each_centred(
    run: &Run,
    selection: &Selection,
    chunk: usize,
    m: usize,
    mut f: impl FnMut(&Centred) -> Result<()>,
) -> Result<()> {
    let stream = run.stream(selection, chunk)?;
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<Centred>(1);
        let (back_tx, back_rx) = crossbeam_channel::unbounded::<Centred>();
        let reader = std::thread::Builder::new()
            .name("landscape-pca-reader".into())
            .spawn_scoped(s, move || {
                for c in stream {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    centre_chunk(&c, m, &mut buf.xt, &mut buf.mu);
                    (buf.tensor, buf.global_start, buf.len) = (c.tensor, c.global_start, c.len);
                    if tx.send(buf).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::invalid("pca", format!("cannot start the reader thread: {e}")))?;
        let mut result = Ok(());
        for buf in rx.iter() {
            if let Err(e) = f(&buf) {
                result = Err(e);
                break;
            }
            // The reader may have finished: then the buffer is just dropped.
            let _ = back_tx.send(buf);
        }
        drop(rx);
        if reader.join().is_err() {
            return Err(Error::invalid("pca", "the snapshot reader thread panicked"));
        }
        result
    })
}

/// Centres one chunk: `xt[t·m + i]` = Mcᵢₜ = Δᵢₜ − μₜ with Δᵢ = θᵢ − θ_final
/// and μ the mean of the m rows (into `mu`). Element-major ("snapshot
/// fastest"): every later loop and both gemm operands read it with unit
/// stride.
fn centre_chunk(c: &Chunk, m: usize, xt: &mut Vec<f64>, mu: &mut Vec<f64>) {
    // Every entry is overwritten: resizing without clearing skips a memset.
    let len = c.len;
    xt.resize(m * len, 0.0);
    mu.resize(len, 0.0);
    let inv = 1.0 / m as f64;
    let fin = c.row(m);
    // Transposed through 8 × 64 tiles: contiguous reads of 64 values (four
    // cache lines of f32) from 8 rows, contiguous writes of 8 values.
    const TB: usize = 64;
    const TI: usize = 8;
    let mut tile = [[0f64; TI]; TB];
    for (b, block) in xt.chunks_mut(TB * m).enumerate() {
        let t0 = b * TB;
        let nb = block.len() / m;
        let fin = &fin[t0..t0 + nb];
        for i0 in (0..m).step_by(TI) {
            let ni = TI.min(m - i0);
            for ii in 0..ni {
                let row = &c.row(i0 + ii)[t0..t0 + nb];
                for ((&v, &f), t) in row.iter().zip(fin).zip(tile.iter_mut()) {
                    t[ii] = v as f64 - f as f64;
                }
            }
            for (col, t) in block.chunks_exact_mut(m).zip(&tile) {
                col[i0..i0 + ni].copy_from_slice(&t[..ni]);
            }
        }
        for (col, u) in block.chunks_exact_mut(m).zip(&mut mu[t0..t0 + nb]) {
            let mean = col.iter().sum::<f64>() * inv;
            *u = mean;
            col.iter_mut().for_each(|x| *x -= mean);
        }
    }
}

/// The second pass: pc_k = Mcᵀ u_k chunk by chunk; residuals to the plane
/// of the first two components (`coords` are the current, unflipped path
/// coordinates), largest coordinates and per-tensor shares; optionally
/// stores the components (float32) into `store`.
fn project_pass(
    run: &Run,
    selection: &Selection,
    chunk: usize,
    m: usize,
    weights: &[Vec<f64>],
    coords: &[Vec<f64>],
    mut store: Option<&mut Vec<Vec<f32>>>,
) -> Result<Pass2> {
    let ncomp = weights.len();
    let plane = ncomp.min(2);
    let mut out = Pass2 {
        residual2: vec![0.0; m],
        largest: vec![(-1.0, 0.0); ncomp],
        shares: Vec::new(),
    };
    let mut pcs: Vec<Vec<f64>> = vec![Vec::new(); ncomp];
    // Plane coordinates by component, for loops over snapshots.
    let a: Vec<Vec<f64>> = (0..plane)
        .map(|k| coords[..m].iter().map(|c| c[k]).collect())
        .collect();
    let mut current = None;
    let selected = selected_tensors(run, selection)?;
    for_each_centred(run, selection, chunk, m, |c| {
        if current != Some(c.tensor) {
            current = Some(c.tensor);
            out.shares.push(vec![0.0; ncomp]);
        }
        let (xt, mu) = (&c.xt, &c.mu);
        for (k, pc) in pcs.iter_mut().enumerate() {
            pc.clear();
            pc.extend(
                xt.chunks_exact(m)
                    .map(|col| col.iter().zip(&weights[k]).map(|(x, u)| x * u).sum::<f64>()),
            );
            let best = &mut out.largest[k];
            let mut sq = 0.0;
            for &p in pc.iter() {
                sq += p * p;
                if p.abs() > best.0 {
                    *best = (p.abs(), p);
                }
            }
            if let Some(s) = out.shares.last_mut() {
                s[k] += sq;
            }
            if let Some(store) = store.as_deref_mut() {
                for (o, &p) in store[k][c.global_start..c.global_start + c.len]
                    .iter_mut()
                    .zip(pc.iter())
                {
                    *o = p as f32;
                }
            }
        }
        for (t, (col, &u)) in xt.chunks_exact(m).zip(mu).enumerate() {
            match plane {
                2 => {
                    let (p0, p1) = (pcs[0][t], pcs[1][t]);
                    for (((x, r2), a0), a1) in col
                        .iter()
                        .zip(out.residual2.iter_mut())
                        .zip(&a[0])
                        .zip(&a[1])
                    {
                        let r = x + u - a0 * p0 - a1 * p1;
                        *r2 += r * r;
                    }
                }
                _ => {
                    let p0 = pcs[0][t];
                    for ((x, r2), a0) in col.iter().zip(out.residual2.iter_mut()).zip(&a[0]) {
                        let r = x + u - a0 * p0;
                        *r2 += r * r;
                    }
                }
            }
        }
        Ok(())
    })?;
    // Tensors without elements produce no chunk; keep one share row each.
    if out.shares.len() != selected.len() {
        let mut shares = Vec::with_capacity(selected.len());
        let mut it = out.shares.into_iter();
        for s in &selected {
            shares.push(if s.numel == 0 {
                vec![0.0; ncomp]
            } else {
                it.next().unwrap_or_else(|| vec![0.0; ncomp])
            });
        }
        out.shares = shares;
    }
    Ok(out)
}

/// The lower block triangle of an m×m Gram matrix, accumulated in float64:
/// block pairs (I, J ≤ I) of at most [`BLOCK`] rows are the unit of work,
/// each always computed by one gemm, so the sums do not depend on the
/// number of threads.
#[derive(Debug, Clone)]
struct Gram {
    m: usize,
    bounds: Vec<usize>,
    pairs: Vec<(usize, usize, DMatrix<f64>)>,
}

impl Gram {
    fn new(m: usize) -> Gram {
        let nb = m.div_ceil(BLOCK).max(1);
        let bounds: Vec<usize> = (0..=nb).map(|b| b * m / nb).collect();
        let mut pairs = Vec::with_capacity(nb * (nb + 1) / 2);
        for i in 0..nb {
            for j in 0..=i {
                let shape = (bounds[i + 1] - bounds[i], bounds[j + 1] - bounds[j]);
                pairs.push((i, j, DMatrix::zeros(shape.0, shape.1)));
            }
        }
        Gram { m, bounds, pairs }
    }

    /// G += X Xᵀ for the m×len matrix X stored element-major:
    /// `xt[t·m + i]` = Xᵢₜ (see [`centre_chunk`]).
    fn add(&mut self, xt: &[f64], len: usize, threads: usize) {
        self.add_with(xt, len, threads, PARALLEL_MIN_FMAS);
    }

    /// [`Gram::add`], using threads from `parallel_min` multiply-adds on.
    fn add_with(&mut self, xt: &[f64], len: usize, threads: usize, parallel_min: usize) {
        let m = self.m;
        if len == 0 {
            return;
        }
        let bounds = &self.bounds;
        let work = move |pair: &mut (usize, usize, DMatrix<f64>)| {
            let (i0, i1) = (bounds[pair.0], bounds[pair.0 + 1]);
            let (j0, j1) = (bounds[pair.1], bounds[pair.1 + 1]);
            // X's rows i0..i1 (a) times X's rows j0..j1 transposed (b).
            // `a` must have unit row stride: nalgebra 0.35's fallback for
            // dimensions ≤ 5 reads past the columns of `a` otherwise.
            let a = DMatrixView::from_slice_with_strides(
                &xt[i0..(len - 1) * m + i1],
                i1 - i0,
                len,
                1,
                m,
            );
            let b = DMatrixView::from_slice_with_strides(
                &xt[j0..(len - 1) * m + j1],
                len,
                j1 - j0,
                m,
                1,
            );
            pair.2.gemm(1.0, &a, &b, 1.0);
        };
        let threads = threads.min(self.pairs.len());
        if threads <= 1 || m * m * len < parallel_min {
            self.pairs.iter_mut().for_each(work);
            return;
        }
        let mut lists: Vec<Vec<&mut (usize, usize, DMatrix<f64>)>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (p, pair) in self.pairs.iter_mut().enumerate() {
            lists[p % threads].push(pair);
        }
        std::thread::scope(|s| {
            let mut lists = lists.into_iter();
            let mine = lists.next().unwrap_or_default();
            for list in lists {
                s.spawn(move || list.into_iter().for_each(work));
            }
            mine.into_iter().for_each(work);
        });
    }

    fn add_gram(&mut self, other: &Gram) {
        for (a, b) in self.pairs.iter_mut().zip(&other.pairs) {
            a.2 += &b.2;
        }
    }

    fn to_full(&self) -> DMatrix<f64> {
        let mut g = DMatrix::zeros(self.m, self.m);
        for (i, j, block) in &self.pairs {
            let (i0, j0) = (self.bounds[*i], self.bounds[*j]);
            for r in 0..block.nrows() {
                for c in 0..block.ncols() {
                    g[(i0 + r, j0 + c)] = block[(r, c)];
                    g[(j0 + c, i0 + r)] = block[(r, c)];
                }
            }
        }
        g
    }
}

fn write_parquet(
    path: &Path,
    batch: std::result::Result<RecordBatch, arrow::error::ArrowError>,
    meta: &str,
) -> Result<()> {
    let batch = batch.map_err(|e| Error::arrow(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            PCA_META_KEY.to_string(),
            meta.to_string(),
        )]))
        .build();
    let pq = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    write_atomic(path, true, |w| {
        let mut writer = ArrowWriter::try_new(w, batch.schema(), Some(props)).map_err(pq)?;
        writer.write(&batch).map_err(pq)?;
        writer.close().map_err(pq)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram_naive(xt: &[f64], m: usize, len: usize) -> DMatrix<f64> {
        DMatrix::from_fn(m, m, |i, j| {
            (0..len).map(|t| xt[t * m + i] * xt[t * m + j]).sum()
        })
    }

    #[test]
    fn blocked_gram_matches_naive_and_ignores_threads() {
        for (m, len) in [(2, 257), (5, 3), (33, 1), (70, 257)] {
            let x: Vec<f64> = (0..m * len)
                .map(|i| ((i * 7919 % 1013) as f64 / 1013.0) - 0.5)
                .collect();
            let (mut one, mut many) = (Gram::new(m), Gram::new(m));
            one.add(&x, len, 1);
            // Force the threaded path even for small sizes.
            many.add_with(&x, len, 3, 0);
            let naive = gram_naive(&x, m, len);
            let (a, b) = (one.to_full(), many.to_full());
            assert_eq!(a, b, "m = {m}: thread count changed the sums");
            assert!(
                (a - &naive).abs().max() <= 1e-12 * naive.abs().max(),
                "m = {m}"
            );
        }
    }

    #[test]
    fn selection_labels_are_stable() {
        assert_eq!(selection_label(&Selection::Weights), "weights");
        assert_eq!(
            selection_label(&Selection::Names(vec!["a".into(), "b".into()])),
            "names:a,b"
        );
        assert_eq!(
            selection_label(&Selection::NameContains("fc".into())),
            "contains:fc"
        );
    }
}
