//! Grids of evaluation points: any nx × ny shape and ranges, x fastest,
//! plus the reference point (θ* of a surface, the trained end of an
//! interpolation) evaluated on its own when the lattice does not contain it.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most points one axis may have.
pub const MAX_AXIS_POINTS: usize = 1_000_000;

/// The most points a grid may have: every point's values are held in memory
/// and drawn, so larger grids are refused before anything is allocated.
pub const MAX_GRID_POINTS: usize = 10_000_000;

/// The largest |coordinate| a grid may reach. Directions are scaled like
/// the weights (filter normalization), so coefficients far beyond this only
/// overflow float32 into NaN losses; the paper's figures use ±1.
pub const MAX_ABS_COORDINATE: f64 = 1e6;

/// One axis of a grid: `n` evenly spaced values from `min` to `max`
/// inclusive (a single value `min` when `n` is 1). Deserializing checks it
/// (a `surface.json` cannot ask for 10¹² points or a NaN range).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAxis")]
pub struct Axis {
    /// First value.
    pub min: f64,
    /// Last value.
    pub max: f64,
    /// Number of values.
    pub n: usize,
}

impl Axis {
    /// An axis over `range` with `n` points.
    pub fn new(range: RangeInclusive<f64>, n: usize) -> Axis {
        Axis {
            min: *range.start(),
            max: *range.end(),
            n,
        }
    }

    /// The `i`-th value, computed directly (no accumulated steps).
    pub fn value(&self, i: usize) -> f64 {
        if self.n <= 1 {
            self.min
        } else {
            self.min + (self.max - self.min) * i as f64 / (self.n - 1) as f64
        }
    }

    /// Spacing between neighbouring values (0 for a single point).
    pub fn step(&self) -> f64 {
        if self.n <= 1 {
            0.0
        } else {
            (self.max - self.min) / (self.n - 1) as f64
        }
    }

    /// All values.
    pub fn values(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.value(i)).collect()
    }

    fn validate(&self, name: &str) -> Result<()> {
        if self.n == 0 {
            return Err(Error::invalid(name, "needs at least 1 point, got 0"));
        }
        if self.n > MAX_AXIS_POINTS {
            return Err(Error::invalid(
                name,
                format!(
                    "{} points is more than the {MAX_AXIS_POINTS} an axis may have",
                    self.n
                ),
            ));
        }
        if !self.min.is_finite() || !self.max.is_finite() {
            return Err(Error::invalid(
                name,
                format!("range {}..={} is not finite", self.min, self.max),
            ));
        }
        if self.min.abs() > MAX_ABS_COORDINATE || self.max.abs() > MAX_ABS_COORDINATE {
            return Err(Error::invalid(
                name,
                format!(
                    "range {}..={} goes beyond ±{MAX_ABS_COORDINATE:e}, where directions scaled like the weights overflow float32",
                    self.min, self.max
                ),
            ));
        }
        if self.n > 1 && self.min >= self.max {
            return Err(Error::invalid(
                name,
                format!(
                    "range {}..={} is empty or inverted; expected min < max",
                    self.min, self.max
                ),
            ));
        }
        Ok(())
    }
}

/// The fields of an [`Axis`] as read, before they are checked.
#[derive(Deserialize)]
struct RawAxis {
    min: f64,
    max: f64,
    n: usize,
}

impl TryFrom<RawAxis> for Axis {
    type Error = Error;

    fn try_from(r: RawAxis) -> Result<Axis> {
        let axis = Axis {
            min: r.min,
            max: r.max,
            n: r.n,
        };
        axis.validate("grid axis")?;
        Ok(axis)
    }
}

/// The fields of a [`Grid`] as read, before the number of points is checked.
#[derive(Deserialize)]
struct RawGrid {
    x: Axis,
    y: Option<Axis>,
    #[serde(default)]
    reference: Option<[f64; 2]>,
}

impl TryFrom<RawGrid> for Grid {
    type Error = Error;

    fn try_from(r: RawGrid) -> Result<Grid> {
        let grid = Grid {
            x: r.x,
            y: r.y,
            reference: r.reference,
        };
        grid.check_size()?;
        grid.check_reference()?;
        Ok(grid)
    }
}

/// A 1-D (`y` is `None`) or 2-D lattice of at most [`MAX_GRID_POINTS`]
/// points, and the reference point of the result.
///
/// Points are numbered x fastest: flat index `iy * nx + ix` for the
/// lattice; when the reference point is not a lattice point it is evaluated
/// too, as the one point after the lattice (flat index `nx * ny`), so the
/// values at the reference are always measured, never read off a
/// neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGrid")]
pub struct Grid {
    /// Coefficient of the first direction.
    pub x: Axis,
    /// Coefficient of the second direction, for 2-D grids.
    pub y: Option<Axis>,
    /// The reference point `[x, y]` (`y` is 0 on 1-D grids); `None` in
    /// results written before it was stored, whose reference is found by
    /// [`DirectionsMeta::reference`](crate::analysis::directions::DirectionsMeta::reference)
    /// and was evaluated only when on the lattice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<[f64; 2]>,
}

// The point key of the surface rows, defined with their format.
pub use crate::store::surface::GridPoint;

impl Grid {
    /// Checks the axes and the number of points; `n_dirs` is the number of
    /// available directions.
    pub fn validate(&self, n_dirs: usize) -> Result<()> {
        self.x.validate("x axis")?;
        if let Some(y) = &self.y {
            y.validate("y axis")?;
            if n_dirs < 2 {
                return Err(Error::invalid(
                    "grid",
                    "a 2-D grid needs two directions; these directions have one",
                ));
            }
        }
        self.check_size()?;
        self.check_reference()
    }

    /// Refuses a reference point that is not finite, beyond
    /// [`MAX_ABS_COORDINATE`], or off the x axis of a 1-D grid.
    fn check_reference(&self) -> Result<()> {
        let Some([x, y]) = self.reference else {
            return Ok(());
        };
        if !(x.is_finite() && y.is_finite())
            || x.abs() > MAX_ABS_COORDINATE
            || y.abs() > MAX_ABS_COORDINATE
        {
            return Err(Error::invalid(
                "grid reference",
                format!("({x}, {y}) is not a finite point within ±{MAX_ABS_COORDINATE:e}"),
            ));
        }
        if self.y.is_none() && y != 0.0 {
            return Err(Error::invalid(
                "grid reference",
                format!("a 1-D grid's reference lies on its axis (y = 0), got y = {y}"),
            ));
        }
        Ok(())
    }

    /// Refuses grids of more than [`MAX_GRID_POINTS`] points.
    fn check_size(&self) -> Result<()> {
        let points = self.x.n.checked_mul(self.y.map_or(1, |a| a.n));
        match points {
            Some(p) if p <= MAX_GRID_POINTS => Ok(()),
            _ => Err(Error::invalid(
                "grid",
                format!(
                    "{} × {} points is more than the {MAX_GRID_POINTS} a grid may have",
                    self.x.n,
                    self.y.map_or(1, |a| a.n)
                ),
            )),
        }
    }

    /// Number of columns.
    pub fn nx(&self) -> usize {
        self.x.n
    }

    /// Number of rows (1 for 1-D grids).
    pub fn ny(&self) -> usize {
        self.y.map_or(1, |a| a.n)
    }

    /// Number of lattice points (`nx * ny`).
    pub fn lattice_len(&self) -> usize {
        self.nx() * self.ny()
    }

    /// Number of points evaluated: the lattice, plus the reference point
    /// when it is not a lattice point.
    pub fn len(&self) -> usize {
        self.lattice_len() + usize::from(self.reference_off_lattice())
    }

    /// The lattice column (and row) at the reference point, when it is a
    /// lattice point (coordinates equal, as [`Axis::value`] computes them).
    fn reference_cell(&self) -> Option<(usize, usize)> {
        let [x, y] = self.reference?;
        let cell = |a: &Axis, v: f64| -> Option<usize> {
            let i = if a.n <= 1 {
                0.0
            } else {
                ((v - a.min) / (a.max - a.min) * (a.n - 1) as f64).round()
            };
            (i >= 0.0 && i < a.n as f64 && a.value(i as usize) == v).then_some(i as usize)
        };
        let ix = cell(&self.x, x)?;
        let iy = match &self.y {
            Some(a) => cell(a, y)?,
            None => 0,
        };
        Some((ix, iy))
    }

    fn reference_off_lattice(&self) -> bool {
        self.reference.is_some() && self.reference_cell().is_none()
    }

    /// The flat index of the reference point: its lattice index, or
    /// `nx * ny` when it is evaluated on its own; `None` when no reference
    /// is stored.
    pub fn reference_index(&self) -> Option<usize> {
        self.reference?;
        Some(match self.reference_cell() {
            Some((ix, iy)) => iy * self.nx() + ix,
            None => self.lattice_len(),
        })
    }

    /// True for a grid without points (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The point with flat index `index` (below [`len`](Self::len)).
    pub fn point(&self, index: usize) -> GridPoint {
        let reference = self.reference_index() == Some(index);
        if index >= self.lattice_len() {
            let [x, y] = self.reference.unwrap_or_default();
            return GridPoint {
                index,
                ix: 0,
                iy: 0,
                x,
                y,
                on_grid: false,
                reference,
            };
        }
        let (ix, iy) = (index % self.nx(), index / self.nx());
        GridPoint {
            index,
            ix,
            iy,
            x: self.x.value(ix),
            y: self.y.map_or(0.0, |a| a.value(iy)),
            on_grid: true,
            reference,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_values_and_errors() {
        let a = Axis::new(-1.0..=1.0, 5);
        assert_eq!(a.values(), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert!(Axis::new(1.0..=-1.0, 3).validate("x").is_err());
        assert!(Axis::new(0.0..=1.0, 0).validate("x").is_err());
        assert!(Axis::new(0.0..=f64::NAN, 2).validate("x").is_err());
        Axis::new(0.5..=0.5, 1).validate("x").unwrap();
    }

    #[test]
    fn read_grids_are_checked_and_bounded() {
        let ok: Grid =
            serde_json::from_str(r#"{"x":{"min":-1.0,"max":1.0,"n":3},"y":null}"#).unwrap();
        assert_eq!(ok.len(), 3);
        for bad in [
            // 10^12 points on one axis, 2^63 + 313 (the length overflows), an
            // inverted range, a grid of 10^8 points made of two legal axes.
            r#"{"x":{"min":-1.0,"max":1.0,"n":1000000000000},"y":null}"#,
            r#"{"x":{"min":-1.0,"max":1.0,"n":9223372036854776121},"y":null}"#,
            r#"{"x":{"min":1.0,"max":-1.0,"n":3},"y":null}"#,
            r#"{"x":{"min":-1.0,"max":1.0,"n":10000},"y":{"min":-1.0,"max":1.0,"n":10000}}"#,
        ] {
            let e = serde_json::from_str::<Grid>(bad).unwrap_err().to_string();
            assert!(e.contains("axis") || e.contains("grid"), "{bad}: {e}");
        }
        let big = Grid {
            x: Axis::new(0.0..=1.0, MAX_AXIS_POINTS),
            y: Some(Axis::new(0.0..=1.0, MAX_AXIS_POINTS)),
            reference: None,
        };
        assert!(big.validate(2).is_err());
    }

    #[test]
    fn non_square_grid_indexing() {
        let g = Grid {
            x: Axis::new(0.0..=2.0, 3),
            y: Some(Axis::new(0.0..=1.0, 2)),
            reference: None,
        };
        assert_eq!(g.len(), 6);
        let p = g.point(4);
        assert_eq!((p.ix, p.iy, p.x, p.y), (1, 1, 1.0, 1.0));
    }

    #[test]
    fn the_reference_is_a_lattice_point_or_one_more_point() {
        let line = |n: usize, r: f64| Grid {
            x: Axis::new(-1.0..=1.0, n),
            y: None,
            reference: Some([r, 0.0]),
        };
        // Odd n: 0 is on the lattice, flagged in place.
        let g = line(5, 0.0);
        assert_eq!((g.len(), g.reference_index()), (5, Some(2)));
        assert!(g.point(2).reference && g.point(2).on_grid && !g.point(1).reference);
        // Even n and a single point: 0 is evaluated after the lattice.
        for n in [4, 1] {
            let g = line(n, 0.0);
            assert_eq!((g.len(), g.reference_index()), (n + 1, Some(n)));
            let p = g.point(n);
            assert!(p.reference && !p.on_grid);
            assert_eq!((p.x, p.y), (0.0, 0.0));
        }
        // The trained end of an interpolation, α = 1, is a lattice point.
        let g = Grid {
            x: Axis::new(-0.5..=1.5, 41),
            y: None,
            reference: Some([1.0, 0.0]),
        };
        assert_eq!(g.reference_index(), Some(30));
        let plane = Grid {
            x: Axis::new(-1.0..=1.0, 4),
            y: Some(Axis::new(-1.0..=1.0, 3)),
            reference: Some([0.0, 0.0]),
        };
        assert_eq!((plane.len(), plane.reference_index()), (13, Some(12)));
        assert!(plane.validate(2).is_ok());
        let bad = Grid {
            reference: Some([0.0, 0.5]),
            ..line(3, 0.0)
        };
        assert!(bad
            .validate(1)
            .unwrap_err()
            .to_string()
            .contains("reference"));
        let nan = Grid {
            reference: Some([f64::NAN, 0.0]),
            ..line(3, 0.0)
        };
        assert!(nan.validate(1).is_err());
    }
}
