//! The resumable engine behind every way of evaluating a surface.
//!
//! [`Surface::run`] owns the output directory: it checks or writes the
//! spec, reads back the points already done, hands the rest out through a
//! [`Queue`], records finished points in segment files as they arrive, and
//! writes the final table when the grid (or shard) is complete. How the
//! points are evaluated — on this thread, on replica threads, on MPI ranks —
//! is the caller's `compute` step: workers run [`evaluate_points`], which
//! asks an [`Exchange`] for the next point and hands back each finished one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tch::nn::VarStore;
use tch::Tensor;

use super::{PointValue, Surface, SurfaceResult, SurfaceSpec};
use crate::analysis::directions::{combine, Directions};
use crate::analysis::evaluator::Evaluator;
use crate::analysis::grid::{Grid, GridPoint};
use crate::analysis::params::RestoreGuard;
use crate::error::{Error, Result};
use crate::store::fsutil::DirLock;
use crate::store::manifest::rfc3339_utc;
use crate::store::surface::{Segments, SurfaceDir};

/// Where finished points go: the engine's recorder (or a channel to it).
pub(crate) type Sink<'s> = dyn FnMut(PointValue) -> Result<()> + 's;

/// A worker's view of the work: hands back the point it just finished
/// (`None` on the first call) and gets the next flat grid index to compute,
/// or `None` when there is no more work for it.
pub(crate) trait Exchange {
    /// Returns the next grid index after recording `finished`.
    fn next(&mut self, finished: Option<PointValue>) -> Result<Option<usize>>;
}

/// The grid indices still to compute, handed out once each to whoever asks
/// first (threads share it); stops early when stopped or cancelled.
#[derive(Debug)]
pub(crate) struct Queue {
    todo: Vec<usize>,
    next: AtomicUsize,
    stop: AtomicBool,
    cancel: Option<Arc<AtomicBool>>,
}

impl Queue {
    /// A queue over `todo`, which also stops when `cancel` is set.
    pub(crate) fn new(todo: Vec<usize>, cancel: Option<Arc<AtomicBool>>) -> Queue {
        Queue {
            todo,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            cancel,
        }
    }

    /// The next index, or `None` when the work is done, stopped or cancelled.
    pub(crate) fn take(&self) -> Option<usize> {
        let cancelled = self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        if cancelled || self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.todo
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .copied()
    }

    /// Stops handing out work (after an error).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The [`Exchange`] of a worker on this process: points from a shared
/// [`Queue`], finished points to `sink`.
pub(crate) struct QueueExchange<'q, S> {
    queue: &'q Queue,
    sink: S,
}

impl<'q, S: FnMut(PointValue) -> Result<()>> QueueExchange<'q, S> {
    /// Hands out points of `queue`, passes finished points to `sink`.
    pub(crate) fn new(queue: &'q Queue, sink: S) -> Self {
        QueueExchange { queue, sink }
    }
}

impl<S: FnMut(PointValue) -> Result<()>> Exchange for QueueExchange<'_, S> {
    fn next(&mut self, finished: Option<PointValue>) -> Result<Option<usize>> {
        if let Some(p) = finished {
            (self.sink)(p)?;
        }
        Ok(self.queue.take())
    }
}

/// Sets the model's variables to grid points: θ* + αδ + βη, computed from
/// the centre every time (never by accumulating steps).
struct PointSetter<'d> {
    dirs: &'d Directions,
    targets: Vec<Tensor>,
    centre: Vec<Tensor>,
    directions: Vec<Vec<Tensor>>,
}

impl<'d> PointSetter<'d> {
    /// Checks `dirs` against the variables of `vs` and moves them to its device.
    fn new(dirs: &'d Directions, vs: &VarStore) -> Result<Self> {
        dirs.check_model(vs)?;
        let device = vs.device();
        let vars = vs.variables();
        let targets = dirs
            .centre
            .tensors
            .iter()
            .map(|t| {
                vars.get(&t.name)
                    .map(Tensor::shallow_clone)
                    .ok_or_else(|| Error::UnknownTensor {
                        tensor: t.name.clone(),
                        place: "the model".into(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let on_device = |set: &crate::analysis::params::ParamSet| -> Result<Vec<Tensor>> {
            set.tensors
                .iter()
                .map(|t| {
                    t.tensor
                        .f_to_device(device)
                        .map_err(|e| Error::torch(format!("moving '{}' to {device:?}", t.name), e))
                })
                .collect()
        };
        Ok(PointSetter {
            dirs,
            targets,
            centre: on_device(&dirs.centre)?,
            directions: dirs.dirs.iter().map(on_device).collect::<Result<_>>()?,
        })
    }

    /// Writes the parameters of `point` into the model's variables.
    fn set(&self, point: &GridPoint) -> Result<()> {
        tch::no_grad(|| {
            for (i, target) in self.targets.iter().enumerate() {
                let dir: Vec<&Tensor> = self.directions.iter().map(|v| &v[i]).collect();
                let name = &self.dirs.centre.tensors[i].name;
                let err = |e| Error::torch(format!("setting '{name}'"), e);
                let v = combine(&self.centre[i], &dir, point.x, point.y).map_err(err)?;
                let mut target = target.shallow_clone();
                target.f_copy_(&v).map_err(err)?;
            }
            Ok(())
        })
    }
}

/// Evaluates, on the model of `vs`, the points handed out by `exchange`
/// until it has no more; the variables are restored bit-exactly afterwards,
/// also on error.
pub(crate) fn evaluate_points<E: Evaluator + ?Sized>(
    dirs: &Directions,
    grid: &Grid,
    vs: &VarStore,
    eval: &mut E,
    exchange: &mut dyn Exchange,
) -> Result<()> {
    let setter = PointSetter::new(dirs, vs)?;
    let _guard = RestoreGuard::new(vs);
    let mut finished = None;
    while let Some(index) = exchange.next(finished.take())? {
        let point = grid.point(index);
        let _span = tracing::debug_span!("point", ix = point.ix, iy = point.iy).entered();
        setter.set(&point)?;
        let splits = eval.evaluate()?;
        finished = Some(PointValue { point, splits });
    }
    Ok(())
}

/// Records finished points: into segment files every `flush_every` points,
/// into the set of points done, and to the progress callback.
struct Recorder<'s, 'a> {
    surface: &'s Surface<'a>,
    segments: Segments,
    pending: Vec<PointValue>,
    done: BTreeMap<usize, PointValue>,
    computed: usize,
    done_wanted: usize,
    total: usize,
}

impl Recorder<'_, '_> {
    fn record(&mut self, p: PointValue) -> Result<()> {
        if p.splits.iter().any(|s| !s.loss.is_finite()) {
            tracing::warn!(
                ix = p.point.ix,
                iy = p.point.iy,
                x = p.point.x,
                y = p.point.y,
                "non-finite loss at grid point; recorded as is"
            );
        }
        self.pending.push(p.clone());
        if self.done.insert(p.point.index, p).is_none() {
            self.done_wanted += 1;
        }
        self.computed += 1;
        if self.pending.len() >= self.surface.flush_every() {
            self.flush()?;
        }
        self.surface.report_progress(self.done_wanted, self.total);
        Ok(())
    }

    /// Writes the pending points as a segment.
    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.segments.write(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl<'a> Surface<'a> {
    /// The spec of this surface for `evaluator`, checked against (and
    /// keeping the start time of) the one `store` holds.
    fn open(&self, store: &SurfaceDir, evaluator: String) -> Result<SurfaceSpec> {
        let spec = SurfaceSpec {
            format: super::spec::SURFACE_FORMAT.into(),
            schema_version: 1,
            directions: self.directions().meta.clone(),
            grid: *self.grid(),
            evaluator,
            sharpness_epsilon: self.sharpness_epsilon(),
            shard: self.shard(),
            created_utc: rfc3339_utc(std::time::SystemTime::now()),
        };
        match SurfaceSpec::read(store)? {
            Some(old) if old.same_work(&spec) => Ok(SurfaceSpec {
                created_utc: old.created_utc,
                ..spec
            }),
            Some(old) => Err(Error::invalid(
                "output directory",
                format!(
                    "{} holds a different surface (directions {}, grid {:?}, evaluator '{}'); use a new directory",
                    store.path().display(),
                    old.directions.id,
                    old.grid,
                    old.evaluator
                ),
            )),
            None => Ok(spec),
        }
    }

    /// Prepares `out` (spec, directions) and reads back what it holds.
    fn resume(&self, store: &SurfaceDir, evaluator: String) -> Result<(SurfaceSpec, Segments)> {
        let spec = self.open(store, evaluator)?;
        store.create()?;
        store.write_spec(&spec)?;
        store.save_directions(|path| self.directions().save(path))?;
        let mut segments = store.read_segments(spec.grid.len())?;
        if store.has_result() {
            for p in store.read_result(spec.grid.len())? {
                segments.points.entry(p.point.index).or_insert(p);
            }
        }
        SurfaceResult::place_on_grid(&spec.grid, segments.points.values_mut());
        Ok((spec, segments))
    }

    /// Computes the surface into `out`, resuming from what it holds:
    /// `compute` evaluates the points of the queue (all of them, unless
    /// stopped or cancelled) and passes each finished one to the sink.
    /// `evaluator` describes the evaluator, for the spec.
    pub(crate) fn run(
        &self,
        out: &Path,
        evaluator: String,
        compute: impl FnOnce(&Queue, &mut Sink<'_>) -> Result<()>,
    ) -> Result<SurfaceResult> {
        let _span = tracing::info_span!("surface", out = %out.display()).entered();
        // One writer per surface directory, for the whole computation.
        let _lock = DirLock::create(out)?;
        let store = SurfaceDir::new(out);
        let (spec, mut segments) = self.resume(&store, evaluator)?;
        let done = std::mem::take(&mut segments.points);
        let wanted: Vec<usize> = spec.wanted().collect();
        let todo: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|i| !done.contains_key(i))
            .collect();
        let resumed = wanted.len() - todo.len();
        tracing::info!(
            total = wanted.len(),
            resumed,
            todo = todo.len(),
            "surface points"
        );
        let queue = Queue::new(todo, self.cancel_flag());
        let mut rec = Recorder {
            surface: self,
            segments,
            pending: Vec::new(),
            done,
            computed: 0,
            done_wanted: resumed,
            total: wanted.len(),
        };
        let t0 = Instant::now();
        let result = compute(&queue, &mut |p| rec.record(p));
        // Points finished before an error are kept, so a retry resumes after them.
        rec.flush()?;
        result?;
        let seconds = t0.elapsed().as_secs_f64();
        self.finish(&store, spec, rec, seconds)
    }

    /// Writes the final table (and sharpness) when every wanted point is done.
    fn finish(
        &self,
        store: &SurfaceDir,
        spec: SurfaceSpec,
        mut rec: Recorder<'_, '_>,
        seconds: f64,
    ) -> Result<SurfaceResult> {
        let complete = spec.wanted().all(|i| rec.done.contains_key(&i));
        let points: Vec<PointValue> = std::mem::take(&mut rec.done).into_values().collect();
        let sharpness = if complete {
            spec.sharpness(&points)
        } else {
            Vec::new()
        };
        if complete {
            store.write_result(&spec, &points)?;
            if spec.shard.is_none() {
                store.write_sharpness(&sharpness)?;
            }
            // The Parquet file now holds every point; the segments are redundant.
            rec.segments.remove_all();
        }
        if rec.computed > 0 {
            tracing::info!(
                computed = rec.computed,
                seconds,
                points_per_second = rec.computed as f64 / seconds.max(1e-9),
                "surface computed"
            );
        }
        Ok(SurfaceResult {
            dir: store.path().to_path_buf(),
            spec,
            points,
            computed: rec.computed,
            seconds,
            sharpness,
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::directions::DirectionKind;
    use crate::analysis::evaluator::SplitResult;
    use crate::analysis::params::{NamedTensor, ParamSet};
    use crate::analysis::shard::Shard;
    use crate::tensor::Role;

    fn dirs() -> Directions {
        let set = |v: f32| ParamSet {
            tensors: vec![NamedTensor {
                name: "w".into(),
                role: Role::classify(true, 2),
                tensor: Tensor::from_slice(&[v, 2.0 * v]).reshape([1, 2]),
            }],
        };
        Directions::custom(
            set(0.0),
            vec![set(1.0), set(-1.0)],
            DirectionKind::Custom,
            "t",
        )
        .unwrap()
    }

    /// A stand-in for a model: the value of a point is x² + y².
    fn value(grid: &Grid, i: usize) -> PointValue {
        let point = grid.point(i);
        PointValue {
            point,
            splits: vec![SplitResult {
                split: "train".into(),
                loss: point.x * point.x + point.y * point.y,
                accuracy: None,
            }],
        }
    }

    /// Computes every point the queue hands out, on this thread.
    fn compute(grid: Grid) -> impl FnOnce(&Queue, &mut Sink<'_>) -> Result<()> {
        move |queue, sink| {
            while let Some(i) = queue.take() {
                sink(value(&grid, i))?;
            }
            Ok(())
        }
    }

    #[test]
    fn queue_hands_out_each_index_once_and_stops() {
        let q = Queue::new((0..100).collect(), None);
        let mut taken: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| std::iter::from_fn(|| q.take()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        taken.sort();
        assert_eq!(taken, (0..100).collect::<Vec<_>>());
        let cancel = Arc::new(AtomicBool::new(false));
        let q = Queue::new(vec![7, 8, 9], Some(cancel.clone()));
        assert_eq!(q.take(), Some(7));
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(q.take(), None);
        let q = Queue::new(vec![7, 8, 9], None);
        q.stop();
        assert_eq!(q.take(), None);
    }

    #[test]
    fn runs_resume_after_cancellation_and_errors() {
        let d = dirs();
        let tmp = tempfile::tempdir().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        let cancelled = Surface::builder(&d)
            .grid(-1.0..=1.0, 5, -1.0..=1.0, 3)
            .flush_every(4)
            .cancel_on(flag)
            .on_progress(move |done, _| set.store(done >= 6, Ordering::Relaxed))
            .build()
            .unwrap();
        let grid = *cancelled.grid();
        let part = cancelled
            .run(tmp.path(), "e".into(), compute(grid))
            .unwrap();
        assert_eq!((part.computed, part.complete), (6, false));
        assert!(tmp.path().join("points/000001.arrow").exists());
        // An error keeps what was finished before it.
        let whole = Surface::builder(&d)
            .grid(-1.0..=1.0, 5, -1.0..=1.0, 3)
            .flush_every(4)
            .build()
            .unwrap();
        let e = whole.run(tmp.path(), "e".into(), |queue, sink| {
            let i = queue.take().unwrap();
            sink(value(&grid, i))?;
            Err(Error::invalid("test", "fails on purpose"))
        });
        assert!(e.unwrap_err().to_string().contains("on purpose"));
        let rest = whole.run(tmp.path(), "e".into(), compute(grid)).unwrap();
        assert_eq!(
            (rest.computed, rest.complete, rest.points.len()),
            (8, true, 15)
        );
        let want: Vec<f64> = (0..15).map(|i| value(&grid, i).splits[0].loss).collect();
        assert_eq!(rest.loss("train"), want);
        assert_eq!(rest.sharpness.len(), 1);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("points"))
                .unwrap()
                .count(),
            0
        );
        // Another evaluator is another surface.
        let e = whole.run(tmp.path(), "other".into(), compute(grid));
        assert!(e.unwrap_err().to_string().contains("different surface"));
    }

    #[test]
    fn a_shard_computes_its_points_only_and_has_no_sharpness() {
        let d = dirs();
        let tmp = tempfile::tempdir().unwrap();
        let s = Surface::builder(&d)
            .line(-1.0..=1.0, 7)
            .shard(Shard::new(1, 3).unwrap())
            .build()
            .unwrap();
        let r = s.run(tmp.path(), "e".into(), compute(*s.grid())).unwrap();
        let idx: Vec<usize> = r.points.iter().map(|p| p.point.index).collect();
        assert_eq!(idx, [1, 4]);
        assert!(r.complete && r.sharpness.is_empty());
        assert!(!tmp.path().join("sharpness.json").exists());
    }
}
