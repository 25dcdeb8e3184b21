//! Surfaces and curvature maps over MPI (cargo feature `mpi`).
//!
//! The same program runs on every rank (`mpirun -np N prog …`): each rank
//! builds its model, data and directions as a single process would, then
//! calls [`Surface::evaluate_mpi`](crate::analysis::surface::Surface::evaluate_mpi)
//! (or [`Curvature::evaluate_mpi`](crate::analysis::hessian::Curvature::evaluate_mpi)).
//!
//! - Rank 0 is the only writer: it owns the output directory (resuming from
//!   what it holds, exactly as a single process does), hands out grid points
//!   one at a time to whichever rank asks, and evaluates points itself
//!   between requests. Every worker keeps two requests in flight, so it
//!   never waits for rank 0 to finish a point of its own. Fast and slow
//!   ranks therefore finish together.
//! - Workers send each finished point back (loss and accuracy as exact
//!   `f64` bits); rank 0 writes them into the same resumable segment files
//!   as a single process, so the result is identical to a one-process run
//!   with the same threads per process (the test suite checks bit equality).
//! - Before any work, every rank's directions id, grid, evaluator and shard
//!   are compared with rank 0's; a rank that built something else (another
//!   seed, another model) is refused with an error on every rank.
//! - A worker that fails reports its error to rank 0, which stops handing
//!   out work, keeps what was finished, and returns the error (naming the
//!   rank); a rerun resumes.
//!
//! [`Mpi::init`] gives each rank its device: CUDA device `local rank mod
//! GPUs` when CUDA is available, otherwise the CPU with its cores split
//! evenly between the ranks on the node. Open MPI binds each rank to one
//! core by default when there are at most 2 ranks: give ranks several cores
//! with `--bind-to none` (cores split evenly) or `--map-by slot:PE=n`.

use std::time::Duration;

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use tch::Device;

use crate::analysis::evaluator::SplitResult;
use crate::analysis::grid::Grid;
use crate::analysis::surface::PointValue;
use crate::error::{Error, Result};

const TAG_HELLO: i32 = 11;
const TAG_VERDICT: i32 = 12;
const TAG_READY: i32 = 13;
const TAG_RESULT: i32 = 14;
const TAG_FAIL: i32 = 15;
const TAG_ASSIGN: i32 = 16;
/// Assignment meaning "no more work".
const STOP: u64 = u64::MAX;
/// Requests each worker keeps in flight.
const DEPTH: usize = 2;
/// Sleep between polls while waiting (keeps waiting ranks off the CPU).
const POLL: Duration = Duration::from_micros(50);

/// An initialized MPI environment: this process's rank, the world, and the
/// device and threads it should use. Dropping it finalizes MPI.
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    local_size: usize,
    threads: usize,
    /// Computations started so far: tags assignments, so that a worker never
    /// takes one left over from an earlier computation that failed.
    round: std::cell::Cell<u64>,
    // Declared last: finalizes MPI after the communicators are gone.
    _universe: mpi::environment::Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .field("local_rank", &self.local_rank)
            .field("local_size", &self.local_size)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Mpi {
    /// Initializes MPI (once per process) and, when this rank computes on
    /// the CPU, sets libtorch's intra-op threads to the node's cores divided
    /// by the ranks on the node (at least 1); override with
    /// `tch::set_num_threads` afterwards if needed.
    pub fn init() -> Result<Mpi> {
        let (universe, provided) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::invalid("MPI", "already initialized in this process"))?;
        if provided < Threading::Serialized {
            tracing::warn!(
                ?provided,
                "MPI provides less than serialized threading; call evaluate_mpi from the main thread"
            );
        }
        let world = universe.world();
        let node = world.split_shared(world.rank());
        let (local_rank, local_size) = (node.rank() as usize, node.size() as usize);
        let threads = threads_for(local_size);
        let mpi = Mpi {
            world,
            local_rank,
            local_size,
            threads,
            round: std::cell::Cell::new(0),
            _universe: universe,
        };
        if mpi.device() == Device::Cpu {
            tch::set_num_threads(threads as i32);
        }
        tracing::info!(?mpi, device = ?mpi.device(), "MPI initialized");
        Ok(mpi)
    }

    /// This process's rank in the world.
    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// Number of processes.
    pub fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// Rank among the processes on this node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Number of processes on this node.
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// Whether this rank writes the results (rank 0).
    pub fn is_writer(&self) -> bool {
        self.rank() == 0
    }

    /// The device this rank should put its model on: CUDA device
    /// `local_rank mod count` when CUDA is available, else the CPU.
    pub fn device(&self) -> Device {
        let gpus = tch::Cuda::device_count();
        if tch::Cuda::is_available() && gpus > 0 {
            Device::Cuda(self.local_rank % gpus as usize)
        } else {
            Device::Cpu
        }
    }

    /// Intra-op threads for a CPU rank: node cores / ranks on the node.
    pub fn threads_per_rank(&self) -> usize {
        self.threads
    }

    /// Ends every rank of the job with `code` (`MPI_Abort`): for a rank that
    /// cannot go on, so the others do not wait for it forever.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    /// The world communicator, for the user's own collectives.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// Checks that every rank describes the same work as rank 0 (`digest`:
    /// directions id, grid, evaluator, shard). Every rank gets the same
    /// verdict.
    pub(crate) fn agree(&self, digest: &str) -> Result<()> {
        self.round.set(self.round.get() + 1);
        let root = self.world.process_at_rank(0);
        let verdict: String = if self.is_writer() {
            let mut bad = Vec::new();
            for r in 1..self.world.size() {
                let (theirs, _) = self
                    .world
                    .process_at_rank(r)
                    .receive_vec_with_tag::<u8>(TAG_HELLO);
                let theirs = String::from_utf8_lossy(&theirs);
                if theirs != digest {
                    bad.push(format!("rank {r} has {theirs}"));
                }
            }
            let verdict = if bad.is_empty() {
                String::new()
            } else {
                format!(
                    "ranks disagree on the work (build the same directions, grid and evaluator on every rank): rank 0 has {digest}; {}",
                    bad.join("; ")
                )
            };
            for r in 1..self.world.size() {
                self.world
                    .process_at_rank(r)
                    .send_with_tag(verdict.as_bytes(), TAG_VERDICT);
            }
            verdict
        } else {
            root.send_with_tag(digest.as_bytes(), TAG_HELLO);
            let (v, _) = root.receive_vec_with_tag::<u8>(TAG_VERDICT);
            String::from_utf8_lossy(&v).into_owned()
        };
        if verdict.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid("MPI", verdict))
        }
    }

    /// The worker side: asks rank 0 for points, keeping [`DEPTH`] requests
    /// in flight, and sends each finished point back.
    pub(crate) fn worker_exchange(
        &self,
    ) -> impl FnMut(Option<PointValue>) -> Result<Option<usize>> + '_ {
        let root = self.world.process_at_rank(0);
        let round = self.round.get();
        let mut inflight = 0usize;
        let mut started = false;
        move |done| {
            if let Some(p) = done {
                root.send_with_tag(&encode_point(&p)[..], TAG_RESULT);
                inflight += 1;
            }
            if !started {
                started = true;
                for _ in 0..DEPTH {
                    root.send_with_tag(&[0u8][..], TAG_READY);
                }
                inflight += DEPTH;
            }
            while inflight > 0 {
                let msg = loop {
                    if let Some(m) = root.immediate_matched_probe_with_tag(TAG_ASSIGN) {
                        break m;
                    }
                    std::thread::sleep(POLL);
                };
                let (v, _) = msg.matched_receive_vec::<u64>();
                tracing::trace!(?v, round, inflight, "worker got assignment");
                if v.first() != Some(&round) {
                    continue; // left over from an earlier computation
                }
                inflight -= 1;
                match v.get(1) {
                    Some(&STOP) | None => continue,
                    Some(&i) => return Ok(Some(i as usize)),
                }
            }
            Ok(None)
        }
    }

    /// Waits for rank 0's final word (see [`Coordinator::conclude`]).
    pub(crate) fn outcome(&self) -> Result<()> {
        let (v, _) = self
            .world
            .process_at_rank(0)
            .receive_vec_with_tag::<u8>(TAG_VERDICT);
        if v.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(
                "MPI",
                String::from_utf8_lossy(&v).into_owned(),
            ))
        }
    }

    /// Tells rank 0 that this worker failed.
    pub(crate) fn report_failure(&self, e: &Error) {
        let msg = e.to_string();
        self.world
            .process_at_rank(0)
            .send_with_tag(msg.as_bytes(), TAG_FAIL);
    }
}

/// Intra-op threads for one of `local_size` ranks on this node: the cores
/// this process may run on when mpirun bound it to fewer than the node has
/// (`--bind-to core`, `--map-by …:PE=n`), else the node's cores divided by
/// the ranks on it (`--bind-to none`).
fn threads_for(local_size: usize) -> usize {
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| count_cpus(s.trim()))
        .unwrap_or(allowed);
    if allowed < online {
        allowed
    } else {
        (allowed / local_size.max(1)).max(1)
    }
}

/// Counts the CPUs of a Linux CPU list such as `0-3,8,10-11`.
fn count_cpus(list: &str) -> Option<usize> {
    list.split(',').try_fold(0usize, |n, part| {
        Some(
            n + match part.split_once('-') {
                Some((a, b)) => b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?,
                None => {
                    part.parse::<usize>().ok()?;
                    1
                }
            },
        )
    })
}

/// Rank 0's bookkeeping of one worker.
#[derive(Debug, Default, Clone)]
struct WorkerState {
    /// Requests received and not answered.
    outstanding: usize,
    /// Points assigned and not returned.
    pending: usize,
    /// Whether it was told to stop.
    stopped: bool,
    /// Whether it failed.
    failed: bool,
}

impl WorkerState {
    fn done(&self) -> bool {
        self.failed || (self.stopped && self.outstanding == 0 && self.pending == 0)
    }
}

/// Rank 0's side: hands out grid indices from one list to itself and to
/// the workers, and collects the workers' points.
pub(crate) struct Coordinator<'m> {
    mpi: &'m Mpi,
    workers: Vec<WorkerState>,
    todo: Vec<usize>,
    grid: Option<Grid>,
    next: usize,
    stop: bool,
    error: Option<Error>,
}

impl<'m> Coordinator<'m> {
    /// A coordinator with no work yet (see [`Coordinator::set_work`]).
    pub(crate) fn new(mpi: &'m Mpi) -> Coordinator<'m> {
        Coordinator {
            mpi,
            workers: vec![WorkerState::default(); mpi.size()],
            todo: Vec::new(),
            grid: None,
            next: 0,
            stop: false,
            error: None,
        }
    }

    /// The grid indices still to compute, of `grid`.
    pub(crate) fn set_work(&mut self, todo: &[usize], grid: Grid) {
        self.todo = todo.to_vec();
        self.grid = Some(grid);
        self.next = 0;
    }

    /// Stops handing out work.
    pub(crate) fn stop(&mut self) {
        self.stop = true;
    }

    /// Takes the next index for rank 0 itself.
    /// (Rank 0's own points and the workers' come from this one queue.)
    pub(crate) fn take(&mut self) -> Option<usize> {
        if self.stop {
            return None;
        }
        let i = self.todo.get(self.next).copied();
        if i.is_some() {
            self.next += 1;
        }
        i
    }

    /// Serves every message that has arrived; workers' points go to `sink`.
    pub(crate) fn poll(&mut self, sink: &mut dyn FnMut(PointValue) -> Result<()>) {
        let world = &self.mpi.world;
        // Only this computation's tags: a worker that failed may already be
        // saying hello for the next one.
        loop {
            let Some(msg) = [TAG_RESULT, TAG_READY, TAG_FAIL]
                .into_iter()
                .find_map(|tag| world.any_process().immediate_matched_probe_with_tag(tag))
            else {
                return;
            };
            let (r, tag) = (msg.1.source_rank() as usize, msg.1.tag());
            let (bytes, _) = msg.matched_receive_vec::<u8>();
            tracing::trace!(from = r, tag, len = bytes.len(), "rank 0 got message");
            match tag {
                TAG_READY => self.workers[r].outstanding += 1,
                TAG_RESULT => {
                    let w = &mut self.workers[r];
                    w.pending = w.pending.saturating_sub(1);
                    w.outstanding += 1;
                    match decode_point(&bytes) {
                        Ok((index, splits)) if self.error.is_none() => {
                            let point = self.grid_point(index);
                            if let Err(e) =
                                point.and_then(|point| sink(PointValue { point, splits }))
                            {
                                self.fail(e);
                            }
                        }
                        Err(e) => self.fail(e),
                        Ok(_) => {}
                    }
                }
                _ => {
                    self.workers[r].failed = true;
                    let e = Error::invalid(
                        "MPI",
                        format!("rank {r} failed: {}", String::from_utf8_lossy(&bytes)),
                    );
                    self.fail(e);
                }
            }
            self.answer(r);
        }
    }

    /// Serves until every worker has stopped.
    pub(crate) fn finish(&mut self, sink: &mut dyn FnMut(PointValue) -> Result<()>) {
        // Rank 0 has no more work of its own: whatever is left goes to the workers.
        while !self.workers.iter().skip(1).all(WorkerState::done) {
            self.poll(&mut *sink);
            std::thread::sleep(POLL);
        }
    }

    /// Tells every worker still listening how the computation ended
    /// (`Ok`, or rank 0's error), so all ranks return the same outcome.
    pub(crate) fn conclude<T>(&self, result: &Result<T>) {
        let msg = match result {
            Ok(_) => String::new(),
            Err(e) => format!("rank 0 failed: {e}"),
        };
        for (r, w) in self.workers.iter().enumerate().skip(1) {
            if !w.failed {
                self.mpi
                    .world
                    .process_at_rank(r as i32)
                    .send_with_tag(msg.as_bytes(), TAG_VERDICT);
            }
        }
    }

    /// The first error (a worker's or the sink's), if any.
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn fail(&mut self, e: Error) {
        self.stop = true;
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn grid_point(&self, index: usize) -> Result<crate::analysis::grid::GridPoint> {
        self.grid
            .as_ref()
            .filter(|g| index < g.len())
            .map(|g| g.point(index))
            .ok_or_else(|| {
                Error::invalid("MPI", format!("a worker returned unknown point {index}"))
            })
    }

    /// Answers worker `r`'s open requests.
    fn answer(&mut self, r: usize) {
        let w = &self.workers[r];
        if w.failed {
            return;
        }
        while self.workers[r].outstanding > 0 {
            let next = self.take();
            let w = &mut self.workers[r];
            w.outstanding -= 1;
            let msg = match next {
                Some(i) => {
                    w.pending += 1;
                    i as u64
                }
                None => {
                    w.stopped = true;
                    STOP
                }
            };
            self.mpi
                .world
                .process_at_rank(r as i32)
                .send_with_tag(&[self.mpi.round.get(), msg][..], TAG_ASSIGN);
        }
    }
}

/// Serializes a point: index, then per split its name, loss and accuracy
/// as exact bits.
fn encode_point(p: &PointValue) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + 40 * p.splits.len());
    b.extend_from_slice(&(p.point.index as u64).to_le_bytes());
    b.extend_from_slice(&(p.splits.len() as u32).to_le_bytes());
    for s in &p.splits {
        b.extend_from_slice(&(s.split.len() as u32).to_le_bytes());
        b.extend_from_slice(s.split.as_bytes());
        b.extend_from_slice(&s.loss.to_bits().to_le_bytes());
        b.push(s.accuracy.is_some() as u8);
        b.extend_from_slice(&s.accuracy.unwrap_or(0.0).to_bits().to_le_bytes());
    }
    b
}

fn decode_point(b: &[u8]) -> Result<(usize, Vec<SplitResult>)> {
    let bad = || Error::invalid("MPI", "a worker sent a malformed point");
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = b.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        Ok(s)
    };
    let u64_at = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
    let u32_at = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes"));
    let index = u64_at(take(8)?) as usize;
    let n = u32_at(take(4)?) as usize;
    let mut splits = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let len = u32_at(take(4)?) as usize;
        let split = String::from_utf8(take(len)?.to_vec()).map_err(|_| bad())?;
        let loss = f64::from_bits(u64_at(take(8)?));
        let has_acc = take(1)?[0] != 0;
        let acc = f64::from_bits(u64_at(take(8)?));
        splits.push(SplitResult {
            split,
            loss,
            accuracy: has_acc.then_some(acc),
        });
    }
    Ok((index, splits))
}

/// What every rank must agree on before computing a grid together.
pub(crate) fn digest(
    directions_id: &str,
    grid: &Grid,
    evaluator: &str,
    shard: Option<(usize, usize)>,
) -> String {
    format!("directions {directions_id}, grid {grid:?}, evaluator '{evaluator}', shard {shard:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::grid::Axis;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpus("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn point_encoding_is_exact() {
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 5),
            y: None,
        };
        let p = PointValue {
            point: grid.point(3),
            splits: vec![
                SplitResult {
                    split: "train".into(),
                    loss: 0.1 + 0.2,
                    accuracy: Some(97.5),
                },
                SplitResult {
                    split: "λ".into(),
                    loss: f64::NAN,
                    accuracy: None,
                },
            ],
        };
        let (i, s) = decode_point(&encode_point(&p)).unwrap();
        assert_eq!(i, 3);
        assert_eq!(s[0], p.splits[0]);
        assert_eq!(s[1].split, "λ");
        assert!(s[1].loss.is_nan() && s[1].accuracy.is_none());
        let b = encode_point(&p);
        assert!(decode_point(&b[..b.len() - 1]).is_err());
    }
}
