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
//! - **one pass** streams the run chunk by chunk ([`Run::stream`]): a
//!   reader thread writes each chunk as the float32 matrix Δ (snapshot
//!   fastest) while libtorch's matrix product (its BLAS) adds the chunk's
//!   XᵀX to the tensor's uncentred Gram matrix Δ Δᵀ, summed in float64;
//! - the centring is algebra on the m×m matrix (Gc = (I − 11ᵀ/m) G (I −
//!   11ᵀ/m)); Gc = V Λ Vᵀ is decomposed with nalgebra's `SymmetricEigen`,
//!   eigenvalues sorted in descending order;
//! - everything else follows from the Gram matrices: the explained
//!   variances, the path coordinates ⟨Δᵢ, pc_k⟩ (from V, Λ and the row sums
//!   of G), the residuals (‖Δᵢ‖² is G's diagonal) and each tensor's share of
//!   every component (u_kᵀ G_tensor u_k, the per-tensor matrices kept within
//!   256 MiB);
//! - a **second pass** forms pc_k = Mcᵀ v_k / √λ_k chunk by chunk only when
//!   it is needed: for the components themselves ([`PcaResult::components`],
//!   [`PcaResult::directions`]: a PCA-plane surface), for
//!   [`SignRule::Components`], or when the per-tensor matrices exceed their
//!   bound.
//!
//! Memory is O(n² + n·chunk) whatever the parameter count P: no pass ever
//! holds a whole snapshot. Values are read as float32 ([`Run::stream`]),
//! also from float64 runs; the chunk products are float32 by default
//! ([`GramPrecision::Float32`]: relative error of the Gram entries ~1e-6, the
//! snapshots' own precision) or float64 on request, every sum over chunks
//! float64.

//! Conventions, chosen to match scikit-learn (the reference code uses
//! `sklearn.decomposition.PCA(2)`):
//! - explained variance λ_k / (n−2) (n−1 rows, one degree of freedom), ratio
//!   λ_k / Σλ;
//! - signs follow [`SignRule::Path`] by default
//!   (`svd_flip(u_based_decision=True)`, scikit-learn's PCA before 1.5 and
//!   the reference code's): the snapshot with the largest |centred
//!   coordinate| on a component has a positive one (first on ties, within
//!   1e-9 relative);
//!   [`SignRule::Components`] makes the component's largest |entry| positive
//!   instead (scikit-learn ≥ 1.5), at the cost of a second pass;
//! - the path coordinates are those of the reference plot, *not*
//!   mean-centred: xᵢ = ⟨θᵢ − θ₍ₙ₋₁₎, pc1⟩, yᵢ = ⟨θᵢ − θ₍ₙ₋₁₎, pc2⟩, so the
//!   final model sits at the origin.
//!
//! Results are deterministic for a given chunk size, precision and thread
//! count; changing them changes only the rounding (float32 products: ~1e-6
//! relative; float64: ~1e-12).
//!
//! Components whose eigenvalue is zero to working precision (snapshots on a
//! line give one component) are not returned: asking for k components of a
//! trajectory of rank r < k gives r, with a warning, never NaN.
//!
//! The code: `stream` (the selected tensors as re-streamable chunks,
//! prepared on a reader thread), `gram` (the chunk products, the centring and
//! the eigen-decomposition), `pass` (the one pass: per-tensor Gram
//! matrices), `fit` (the figures from the Gram matrices and the optional
//! second pass over any chunk source, unit-tested on chunks in memory),
//! `project` (pass 2 and the components), `live` ([`LiveGram`]: the PCA
//! of a run being recorded, one Gram row per new snapshot) with `rows`
//! (its new rows straight from the files), `result`
//! ([`PcaResult`], the PCA plane as directions, [`PcaResult::save`]) and
//! `plane_check`. The file formats, and the plain records they hold
//! ([`PathPoint`], [`TensorPca`], [`PlaneCheckRow`], [`PcaSummary`] with
//! [`PcaSummary::load`]), live in `store::pca`: [`PcaResult::save`] and
//! [`PlaneCheck::save`] hand their data to it.
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

mod fit;
mod gram;
mod live;
mod pass;
mod plane_check;
mod project;
mod result;
mod rows;
mod stream;

use std::time::Instant;

use crate::error::{Error, Result};
use crate::store::run::{Run, Selection};

pub use crate::store::pca::{
    path_schema, path_schema_for, plane_check_schema, read_path_table, tensors_schema,
    variance_schema, PathPoint, PcaFiles, PcaRun, PcaSummary, PlaneCheckRow, TensorPca,
    DIRECTIONS_FILTER_FILE, DIRECTIONS_RAW_FILE, PATH_FILE, PCA_META_KEY, PLANE_CHECK_FILE,
    SUMMARY_FILE, TENSORS_FILE, VARIANCE_FILE,
};
pub use fit::SignRule;
pub use gram::GramPrecision;
pub use live::{LiveGram, LiveUpdate, LIVE_GRAMS_BUDGET};
pub use plane_check::{plane_check, PlaneCheck};
pub use result::PcaResult;

/// Runs `f` with `threads` libtorch intra-op threads, restoring the
/// previous setting afterwards.
fn with_torch_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let before = tch::get_num_threads();
    tch::set_num_threads(threads as i32);
    let r = f();
    tch::set_num_threads(before);
    r
}

/// Default number of values per tensor chunk streamed from each snapshot.
pub const DEFAULT_CHUNK: usize = 4_096;
/// Default number of principal components.
pub const DEFAULT_COMPONENTS: usize = 2;

/// How far a trajectory PCA is, told to [`PcaBuilder::on_progress`] after
/// every chunk read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcaProgress {
    /// The pass over the snapshots: `gram` (the one pass of every fit),
    /// `projection` (the second pass of [`SignRule::Components`], or of
    /// per-tensor shares too large to keep), `directions` (the components,
    /// formed when the PCA plane is saved or asked for).
    pub pass: &'static str,
    /// Values of each snapshot read so far in this pass.
    pub done: u64,
    /// Values of each snapshot in all (the selected tensors').
    pub total: u64,
}

/// A progress callback, shared by the fit and its result.
#[derive(Clone)]
pub(crate) struct ProgressHook(pub(crate) std::sync::Arc<dyn Fn(PcaProgress) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// Configures a [`TrajectoryPca`]; options are checked once in
/// [`build`](PcaBuilder::build).
#[derive(Debug, Clone)]
pub struct PcaBuilder {
    components: usize,
    chunk: usize,
    selection: Selection,
    threads: Option<usize>,
    include_final: bool,
    precision: GramPrecision,
    signs: SignRule,
    progress: Option<ProgressHook>,
}

impl PcaBuilder {
    /// Calls `f` after every chunk read (from the reader thread): which pass
    /// over the snapshots, and how many values of each snapshot it has
    /// read, of how many (`landscape pca` draws a progress bar from it).
    pub fn on_progress(mut self, f: impl Fn(PcaProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(ProgressHook(std::sync::Arc::new(f)));
        self
    }

    /// Precision of the chunk products (default
    /// [`GramPrecision::Float32`]; sums are float64 either way).
    pub fn precision(mut self, p: GramPrecision) -> Self {
        self.precision = p;
        self
    }

    /// How component signs are fixed (default [`SignRule::Path`]: one pass;
    /// [`SignRule::Components`] reads the snapshots twice).
    pub fn signs(mut self, rule: SignRule) -> Self {
        self.signs = rule;
        self
    }

    /// Makes the centre (the final model) an all-zero row of the matrix
    /// before the rows are mean-centred, as the paper's reference code does
    /// (its loop over epochs includes the last one); default false, the
    /// paper's text (rows θᵢ − θ_final for i < n only). The path
    /// coordinates stay ⟨θᵢ − θ_final, pc_k⟩; the components, and so the
    /// ratios and the path, move by a few percent.
    pub fn include_final(mut self, yes: bool) -> Self {
        self.include_final = yes;
        self
    }

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

    /// libtorch intra-op threads for the Gram products while the PCA runs
    /// (default: available cores minus the reader's, 1 to 8; the previous setting is
    /// restored afterwards). The result depends on it only in the rounding.
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
            // The reader thread takes one core; BLAS threads idling
            // (spinning) beside it cost more than they gain.
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_sub(1)
                .clamp(1, 8),
        };
        Ok(TrajectoryPca {
            components: self.components,
            chunk: self.chunk,
            selection: self.selection,
            threads,
            include_final: self.include_final,
            precision: self.precision,
            signs: self.signs,
            progress: self.progress,
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
    include_final: bool,
    precision: GramPrecision,
    signs: SignRule,
    progress: Option<ProgressHook>,
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
            include_final: false,
            precision: GramPrecision::default(),
            signs: SignRule::default(),
            progress: None,
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

    /// Whether the final model is a (zero) row of the matrix.
    pub fn includes_final(&self) -> bool {
        self.include_final
    }

    /// Precision of the chunk products.
    pub fn precision(&self) -> GramPrecision {
        self.precision
    }

    /// How component signs are fixed.
    pub fn signs(&self) -> SignRule {
        self.signs
    }

    /// libtorch intra-op threads of the Gram products.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Fits `traj` on this PCA's libtorch threads (restored afterwards).
    fn run_fit<C: stream::Chunks>(&self, traj: &stream::Trajectory<C>) -> Result<fit::Fit> {
        let opts = fit::FitOptions {
            precision: self.precision,
            signs: self.signs,
        };
        with_torch_threads(self.threads, || fit::fit(traj, self.components, opts))
    }

    /// Computes the PCA of `run`'s trajectory (one streaming pass; two with
    /// [`SignRule::Components`]).
    ///
    /// Errors: fewer than 3 snapshots (one centred row carries no
    /// variation), an empty or unknown selection, or snapshots before the
    /// final one that are all identical over the selection.
    pub fn fit(&self, run: &Run) -> Result<PcaResult> {
        let t0 = Instant::now();
        let _span = tracing::info_span!("pca", run = %run.dir().display(), k = self.components, chunk = self.chunk)
            .entered();
        let mut traj =
            stream::Trajectory::of_run(run, &self.selection, self.chunk, self.include_final)?;
        traj.name = format!("run {} at {}", run.manifest().run_id, run.dir().display());
        traj.progress = self.progress.clone();
        let fit = self.run_fit(&traj)?;
        let result = PcaResult::assemble(&[run], self, fit, t0.elapsed().as_secs_f64());
        tracing::info!(
            snapshots = run.len(),
            numel = result.numel,
            rank = result.rank,
            ratio = ?result.explained_variance_ratio,
            seconds = result.seconds,
            "trajectory PCA done"
        );
        Ok(result)
    }

    /// One PCA plane fitted to the trajectories of several runs together
    /// (one streaming pass over all of them at once, memory as for one
    /// run of all their snapshots): centre = the final snapshot of the
    /// FIRST run, rows = every snapshot of every run minus the centre (the
    /// centre itself too with [`PcaBuilder::include_final`]). The path holds
    /// every snapshot of every run in order, `run_id` telling them apart;
    /// save it with [`PcaResult::save_joint`].
    ///
    /// Errors: no run, runs whose selected tensors differ (names, shapes or
    /// order: the error names the run and the tensor), a run id given
    /// twice, fewer than two matrix rows, no variation.
    pub fn fit_joint(&self, runs: &[&Run]) -> Result<PcaResult> {
        let t0 = Instant::now();
        let _span =
            tracing::info_span!("pca joint", runs = runs.len(), k = self.components).entered();
        for (i, a) in runs.iter().enumerate() {
            if let Some(b) = runs[..i]
                .iter()
                .find(|b| b.manifest().run_id == a.manifest().run_id)
            {
                return Err(Error::invalid(
                    "pca --joint",
                    format!(
                        "run {} is given twice ({} and {}): the path rows are told apart by run id",
                        a.manifest().run_id,
                        b.dir().display(),
                        a.dir().display()
                    ),
                ));
            }
        }
        let mut traj =
            stream::Trajectory::of_runs(runs, &self.selection, self.chunk, self.include_final)?;
        traj.progress = self.progress.clone();
        let fit = self.run_fit(&traj)?;
        let result = PcaResult::assemble(runs, self, fit, t0.elapsed().as_secs_f64());
        tracing::info!(
            runs = runs.len(),
            snapshots = result.path.len(),
            rank = result.rank,
            ratio = ?result.explained_variance_ratio,
            "joint trajectory PCA done"
        );
        Ok(result)
    }
}
