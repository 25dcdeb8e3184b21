//! The message protocol between rank 0 and the workers: requests for work,
//! assignments of grid points, finished points, failures and the final
//! verdict. Both sides plug into the surface engine as an
//! [`Exchange`]: a worker's points come from rank 0, rank 0's from the
//! engine's queue, which also serves the workers.

use std::time::Duration;

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::Communicator;
use mpi::topology::Process;

use super::Mpi;
use crate::analysis::evaluator::SplitResult;
use crate::analysis::grid::{Grid, GridPoint};
use crate::analysis::surface::{Exchange, PointValue, Queue, Sink};
use crate::error::{Error, Result};

pub(super) const TAG_HELLO: i32 = 11;
pub(super) const TAG_VERDICT: i32 = 12;
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

/// The worker side: asks rank 0 for points, keeping [`DEPTH`] requests in
/// flight, and sends each finished point back.
pub(super) struct WorkerExchange<'m> {
    root: Process<'m>,
    round: u64,
    inflight: usize,
    started: bool,
}

impl<'m> WorkerExchange<'m> {
    /// The exchange of this worker for the current computation.
    pub(super) fn new(mpi: &'m Mpi) -> Self {
        WorkerExchange {
            root: mpi.world.process_at_rank(0),
            round: mpi.round.get(),
            inflight: 0,
            started: false,
        }
    }
}

impl Exchange for WorkerExchange<'_> {
    fn next(&mut self, finished: Option<PointValue>) -> Result<Option<usize>> {
        if let Some(p) = finished {
            self.root.send_with_tag(&encode_point(&p)[..], TAG_RESULT);
            self.inflight += 1;
        }
        if !self.started {
            self.started = true;
            for _ in 0..DEPTH {
                self.root.send_with_tag(&[0u8][..], TAG_READY);
            }
            self.inflight += DEPTH;
        }
        while self.inflight > 0 {
            let msg = loop {
                if let Some(m) = self.root.immediate_matched_probe_with_tag(TAG_ASSIGN) {
                    break m;
                }
                std::thread::sleep(POLL);
            };
            let (v, _) = msg.matched_receive_vec::<u64>();
            tracing::trace!(
                ?v,
                round = self.round,
                inflight = self.inflight,
                "worker got assignment"
            );
            if v.first() != Some(&self.round) {
                continue; // left over from an earlier computation
            }
            self.inflight -= 1;
            match v.get(1) {
                Some(&STOP) | None => continue,
                Some(&i) => return Ok(Some(i as usize)),
            }
        }
        Ok(None)
    }
}

impl Mpi {
    /// Waits for rank 0's final word (see [`Coordinator::conclude`]).
    pub(super) fn outcome(&self) -> Result<()> {
        let (v, _) = self
            .world
            .process_at_rank(0)
            .receive_vec_with_tag::<u8>(TAG_VERDICT);
        if v.is_empty() {
            Ok(())
        } else {
            Err(Error::Mpi {
                reason: String::from_utf8_lossy(&v).into_owned(),
            })
        }
    }

    /// Tells rank 0 that this worker failed.
    pub(super) fn report_failure(&self, e: &Error) {
        let msg = e.to_string();
        self.world
            .process_at_rank(0)
            .send_with_tag(msg.as_bytes(), TAG_FAIL);
    }
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

/// Rank 0's side: hands out grid indices of the engine's queue (to itself
/// and to the workers) and collects the workers' points.
pub(super) struct Coordinator<'m> {
    mpi: &'m Mpi,
    workers: Vec<WorkerState>,
    grid: Grid,
    error: Option<Error>,
}

impl<'m> Coordinator<'m> {
    /// A coordinator of the workers computing points of `grid`.
    pub(super) fn new(mpi: &'m Mpi, grid: Grid) -> Coordinator<'m> {
        Coordinator {
            mpi,
            workers: vec![WorkerState::default(); mpi.size()],
            grid,
            error: None,
        }
    }

    /// Serves every message that has arrived: requests get points of
    /// `queue`, workers' points go to `sink`.
    pub(super) fn poll(&mut self, queue: &Queue, sink: &mut Sink<'_>) {
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
                TAG_RESULT => self.receive_point(r, &bytes, queue, sink),
                _ => {
                    self.workers[r].failed = true;
                    let e = Error::Mpi {
                        reason: format!("rank {r} failed: {}", String::from_utf8_lossy(&bytes)),
                    };
                    self.fail(e, queue);
                }
            }
            self.answer(r, queue);
        }
    }

    /// Records a point returned by worker `r` (which also asks for another).
    fn receive_point(&mut self, r: usize, bytes: &[u8], queue: &Queue, sink: &mut Sink<'_>) {
        let w = &mut self.workers[r];
        w.pending = w.pending.saturating_sub(1);
        w.outstanding += 1;
        let recorded = decode_point(bytes).and_then(|(index, splits)| {
            if self.error.is_some() {
                return Ok(());
            }
            sink(PointValue {
                point: self.grid_point(index)?,
                splits,
            })
        });
        if let Err(e) = recorded {
            self.fail(e, queue);
        }
    }

    /// Serves until every worker has stopped.
    pub(super) fn finish(&mut self, queue: &Queue, sink: &mut Sink<'_>) {
        // Rank 0 has no more work of its own: whatever is left goes to the workers.
        while !self.workers.iter().skip(1).all(WorkerState::done) {
            self.poll(queue, sink);
            std::thread::sleep(POLL);
        }
    }

    /// Tells every worker still listening how the computation ended
    /// (`Ok`, or rank 0's error), so all ranks return the same outcome.
    pub(super) fn conclude<T>(&self, result: &Result<T>) {
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
    pub(super) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn fail(&mut self, e: Error, queue: &Queue) {
        queue.stop();
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn grid_point(&self, index: usize) -> Result<GridPoint> {
        if index < self.grid.len() {
            Ok(self.grid.point(index))
        } else {
            Err(Error::Mpi {
                reason: format!("a worker returned unknown point {index}"),
            })
        }
    }

    /// Answers worker `r`'s open requests with points of `queue`.
    fn answer(&mut self, r: usize, queue: &Queue) {
        if self.workers[r].failed {
            return;
        }
        let round = self.mpi.round.get();
        while self.workers[r].outstanding > 0 {
            let next = queue.take();
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
                .send_with_tag(&[round, msg][..], TAG_ASSIGN);
        }
    }
}

/// Rank 0's own [`Exchange`]: between its points it serves the workers;
/// its points and theirs come from one queue.
pub(super) struct CoordinatorExchange<'c, 'm, 'q, 's, 'k> {
    pub(super) coord: &'c mut Coordinator<'m>,
    pub(super) queue: &'q Queue,
    pub(super) sink: &'s mut Sink<'k>,
}

impl Exchange for CoordinatorExchange<'_, '_, '_, '_, '_> {
    fn next(&mut self, finished: Option<PointValue>) -> Result<Option<usize>> {
        if let Some(p) = finished {
            (self.sink)(p)?;
        }
        self.coord.poll(self.queue, self.sink);
        Ok(self.queue.take())
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

/// Reads a point written by [`encode_point`]: its grid index and values.
fn decode_point(b: &[u8]) -> Result<(usize, Vec<SplitResult>)> {
    let mut r = Reader { b, pos: 0 };
    let index = r.u64()? as usize;
    let n = r.u32()? as usize;
    let mut splits = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let len = r.u32()? as usize;
        let split = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| malformed())?;
        let loss = f64::from_bits(r.u64()?);
        let has_acc = r.take(1)?[0] != 0;
        let acc = f64::from_bits(r.u64()?);
        splits.push(SplitResult {
            split,
            loss,
            accuracy: has_acc.then_some(acc),
        });
    }
    Ok((index, splits))
}

fn malformed() -> Error {
    Error::Mpi {
        reason: "a worker sent a malformed point".into(),
    }
}

/// Reads little-endian fields from a message.
struct Reader<'b> {
    b: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(malformed)?;
        let s = self.b.get(self.pos..end).ok_or_else(malformed)?;
        self.pos = end;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::grid::Axis;

    #[test]
    fn point_encoding_is_exact() {
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 5),
            y: None,
            reference: None,
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
        for cut in 0..b.len() {
            assert!(decode_point(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = b.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_point(&huge).is_err());
    }
}
