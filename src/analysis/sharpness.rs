//! Sharpness as numbers, computed from a finished filter-normalized slice:
//! curvature at the centre (central finite differences), the width (1-D) or
//! area (2-D) of the connected region around the centre where
//! loss < L(θ*) + ε, and the largest loss increase on the grid.

use serde::{Deserialize, Serialize};

use crate::analysis::grid::Grid;

/// Sharpness figures of one split on one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sharpness {
    /// The data split.
    pub split: String,
    /// ε of the sub-level set L < L(θ*) + ε.
    pub epsilon: f64,
    /// Loss at the grid point nearest the centre (0, 0).
    pub centre_loss: f64,
    /// d²L/dα² at the centre (central difference), when neighbours exist.
    pub curvature_x: Option<f64>,
    /// d²L/dβ² at the centre, for 2-D grids.
    pub curvature_y: Option<f64>,
    /// 1-D: length of the interval around the centre with L < L0 + ε
    /// (crossings linearly interpolated).
    pub width: Option<f64>,
    /// 2-D: area of the connected set of grid cells around the centre with
    /// L < L0 + ε (points × cell area).
    pub area: Option<f64>,
    /// False when the region reaches the grid's edge (the true width or area
    /// is then larger than reported).
    pub bounded: bool,
    /// max L − L0 over the grid (NaN points skipped).
    pub max_increase: f64,
}

/// Computes sharpness for `loss` (indexed like `grid`, NaN allowed). Returns
/// `None` when the grid does not contain the centre (0 outside a range).
pub fn sharpness(grid: &Grid, loss: &[f64], split: &str, epsilon: f64) -> Option<Sharpness> {
    let nearest = |a: &crate::analysis::grid::Axis| -> Option<usize> {
        if a.min > 0.0 || a.max < 0.0 {
            return None;
        }
        (0..a.n).min_by(|&i, &j| a.value(i).abs().total_cmp(&a.value(j).abs()))
    };
    let cx = nearest(&grid.x)?;
    let cy = match &grid.y {
        Some(y) => nearest(y)?,
        None => 0,
    };
    let (nx, ny) = (grid.nx(), grid.ny());
    let at = |ix: usize, iy: usize| loss[iy * nx + ix];
    let l0 = at(cx, cy);
    let second = |prev: Option<f64>, next: Option<f64>, h: f64| match (prev, next) {
        (Some(p), Some(n)) if h > 0.0 => Some((p - 2.0 * l0 + n) / (h * h)),
        _ => None,
    };
    let curvature_x = second(
        cx.checked_sub(1).map(|i| at(i, cy)),
        (cx + 1 < nx).then(|| at(cx + 1, cy)),
        grid.x.step(),
    );
    let curvature_y = grid.y.and_then(|y| {
        second(
            cy.checked_sub(1).map(|i| at(cx, i)),
            (cy + 1 < ny).then(|| at(cx, cy + 1)),
            y.step(),
        )
    });
    let level = l0 + epsilon;
    let max_increase = loss
        .iter()
        .filter(|v| !v.is_nan())
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v - l0));
    let (width, area, bounded) = if grid.y.is_none() {
        let (w, b) = width_1d(&grid.x.values(), loss, cx, level);
        (Some(w), None, b)
    } else {
        let (a, b) = area_2d(grid, loss, cx, cy, level);
        (None, Some(a), b)
    };
    Some(Sharpness {
        split: split.to_string(),
        epsilon,
        centre_loss: l0,
        curvature_x,
        curvature_y,
        width,
        area,
        bounded,
        max_increase,
    })
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

fn area_2d(grid: &Grid, loss: &[f64], cx: usize, cy: usize, level: f64) -> (f64, bool) {
    let (nx, ny) = (grid.nx(), grid.ny());
    let cell = grid.x.step() * grid.y.map_or(0.0, |y| y.step());
    if loss[cy * nx + cx].is_nan() || loss[cy * nx + cx] >= level {
        return (0.0, true);
    }
    let mut seen = vec![false; nx * ny];
    let mut stack = vec![(cx, cy)];
    seen[cy * nx + cx] = true;
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
    use crate::analysis::grid::Axis;

    #[test]
    fn parabola_1d() {
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 41),
            y: None,
        };
        let loss: Vec<f64> = grid.x.values().iter().map(|x| 3.0 * x * x + 1.0).collect();
        let s = sharpness(&grid, &loss, "train", 0.75).unwrap();
        assert!((s.curvature_x.unwrap() - 6.0).abs() < 1e-9);
        // 3x² < 0.75 ⇔ |x| < 0.5 → width 1 (linear interpolation error small)
        assert!((s.width.unwrap() - 1.0).abs() < 0.01, "{:?}", s.width);
        assert!(s.bounded);
        assert!((s.max_increase - 3.0).abs() < 1e-12);
    }

    #[test]
    fn bowl_2d_area() {
        let grid = Grid {
            x: Axis::new(-1.0..=1.0, 81),
            y: Some(Axis::new(-1.0..=1.0, 81)),
        };
        let loss: Vec<f64> = (0..grid.len())
            .map(|i| {
                let p = grid.point(i);
                p.x * p.x + p.y * p.y
            })
            .collect();
        let s = sharpness(&grid, &loss, "train", 0.25).unwrap();
        // disc of radius 0.5: area π/4
        assert!(
            (s.area.unwrap() - std::f64::consts::FRAC_PI_4).abs() < 0.03,
            "{:?}",
            s.area
        );
        assert!((s.curvature_y.unwrap() - 2.0).abs() < 1e-9);
        assert!(s.bounded);
    }

    #[test]
    fn centre_outside_grid() {
        let grid = Grid {
            x: Axis::new(0.5..=1.0, 3),
            y: None,
        };
        assert!(sharpness(&grid, &[1.0, 2.0, 3.0], "t", 0.1).is_none());
    }
}
