//! Contour and heat maps of a 2-D field: a Viridis heat map (optional),
//! labelled isolines, a path and marked points on top, the reference point
//! θ* as a star, a colour bar and a legend below the plot. The plot area is
//! square in data units when both axes span the same range (proportional,
//! within 1:3, otherwise). Non-finite values are left blank and kept out of
//! the colour scale and the levels.

mod isolines;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    draw_legend_strip, draw_marker, e, finite_range, fmt_level, fmt_tick, legend_height, no_data,
    ColourScale, DrawResult, Figure, LegendEntry, Marker, Px, Shape, FONT,
};
use crate::report::options::LevelSpacing;
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
    /// Marked points drawn last (over the path), each in the legend.
    pub(crate) markers: Vec<Marker>,
    /// The reference point θ*, drawn as a star labelled "θ*".
    pub(crate) reference: Option<(f64, f64)>,
    /// Legend label of the path (no legend entry when empty).
    pub(crate) path_label: String,
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

/// The most the plot area's width and height may differ by (either way).
const MAX_ASPECT: f64 = 3.0;

/// The plot area `(width, height)` within `avail` for data spans `dx` ×
/// `dy`: the same scale on both axes (square for equal spans), the ratio
/// kept within 1:[`MAX_ASPECT`].
fn plot_box(avail: (f64, f64), dx: f64, dy: f64) -> (f64, f64) {
    let r = if dx > 0.0 && dy > 0.0 && (dx / dy).is_finite() {
        (dx / dy).clamp(1.0 / MAX_ASPECT, MAX_ASPECT)
    } else {
        1.0
    };
    let w = avail.0.min(avail.1 * r).max(1.0);
    (w, (w / r).max(1.0))
}

impl LevelSpacing {
    /// The fraction of the range `[lo, hi]` of level `i` of `n` (1-based).
    fn at(self, i: usize, n: usize) -> f64 {
        let t = i as f64 / (n + 1) as f64;
        match self {
            LevelSpacing::Linear => t,
            LevelSpacing::Quadratic => t * t,
            LevelSpacing::Log => (1000f64.powf(t) - 1.0) / 999.0,
        }
    }

    /// How the spacing reads in a caption.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            LevelSpacing::Linear => "linearly spaced",
            LevelSpacing::Quadratic => "spaced quadratically above the minimum",
            LevelSpacing::Log => "spaced logarithmically above the minimum (3 decades)",
        }
    }

    /// The spacing used when none is asked for: quadratic on a linear
    /// scale, linear on a log10 scale.
    pub(crate) fn or_default(asked: Option<LevelSpacing>, log: bool) -> LevelSpacing {
        asked.unwrap_or(if log {
            LevelSpacing::Linear
        } else {
            LevelSpacing::Quadratic
        })
    }
}

impl ContourPlot {
    /// `n` levels over the finite range of the plotted values, spaced
    /// quadratically from the minimum so the basin around a minimizer gets
    /// as many lines as the walls (linear spacing when `linear`).
    pub(crate) fn auto_levels(values: &[f64], n: usize, linear: bool) -> Vec<f64> {
        let spacing = if linear {
            LevelSpacing::Linear
        } else {
            LevelSpacing::Quadratic
        };
        ContourPlot::spaced_levels(values, n, spacing)
    }

    /// `n` levels strictly inside the finite range of `values`, with the
    /// given spacing from the minimum.
    pub(crate) fn spaced_levels(values: &[f64], n: usize, spacing: LevelSpacing) -> Vec<f64> {
        match finite_range(values.iter().copied()) {
            Some((lo, hi)) => (1..=n).map(|i| lo + (hi - lo) * spacing.at(i, n)).collect(),
            None => Vec::new(),
        }
    }

    /// The plotted values of `z`.
    pub(crate) fn plotted_z(&self) -> Vec<f64> {
        self.z.iter().map(|&v| plotted(v, self.log)).collect()
    }

    /// Sets `n` automatic levels (quadratic from the minimum, linear on a
    /// log scale) and the colour scale over the finite plotted values.
    #[cfg(test)]
    pub(crate) fn auto_scale(self, n: usize) -> Self {
        self.auto_scale_spaced(n, None)
    }

    /// Sets `n` levels with `spacing` (default: see
    /// [`LevelSpacing::or_default`]) and the colour scale over the finite
    /// plotted values.
    pub(crate) fn auto_scale_spaced(mut self, n: usize, spacing: Option<LevelSpacing>) -> Self {
        let scaled = self.plotted_z();
        let spacing = LevelSpacing::or_default(spacing, self.log);
        self.levels = ContourPlot::spaced_levels(&scaled, n, spacing);
        self.colours = ColourScale::of(scaled.into_iter());
        self
    }

    /// The levels for a caption: "12 contour levels spaced … from 0.1 to
    /// 2.3 (log10 loss)", or that there are none.
    pub(crate) fn describe_levels(&self, spacing: LevelSpacing) -> String {
        let scale = if self.log {
            format!(" ({} on a log10 scale)", self.z_label)
        } else {
            String::new()
        };
        match (self.levels.first(), self.levels.last()) {
            (Some(a), Some(b)) => format!(
                "{} contour levels {} from {} to {}{scale}",
                self.levels.len(),
                spacing.describe(),
                fmt_level(*a),
                fmt_level(*b)
            ),
            _ => "no contour levels (no finite value)".into(),
        }
    }

    /// The drawn extent `(x0, x1, y0, y1)`: the grid, widened to take in
    /// the path, the markers and the reference point (non-empty on both axes).
    fn frame(&self) -> (f64, f64, f64, f64) {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let extra = self
            .path
            .iter()
            .map(|p| (p.0, p.1))
            .chain(self.markers.iter().map(|m| (m.x, m.y)));
        let (mut x0, mut x1, mut y0, mut y1) =
            (self.xs[0], self.xs[nx - 1], self.ys[0], self.ys[ny - 1]);
        for (x, y) in extra.filter(|p| p.0.is_finite() && p.1.is_finite()) {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let (x0, x1) = nonempty(x0, x1);
        let (y0, y1) = nonempty(y0, y1);
        (x0, x1, y0, y1)
    }

    /// The heat map: one rectangle per finite value.
    fn draw_cells<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> DrawResult {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let (x0, x1) = nonempty(self.xs[0], self.xs[nx - 1]);
        let (y0, y1) = nonempty(self.ys[0], self.ys[ny - 1]);
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
    fn draw_isolines<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>, px: Px) -> DrawResult {
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
                        color.stroke_width(px.u(1.0)),
                    )))
                    .map_err(e)?;
            }
            if let Some(at) = labels.place(&line.pieces) {
                let style = (FONT, px.f(11.0)).into_font().color(text);
                chart
                    .draw_series(std::iter::once(Text::new(fmt_level(line.level), at, style)))
                    .map_err(e)?;
            }
        }
        Ok(())
    }

    /// The path, black, with its points (highlighted ones red and larger).
    fn draw_path<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>, px: Px) -> DrawResult {
        if self.path.is_empty() {
            return Ok(());
        }
        let pts: Vec<(f64, f64)> = self.path.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(std::iter::once(PathElement::new(
                pts,
                BLACK.stroke_width(px.u(2.0)),
            )))
            .map_err(e)?;
        chart
            .draw_series(self.path.iter().map(|&(x, y, hi)| {
                Circle::new(
                    (x, y),
                    px.i(if hi { 5.0 } else { 3.0 }),
                    if hi { RED.filled() } else { BLACK.filled() },
                )
            }))
            .map_err(e)?;
        Ok(())
    }

    /// The markers, then the reference star labelled "θ*", on top of
    /// everything (pixel coordinates of `root`, the whole figure).
    fn draw_markers<DB: DrawingBackend>(
        &self,
        chart: &Chart<'_, DB>,
        root: &DrawingArea<DB, Shift>,
        px: Px,
    ) -> DrawResult {
        let o = root.get_base_pixel();
        let at = |x: f64, y: f64| {
            let p = chart.backend_coord(&(x, y));
            (p.0 - o.0, p.1 - o.1)
        };
        for m in self
            .markers
            .iter()
            .filter(|m| m.x.is_finite() && m.y.is_finite())
        {
            draw_marker(root, at(m.x, m.y), m.shape, m.colour, px)?;
        }
        if let Some((x, y)) = self
            .reference
            .filter(|r| r.0.is_finite() && r.1.is_finite())
        {
            let c = at(x, y);
            draw_marker(root, c, Shape::Star, RGBColor(230, 30, 30), px)?;
            let label = (c.0 + px.i(10.0), c.1 - px.i(24.0));
            root.draw(&Rectangle::new(
                [label, (label.0 + px.i(22.0), label.1 + px.i(18.0))],
                WHITE.mix(0.85).filled(),
            ))
            .map_err(e)?;
            let style = TextStyle::from((FONT, px.f(14.0)).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(
                "θ*",
                (label.0 + px.i(11.0), label.1 + px.i(9.0)),
                style,
            ))
            .map_err(e)?;
        }
        Ok(())
    }

    /// The legend: the path and the markers (one entry per label).
    fn legend(&self) -> Vec<LegendEntry> {
        let mut entries = Vec::new();
        if !self.path.is_empty() && !self.path_label.is_empty() {
            entries.push(LegendEntry::line(
                &self.path_label,
                BLACK,
                super::Dash::Solid,
                Some(Shape::Circle),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for m in &self.markers {
            if !seen.contains(&m.label.as_str()) {
                seen.push(&m.label);
                entries.push(LegendEntry::marker(&m.label, m.colour, m.shape));
            }
        }
        entries
    }

    /// The colour bar from pixel row `top` to `bottom` of `bar`, with five
    /// ticks and the (log10) value label.
    fn draw_colour_bar<DB: DrawingBackend>(
        &self,
        bar: &DrawingArea<DB, Shift>,
        (top, bottom): (i32, i32),
        px: Px,
    ) -> DrawResult {
        // The bar's label goes above the bar, inside the plot's height.
        let label_at = top + px.i(14.0);
        let top = top + px.i(22.0);
        let steps = 64;
        let (x0, x1) = (px.i(10.0), px.i(30.0));
        for i in 0..steps {
            let t0 = bottom - (bottom - top) * i / steps;
            let t1 = bottom - (bottom - top) * (i + 1) / steps;
            let v = self.colours.at((i as f64 + 0.5) / steps as f64);
            let c = self.colours.colour(v).unwrap_or(WHITE);
            bar.draw(&Rectangle::new([(x0, t1), (x1, t0)], c.filled()))
                .map_err(e)?;
        }
        let tick =
            TextStyle::from((FONT, px.f(11.0)).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for k in 0..=4 {
            let v = self.colours.at(k as f64 / 4.0);
            let y = bottom - (bottom - top) * k / 4;
            bar.draw(&PathElement::new(
                vec![(x1, y), (x1 + px.i(3.0), y)],
                BLACK.stroke_width(px.u(1.0)),
            ))
            .map_err(e)?;
            bar.draw(&Text::new(fmt_level(v), (x1 + px.i(5.0), y), tick.clone()))
                .map_err(e)?;
        }
        let label = if self.log {
            format!("log10 {}", self.z_label)
        } else {
            self.z_label.clone()
        };
        let style =
            TextStyle::from((FONT, px.f(12.0)).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
        bar.draw(&Text::new(label, (px.i(4.0), label_at), style))
            .map_err(e)
    }
}

impl Figure for ContourPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, px: Px) -> DrawResult {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let nothing = self.path.is_empty() && !self.z.iter().any(|v| v.is_finite());
        if nx == 0 || ny == 0 || self.z.len() != nx * ny || nothing {
            return no_data(root, &self.title, px);
        }
        root.fill(&WHITE).map_err(e)?;
        let entries = self.legend();
        let h = legend_height(root, &entries, px);
        let (upper, strip) = root.split_vertically(root.dim_in_pixel().1 - h);
        let body = upper.titled(&self.title, (FONT, px.f(20.0))).map_err(e)?;
        let (x0, x1, y0, y1) = self.frame();
        // Fixed parts: margins, label areas, the colour bar; the rest is
        // the plot area, shaped by the data's spans.
        let (m, ly, lx, bar_w) = (px.f(12.0), px.f(64.0), px.f(42.0), px.f(100.0));
        let (w, hb) = (body.dim_in_pixel().0 as f64, body.dim_in_pixel().1 as f64);
        let avail = (w - ly - bar_w - 2.0 * m, hb - lx - 2.0 * m);
        let (pw, ph) = plot_box(avail, x1 - x0, y1 - y0);
        let (ex, ey) = (
            ((avail.0 - pw) / 2.0).max(0.0),
            ((avail.1 - ph) / 2.0).max(0.0),
        );
        let split_at = (w - ex - bar_w).max(1.0) as u32;
        let (left, right) = body.split_horizontally(split_at);
        let area = left.margin(ey as u32, ey as u32, ex as u32, 0);
        let mut chart = ChartBuilder::on(&area)
            .margin(m as u32)
            .x_label_area_size(lx as u32)
            .y_label_area_size(ly as u32)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        if self.filled {
            self.draw_cells(&mut chart)?;
        }
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FONT, px.f(13.0)))
            .axis_desc_style((FONT, px.f(14.0)))
            .x_label_formatter(&|v| fmt_tick(*v, x1 - x0))
            .y_label_formatter(&|v| fmt_tick(*v, y1 - y0))
            .set_all_tick_mark_size(px.i(5.0))
            .axis_style(BLACK.stroke_width(px.u(1.0)))
            .disable_mesh()
            .draw()
            .map_err(e)?;
        if nx > 1 && ny > 1 && !self.levels.is_empty() {
            self.draw_isolines(&mut chart, px)?;
        }
        self.draw_path(&mut chart, px)?;
        self.draw_markers(&chart, root, px)?;
        let top = ey as i32 + m as i32;
        self.draw_colour_bar(&right, (top, top + ph as i32), px)?;
        if !entries.is_empty() {
            draw_legend_strip(&strip, &entries, px)?;
        }
        Ok(())
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
