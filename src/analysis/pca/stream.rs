//! The trajectory as a stream of centred chunks: which tensors are analysed,
//! where their chunks come from (a run, or memory in the tests), and the
//! reader thread that centres the next chunk while the current one is used.

use crate::error::{Error, Result};
use crate::store::manifest::Manifest;
#[cfg(test)]
use crate::store::run::Chunk;
use crate::store::run::{ChunkRows, Run, Selection};

/// A selected tensor and its place in the flat concatenation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Selected {
    /// Manifest index.
    pub(crate) tensor: usize,
    /// First element in the flat concatenation of the selected tensors.
    pub(crate) offset: usize,
    /// Number of elements.
    pub(crate) numel: usize,
}

/// The tensors `selection` picks from `manifest`, in manifest order.
pub(crate) fn selected_tensors(
    manifest: &Manifest,
    selection: &Selection,
) -> Result<Vec<Selected>> {
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

/// Chunks of a trajectory that can be streamed more than once: every call
/// of [`each`](Chunks::each) is a new pass over the same values, tensor by
/// tensor in manifest order.
pub(crate) trait Chunks: Sync {
    /// One pass: `f` sees the rows of every chunk in turn (borrowed for the
    /// call); its first error ends the pass.
    fn each(&self, f: &mut dyn FnMut(&ChunkRows<'_>) -> Result<()>) -> Result<()>;
}

/// Chunks held in memory (unit tests).
#[cfg(test)]
impl Chunks for Vec<Chunk> {
    fn each(&self, f: &mut dyn FnMut(&ChunkRows<'_>) -> Result<()>) -> Result<()> {
        for c in self {
            f(&ChunkRows {
                tensor: c.tensor,
                start: c.start,
                len: c.len,
                global_start: c.global_start,
                rows: c.data.chunks(c.len.max(1)).collect(),
            })?;
        }
        Ok(())
    }
}

/// Chunks of several runs streamed together (a joint PCA): each pass zips
/// the runs' streams, chunk by chunk, into chunks whose rows are every
/// snapshot of the first run, then every snapshot of the second, …
pub(crate) struct JointChunks<'a> {
    runs: Vec<&'a Run>,
    selection: Selection,
    chunk: usize,
}

impl Chunks for JointChunks<'_> {
    fn each(&self, f: &mut dyn FnMut(&ChunkRows<'_>) -> Result<()>) -> Result<()> {
        let mut streams = self
            .runs
            .iter()
            .map(|r| r.stream(&self.selection, self.chunk))
            .collect::<Result<Vec<_>>>()?;
        loop {
            let mut parts = streams.iter_mut().map(|s| s.next_rows());
            let mut c = match parts.next().flatten() {
                None => return Ok(()),
                Some(c) => c?,
            };
            for (part, run) in parts.zip(&self.runs[1..]) {
                let other = match part {
                    Some(o) => o?,
                    None => {
                        return Err(Error::invalid(
                            "pca --joint",
                            format!(
                                "run {} at {} ended before the first run's tensors did",
                                run.manifest().run_id,
                                run.dir().display()
                            ),
                        ))
                    }
                };
                if (other.global_start, other.len) != (c.global_start, c.len) {
                    return Err(Error::invalid(
                        "pca --joint",
                        format!(
                            "run {} at {} streams values {}..{} where the first run streams {}..{}: the runs' tensors differ",
                            run.manifest().run_id,
                            run.dir().display(),
                            other.global_start,
                            other.global_start + other.len,
                            c.global_start,
                            c.global_start + c.len
                        ),
                    ));
                }
                c.rows.extend(other.rows);
            }
            f(&c)?;
        }
    }
}

/// A trajectory: every chunk holds `n` snapshot rows (the recorded
/// snapshots, of one or several runs); the rows of the trajectory matrix are
/// Δᵢ = θ₍rows[i]₎ − θ₍centre₎, i < m. The usual fit has the final snapshot
/// as centre and every other snapshot as a row; the reference code's variant
/// also has the centre itself as a row (an all-zero row).
pub(crate) struct Trajectory<C> {
    /// Rows of the trajectory matrix.
    pub(crate) m: usize,
    /// Snapshot rows in every chunk.
    pub(crate) n: usize,
    /// The chunk row of the centre (reference point).
    pub(crate) centre: usize,
    /// The chunk row of each matrix row, ascending.
    pub(crate) rows: Vec<usize>,
    /// The selected tensors, in stream order.
    pub(crate) selected: Vec<Selected>,
    /// Where the values come from.
    pub(crate) chunks: C,
    /// What the values are, for messages ("run 0123…").
    pub(crate) name: String,
    /// The selection, for messages (`weights`).
    pub(crate) selection: String,
    /// Told how far each pass is.
    pub(crate) progress: Option<super::ProgressHook>,
}

impl<C> Trajectory<C> {
    /// Rows `0..n`, centre `centre`, every row in the matrix except the
    /// centre unless `include_centre`.
    pub(crate) fn rows_of(n: usize, centre: usize, include_centre: bool) -> Vec<usize> {
        (0..n).filter(|&r| include_centre || r != centre).collect()
    }

    /// Counts the values of each pass over the snapshots for the progress
    /// hook (a no-op without one).
    pub(crate) fn reporter(&self, pass: &'static str) -> Reporter {
        Reporter {
            hook: self.progress.clone(),
            pass,
            done: 0,
            total: self.selected.iter().map(|s| s.numel as u64).sum(),
        }
    }

    /// The same snapshots with another centre and other matrix rows
    /// (ascending chunk rows): the live Gram reads its rows relative to θ₀.
    pub(crate) fn recentred(mut self, centre: usize, rows: Vec<usize>) -> Self {
        self.m = rows.len();
        self.centre = centre;
        self.rows = rows;
        self
    }

    /// For every chunk row, the matrix row it is (None: only projected).
    pub(crate) fn matrix_row_of(&self) -> Vec<Option<usize>> {
        let mut of = vec![None; self.n];
        for (i, &r) in self.rows.iter().enumerate() {
            if let Some(slot) = of.get_mut(r) {
                *slot = Some(i);
            }
        }
        of
    }
}

impl<'a> Trajectory<JointChunks<'a>> {
    /// The trajectory of `run` over `selection`, read `chunk` values at a
    /// time, centred on the final snapshot (also a zero row of the matrix
    /// when `include_final`).
    pub(crate) fn of_run(
        run: &'a Run,
        selection: &Selection,
        chunk: usize,
        include_final: bool,
    ) -> Result<Self> {
        let mut t = Self::of_runs(&[run], selection, chunk, include_final)?;
        t.name = format!("run {}", run.manifest().run_id);
        Ok(t)
    }

    /// The joint trajectory of `runs` (at least one) over `selection`:
    /// every snapshot of every run, centred on the first run's final
    /// snapshot (a zero row too when `include_final`). An error naming the
    /// run and tensor when the runs' selected tensors differ in name or
    /// shape.
    pub(crate) fn of_runs(
        runs: &[&'a Run],
        selection: &Selection,
        chunk: usize,
        include_final: bool,
    ) -> Result<Self> {
        let Some(first) = runs.first() else {
            return Err(Error::invalid("pca --joint", "needs at least one run"));
        };
        let selected = selected_tensors(first.manifest(), selection)?;
        for run in &runs[1..] {
            check_same_tensors(first, run, selection)?;
        }
        let n: usize = runs.iter().map(|r| r.len()).sum();
        let centre = first.len().saturating_sub(1);
        let rows = Self::rows_of(n, centre, include_final);
        Ok(Trajectory {
            m: rows.len(),
            n,
            centre,
            rows,
            selected,
            chunks: JointChunks {
                runs: runs.to_vec(),
                selection: selection.clone(),
                chunk,
            },
            name: format!(
                "the joint trajectory of runs {}",
                runs.iter()
                    .map(|r| r.manifest().run_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            selection: selection.to_string(),
            progress: None,
        })
    }
}

/// Refuses `run` when its tensors under `selection` are not those of
/// `first` (names, shapes, order), naming the run and the tensor.
fn check_same_tensors(first: &Run, run: &Run, selection: &Selection) -> Result<()> {
    let (fm, rm) = (first.manifest(), run.manifest());
    let name = |run: &Run| format!("run {} at {}", run.manifest().run_id, run.dir().display());
    let fi = selection.indices(fm)?;
    let ri = selection.indices(rm).map_err(|e| {
        Error::invalid(
            "pca --joint",
            format!("{}: the selection {selection} fails: {e}", name(run)),
        )
    })?;
    for (k, &f) in fi.iter().enumerate() {
        let ft = &fm.tensors[f];
        let Some(rt) = ri.get(k).map(|&r| &rm.tensors[r]) else {
            return Err(Error::invalid(
                "pca --joint",
                format!(
                    "{} lacks tensor '{}' (shape {:?}) of {}: a joint PCA needs the same tensors in every run",
                    name(run),
                    ft.name,
                    ft.shape,
                    name(first)
                ),
            ));
        };
        if rt.name != ft.name || rt.shape != ft.shape {
            return Err(Error::invalid(
                "pca --joint",
                format!(
                    "{} has tensor '{}' of shape {:?} where {} has '{}' of shape {:?}: a joint PCA needs the same tensors and shapes in every run",
                    name(run),
                    rt.name,
                    rt.shape,
                    name(first),
                    ft.name,
                    ft.shape
                ),
            ));
        }
    }
    if let Some(&extra) = ri.get(fi.len()) {
        return Err(Error::invalid(
            "pca --joint",
            format!(
                "{} has tensor '{}', which {} lacks: a joint PCA needs the same tensors in every run",
                name(run),
                rm.tensors[extra].name,
                name(first)
            ),
        ));
    }
    Ok(())
}

impl<C: Chunks> Trajectory<C> {
    /// An error when chunk `c` does not hold this trajectory's n rows of
    /// its length.
    pub(crate) fn check_chunk(&self, c: &ChunkRows<'_>) -> Result<()> {
        let rows = Rows {
            m: self.m,
            n: self.n,
            centre: self.centre,
            rows: &self.rows,
        };
        check_chunk(c, rows)
    }

    /// Streams the selected tensors through `f`, each chunk prepared as a
    /// `B` ([`Deltas`]). A second thread reads and prepares
    /// the next chunk while `f` works on the current one; buffers are
    /// recycled, so memory stays at a few chunks.
    pub(crate) fn for_each_prepared<B: Prepared>(
        &self,
        mut f: impl FnMut(&B) -> Result<()>,
    ) -> Result<()> {
        let (m, n, centre, rows) = (self.m, self.n, self.centre, self.rows.as_slice());
        let chunks = &self.chunks;
        let mut report = self.reporter("gram");
        std::thread::scope(|s| {
            let (tx, rx) = crossbeam_channel::bounded::<B>(1);
            let (back_tx, back_rx) = crossbeam_channel::unbounded::<B>();
            let reader = std::thread::Builder::new()
                .name("landscape-pca-reader".into())
                .spawn_scoped(s, move || -> Result<()> {
                    chunks.each(&mut |c| {
                        let mut buf = back_rx.try_recv().unwrap_or_default();
                        buf.prepare(c, Rows { m, n, centre, rows })?;
                        report.add(c.len);
                        // The consumer stopped (its error is the one returned).
                        tx.send(buf)
                            .map_err(|_| Error::invalid("pca", "the consumer stopped"))
                    })
                })
                .map_err(|e| Error::WorkerPanicked {
                    worker: "the snapshot reader thread".into(),
                    message: Some(format!("could not be started: {e}")),
                })?;
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
            let read = reader
                .join()
                .map_err(|p| Error::worker_panicked("the snapshot reader thread", &*p))?;
            result.and(read)
        })
    }
}

/// Tells the progress hook how many values of each snapshot a pass has read.
pub(crate) struct Reporter {
    hook: Option<super::ProgressHook>,
    pass: &'static str,
    done: u64,
    total: u64,
}

impl Reporter {
    /// `n` more values of each snapshot read.
    pub(crate) fn add(&mut self, n: usize) {
        self.done += n as u64;
        if let Some(h) = &self.hook {
            (h.0)(super::PcaProgress {
                pass: self.pass,
                done: self.done,
                total: self.total,
            });
        }
    }
}

/// A chunk as the reader thread prepares it for the consumer.
pub(crate) trait Prepared: Default + Send {
    /// Overwrites `self` with chunk `c`, whose rows are described by `r`.
    fn prepare(&mut self, c: &ChunkRows<'_>, r: Rows<'_>) -> Result<()>;
}

/// An element type of [`Deltas`]: float32 (the default products) or
/// float64 (exact products).
pub(crate) trait DeltaValue: Copy + Default + Send + 'static {
    /// v − f, computed in this type.
    fn delta(v: f32, f: f32) -> Self;
}

impl DeltaValue for f32 {
    fn delta(v: f32, f: f32) -> f32 {
        v - f
    }
}

impl DeltaValue for f64 {
    fn delta(v: f32, f: f32) -> f64 {
        f64::from(v) - f64::from(f)
    }
}

/// One chunk of the trajectory matrix, uncentred, as [`delta_chunk`]
/// writes it: what the one-pass Gram accumulation multiplies.
#[derive(Default)]
pub(crate) struct Deltas<T> {
    /// Manifest index of the tensor.
    pub(crate) tensor: usize,
    /// First element in the flat concatenation of the selected tensors.
    pub(crate) global_start: usize,
    /// Number of elements.
    pub(crate) len: usize,
    /// `xt[t·m + i]` = Δᵢₜ = θ₍rows[i]₎ₜ − θ₍centre₎ₜ.
    pub(crate) xt: Vec<T>,
}

impl<T: DeltaValue> Prepared for Deltas<T> {
    fn prepare(&mut self, c: &ChunkRows<'_>, r: Rows<'_>) -> Result<()> {
        delta_chunk(c, r, self)
    }
}

/// Which rows of a chunk form the matrix, for [`delta_chunk`].
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    m: usize,
    n: usize,
    centre: usize,
    rows: &'a [usize],
}

/// An error when chunk `c` does not hold the n rows `r` describes.
fn check_chunk(c: &ChunkRows<'_>, r: Rows<'_>) -> Result<()> {
    let len = c.len;
    if c.rows.len() != r.n
        || c.rows.iter().any(|x| x.len() != len)
        || r.rows.len() != r.m
        || r.centre >= r.n
    {
        return Err(Error::invalid(
            "pca",
            format!(
                "a chunk of tensor #{} holds {} values, expected {} snapshots × {len}",
                c.tensor,
                c.rows.iter().map(|x| x.len()).sum::<usize>(),
                r.n
            ),
        ));
    }
    Ok(())
}

/// Writes chunk `c` into `out` as `xt[t·m + i]` = Δᵢₜ = θ₍rows[i]₎ₜ −
/// θ₍centre₎ₜ (computed in `T`), element-major ("snapshot fastest", the layout
/// libtorch's matrix product reads fastest). An error when the chunk does
/// not hold n rows.
fn delta_chunk<T: DeltaValue>(c: &ChunkRows<'_>, r: Rows<'_>, out: &mut Deltas<T>) -> Result<()> {
    check_chunk(c, r)?;
    let (m, len) = (r.m, c.len);
    (out.tensor, out.global_start, out.len) = (c.tensor, c.global_start, len);
    let xt = &mut out.xt;
    // Every entry is overwritten: resizing without clearing skips a memset.
    xt.resize(m * len, T::default());
    let fin = c.rows[r.centre];
    // Transposed through 16 × 64 tiles: contiguous reads of 64 values from
    // 16 rows, contiguous writes of 16 values.
    const TB: usize = 64;
    const TI: usize = 16;
    let mut tile = [[T::default(); TI]; TB];
    for (b, block) in xt.chunks_mut(TB * m).enumerate() {
        let t0 = b * TB;
        let nb = block.len() / m;
        let fin = &fin[t0..t0 + nb];
        for i0 in (0..m).step_by(TI) {
            let ni = TI.min(m - i0);
            for ii in 0..ni {
                let row = &c.rows[r.rows[i0 + ii]][t0..t0 + nb];
                for ((&v, &f), t) in row.iter().zip(fin).zip(tile.iter_mut()) {
                    t[ii] = T::delta(v, f);
                }
            }
            for (col, t) in block.chunks_exact_mut(m).zip(&tile) {
                // A whole tile row as one fixed-size copy (no memcpy call).
                match <&mut [T; TI]>::try_from(&mut col[i0..i0 + ni]) {
                    Ok(dst) => *dst = *t,
                    Err(_) => col[i0..i0 + ni].copy_from_slice(&t[..ni]),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The chunks of one tensor of `len` values per snapshot, `chunk` at a
    /// time; `rows[s]` holds snapshot s.
    pub(crate) fn chunks_of(
        tensor: usize,
        offset: usize,
        rows: &[Vec<f32>],
        chunk: usize,
    ) -> Vec<Chunk> {
        let len = rows[0].len();
        (0..len)
            .step_by(chunk)
            .map(|start| {
                let n = chunk.min(len - start);
                Chunk {
                    tensor,
                    start,
                    len: n,
                    global_start: offset + start,
                    data: rows
                        .iter()
                        .flat_map(|r| r[start..start + n].iter().copied())
                        .collect(),
                }
            })
            .collect()
    }

    fn trajectory(chunks: Vec<Chunk>, m: usize) -> Trajectory<Vec<Chunk>> {
        Trajectory {
            m,
            n: m + 1,
            centre: m,
            rows: (0..m).collect(),
            selected: vec![],
            chunks,
            name: "memory".into(),
            selection: "all".into(),
            progress: None,
        }
    }

    #[test]
    fn chunks_become_element_major_deltas() {
        // 3 snapshots of 70 values (more than one 64-value tile): Δ = θᵢ − θ₂.
        let rows: Vec<Vec<f32>> = (0..3)
            .map(|s| (0..70).map(|t| (s * 100 + t * t) as f32).collect())
            .collect();
        let traj = trajectory(chunks_of(0, 0, &rows, 70), 2);
        let mut seen = 0;
        traj.for_each_prepared(|c: &Deltas<f64>| {
            seen += 1;
            assert_eq!((c.len, c.xt.len()), (70, 140));
            for (t, col) in c.xt.chunks_exact(2).enumerate() {
                for (i, &x) in col.iter().enumerate() {
                    assert_eq!(x, (rows[i][t] - rows[2][t]) as f64);
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 1);
        // 17 rows: one full 16-row tile and a partial one, in float32.
        let rows: Vec<Vec<f32>> = (0..18)
            .map(|s| (0..5).map(|t| (s * 7 + t) as f32 * 0.5).collect())
            .collect();
        let traj = trajectory(chunks_of(0, 0, &rows, 5), 17);
        traj.for_each_prepared(|c: &Deltas<f32>| {
            for (t, col) in c.xt.chunks_exact(17).enumerate() {
                for (i, &x) in col.iter().enumerate() {
                    assert_eq!(x, rows[i][t] - rows[17][t]);
                }
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn errors_of_the_consumer_and_of_a_bad_chunk_are_returned() {
        let rows = vec![vec![1.0f32; 10]; 3];
        let traj = trajectory(chunks_of(0, 0, &rows, 3), 2);
        let r = traj.for_each_prepared(|_: &Deltas<f32>| Err(Error::invalid("test", "stop")));
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
        let mut bad = chunks_of(0, 0, &rows, 10);
        bad[0].data.pop();
        let r = trajectory(bad, 2).for_each_prepared(|_: &Deltas<f32>| Ok(()));
        assert!(r.unwrap_err().to_string().contains("expected 3 snapshots"));
    }
}
