//! Contour and heat maps of a 2-D field: a Viridis heat map (optional),
//! labelled isolines, a path with highlighted points on top, a colour bar.
//! Non-finite values are left blank and kept out of the colour scale and
//! the levels.

mod isolines;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{e, finite_range, fmt_level, no_data, ColourScale, DrawResult, Figure, FONT};
use isolines::{isolines, LabelPlacer};

/// A 2-D field drawn as a heat map with contour lines, optionally with a
/// path (x, y, highlighted) on top.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContourPlot {
    /// Title.
    pub(crate) title: String,
    /// x-axis label.
    pub(crate) x_label: String,
    /// y-axis label.
    pub(crate) y_label: String,
    /// x coordinates of the columns (increasing).
    pub(crate) xs: Vec<f64>,
    /// y coordinates of the rows (increasing).
    pub(crate) ys: Vec<f64>,
    /// Values, row-major (`ys.len()` rows of `xs.len()`), NaN allowed.
    pub(crate) z: Vec<f64>,
    /// Contour levels (in the plotted scale); empty: no lines.
    pub(crate) levels: Vec<f64>,
    /// Colour scale, in the plotted scale.
    pub(crate) colours: ColourScale,
    /// Plot log10(z) instead of z.
    pub(crate) log: bool,
    /// Label of the colour bar.
    pub(crate) z_label: String,
    /// A path on top: (x, y, highlighted); highlighted points are red.
    pub(crate) path: Vec<(f64, f64, bool)>,
    /// Fill the background with the heat map (otherwise white).
    pub(crate) filled: bool,
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The plotted value of a raw value: log10 when `log` (values ≤ 0 at
/// 10⁻³⁰⁰); non-finite values stay non-finite.
pub(crate) fn plotted(v: f64, log: bool) -> f64 {
    if log && v.is_finite() {
        v.max(1e-300).log10()
    } else {
        v
    }
}

/// `(lo, hi)` widened to a unit interval when empty.
fn nonempty(lo: f64, hi: f64) -> (f64, f64) {
    if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// The extent of cell `i` along axis `v`: halfway to its neighbours.
fn cell(v: &[f64], i: usize) -> (f64, f64) {
    let lo = if i == 0 {
        v[0]
    } else {
        (v[i - 1] + v[i]) / 2.0
    };
    let hi = if i + 1 == v.len() {
        v[i]
    } else {
        (v[i] + v[i + 1]) / 2.0
    };
    (lo, hi)
}

impl ContourPlot {
    /// `n` levels over the finite range of the plotted values, spaced
    /// quadratically from the minimum so the basin around a minimizer gets
    /// as many lines as the walls (linear spacing when `linear`).
    pub(crate) fn auto_levels(values: &[f64], n: usize, linear: bool) -> Vec<f64> {
        match finite_range(values.iter().copied()) {
            Some((lo, hi)) => (1..=n)
                .map(|i| {
                    let t = i as f64 / (n + 1) as f64;
                    lo + (hi - lo) * if linear { t } else { t * t }
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// The plotted values of `z`.
    pub(crate) fn plotted_z(&self) -> Vec<f64> {
        self.z.iter().map(|&v| plotted(v, self.log)).collect()
    }

    /// Sets `n` automatic levels (quadratic from the minimum, linear on a
    /// log scale) and the colour scale over the finite plotted values.
    pub(crate) fn auto_scale(mut self, n: usize) -> Self {
        let scaled = self.plotted_z();
        self.levels = ContourPlot::auto_levels(&scaled, n, self.log);
        self.colours = ColourScale::of(scaled.into_iter());
        self
    }

    /// The drawn extent `(x0, x1, y0, y1)` (non-empty on both axes).
    fn frame(&self) -> (f64, f64, f64, f64) {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let (x0, x1) = nonempty(self.xs[0], self.xs[nx - 1]);
        let (y0, y1) = nonempty(self.ys[0], self.ys[ny - 1]);
        (x0, x1, y0, y1)
    }

    /// The heat map: one rectangle per finite value.
    fn draw_cells<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> DrawResult {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let (x0, x1, y0, y1) = self.frame();
        let cells = (0..ny)
            .flat_map(|iy| (0..nx).map(move |ix| (ix, iy)))
            .filter_map(|(ix, iy)| {
                let c = self
                    .colours
                    .colour(plotted(self.z[iy * nx + ix], self.log))?;
                let (xa, xb) = if nx == 1 {
                    (x0, x1)
                } else {
                    cell(&self.xs, ix)
                };
                let (ya, yb) = if ny == 1 {
                    (y0, y1)
                } else {
                    cell(&self.ys, iy)
                };
                Some(Rectangle::new([(xa, ya), (xb, yb)], c.filled()))
            });
        chart.draw_series(cells).map_err(e)?;
        Ok(())
    }

    /// The isolines, white over a heat map or in their level's colour, each
    /// labelled once where it is farthest from the border and other labels.
    fn draw_isolines<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> DrawResult {
        let lines = isolines(&self.xs, &self.ys, &self.plotted_z(), &self.levels)?;
        let mut labels = LabelPlacer::new(&self.xs, &self.ys);
        let text = if self.filled { &WHITE } else { &BLACK };
        for line in &lines {
            let color = if self.filled {
                WHITE.mix(0.9)
            } else {
                self.colours.colour(line.level).unwrap_or(BLACK).mix(1.0)
            };
            for piece in &line.pieces {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        piece.clone(),
                        color.stroke_width(1),
                    )))
                    .map_err(e)?;
            }
            if let Some(at) = labels.place(&line.pieces) {
                let style = (FONT, 11).into_font().color(text);
                chart
                    .draw_series(std::iter::once(Text::new(fmt_level(line.level), at, style)))
                    .map_err(e)?;
            }
        }
        Ok(())
    }

    /// The path, black, with its points (highlighted ones red and larger).
    fn draw_path<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> DrawResult {
        if self.path.is_empty() {
            return Ok(());
        }
        let pts: Vec<(f64, f64)> = self.path.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(std::iter::once(PathElement::new(
                pts,
                BLACK.stroke_width(2),
            )))
            .map_err(e)?;
        chart
            .draw_series(self.path.iter().map(|&(x, y, hi)| {
                Circle::new(
                    (x, y),
                    if hi { 5 } else { 3 },
                    if hi { RED.filled() } else { BLACK.filled() },
                )
            }))
            .map_err(e)?;
        Ok(())
    }

    /// The colour bar with five ticks and the (log10) value label.
    fn draw_colour_bar<DB: DrawingBackend>(&self, bar: &DrawingArea<DB, Shift>) -> DrawResult {
        let (top, bottom) = (40i32, bar.dim_in_pixel().1 as i32 - 50);
        let steps = 64;
        for i in 0..steps {
            let t0 = bottom - (bottom - top) * i / steps;
            let t1 = bottom - (bottom - top) * (i + 1) / steps;
            let v = self.colours.at((i as f64 + 0.5) / steps as f64);
            let c = self.colours.colour(v).unwrap_or(WHITE);
            bar.draw(&Rectangle::new([(10, t1), (30, t0)], c.filled()))
                .map_err(e)?;
        }
        for k in 0..=4 {
            let v = self.colours.at(k as f64 / 4.0);
            let y = bottom - (bottom - top) * k / 4;
            bar.draw(&Text::new(fmt_level(v), (34, y - 6), (FONT, 11)))
                .map_err(e)?;
        }
        let label = if self.log {
            format!("log10 {}", self.z_label)
        } else {
            self.z_label.clone()
        };
        bar.draw(&Text::new(label, (4, 14), (FONT, 12))).map_err(e)
    }
}

impl Figure for ContourPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let nothing = self.path.is_empty() && !self.z.iter().any(|v| v.is_finite());
        if nx == 0 || ny == 0 || self.z.len() != nx * ny || nothing {
            return no_data(root, &self.title);
        }
        root.fill(&WHITE).map_err(e)?;
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 90);
        let (x0, x1, y0, y1) = self.frame();
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        if self.filled {
            self.draw_cells(&mut chart)?;
        }
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FONT, 13))
            .disable_mesh()
            .draw()
            .map_err(e)?;
        if nx > 1 && ny > 1 && !self.levels.is_empty() {
            self.draw_isolines(&mut chart)?;
        }
        self.draw_path(&mut chart)?;
        self.draw_colour_bar(&bar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plotted_values_keep_non_finite_values_out() {
        assert_eq!(plotted(100.0, true), 2.0);
        assert_eq!(plotted(0.0, true), -300.0);
        assert!(plotted(f64::NAN, true).is_nan());
        assert_eq!(plotted(f64::INFINITY, true), f64::INFINITY);
        assert_eq!(plotted(-3.0, false), -3.0);
    }

    #[test]
    fn auto_scale_ignores_non_finite_values() {
        let plot = ContourPlot {
            xs: vec![0.0, 1.0],
            ys: vec![0.0, 1.0],
            z: vec![1.0, f64::NAN, f64::INFINITY, 5.0],
            ..Default::default()
        }
        .auto_scale(3);
        assert_eq!((plot.colours.at(0.0), plot.colours.at(1.0)), (1.0, 5.0));
        // Quadratic from the minimum: 1 + 4 (i/4)², i = 1..3.
        assert_eq!(plot.levels, vec![1.25, 2.0, 3.25]);
        let log = ContourPlot {
            z: vec![10.0, 1000.0],
            log: true,
            ..Default::default()
        }
        .auto_scale(1);
        assert_eq!(log.levels, vec![2.0]);
    }

    #[test]
    fn cells_reach_halfway_to_their_neighbours() {
        let v = [0.0, 1.0, 3.0];
        assert_eq!(cell(&v, 0), (0.0, 0.5));
        assert_eq!(cell(&v, 1), (0.5, 2.0));
        assert_eq!(cell(&v, 2), (2.0, 3.0));
    }
}
