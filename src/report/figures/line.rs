//! Line charts: series on a left axis (optionally log10), an optional second
//! y axis on the right (its series marked with points), vertical markers, a
//! reference line (θ*) and a legend below the plot, whose swatches are drawn
//! with each line's own dash and marker.

use plotters::chart::DualCoordChartContext;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    draw_dashed, draw_legend_strip, e, finite_range, fmt_tick, legend_height, no_data, pad,
    palette, Dash, DrawResult, Figure, LegendEntry, Px, Shape, FONT,
};

/// The range of an accuracy axis in percent: 0–100, so a drop is not
/// exaggerated by an axis fitted to the data.
pub(crate) const ACCURACY_RANGE: (f64, f64) = (0.0, 100.0);

/// The range of an accuracy axis for `series`: 0–100 when the values are
/// percentages (the largest finite value above 1, none above 100), 0–1 when
/// they are fractions, `None` (fitted to the data) otherwise.
pub(crate) fn accuracy_axis(series: &[Series]) -> Option<(f64, f64)> {
    let finite = || points(series).map(|p| p.1).filter(|v| v.is_finite());
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    if lo < 0.0 || hi > 100.0 || lo > hi {
        None
    } else if hi > 1.0 {
        Some(ACCURACY_RANGE)
    } else {
        Some((0.0, 1.0))
    }
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend label.
    pub(crate) name: String,
    /// Points; non-finite y values break the line.
    pub(crate) points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`](super::PALETTE).
    pub(crate) color: usize,
    /// Dashed line (e.g. the test split).
    pub(crate) dashed: bool,
}

impl Series {
    /// The dash of the series' line: 6/4 when dashed, else solid.
    fn dash(&self) -> Dash {
        if self.dashed {
            Dash::Dashed(6, 4)
        } else {
            Dash::Solid
        }
    }
}

/// A line chart, optionally with a second y axis and vertical markers.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinePlot {
    /// Title.
    pub(crate) title: String,
    /// x-axis label.
    pub(crate) x_label: String,
    /// Left y-axis label.
    pub(crate) y_label: String,
    /// Series on the left axis.
    pub(crate) series: Vec<Series>,
    /// Right-axis label and series (drawn with point markers, e.g. accuracy).
    pub(crate) y2: Option<(String, Vec<Series>)>,
    /// x positions of vertical markers (e.g. learning-rate drops), with a label.
    pub(crate) vlines: Vec<(f64, String)>,
    /// Logarithmic left axis.
    pub(crate) log_y: bool,
    /// A fixed range of the right axis (e.g. [`ACCURACY_RANGE`]); `None`:
    /// fitted to the data.
    pub(crate) y2_range: Option<(f64, f64)>,
    /// Reference positions on the x axis (e.g. θ* of a 1-D slice), drawn as
    /// grey dotted vertical lines with their label at the top.
    pub(crate) guides: Vec<(f64, String)>,
}

type Axes = Cartesian2d<RangedCoordf64, RangedCoordf64>;
type Chart<'a, DB> = DualCoordChartContext<'a, DB, Axes, Axes>;

/// The axes' ranges of a line plot.
struct Ranges {
    x: (f64, f64),
    y: (f64, f64),
    y2: (f64, f64),
}

/// The runs of finite points of `points` (log10 of y when `log`): a
/// non-finite value ends a run, so lines have gaps where values are missing.
fn segments(points: &[(f64, f64)], log: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for &(x, y) in points {
        let y = if log { y.log10() } else { y };
        match out.last_mut() {
            Some(run) if y.is_finite() => run.push((x, y)),
            Some(run) if !run.is_empty() => out.push(Vec::new()),
            _ => {}
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn points(series: &[Series]) -> impl Iterator<Item = &(f64, f64)> {
    series.iter().flat_map(|s| s.points.iter())
}

/// At most about 40 markers per series: every k-th point.
fn marker_stride(n: usize) -> usize {
    n.div_ceil(40).max(1)
}

impl LinePlot {
    fn right(&self) -> &[Series] {
        self.y2.as_ref().map_or(&[], |(_, s)| s.as_slice())
    }

    /// `None` when no x value is finite.
    fn ranges(&self) -> Option<Ranges> {
        let x = finite_range(
            points(&self.series)
                .chain(points(self.right()))
                .map(|p| p.0),
        )?;
        let log = self.log_y;
        let y = finite_range(points(&self.series).map(|p| if log { p.1.log10() } else { p.1 }))
            .unwrap_or((0.0, 1.0));
        let y2 = match self.y2_range {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => {
                let d = (hi - lo) * 0.03;
                (lo - d, hi + d)
            }
            _ => finite_range(points(self.right()).map(|p| p.1))
                .map(pad)
                .unwrap_or((0.0, 1.0)),
        };
        Some(Ranges { x, y: pad(y), y2 })
    }

    /// The legend: every series with its dash (right-axis series with their
    /// point marker), then the vertical markers and reference lines.
    fn legend(&self) -> Vec<LegendEntry> {
        let mut entries: Vec<LegendEntry> = self
            .series
            .iter()
            .map(|s| LegendEntry::line(&s.name, palette(s.color), s.dash(), None))
            .collect();
        entries.extend(
            self.right().iter().map(|s| {
                LegendEntry::line(&s.name, palette(s.color), s.dash(), Some(Shape::Circle))
            }),
        );
        let mut seen = Vec::new();
        for (_, label) in &self.vlines {
            if !seen.contains(label) {
                seen.push(label.clone());
                entries.push(LegendEntry::line(label, RED, Dash::Solid, None));
            }
        }
        for (_, label) in &self.guides {
            entries.push(LegendEntry::line(
                &format!("{label} (reference)"),
                RGBColor(90, 90, 90),
                Dash::Dashed(2, 3),
                None,
            ));
        }
        entries
    }

    fn chart<'a, DB: DrawingBackend>(
        &self,
        root: &'a DrawingArea<DB, Shift>,
        r: &Ranges,
        px: Px,
    ) -> Result<Chart<'a, DB>, String> {
        let mut cb = ChartBuilder::on(root);
        cb.caption(&self.title, (FONT, px.f(20.0)))
            .margin(px.u(12.0))
            .x_label_area_size(px.u(42.0))
            .y_label_area_size(px.u(64.0));
        if self.y2.is_some() {
            cb.right_y_label_area_size(px.u(64.0));
        }
        let mut chart = cb
            .build_cartesian_2d(r.x.0..r.x.1, r.y.0..r.y.1)
            .map_err(e)?
            .set_secondary_coord(r.x.0..r.x.1, r.y2.0..r.y2.1);
        let y_label = if self.log_y {
            format!("{} (log10)", self.y_label)
        } else {
            self.y_label.clone()
        };
        let (xs, ys) = (r.x.1 - r.x.0, r.y.1 - r.y.0);
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(y_label.as_str())
            .label_style((FONT, px.f(13.0)))
            .axis_desc_style((FONT, px.f(14.0)))
            .x_label_formatter(&|v| fmt_tick(*v, xs))
            .y_label_formatter(&|v| fmt_tick(*v, ys))
            .set_all_tick_mark_size(px.i(5.0))
            .axis_style(BLACK.stroke_width(px.u(1.0)))
            .bold_line_style(RGBColor(225, 225, 225).stroke_width(px.u(1.0)))
            .light_line_style(RGBColor(245, 245, 245).stroke_width(px.u(1.0)))
            .draw()
            .map_err(e)?;
        Ok(chart)
    }

    /// A vertical line at `x` over the full height, with `label` at the top.
    fn vline<DB: DrawingBackend>(
        chart: &Chart<'_, DB>,
        x: f64,
        y: (f64, f64),
        label: &str,
        (colour, dash): (RGBColor, Dash),
        px: Px,
    ) -> DrawResult {
        let (a, b) = (
            chart.backend_coord(&(x, y.0)),
            chart.backend_coord(&(x, y.1)),
        );
        let area = chart.plotting_area().strip_coord_spec();
        let o = area.get_base_pixel();
        let local = |p: (i32, i32)| (p.0 - o.0, p.1 - o.1);
        draw_dashed(
            &area,
            &[local(a), local(b)],
            dash,
            colour.mix(0.8).stroke_width(px.u(1.0)),
            px,
        )?;
        if label.is_empty() {
            return Ok(());
        }
        let style = (FONT, px.f(12.0)).into_font().color(&colour);
        area.draw(&Text::new(
            label.to_string(),
            (local(b).0 + px.i(3.0), local(b).1 + px.i(2.0)),
            style,
        ))
        .map_err(e)
    }

    /// The left-axis series: solid, or dashed 6/4 when asked.
    fn draw_left<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>, px: Px) -> DrawResult {
        for s in &self.series {
            let style = palette(s.color).stroke_width(px.u(2.0));
            for seg in segments(&s.points, self.log_y) {
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(seg, px.u(6.0), px.u(4.0), style))
                        .map_err(e)?;
                } else {
                    chart.draw_series(LineSeries::new(seg, style)).map_err(e)?;
                }
            }
        }
        Ok(())
    }

    /// The right axis and its series, with their dash and a point marker.
    fn draw_right<DB: DrawingBackend>(
        &self,
        chart: &mut Chart<'_, DB>,
        span: f64,
        px: Px,
    ) -> DrawResult {
        let Some((label, series)) = &self.y2 else {
            return Ok(());
        };
        chart
            .configure_secondary_axes()
            .y_desc(label.as_str())
            .label_style((FONT, px.f(13.0)))
            .axis_desc_style((FONT, px.f(14.0)))
            .y_label_formatter(&|v| fmt_tick(*v, span))
            .set_all_tick_mark_size(px.i(5.0))
            .axis_style(BLACK.stroke_width(px.u(1.0)))
            .draw()
            .map_err(e)?;
        for s in series {
            let color = palette(s.color);
            let style = color.stroke_width(px.u(2.0));
            for seg in segments(&s.points, false) {
                let stride = marker_stride(seg.len());
                let marks: Vec<(f64, f64)> = seg.iter().copied().step_by(stride).collect();
                if s.dashed {
                    chart
                        .draw_secondary_series(DashedLineSeries::new(
                            seg,
                            px.u(6.0),
                            px.u(4.0),
                            style,
                        ))
                        .map_err(e)?;
                } else {
                    chart
                        .draw_secondary_series(LineSeries::new(seg, style))
                        .map_err(e)?;
                }
                chart
                    .draw_secondary_series(
                        marks
                            .into_iter()
                            .map(|p| Circle::new(p, px.i(3.5), color.filled())),
                    )
                    .map_err(e)?;
            }
        }
        Ok(())
    }
}

impl Figure for LinePlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, px: Px) -> DrawResult {
        let Some(ranges) = self.ranges() else {
            return no_data(root, &self.title, px);
        };
        root.fill(&WHITE).map_err(e)?;
        let entries = self.legend();
        let h = legend_height(root, &entries, px);
        let (upper, strip) = root.split_vertically(root.dim_in_pixel().1 - h);
        let mut chart = self.chart(&upper, &ranges, px)?;
        for (x, label) in &self.guides {
            let grey = RGBColor(90, 90, 90);
            LinePlot::vline(&chart, *x, ranges.y, label, (grey, Dash::Dashed(2, 3)), px)?;
        }
        for (x, _) in &self.vlines {
            LinePlot::vline(&chart, *x, ranges.y, "", (RED, Dash::Solid), px)?;
        }
        self.draw_left(&mut chart, px)?;
        self.draw_right(&mut chart, ranges.y2.1 - ranges.y2.0, px)?;
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
    fn accuracy_axes_start_at_zero() {
        let s = |v: &[f64]| {
            vec![Series {
                name: "acc".into(),
                points: v.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(),
                color: 0,
                dashed: false,
            }]
        };
        assert_eq!(
            accuracy_axis(&s(&[85.0, 99.5, f64::NAN])),
            Some((0.0, 100.0))
        );
        assert_eq!(accuracy_axis(&s(&[0.85, 0.99])), Some((0.0, 1.0)));
        assert_eq!(accuracy_axis(&s(&[-1.0, 3.0])), None);
        assert_eq!(accuracy_axis(&s(&[])), None);
        let plot = LinePlot {
            series: s(&[1.0, 2.0]),
            y2: Some(("accuracy (%)".into(), s(&[80.0, 100.0]))),
            y2_range: Some(ACCURACY_RANGE),
            ..Default::default()
        };
        let r = plot.ranges().unwrap();
        assert!(r.y2.0 < 0.0 && r.y2.1 > 100.0, "{:?}", r.y2);
    }

    #[test]
    fn segments_break_at_non_finite_values() {
        let p = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 10.0),
            (3.0, 100.0),
            (4.0, f64::INFINITY),
        ];
        assert_eq!(
            segments(&p, false),
            vec![vec![(0.0, 1.0)], vec![(2.0, 10.0), (3.0, 100.0)]]
        );
        // log10 of a non-positive value is not finite either.
        let q = [(0.0, 10.0), (1.0, 0.0), (2.0, 100.0)];
        assert_eq!(segments(&q, true), vec![vec![(0.0, 1.0)], vec![(2.0, 2.0)]]);
    }
}
