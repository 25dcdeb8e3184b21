//! Configuring a surface: [`SurfaceBuilder`] validates once and builds a
//! [`Surface`], which can then be evaluated (and resumed) any number of times.

use std::cell::RefCell;
use std::ops::RangeInclusive;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::analysis::directions::Directions;
use crate::analysis::grid::{Axis, Grid};
use crate::analysis::shard::Shard;
use crate::error::{Error, Result};

use super::spec::MAX_SHARPNESS_EPSILON;

/// Callback receiving (points done, points total).
type Progress<'a> = Box<dyn FnMut(usize, usize) + 'a>;

/// Configures a [`Surface`]; see [`Surface::builder`].
pub struct SurfaceBuilder<'a> {
    dirs: &'a Directions,
    grid: Grid,
    flush_every: usize,
    epsilon: f64,
    with_sharpness: bool,
    shard: Option<Shard>,
    progress: Option<Progress<'a>>,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for SurfaceBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurfaceBuilder")
            .field("directions", &self.dirs.meta.id)
            .field("grid", &self.grid)
            .field("flush_every", &self.flush_every)
            .field("shard", &self.shard)
            .finish()
    }
}

impl<'a> SurfaceBuilder<'a> {
    fn new(dirs: &'a Directions) -> SurfaceBuilder<'a> {
        let axis = Axis::new(-1.0..=1.0, 51);
        SurfaceBuilder {
            dirs,
            grid: Grid {
                x: axis,
                y: (dirs.len() > 1).then_some(axis),
                reference: None,
            },
            flush_every: 16,
            epsilon: 0.1,
            with_sharpness: true,
            shard: None,
            progress: None,
            cancel: None,
        }
    }

    /// A 2-D grid of `nx` × `ny` points over the given ranges (the
    /// directions must have two directions).
    pub fn grid(
        mut self,
        x: RangeInclusive<f64>,
        nx: usize,
        y: RangeInclusive<f64>,
        ny: usize,
    ) -> Self {
        self.grid = Grid {
            x: Axis::new(x, nx),
            y: Some(Axis::new(y, ny)),
            reference: None,
        };
        self
    }

    /// A 1-D slice of `nx` points along the first direction.
    pub fn line(mut self, x: RangeInclusive<f64>, nx: usize) -> Self {
        self.grid = Grid {
            x: Axis::new(x, nx),
            y: None,
            reference: None,
        };
        self
    }

    /// Points per segment file (default 16, at least 1): at most this many
    /// finished points are lost when the process is killed.
    pub fn flush_every(mut self, n: usize) -> Self {
        self.flush_every = n;
        self
    }

    /// ε of the sharpness sub-level set (default 0.1, in loss units, > 0).
    pub fn sharpness_epsilon(mut self, eps: f64) -> Self {
        self.epsilon = eps;
        self
    }

    /// Whether to compute sharpness figures (default true); turn off when the
    /// evaluator's values are not losses (e.g. curvature maps).
    pub fn with_sharpness(mut self, on: bool) -> Self {
        self.with_sharpness = on;
        self
    }

    /// Compute only `shard`: the points whose flat index ≡ i (mod n), into
    /// a directory of their own (see [`merge_shards`](super::merge_shards)).
    pub fn shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Calls `f(done, total)` after each point (on the calling thread).
    pub fn on_progress(mut self, f: impl FnMut(usize, usize) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Stops the computation once `flag` is set: no new point is started,
    /// points being evaluated are finished and saved, and the evaluation
    /// returns a result with `complete == false`; evaluating again resumes.
    /// (E.g. set it from a signal handler, or from the progress callback.)
    pub fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Checks the settings: the grid's axes (and that a 2-D grid has two
    /// directions), `flush_every` ≥ 1, and ε > 0. The grid's reference point
    /// is the directions' ([`DirectionsMeta::reference`](crate::analysis::directions::DirectionsMeta::reference)):
    /// evaluated on its own when it is not a grid point.
    pub fn build(mut self) -> Result<Surface<'a>> {
        let [x, y] = self.dirs.meta.reference();
        self.grid.reference = Some([x, if self.grid.y.is_some() { y } else { 0.0 }]);
        self.grid.validate(self.dirs.len())?;
        if self.flush_every == 0 {
            return Err(Error::invalid("flush_every", "must be at least 1, got 0"));
        }
        if !(self.epsilon > 0.0 && self.epsilon <= MAX_SHARPNESS_EPSILON) {
            return Err(Error::invalid(
                "sharpness epsilon",
                format!(
                    "expected 0 < ε ≤ {MAX_SHARPNESS_EPSILON:e} (a loss difference), got {}",
                    self.epsilon
                ),
            ));
        }
        Ok(Surface {
            dirs: self.dirs,
            grid: self.grid,
            flush_every: self.flush_every,
            epsilon: self.with_sharpness.then_some(self.epsilon),
            shard: self.shard,
            progress: RefCell::new(self.progress),
            cancel: self.cancel,
        })
    }
}

/// A validated loss surface f(α, β) = L(θ* + αδ + βη) over a grid, ready
/// to be evaluated. See the [module docs](super).
pub struct Surface<'a> {
    dirs: &'a Directions,
    grid: Grid,
    flush_every: usize,
    epsilon: Option<f64>,
    shard: Option<Shard>,
    progress: RefCell<Option<Progress<'a>>>,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Surface<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Surface")
            .field("directions", &self.dirs.meta.id)
            .field("grid", &self.grid)
            .field("flush_every", &self.flush_every)
            .field("sharpness_epsilon", &self.epsilon)
            .field("shard", &self.shard)
            .finish()
    }
}

impl<'a> Surface<'a> {
    /// Configures a surface along `dirs`; default grid [-1, 1] with 51
    /// points per axis (2-D when there are two directions), as the reference.
    pub fn builder(dirs: &'a Directions) -> SurfaceBuilder<'a> {
        SurfaceBuilder::new(dirs)
    }

    /// The directions.
    pub fn directions(&self) -> &'a Directions {
        self.dirs
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The shard computed, if any.
    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// ε of the sharpness figures; `None` when they are off.
    pub fn sharpness_epsilon(&self) -> Option<f64> {
        self.epsilon
    }

    /// Points per segment file.
    pub fn flush_every(&self) -> usize {
        self.flush_every
    }

    /// The same surface without sharpness figures (for quantities that are
    /// not losses, e.g. curvature maps).
    pub(crate) fn without_sharpness(mut self) -> Self {
        self.epsilon = None;
        self
    }

    /// The cancellation flag, if any.
    pub(crate) fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        self.cancel.clone()
    }

    /// Reports progress to the callback, if any (and if not re-entered).
    pub(crate) fn report_progress(&self, done: usize, total: usize) {
        if let Ok(mut p) = self.progress.try_borrow_mut() {
            if let Some(f) = p.as_mut() {
                f(done, total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::directions::DirectionKind;
    use crate::analysis::params::{NamedTensor, ParamSet};
    use crate::tensor::Role;
    use std::sync::atomic::Ordering;

    fn dirs(n: usize) -> Directions {
        let set = |v: f32| ParamSet {
            tensors: vec![NamedTensor {
                name: "w".into(),
                role: Role::classify(true, 2),
                tensor: tch::Tensor::from_slice(&[v, v]).reshape([1, 2]),
            }],
        };
        let d = (0..n).map(|i| set(i as f32 + 1.0)).collect();
        Directions::custom(set(0.0), d, DirectionKind::Custom, "test").unwrap()
    }

    #[test]
    fn build_validates_once_with_named_options() {
        let two = dirs(2);
        let s = Surface::builder(&two).build().unwrap();
        assert_eq!((s.grid().nx(), s.grid().ny()), (51, 51));
        assert_eq!(s.sharpness_epsilon(), Some(0.1));
        let one = dirs(1);
        let s = Surface::builder(&one)
            .with_sharpness(false)
            .build()
            .unwrap();
        assert_eq!((s.grid().len(), s.sharpness_epsilon()), (51, None));
        let err = |b: SurfaceBuilder<'_>| b.build().unwrap_err().to_string();
        let e = err(Surface::builder(&one).grid(-1.0..=1.0, 3, -1.0..=1.0, 3));
        assert!(e.contains("two directions"), "{e}");
        let e = err(Surface::builder(&two).flush_every(0));
        assert!(e.contains("flush_every"), "{e}");
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = err(Surface::builder(&two).sharpness_epsilon(eps));
            assert!(e.contains("sharpness epsilon"), "{e}");
        }
        let e = err(Surface::builder(&two).line(1.0..=-1.0, 3));
        assert!(e.contains("inverted"), "{e}");
    }

    #[test]
    fn cancellation_and_progress_are_observed() {
        let two = dirs(2);
        let flag = Arc::new(AtomicBool::new(false));
        let seen = std::cell::Cell::new(0);
        let s = Surface::builder(&two)
            .cancel_on(flag.clone())
            .on_progress(|d, _| seen.set(d))
            .build()
            .unwrap();
        flag.store(true, Ordering::Relaxed);
        assert!(s.cancel_flag().is_some_and(|f| f.load(Ordering::Relaxed)));
        s.report_progress(3, 9);
        assert_eq!(seen.get(), 3);
    }
}
