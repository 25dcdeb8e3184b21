//! Line charts: series on a left axis (optionally log10), an optional second
//! y axis on the right (dashed), vertical markers and a legend.

use plotters::chart::DualCoordChartContext;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_legend, e, finite_range, no_data, pad, palette, DrawResult, Figure, FONT};

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
    /// Right-axis label and series.
    pub(crate) y2: Option<(String, Vec<Series>)>,
    /// x positions of vertical markers (e.g. learning-rate drops), with a label.
    pub(crate) vlines: Vec<(f64, String)>,
    /// Logarithmic left axis.
    pub(crate) log_y: bool,
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
        let y2 = finite_range(points(self.right()).map(|p| p.1))
            .map(pad)
            .unwrap_or((0.0, 1.0));
        Some(Ranges { x, y: pad(y), y2 })
    }

    fn chart<'a, DB: DrawingBackend>(
        &self,
        root: &'a DrawingArea<DB, Shift>,
        r: &Ranges,
    ) -> Result<Chart<'a, DB>, String> {
        let mut cb = ChartBuilder::on(root);
        cb.caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64);
        if self.y2.is_some() {
            cb.right_y_label_area_size(64);
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
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(y_label.as_str())
            .label_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        Ok(chart)
    }

    fn draw_vlines<DB: DrawingBackend>(
        &self,
        chart: &mut Chart<'_, DB>,
        y: (f64, f64),
    ) -> DrawResult {
        for (x, label) in &self.vlines {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, y.0), (*x, y.1)],
                    RED.mix(0.6).stroke_width(1),
                )))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, y.1),
                    (FONT, 12).into_font().color(&RED),
                )))
                .map_err(e)?;
        }
        Ok(())
    }

    /// The left-axis series: solid, or dashed 6/4 when asked.
    fn draw_left<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> DrawResult {
        for s in &self.series {
            let color = palette(s.color);
            let style = color.stroke_width(2);
            for (k, seg) in segments(&s.points, self.log_y).into_iter().enumerate() {
                let drawn = if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(seg, 6, 4, style))
                        .map_err(e)?
                } else {
                    chart.draw_series(LineSeries::new(seg, style)).map_err(e)?
                };
                if k == 0 {
                    drawn.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        Ok(())
    }

    /// The right axis and its series, dashed 3/3.
    fn draw_right<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> DrawResult {
        let Some((label, series)) = &self.y2 else {
            return Ok(());
        };
        chart
            .configure_secondary_axes()
            .y_desc(label.as_str())
            .label_style((FONT, 13))
            .draw()
            .map_err(e)?;
        for s in series {
            let color = palette(s.color);
            for (k, seg) in segments(&s.points, false).into_iter().enumerate() {
                let drawn = chart
                    .draw_secondary_series(DashedLineSeries::new(seg, 3, 3, color.stroke_width(2)))
                    .map_err(e)?;
                if k == 0 {
                    drawn.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        Ok(())
    }
}

impl Figure for LinePlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let Some(ranges) = self.ranges() else {
            return no_data(root, &self.title);
        };
        root.fill(&WHITE).map_err(e)?;
        let mut chart = self.chart(root, &ranges)?;
        self.draw_vlines(&mut chart, ranges.y)?;
        self.draw_left(&mut chart)?;
        self.draw_right(&mut chart)?;
        draw_legend(&mut chart, Some(SeriesLabelPosition::UpperRight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
