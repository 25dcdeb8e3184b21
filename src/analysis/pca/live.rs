//! The trajectory PCA of a run that is still being recorded, kept up to
//! date at the cost of one Gram row per new snapshot ([`LiveGram`], whose
//! documentation has the algebra).

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use nalgebra::DMatrix;

use super::fit::{self, FitOptions};
use super::gram::{add_rows_chunk, GramPrecision};
use super::pass::{keeps_tensor_grams, tensor_fit, Pass1};
use super::rows::{check_snapshot, direct_pass, Blocks, DIRECT_ROWS};
use super::stream::{selected_tensors, Deltas, Selected, Trajectory};
use super::{with_torch_threads, PcaResult, TrajectoryPca};
use crate::error::{Error, Result};
use crate::store::manifest::StorageDtype;
use crate::store::run::Run;
use crate::store::snapshot::SnapshotMeta;

/// Memory the rows of a [`LiveGram`] may take: one lower triangle of n²/2
/// float64 values per selected tensor (up to twice that while a rebuild
/// sums them). Above it [`LiveGram::update`] is an error (fit from scratch
/// instead).
pub const LIVE_GRAMS_BUDGET: usize = 512 << 20;

/// The Gram rows of a run's snapshots relative to its first snapshot, kept
/// across updates so that the trajectory PCA of a run being recorded costs
/// one new row per new snapshot: one read of every snapshot (the products
/// of the new snapshots with all of them, chunk by chunk, memory bounded as
/// in [`TrajectoryPca::fit`]) instead of n² products per value.
///
/// The Gram matrix of the fit, `G[i][j] = ⟨θᵢ − θ_c, θⱼ − θ_c⟩` with θ_c the
/// final snapshot, changes entirely when a snapshot arrives (the centre
/// moves). The Gram matrix relative to a fixed reference, the first snapshot
/// θ₀, does not: `G0[i][j] = ⟨θᵢ − θ₀, θⱼ − θ₀⟩` only grows by a row, the
/// products of the new snapshot with every earlier one. G follows from it
/// by algebra,
///
/// `G[i][j] = G0[i][j] − G0[i][c] − G0[j][c] + G0[c][c]`,
///
/// per tensor as in total, and the fit from the Gram matrices is the one of
/// [`TrajectoryPca::fit`] (centring, eigen-decomposition, path coordinates,
/// residuals, per-tensor shares, [`SignRule::Path`](super::SignRule::Path)).
/// The rows are summed like the one pass's entries (chunk products by
/// libtorch's `mm`, float64 sums), but always with float64 products
/// ([`GramPrecision::Float64`]): they hold differences to θ₀, so a snapshot
/// close to the final one gets its G entries as small differences of large
/// ones, and float32 products (relative error ~1e-7 of ‖θ − θ₀‖²) would
/// lose its precision by (‖θ − θ₀‖ / ‖θ − θ_c‖)² (measured on a path whose
/// steps shrink by 0.8 per epoch: 3e-5 off the full fit after 13 epochs,
/// against 1e-13 with float64 products). A row is one read of the run,
/// memory-bound, so float64 costs little there.
///
/// [`update`](LiveGram::update) takes in the snapshots a run has gained
/// since the last update and refuses a run that changed under it (another
/// run id or tensor table, fewer snapshots, a snapshot file that is not the
/// one read before); [`refresh`](LiveGram::refresh) rebuilds from scratch
/// instead. [`fit`](LiveGram::fit) gives the same [`PcaResult`] as
/// [`TrajectoryPca::fit`] with float64 products, up to rounding (1e-13
/// measured).
///
/// ```no_run
/// # fn main() -> tch_landscape::Result<()> {
/// use tch_landscape::analysis::pca::TrajectoryPca;
/// let mut live = TrajectoryPca::builder().build()?.live();
/// loop {
///     let run = tch_landscape::Run::open("runs/long-run")?;
///     let update = live.refresh(&run)?; // one new row per new snapshot
///     if run.len() >= 3 {
///         let pca = live.fit(&run)?;
///         println!("{} new rows, PC1+PC2 {:.1} %", update.new_rows, 100.0 * pca.plane_ratio());
///     }
///     if run.manifest().finished {
///         break Ok(());
///     }
///     std::thread::sleep(std::time::Duration::from_secs(2));
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LiveGram {
    pca: TrajectoryPca,
    state: Option<State>,
}

/// What one [`LiveGram::update`] or [`LiveGram::refresh`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveUpdate {
    /// Snapshots taken in so far (the run's snapshot count).
    pub snapshots: usize,
    /// Gram rows computed by this update: one per new snapshot (every
    /// snapshot's after a rebuild; the first snapshot's row, zero, is free).
    pub new_rows: usize,
    /// Why the rows kept before were dropped and all rebuilt
    /// ([`LiveGram::refresh`] only).
    pub rebuilt: Option<String>,
    /// Wall time of the update, in seconds.
    pub seconds: f64,
}

/// The rows taken in, and what they were taken from.
#[derive(Debug, Clone)]
struct State {
    run_id: String,
    dir: PathBuf,
    storage: StorageDtype,
    tensors_crc32: u32,
    selected: Vec<Selected>,
    /// Per snapshot taken in: what identifies its file.
    snapshots: Vec<Fingerprint>,
    /// Per selected tensor: G0 of the snapshots taken in.
    grams: Vec<Triangle>,
}

/// What identifies a snapshot file: its metadata (run id, index, epoch,
/// step, time of the copy) and the file's size and modification time.
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    meta: SnapshotMeta,
    bytes: u64,
    modified: Option<SystemTime>,
}

impl Fingerprint {
    fn of(run: &Run, i: usize) -> Result<Fingerprint> {
        let snap = run.snapshot(i)?;
        let md = std::fs::metadata(snap.path())
            .map_err(|e| Error::io("reading the metadata of", snap.path(), e))?;
        Ok(Fingerprint {
            meta: snap.meta().clone(),
            bytes: md.len(),
            modified: md.modified().ok(),
        })
    }
}

/// A symmetric matrix growing by rows: row i holds the entries (i, 0..=i).
#[derive(Debug, Clone, Default)]
struct Triangle(Vec<f64>);

impl Triangle {
    /// Entry (i, j) = (j, i).
    fn get(&self, i: usize, j: usize) -> f64 {
        let (a, b) = if i >= j { (i, j) } else { (j, i) };
        self.0.get(a * (a + 1) / 2 + b).copied().unwrap_or(0.0)
    }
}

impl TrajectoryPca {
    /// A [`LiveGram`] of this PCA's settings (float64 products whatever
    /// the precision: [`LiveGram::new`]), empty: the PCA of a run being
    /// recorded, updated one Gram row per new snapshot.
    pub fn live(self) -> LiveGram {
        LiveGram::new(self)
    }
}

impl LiveGram {
    /// An empty live Gram fitting with the settings of `pca` (its
    /// selection, chunk size, threads, components, sign rule, final row),
    /// but with float64 products whatever its precision
    /// ([`GramPrecision::Float64`], which the results state: see
    /// [`LiveGram`]).
    pub fn new(mut pca: TrajectoryPca) -> LiveGram {
        pca.precision = GramPrecision::Float64;
        LiveGram { pca, state: None }
    }

    /// The PCA's settings.
    pub fn pca(&self) -> &TrajectoryPca {
        &self.pca
    }

    /// Snapshots taken in so far.
    pub fn snapshots(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.snapshots.len())
    }

    /// Forgets every row: the next update rebuilds from scratch.
    pub fn clear(&mut self) {
        self.state = None;
    }

    /// Why the rows kept cannot be continued with `run` (`None`: they can,
    /// or there are none yet): another run id, another tensor table or
    /// storage type, fewer snapshots than taken in, or a snapshot file that
    /// is not the one read before (metadata, size or modification time).
    pub fn changed(&self, run: &Run) -> Result<Option<String>> {
        let Some(s) = &self.state else {
            return Ok(None);
        };
        let m = run.manifest();
        let at = run.dir().display();
        if m.run_id != s.run_id {
            return Ok(Some(format!(
                "{at} now holds run {}, the rows kept are of run {} at {}",
                m.run_id,
                s.run_id,
                s.dir.display()
            )));
        }
        if m.storage_dtype != s.storage || m.tensors_crc32() != s.tensors_crc32 {
            return Ok(Some(format!(
                "the tensor table of run {} at {at} changed since the rows were read",
                m.run_id
            )));
        }
        if selected_tensors(m, &self.pca.selection)? != s.selected {
            return Ok(Some(format!(
                "the tensors selected ({}) of run {} at {at} changed",
                self.pca.selection, m.run_id
            )));
        }
        if run.len() < s.snapshots.len() {
            return Ok(Some(format!(
                "run {} at {at} has {} snapshots, {} were read before",
                m.run_id,
                run.len(),
                s.snapshots.len()
            )));
        }
        for (i, fp) in s.snapshots.iter().enumerate() {
            if Fingerprint::of(run, i)? != *fp {
                return Ok(Some(format!(
                    "snapshot {} of run {} ({}) is not the file read before",
                    i,
                    m.run_id,
                    run.snapshot(i)?.path().display()
                )));
            }
        }
        Ok(None)
    }

    /// Takes in the snapshots `run` gained since the last update: one Gram
    /// row each, by one read of every snapshot (none when there is no new
    /// one). The state is unchanged on an error.
    ///
    /// Errors: a run that [`changed`](Self::changed) (use
    /// [`refresh`](Self::refresh) to rebuild instead), rows over
    /// [`LIVE_GRAMS_BUDGET`], an unknown or empty selection, and the errors
    /// of reading the snapshots (checksums, values that are not finite: the
    /// error names the file and the tensor).
    pub fn update(&mut self, run: &Run) -> Result<LiveUpdate> {
        let t0 = Instant::now();
        if let Some(why) = self.changed(run)? {
            return Err(Error::invalid("live pca", why));
        }
        let m = run.manifest();
        let selected = selected_tensors(m, &self.pca.selection)?;
        let (old, n) = (self.snapshots(), run.len());
        let bytes = selected
            .len()
            .saturating_mul(n.saturating_mul(n + 1) / 2)
            .saturating_mul(8);
        if bytes > LIVE_GRAMS_BUDGET {
            return Err(Error::invalid(
                "live pca",
                format!(
                    "the Gram rows of {n} snapshots × {} tensors of run {} would take {} MiB, more than {} MiB: fit from scratch",
                    selected.len(),
                    m.run_id,
                    bytes >> 20,
                    LIVE_GRAMS_BUDGET >> 20
                ),
            ));
        }
        let rows = self.new_rows(run, old)?;
        let fingerprints = (old..n)
            .map(|i| Fingerprint::of(run, i))
            .collect::<Result<Vec<_>>>()?;
        let state = self.state.get_or_insert_with(|| State {
            run_id: m.run_id.clone(),
            dir: run.dir().to_path_buf(),
            storage: m.storage_dtype,
            tensors_crc32: m.tensors_crc32(),
            selected: selected.clone(),
            snapshots: Vec::new(),
            grams: vec![Triangle::default(); selected.len()],
        });
        for (g, r) in state.grams.iter_mut().zip(rows) {
            g.0.extend(r);
        }
        state.snapshots.extend(fingerprints);
        Ok(LiveUpdate {
            snapshots: n,
            new_rows: n - old,
            rebuilt: None,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// [`update`](Self::update), or, when `run` [`changed`](Self::changed),
    /// a rebuild from scratch ([`LiveUpdate::rebuilt`] says why).
    pub fn refresh(&mut self, run: &Run) -> Result<LiveUpdate> {
        let why = self.changed(run)?;
        if why.is_some() {
            tracing::info!(reason = ?why, "live pca: rebuilding the Gram rows");
            self.clear();
        }
        let mut u = self.update(run)?;
        u.rebuilt = why;
        Ok(u)
    }

    /// The rows of snapshots `old..run.len()` per selected tensor (the
    /// packed triangle rows `G0[s][0..=s]`), by one pass over `run` relative
    /// to θ₀: the new snapshots' products with every snapshot.
    fn new_rows(&self, run: &Run, old: usize) -> Result<Vec<Vec<f64>>> {
        let n = run.len();
        let base = Trajectory::of_run(run, &self.pca.selection, self.pca.chunk, false)?;
        let nt = base.selected.len();
        let mut out = vec![Vec::new(); nt];
        if n <= old {
            return Ok(out);
        }
        if old == 0 {
            // θ₀'s row: ⟨θ₀ − θ₀, θ₀ − θ₀⟩.
            out.iter_mut().for_each(|r| r.push(0.0));
        }
        // Matrix rows (columns of a chunk's Δ): snapshots 1..n relative to θ₀.
        let first = old.max(1);
        if first >= n {
            // θ₀ alone: no product, but checked as a pass would.
            check_snapshot(run, run.snapshot(0)?, &base.selected)?;
            return Ok(out);
        }
        let mut traj = base.recentred(0, (1..n).collect());
        traj.name = format!("run {} at {}", run.manifest().run_id, run.dir().display());
        traj.progress = self.pca.progress.clone();
        let (k, cols) = (n - first, traj.m);
        let selected = &traj.selected;
        let position = |tensor: usize| {
            selected
                .binary_search_by_key(&tensor, |s| s.tensor)
                .map_err(|_| {
                    Error::invalid(
                        "live pca",
                        format!("a chunk of tensor #{tensor}, which is not selected"),
                    )
                })
        };
        let mut blocks = Blocks {
            current: None,
            out: &mut out,
            first,
            k,
            cols,
        };
        if k <= DIRECT_ROWS {
            // A few rows: straight from the mapped files, the snapshots
            // taken in before not checked again.
            let mut report = traj.reporter("gram");
            direct_pass(run, selected, self.pca.chunk, old, &mut blocks, &mut report)?;
        } else {
            with_torch_threads(self.pca.threads, || {
                traj.for_each_prepared(|d: &Deltas<f64>| {
                    let block = blocks.block(position(d.tensor)?);
                    add_rows_chunk(block, &d.xt, d.len, first - 1)
                })
            })?;
        }
        blocks.finish();
        // Tensors without elements stream no chunk: zero rows.
        for r in out.iter_mut() {
            let want = (first..n).map(|s| s + 1).sum::<usize>() + usize::from(old == 0);
            if r.len() < want {
                r.resize(want, 0.0);
            }
        }
        Ok(out)
    }

    /// The trajectory PCA of `run` from the rows taken in, which must be
    /// all of `run`'s snapshots (call [`update`](Self::update) first): the
    /// same result as [`TrajectoryPca::fit`] with float64 products, up to
    /// rounding, without reading the snapshots (but for a projection pass
    /// where the full fit makes one:
    /// [`SignRule::Components`](super::SignRule::Components), or per-tensor
    /// matrices over their memory bound).
    ///
    /// Errors: rows of another run, or not of all its snapshots; those of
    /// [`TrajectoryPca::fit`] (fewer than 3 snapshots, no variation).
    pub fn fit(&self, run: &Run) -> Result<PcaResult> {
        let t0 = Instant::now();
        if let Some(why) = self.changed(run)? {
            return Err(Error::invalid("live pca", why));
        }
        let Some(state) = self
            .state
            .as_ref()
            .filter(|s| s.snapshots.len() == run.len())
        else {
            return Err(Error::invalid(
                "live pca",
                format!(
                    "the rows of {} snapshots were taken in, run {} at {} has {}: update first",
                    self.snapshots(),
                    run.manifest().run_id,
                    run.dir().display(),
                    run.len()
                ),
            ));
        };
        let pca = &self.pca;
        let mut traj = Trajectory::of_run(run, &pca.selection, pca.chunk, pca.include_final)?;
        traj.name = format!("run {} at {}", run.manifest().run_id, run.dir().display());
        traj.progress = pca.progress.clone();
        fit::check_rows(&traj)?;
        let pass1 = shifted_grams(state, &traj.rows, traj.centre);
        let opts = FitOptions {
            precision: pca.precision,
            signs: pca.signs,
        };
        let f = with_torch_threads(pca.threads, || {
            fit::fit_grams(&traj, pass1, pca.components, opts)
        })?;
        Ok(PcaResult::assemble(
            &[run],
            pca,
            f,
            t0.elapsed().as_secs_f64(),
        ))
    }

    /// The directory of the run whose rows are kept.
    pub fn run_dir(&self) -> Option<&Path> {
        self.state.as_ref().map(|s| s.dir.as_path())
    }
}

/// The Gram matrices relative to snapshot `c` of the matrix rows `rows`
/// (snapshot indices), per tensor and in total, from the rows relative to
/// θ₀: `G[a][b] = G0[i][j] − G0[i][c] − G0[j][c] + G0[c][c]`.
fn shifted_grams(state: &State, rows: &[usize], c: usize) -> Pass1 {
    let m = rows.len();
    let keep = keeps_tensor_grams(state.grams.len(), m);
    let mut gram = DMatrix::zeros(m, m);
    let mut tensors = Vec::with_capacity(state.grams.len());
    let mut kept = Vec::new();
    for (sel, g0) in state.selected.iter().zip(&state.grams) {
        let to_c: Vec<f64> = rows.iter().map(|&i| g0.get(i, c)).collect();
        let cc = g0.get(c, c);
        let g = DMatrix::from_fn(m, m, |a, b| {
            g0.get(rows[a], rows[b]) - to_c[a] - to_c[b] + cc
        });
        let (fit, centred) = tensor_fit(sel.tensor, &g);
        gram += &g;
        tensors.push(fit);
        if keep {
            kept.push(centred);
        }
    }
    Pass1 {
        gram,
        tensors,
        tensor_grams: keep.then_some(kept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triangle_is_symmetric_and_packed_by_rows() {
        // 3×3: rows [a], [b c], [d e f].
        let t = Triangle(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!((t.get(0, 0), t.get(1, 0), t.get(0, 1)), (1.0, 2.0, 2.0));
        assert_eq!((t.get(1, 1), t.get(2, 1), t.get(1, 2)), (3.0, 5.0, 5.0));
        assert_eq!((t.get(2, 2), t.get(0, 2)), (6.0, 4.0));
    }

    #[test]
    fn shifting_the_reference_is_exact_algebra() {
        // θ in R²: G0 relative to θ₀, shifted to θ₂, equals the direct Gram.
        let theta = [[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [0.5, 0.5]];
        let dot = |a: [f64; 2], b: [f64; 2]| a[0] * b[0] + a[1] * b[1];
        let sub = |a: [f64; 2], b: [f64; 2]| [a[0] - b[0], a[1] - b[1]];
        let mut tri = Vec::new();
        for i in 0..4 {
            for j in 0..=i {
                tri.push(dot(sub(theta[i], theta[0]), sub(theta[j], theta[0])));
            }
        }
        let state = State {
            run_id: String::new(),
            dir: PathBuf::new(),
            storage: StorageDtype::Float32,
            tensors_crc32: 0,
            selected: vec![Selected {
                tensor: 0,
                offset: 0,
                numel: 2,
            }],
            snapshots: Vec::new(),
            grams: vec![Triangle(tri)],
        };
        let rows = [0, 1, 3];
        let p = shifted_grams(&state, &rows, 2);
        for (a, &i) in rows.iter().enumerate() {
            for (b, &j) in rows.iter().enumerate() {
                let want = dot(sub(theta[i], theta[2]), sub(theta[j], theta[2]));
                assert!((p.gram[(a, b)] - want).abs() < 1e-12, "({i}, {j})");
            }
        }
        assert_eq!(p.tensors.len(), 1);
        assert!(p.tensor_grams.is_some());
    }
}
