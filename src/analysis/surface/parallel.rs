//! Evaluating a surface in this process: with one model on the calling
//! thread, or with replicas of the model on threads of their own.

use std::path::Path;
use std::thread::{Scope, ScopedJoinHandle};

use crossbeam_channel::Sender;
use tch::nn::VarStore;

use super::engine::{evaluate_points, Queue, QueueExchange, Sink};
use super::{PointValue, Surface, SurfaceResult};
use crate::analysis::directions::Directions;
use crate::analysis::evaluator::Evaluator;
use crate::analysis::grid::Grid;
use crate::error::{Error, Result};

impl Surface<'_> {
    /// Computes the surface with one model: sets each point into the
    /// variables of `vs` and calls `eval`, writing into `out`. Resumes from
    /// what `out` already holds.
    pub fn evaluate<E: Evaluator + ?Sized>(
        &self,
        vs: &VarStore,
        eval: &mut E,
        out: impl AsRef<Path>,
    ) -> Result<SurfaceResult> {
        let (dirs, grid) = (self.directions(), *self.grid());
        self.run(out.as_ref(), eval.describe(), |queue, sink| {
            evaluate_points(dirs, &grid, vs, eval, &mut QueueExchange::new(queue, sink))
        })
    }

    /// Computes the surface with `replicas` copies of the model evaluating
    /// points concurrently, each on its own thread, pulling points from a
    /// shared queue so fast and slow replicas finish together. `factory`
    /// builds one replica (its own VarStore and an evaluator owning its
    /// model) on the thread that uses it; libtorch's intra-op thread pool is
    /// shared, so set `tch::set_num_threads` to cores / replicas.
    pub fn evaluate_parallel<F>(
        &self,
        replicas: usize,
        factory: F,
        out: impl AsRef<Path>,
    ) -> Result<SurfaceResult>
    where
        F: Fn() -> Result<(VarStore, Box<dyn Evaluator>)> + Sync,
    {
        if replicas == 0 {
            return Err(Error::invalid("replicas", "must be at least 1, got 0"));
        }
        let out = out.as_ref();
        // The description comes from a probe replica, so resume checks work.
        let description = factory()?.1.describe();
        let pool = Replicas {
            dirs: self.directions(),
            grid: *self.grid(),
            count: replicas,
            factory: &factory,
            out,
        };
        self.run(out, description, |queue, sink| pool.run(queue, sink))
    }
}

/// Replica threads evaluating the points of one queue.
struct Replicas<'r, F> {
    dirs: &'r Directions,
    grid: Grid,
    count: usize,
    factory: &'r F,
    out: &'r Path,
}

impl<'r, F> Replicas<'r, F>
where
    F: Fn() -> Result<(VarStore, Box<dyn Evaluator>)> + Sync,
{
    /// Runs the replicas until the queue is empty; their points go to
    /// `sink` on this thread. The first error (the sink's, a replica's or a
    /// panic) stops the queue and is returned once every replica has ended.
    fn run(&self, queue: &Queue, sink: &mut Sink<'_>) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<PointValue>(64);
        std::thread::scope(|s| {
            let mut first_err = None;
            let mut handles = Vec::with_capacity(self.count);
            for r in 0..self.count {
                match self.spawn(s, r, queue, tx.clone()) {
                    Ok(h) => handles.push((r, h)),
                    Err(e) => {
                        queue.stop();
                        first_err = Some(e);
                        break;
                    }
                }
            }
            drop(tx);
            for p in rx {
                if first_err.is_none() {
                    if let Err(e) = sink(p) {
                        queue.stop();
                        first_err = Some(e);
                    }
                }
            }
            for (r, h) in handles {
                let result = h.join().unwrap_or_else(|payload| {
                    Err(Error::worker_panicked(
                        format!("replica thread {r}"),
                        &*payload,
                    ))
                });
                if let (Err(e), None) = (result, &first_err) {
                    first_err = Some(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })
    }

    /// Starts replica `r`: it builds its model with the factory and
    /// evaluates points of `queue`, sending them to `tx`.
    fn spawn<'s>(
        &'s self,
        s: &'s Scope<'s, '_>,
        r: usize,
        queue: &'s Queue,
        tx: Sender<PointValue>,
    ) -> Result<ScopedJoinHandle<'s, Result<()>>> {
        // Tensors are Send but not Sync: each replica gets its own deep copy
        // of the directions, made here and moved over.
        let dirs = self.dirs.clone();
        let (grid, factory) = (self.grid, self.factory);
        std::thread::Builder::new()
            .name(format!("landscape-replica-{r}"))
            .spawn_scoped(s, move || {
                // The receiver lives until every replica ended, unless the
                // writer panicked.
                let send = |p| {
                    tx.send(p).map_err(|_| Error::WorkerPanicked {
                        worker: "the surface writer".into(),
                        message: None,
                    })
                };
                let result = factory().and_then(|(vs, mut eval)| {
                    let mut exchange = QueueExchange::new(queue, send);
                    evaluate_points(&dirs, &grid, &vs, eval.as_mut(), &mut exchange)
                });
                if result.is_err() {
                    queue.stop();
                }
                result
            })
            .map_err(|e| Error::io("starting a replica thread for", self.out, e))
    }
}
