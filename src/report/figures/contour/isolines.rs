//! Isolines of a gridded field by marching squares (the `contour` crate),
//! cut where marching squares closes its rings along the grid's border and
//! clipped to the samples' frame, and the placement of one label per
//! isoline.
//!
//! Marching squares treats the samples as cell centres and closes each ring
//! half a cell outside the outermost samples. The pieces that run from the
//! frame out to that border are not data: drawn unclipped (plotters does
//! not clip paths to the plot area) they were the short stubs sticking out
//! of every edge. They are clipped away here, at the frame of the samples.

use crate::report::figures::e;

/// The isoline of one level: polylines in data coordinates.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Isoline {
    /// The level (in the plotted scale).
    pub(super) level: f64,
    /// Pieces, each with two or more points.
    pub(super) pieces: Vec<Vec<(f64, f64)>>,
}

/// The outer border of the cells around the samples (each sample at the
/// centre of its cell), where marching squares closes its rings.
#[derive(Debug, Clone, Copy)]
struct Border {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Border {
    /// Needs two or more samples on each axis.
    fn around(xs: &[f64], ys: &[f64]) -> Border {
        let (nx, ny) = (xs.len(), ys.len());
        let dx = (xs[nx - 1] - xs[0]) / (nx - 1) as f64;
        let dy = (ys[ny - 1] - ys[0]) / (ny - 1) as f64;
        Border {
            x0: xs[0] - dx / 2.0,
            x1: xs[nx - 1] + dx / 2.0,
            y0: ys[0] - dy / 2.0,
            y1: ys[ny - 1] + dy / 2.0,
        }
    }

    /// The width and height (never zero).
    fn size(&self) -> (f64, f64) {
        (
            (self.x1 - self.x0).abs().max(1e-12),
            (self.y1 - self.y0).abs().max(1e-12),
        )
    }

    /// True when the segment a–b runs along the border.
    fn holds(&self, a: (f64, f64), b: (f64, f64)) -> bool {
        let (w, h) = self.size();
        let tol = 1e-9 * (w + h);
        let same = |u: f64, v: f64, at: f64| (u - at).abs() <= tol && (v - at).abs() <= tol;
        same(a.0, b.0, self.x0)
            || same(a.0, b.0, self.x1)
            || same(a.1, b.1, self.y0)
            || same(a.1, b.1, self.y1)
    }

    /// The pieces of the polyline `pts` off the border.
    fn split(&self, pts: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
        let mut pieces = Vec::new();
        let mut cur: Vec<(f64, f64)> = Vec::new();
        for w in pts.windows(2) {
            if self.holds(w[0], w[1]) {
                if cur.len() > 1 {
                    pieces.push(std::mem::take(&mut cur));
                }
                cur.clear();
            } else {
                if cur.is_empty() {
                    cur.push(w[0]);
                }
                cur.push(w[1]);
            }
        }
        if cur.len() > 1 {
            pieces.push(cur);
        }
        pieces
    }

    /// The distance of `p` to the border, as a fraction of the size.
    fn distance(&self, p: (f64, f64)) -> f64 {
        let (w, h) = self.size();
        ((p.0 - self.x0) / w)
            .min((self.x1 - p.0) / w)
            .min((p.1 - self.y0) / h)
            .min((self.y1 - p.1) / h)
    }
}

/// The samples' frame `[x0, x1] × [y0, y1]`, where pieces are clipped.
#[derive(Debug, Clone, Copy)]
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn of(xs: &[f64], ys: &[f64]) -> Frame {
        Frame {
            x0: xs[0].min(xs[xs.len() - 1]),
            x1: xs[0].max(xs[xs.len() - 1]),
            y0: ys[0].min(ys[ys.len() - 1]),
            y1: ys[0].max(ys[ys.len() - 1]),
        }
    }

    /// The part of the segment a–b inside the frame (Liang–Barsky), if any.
    fn clip(&self, a: (f64, f64), b: (f64, f64)) -> Option<((f64, f64), (f64, f64))> {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for (p, q) in [
            (-dx, a.0 - self.x0),
            (dx, self.x1 - a.0),
            (-dy, a.1 - self.y0),
            (dy, self.y1 - a.1),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return None;
                }
            } else {
                let r = q / p;
                if p < 0.0 {
                    t0 = t0.max(r);
                } else {
                    t1 = t1.min(r);
                }
            }
        }
        (t0 <= t1).then(|| {
            let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
            (at(t0), at(t1))
        })
    }

    /// The pieces of the polyline `pts` inside the frame; pieces of no
    /// length (a line touching the frame at a point) are dropped.
    fn cut(&self, pts: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
        let tol = 1e-9 * ((self.x1 - self.x0) + (self.y1 - self.y0)).max(1e-12);
        let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut cur: Vec<(f64, f64)> = Vec::new();
        let mut flush = |cur: &mut Vec<(f64, f64)>| {
            let len: f64 = cur
                .windows(2)
                .map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1))
                .sum();
            if cur.len() > 1 && len > tol {
                pieces.push(std::mem::take(cur));
            }
            cur.clear();
        };
        for w in pts.windows(2) {
            match self.clip(w[0], w[1]) {
                Some((a, b)) => {
                    let joined = cur
                        .last()
                        .is_some_and(|l| (l.0 - a.0).abs() <= tol && (l.1 - a.1).abs() <= tol);
                    if !joined {
                        flush(&mut cur);
                        cur.push(a);
                    }
                    // A clipped end on a sample repeats it: no zero-length step.
                    let repeat = cur
                        .last()
                        .is_some_and(|l| (l.0 - b.0).abs() <= tol && (l.1 - b.1).abs() <= tol);
                    if !repeat {
                        cur.push(b);
                    }
                }
                None => flush(&mut cur),
            }
        }
        flush(&mut cur);
        pieces
    }
}

/// The isolines of the row-major field `z` over `xs` × `ys` (two or more
/// samples on each axis) at `levels`. Non-finite values count as far above
/// every level, so lines go around them.
pub(super) fn isolines(
    xs: &[f64],
    ys: &[f64],
    z: &[f64],
    levels: &[f64],
) -> Result<Vec<Isoline>, String> {
    let (nx, ny) = (xs.len(), ys.len());
    let z: Vec<f64> = z
        .iter()
        .map(|&v| if v.is_finite() { v } else { f64::MAX / 4.0 })
        .collect();
    // contour-rs (like d3-contour) puts sample k at the centre of cell k,
    // i.e. at k + 0.5 in its coordinates; shift by half a step so lines sit
    // on the data's coordinates.
    let border = Border::around(xs, ys);
    let frame = Frame::of(xs, ys);
    let lines = contour::ContourBuilder::new(nx, ny, true)
        .x_origin(border.x0)
        .y_origin(border.y0)
        .x_step((xs[nx - 1] - xs[0]) / (nx - 1) as f64)
        .y_step((ys[ny - 1] - ys[0]) / (ny - 1) as f64)
        .lines(&z, levels)
        .map_err(e)?;
    Ok(lines
        .iter()
        .map(|line| Isoline {
            level: line.threshold(),
            pieces: line
                .geometry()
                .0
                .iter()
                .flat_map(|ls| {
                    let pts: Vec<(f64, f64)> = ls.0.iter().map(|c| (c.x, c.y)).collect();
                    border
                        .split(&pts)
                        .into_iter()
                        .flat_map(|piece| frame.cut(&piece))
                        .collect::<Vec<_>>()
                })
                .collect(),
        })
        .collect())
}

/// Places one label per isoline, at its point farthest from the border and
/// from the labels already placed (none closer than 4 % of the plot).
#[derive(Debug, Clone)]
pub(super) struct LabelPlacer {
    border: Border,
    placed: Vec<(f64, f64)>,
}

impl LabelPlacer {
    /// A placer for a field over `xs` × `ys` (two or more samples each).
    pub(super) fn new(xs: &[f64], ys: &[f64]) -> LabelPlacer {
        LabelPlacer {
            border: Border::around(xs, ys),
            placed: Vec::new(),
        }
    }

    fn score(&self, p: (f64, f64)) -> f64 {
        let (w, h) = self.border.size();
        let near = self
            .placed
            .iter()
            .map(|q| (((p.0 - q.0) / w).powi(2) + ((p.1 - q.1) / h).powi(2)).sqrt())
            .fold(1.0, f64::min);
        self.border.distance(p).min(near)
    }

    /// Where to put the label of the isoline made of `pieces`, if anywhere.
    pub(super) fn place(&mut self, pieces: &[Vec<(f64, f64)>]) -> Option<(f64, f64)> {
        let best = pieces
            .iter()
            .flatten()
            .copied()
            .max_by(|a, b| self.score(*a).total_cmp(&self.score(*b)))?;
        (self.score(best) > 0.04).then(|| {
            self.placed.push(best);
            best
        })
    }
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;

    use super::*;

    fn axis(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
            .collect()
    }

    fn field(f: impl Fn(f64, f64) -> f64, xs: &[f64], ys: &[f64]) -> Vec<f64> {
        ys.iter()
            .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    /// The points inside the data's frame [-1, 1]² (the chart clips the
    /// rest: marching squares cuts the corners of the padded grid).
    fn visible(line: &Isoline) -> Vec<(f64, f64)> {
        let inside = |p: &&(f64, f64)| p.0.abs() <= 1.0 && p.1.abs() <= 1.0;
        line.pieces
            .iter()
            .flatten()
            .filter(inside)
            .copied()
            .collect()
    }

    #[test]
    fn a_level_line_of_a_plane_is_straight_and_leaves_out_the_border() {
        let (xs, ys) = (axis(5), axis(5));
        let lines = isolines(&xs, &ys, &field(|x, _| x, &xs, &ys), &[0.25]).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].level, 0.25);
        let pts = visible(&lines[0]);
        assert_eq!(pts.len(), 5, "{:?}", lines[0].pieces);
        for p in pts {
            assert_abs_diff_eq!(p.0, 0.25, epsilon = 1e-12);
        }
        // No piece runs along the border, where the ring was closed.
        let border = Border::around(&xs, &ys);
        for piece in &lines[0].pieces {
            assert!(piece.windows(2).all(|w| !border.holds(w[0], w[1])));
        }
    }

    /// Every point of every piece lies in the samples' frame, and no piece
    /// is a stub: before the clipping, each edge of a tilted plane's grid had
    /// pieces reaching half a cell out of the frame.
    #[test]
    fn no_piece_leaves_the_frame_or_is_a_stub() {
        let (xs, ys) = (axis(7), axis(5));
        let z = field(|x, y| x + 0.6 * y + 0.3 * x * y, &xs, &ys);
        let levels: Vec<f64> = (-8..=8).map(|k| k as f64 * 0.2).collect();
        let lines = isolines(&xs, &ys, &z, &levels).unwrap();
        let mut n = 0;
        for line in &lines {
            for piece in &line.pieces {
                n += 1;
                for p in piece {
                    assert!(
                        p.0.abs() <= 1.0 + 1e-12 && p.1.abs() <= 1.0 + 1e-12,
                        "level {}: {p:?} outside the frame",
                        line.level
                    );
                }
                let len: f64 = piece
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1))
                    .sum();
                assert!(len > 0.05, "level {}: a stub {piece:?}", line.level);
            }
        }
        // Every level that crosses the field still has its line.
        assert!(n >= 15, "{n} pieces");
        // A clipped segment keeps its inner part.
        let f = Frame::of(&xs, &ys);
        assert_eq!(
            f.clip((0.0, 0.0), (2.0, 0.0)),
            Some(((0.0, 0.0), (1.0, 0.0)))
        );
        assert_eq!(f.clip((1.2, 0.0), (1.5, 0.0)), None);
    }

    #[test]
    fn a_bowl_has_a_closed_ring_and_goes_around_missing_values() {
        let (xs, ys) = (axis(9), axis(9));
        let mut z = field(|x, y| x * x + y * y, &xs, &ys);
        let closed = |line: &Isoline| -> Vec<Vec<(f64, f64)>> {
            let inner = |p: &Vec<(f64, f64)>| p.iter().all(|q| q.0.abs() < 1.0 && q.1.abs() < 1.0);
            line.pieces.iter().filter(|p| inner(p)).cloned().collect()
        };
        let lines = isolines(&xs, &ys, &z, &[0.5]).unwrap();
        let rings = closed(&lines[0]);
        assert_eq!(rings.len(), 1);
        assert_eq!(rings[0].first(), rings[0].last());
        for p in &rings[0] {
            let r = (p.0 * p.0 + p.1 * p.1).sqrt();
            assert!((r - 0.5f64.sqrt()).abs() < 0.1, "{p:?} at radius {r}");
        }
        // A NaN at the centre becomes a small peak inside the ring.
        z[4 * 9 + 4] = f64::NAN;
        let lines = isolines(&xs, &ys, &z, &[0.5]).unwrap();
        let rings = closed(&lines[0]);
        assert_eq!(rings.len(), 2);
        assert!(rings[1]
            .iter()
            .chain(&rings[0])
            .any(|p| p.0.abs() + p.1.abs() < 0.3));
    }

    #[test]
    fn labels_go_far_from_the_border_and_from_each_other() {
        let (xs, ys) = (axis(5), axis(5));
        let line: Vec<(f64, f64)> = ys.iter().map(|&y| (0.0, y)).collect();
        let mut placer = LabelPlacer::new(&xs, &ys);
        assert_eq!(placer.place(std::slice::from_ref(&line)), Some((0.0, 0.0)));
        let second = placer.place(std::slice::from_ref(&line)).unwrap();
        assert_eq!((second.0, second.1.abs()), (0.0, 0.5));
        assert_eq!(placer.place(&[]), None);
    }
}
