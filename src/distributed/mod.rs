//! Surfaces and curvature maps over MPI (cargo feature `mpi`).
//!
//! The same program runs on every rank (`mpirun -np N prog …`): each rank
//! builds its model, data, directions and [`Surface`](crate::analysis::surface::Surface)
//! as a single process would, then calls [`Mpi::evaluate_surface`] (or
//! [`Mpi::evaluate_curvature`]).
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
//!
//! This module builds on the surface engine (its point exchange); the
//! analyses do not depend on it.

mod protocol;
mod surface;

use std::path::Path;

use mpi::point_to_point::{Destination, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use tch::Device;

use crate::error::{Error, Result};
use protocol::{TAG_HELLO, TAG_VERDICT};

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
                "MPI provides less than serialized threading; call evaluate_surface from the main thread"
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
    /// directions id, grid, evaluator, shard) before anything is written to
    /// `out`. Every rank gets the same verdict.
    fn agree(&self, out: &Path, digest: &str) -> Result<()> {
        self.round.set(self.round.get() + 1);
        let verdict = if self.is_writer() {
            let verdict = self.collect_disagreements(digest);
            for r in 1..self.world.size() {
                self.world
                    .process_at_rank(r)
                    .send_with_tag(verdict.as_bytes(), TAG_VERDICT);
            }
            verdict
        } else {
            let root = self.world.process_at_rank(0);
            root.send_with_tag(digest.as_bytes(), TAG_HELLO);
            let (v, _) = root.receive_vec_with_tag::<u8>(TAG_VERDICT);
            String::from_utf8_lossy(&v).into_owned()
        };
        if verdict.is_empty() {
            Ok(())
        } else {
            Err(Error::ShardMismatch {
                path: out.to_path_buf(),
                reason: verdict,
            })
        }
    }

    /// Rank 0's side of [`Mpi::agree`]: every worker's digest compared with
    /// `digest`; empty when all agree.
    fn collect_disagreements(&self, digest: &str) -> String {
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
        if bad.is_empty() {
            return String::new();
        }
        format!(
            "ranks disagree on the work (build the same directions, grid and evaluator on every rank): rank 0 has {digest}; {}",
            bad.join("; ")
        )
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
                Some((a, b)) => b
                    .parse::<usize>()
                    .ok()?
                    .checked_add(1)?
                    .checked_sub(a.parse::<usize>().ok()?)?,
                None => {
                    part.parse::<usize>().ok()?;
                    1
                }
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpus("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("x"), None);
        assert_eq!(count_cpus("5-2"), None);
    }
}
