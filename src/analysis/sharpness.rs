//! Sharpness as numbers, computed from a finished filter-normalized slice
//! at its reference point (θ*, or the trained end of an interpolation),
//! whose loss L0 is always the one measured there (the grid evaluates the
//! reference on its own when it is not a lattice point): curvature at the
//! reference (finite differences with the nearest lattice neighbours), the
//! width (1-D) or area (2-D) of the connected region around it where
//! loss < L0 + ε, and the largest loss increase on the grid.

use serde::{Deserialize, Serialize};

use crate::analysis::grid::{Axis, Grid};

/// Sharpness figures of one split on one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sharpness {
    /// The data split.
    pub split: String,
    /// ε of the sub-level set L < L0 + ε.
    pub epsilon: f64,
    /// The reference point's grid coordinates `[x, y]`.
    #[serde(default)]
    pub reference: [f64; 2],
    /// What the reference point is, in words.
    #[serde(default)]
    pub reference_label: String,
    /// Whether the reference point is a lattice point (else it was evaluated
    /// on its own, after the lattice). Files written before the reference
    /// was stored took L0 from the lattice point nearest the centre.
    #[serde(default = "yes")]
    pub reference_on_grid: bool,
    /// L0, the loss measured at the reference point.
    #[serde(alias = "centre_loss")]
    pub reference_loss: f64,
    /// d²L/dα² at the reference (central difference with the nearest
    /// lattice points on either side, on its row), when both exist.
    pub curvature_x: Option<f64>,
    /// d²L/dβ² at the reference, for 2-D grids.
    pub curvature_y: Option<f64>,
    /// 1-D: length of the interval around the reference with L < L0 + ε
    /// (crossings linearly interpolated).
    pub width: Option<f64>,
    /// 2-D: area of the connected set of grid cells around the reference
    /// with L < L0 + ε (points × cell area).
    pub area: Option<f64>,
    /// False when the region reaches the grid's edge (the true width or area
    /// is then larger than reported).
    pub bounded: bool,
    /// max L − L0 over the grid (NaN points skipped).
    pub max_increase: f64,
}

fn yes() -> bool {
    true
}

/// The reference point of a slice and the loss measured there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Grid coordinates `[x, y]` (`y` 0 on 1-D grids).
    pub at: [f64; 2],
    /// L0, the loss at `at`.
    pub loss: f64,
}

/// The lattice indices bracketing `v` on `a`: equal when `v` is a lattice
/// value, `None` outside the axis.
fn bracket(a: &Axis, v: f64) -> Option<(usize, usize)> {
    if v < a.min || v > a.max {
        return None;
    }
    if a.n <= 1 {
        return (v == a.min).then_some((0, 0));
    }
    let t = (v - a.min) / (a.max - a.min) * (a.n - 1) as f64;
    let lo = (t.floor() as usize).min(a.n - 1);
    if a.value(lo) == v {
        return Some((lo, lo));
    }
    if lo + 1 < a.n && a.value(lo + 1) == v {
        return Some((lo + 1, lo + 1));
    }
    Some((lo, (lo + 1).min(a.n - 1)))
}

/// d²f at a point with value `f0` from neighbours `h1` to the left and `h2`
/// to the right (the standard central difference when `h1 == h2`).
fn second_difference(left: (f64, f64), f0: f64, right: (f64, f64)) -> Option<f64> {
    let ((h1, fl), (h2, fr)) = (left, right);
    if !(h1 > 0.0 && h2 > 0.0) {
        return None;
    }
    Some(if h1 == h2 {
        (fl - 2.0 * f0 + fr) / (h1 * h1)
    } else {
        2.0 * (fl / (h1 * (h1 + h2)) - f0 / (h1 * h2) + fr / (h2 * (h1 + h2)))
    })
}

/// Computes sharpness for `loss` (the lattice values, flat order, NaN
/// allowed) at `reference`. When the reference lies outside the grid's
/// ranges only L0 and the largest increase are given (no curvature, width
/// or area, `bounded` false).
pub fn sharpness(
    grid: &Grid,
    loss: &[f64],
    reference: Reference,
    split: &str,
    epsilon: f64,
) -> Sharpness {
    let [rx, ry] = reference.at;
    let l0 = reference.loss;
    let max_increase = loss
        .iter()
        .chain([&l0])
        .filter(|v| !v.is_nan())
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v - l0));
    let mut sh = Sharpness {
        split: split.to_string(),
        epsilon,
        reference: reference.at,
        reference_label: String::new(),
        reference_on_grid: false,
        reference_loss: l0,
        curvature_x: None,
        curvature_y: None,
        width: None,
        area: None,
        bounded: false,
        max_increase,
    };
    let by = match &grid.y {
        Some(a) => bracket(a, ry),
        None => Some((0, 0)),
    };
    let (Some(bx), Some(by)) = (bracket(&grid.x, rx), by) else {
        return sh;
    };
    let nx = grid.nx();
    let at = |ix: usize, iy: usize| loss[iy * nx + ix];
    // Neighbours on the reference's row (column): the nearest lattice
    // points strictly on either side, when the reference's other coordinate
    // is a lattice value.
    let along = |a: &Axis, v: f64, (lo, hi): (usize, usize), f: &dyn Fn(usize) -> f64| {
        let left = if lo == hi {
            lo.checked_sub(1)
        } else {
            Some(lo)
        };
        let right = if lo == hi {
            (hi + 1 < a.n).then_some(hi + 1)
        } else {
            Some(hi)
        };
        let (l, r) = (left?, right?);
        second_difference((v - a.value(l), f(l)), l0, (a.value(r) - v, f(r)))
    };
    sh.curvature_x = (by.0 == by.1)
        .then(|| along(&grid.x, rx, bx, &|i| at(i, by.0)))
        .flatten();
    sh.curvature_y = grid.y.and_then(|a| {
        (bx.0 == bx.1)
            .then(|| along(&a, ry, by, &|i| at(bx.0, i)))
            .flatten()
    });
    sh.reference_on_grid = bx.0 == bx.1 && by.0 == by.1;
    let level = l0 + epsilon;
    if grid.y.is_none() {
        // The line's points with the reference among them.
        let mut pts: Vec<(f64, f64)> = grid
            .x
            .values()
            .into_iter()
            .zip(loss.iter().copied())
            .collect();
        let c = if bx.0 == bx.1 {
            pts[bx.0].1 = l0;
            bx.0
        } else {
            pts.insert(bx.1, (rx, l0));
            bx.1
        };
        let (xs, ls): (Vec<f64>, Vec<f64>) = pts.into_iter().unzip();
        let (w, b) = width_1d(&xs, &ls, c, level);
        (sh.width, sh.bounded) = (Some(w), b);
    } else {
        let seeds: Vec<(usize, usize)> = [bx.0, bx.1]
            .into_iter()
            .flat_map(|x| [by.0, by.1].into_iter().map(move |y| (x, y)))
            .collect();
        let (a, b) = if l0 < level {
            area_2d(grid, loss, &seeds, level)
        } else {
            (0.0, true)
        };
        (sh.area, sh.bounded) = (Some(a), b);
    }
    sh
}

/// Length of the interval around index `c` of a 1-D curve (coordinates
/// `xs`) where `loss < level`, crossings linearly interpolated; the flag is
/// false when the interval reaches an end of the curve. 0 when `loss[c]` is
/// not below `level`.
pub fn width_1d(xs: &[f64], loss: &[f64], c: usize, level: f64) -> (f64, bool) {
    let below = |i: usize| loss[i] < level;
    if !below(c) {
        return (0.0, true);
    }
    let mut bounded = true;
    // Walk left and right to the first point at or above the level and
    // interpolate the crossing between it and its inner neighbour.
    let crossing = |inner: usize, outer: usize| {
        let (l1, l2) = (loss[inner], loss[outer]);
        let t = if l2.is_nan() || l2 == l1 {
            0.5
        } else {
            ((level - l1) / (l2 - l1)).clamp(0.0, 1.0)
        };
        xs[inner] + t * (xs[outer] - xs[inner])
    };
    let mut i = c;
    while i > 0 && below(i - 1) {
        i -= 1;
    }
    let left = if i == 0 {
        bounded = false;
        xs[0]
    } else {
        crossing(i, i - 1)
    };
    let mut j = c;
    while j + 1 < xs.len() && below(j + 1) {
        j += 1;
    }
    let right = if j + 1 == xs.len() {
        bounded = false;
        xs[j]
    } else {
        crossing(j, j + 1)
    };
    (right - left, bounded)
}

/// Area of the cells connected to the lattice points `seeds` (those below
/// `level`) where the loss is below `level`.
fn area_2d(grid: &Grid, loss: &[f64], seeds: &[(usize, usize)], level: f64) -> (f64, bool) {
    let (nx, ny) = (grid.nx(), grid.ny());
    let cell = grid.x.step() * grid.y.map_or(0.0, |y| y.step());
    let mut seen = vec![false; nx * ny];
    let mut stack = Vec::new();
    for &(x, y) in seeds {
        if !seen[y * nx + x] && loss[y * nx + x] < level {
            seen[y * nx + x] = true;
            stack.push((x, y));
        }
    }
    let (mut count, mut bounded) = (0usize, true);
    while let Some((x, y)) = stack.pop() {
        count += 1;
        if x == 0 || y == 0 || x + 1 == nx || y + 1 == ny {
            bounded = false;
        }
        let neighbours = [
            (x.wrapping_sub(1), y),
            (x + 1, y),
            (x, y.wrapping_sub(1)),
            (x, y + 1),
        ];
        for (a, b) in neighbours {
            if a < nx && b < ny && !seen[b * nx + a] && loss[b * nx + a] < level {
                seen[b * nx + a] = true;
                stack.push((a, b));
            }
        }
    }
    (count as f64 * cell, bounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_zero(_: &Grid, f: impl Fn(f64, f64) -> f64) -> Reference {
        Reference {
            at: [0.0, 0.0],
            loss: f(0.0, 0.0),
        }
    }

    fn lattice(grid: &Grid, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
        (0..grid.lattice_len())
            .map(|i| {
                let p = grid.point(i);
                f(p.x, p.y)
            })
            .collect()
    }

    #[test]
    fn parabola_1d() {
        let f = |x: f64, _: f64| 3.0 * x * x + 1.0;
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 41),
            y: None,
            reference: None,
        };
        let s = sharpness(&grid, &lattice(&grid, f), at_zero(&grid, f), "train", 0.75);
        assert!((s.curvature_x.unwrap() - 6.0).abs() < 1e-9);
        // 3x² < 0.75 ⇔ |x| < 0.5 → width 1 (linear interpolation error small)
        assert!((s.width.unwrap() - 1.0).abs() < 0.01, "{:?}", s.width);
        assert!(s.bounded && s.reference_on_grid);
        assert!((s.max_increase - 3.0).abs() < 1e-12);
    }

    #[test]
    fn an_off_lattice_reference_uses_its_own_value() {
        // Even grids lack 0: L0 is the value given for the reference, not a
        // neighbour's, and the curvature comes from the neighbours at ±1/3.
        let f = |x: f64, _: f64| 3.0 * x * x + 1.0;
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 4),
            y: None,
            reference: None,
        };
        let s = sharpness(&grid, &lattice(&grid, f), at_zero(&grid, f), "train", 0.75);
        assert_eq!(s.reference_loss, 1.0);
        assert!(!s.reference_on_grid);
        assert!(
            (s.curvature_x.unwrap() - 6.0).abs() < 1e-9,
            "{:?}",
            s.curvature_x
        );
        assert!((s.max_increase - 3.0).abs() < 1e-12);
        // Asymmetric neighbours: the second difference is still exact on a
        // parabola.
        let g5 = Grid {
            x: Axis::new(-1.0..=0.5, 4),
            y: None,
            reference: None,
        };
        let s = sharpness(&g5, &lattice(&g5, f), at_zero(&g5, f), "t", 0.1);
        assert!(
            (s.curvature_x.unwrap() - 6.0).abs() < 1e-9,
            "{:?}",
            s.curvature_x
        );
        // A single point at −1: the reference is outside its range.
        let one = Grid {
            x: Axis::new(-1.0..=-1.0, 1),
            y: None,
            reference: None,
        };
        let s = sharpness(&one, &[4.0], at_zero(&one, f), "t", 0.1);
        assert_eq!((s.reference_loss, s.max_increase), (1.0, 3.0));
        assert_eq!((s.curvature_x, s.width, s.bounded), (None, None, false));
    }

    #[test]
    fn bowl_2d_area() {
        let f = |x: f64, y: f64| x * x + y * y;
        for n in [81, 80] {
            let grid = Grid {
                x: Axis::new(-1.0..=1.0, n),
                y: Some(Axis::new(-1.0..=1.0, n)),
                reference: None,
            };
            let s = sharpness(&grid, &lattice(&grid, f), at_zero(&grid, f), "train", 0.25);
            // disc of radius 0.5: area π/4
            assert!(
                (s.area.unwrap() - std::f64::consts::FRAC_PI_4).abs() < 0.05,
                "{n}: {:?}",
                s.area
            );
            assert!(s.bounded);
            assert_eq!(s.reference_loss, 0.0);
            if n == 81 {
                assert!((s.curvature_y.unwrap() - 2.0).abs() < 1e-9);
            } else {
                // No lattice row through the reference: no curvature.
                assert_eq!((s.curvature_x, s.curvature_y), (None, None));
            }
        }
    }

    #[test]
    fn reference_outside_grid() {
        let grid = Grid {
            x: Axis::new(0.5..=1.0, 3),
            y: None,
            reference: None,
        };
        let r = Reference {
            at: [0.0, 0.0],
            loss: 0.0,
        };
        let s = sharpness(&grid, &[1.0, 2.0, 3.0], r, "t", 0.1);
        assert_eq!((s.width, s.curvature_x, s.max_increase), (None, None, 3.0));
        // The trained end of an interpolation, at the grid's edge.
        let line = Grid {
            x: Axis::new(0.0..=1.0, 5),
            y: None,
            reference: None,
        };
        let r = Reference {
            at: [1.0, 0.0],
            loss: 0.1,
        };
        let s = sharpness(&line, &[2.0, 1.0, 0.5, 0.2, 0.1], r, "t", 0.05);
        assert!(!s.bounded && s.curvature_x.is_none());
        assert_eq!((s.reference_loss, s.max_increase), (0.1, 1.9));
    }
}
