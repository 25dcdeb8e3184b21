//! Bar charts with labelled bars and an optional line over them.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    draw_legend_strip, e, fmt_tick, legend_height, no_data, palette, Dash, DrawResult, Figure,
    LegendEntry, Px, FONT,
};

/// A bar chart.
#[derive(Debug, Clone, Default)]
pub(crate) struct BarPlot {
    /// Title.
    pub(crate) title: String,
    /// x-axis label.
    pub(crate) x_label: String,
    /// y-axis label.
    pub(crate) y_label: String,
    /// (label, value) bars.
    pub(crate) bars: Vec<(String, f64)>,
    /// An optional line over the bars (e.g. cumulative), same labels.
    pub(crate) line: Option<Vec<f64>>,
    /// Legend labels of the bars and of the line; empty: no legend.
    pub(crate) legend: Vec<String>,
}

impl BarPlot {
    /// The top of the y axis: 10 % above the largest finite value.
    fn y_max(&self) -> f64 {
        self.bars
            .iter()
            .map(|b| b.1)
            .chain(self.line.iter().flatten().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-12)
            * 1.1
    }
}

impl Figure for BarPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, px: Px) -> DrawResult {
        if self.bars.is_empty() {
            return no_data(root, &self.title, px);
        }
        let n = self.bars.len();
        root.fill(&WHITE).map_err(e)?;
        let mut entries = Vec::new();
        if let Some(l) = self.legend.first() {
            entries.push(LegendEntry::patch(l, palette(0)));
        }
        if let (Some(l), Some(_)) = (self.legend.get(1), &self.line) {
            entries.push(LegendEntry::line(
                l,
                palette(1),
                Dash::Solid,
                Some(super::Shape::Circle),
            ));
        }
        let h = legend_height(root, &entries, px);
        let (upper, strip) = root.split_vertically(root.dim_in_pixel().1 - h);
        let labels: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let y_max = self.y_max();
        let mut chart = ChartBuilder::on(&upper)
            .caption(&self.title, (FONT, px.f(20.0)))
            .margin(px.u(12.0))
            .x_label_area_size(px.u(42.0))
            .y_label_area_size(px.u(64.0))
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FONT, px.f(13.0)))
            .axis_desc_style((FONT, px.f(14.0)))
            .y_label_formatter(&|v| fmt_tick(*v, y_max))
            .set_all_tick_mark_size(px.i(5.0))
            .axis_style(BLACK.stroke_width(px.u(1.0)))
            .bold_line_style(RGBColor(225, 225, 225).stroke_width(px.u(1.0)))
            .x_labels(n.min(20))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .light_line_style(RGBColor(245, 245, 245).stroke_width(px.u(1.0)))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(self.bars.iter().enumerate().map(|(i, b)| {
                Rectangle::new(
                    [(i as f64 - 0.35, 0.0), (i as f64 + 0.35, b.1)],
                    palette(0).filled(),
                )
            }))
            .map_err(e)?;
        if let Some(line) = &self.line {
            let points = || line.iter().enumerate().map(|(i, v)| (i as f64, *v));
            chart
                .draw_series(LineSeries::new(
                    points(),
                    palette(1).stroke_width(px.u(2.0)),
                ))
                .map_err(e)?;
            chart
                .draw_series(points().map(|p| Circle::new(p, px.i(3.5), palette(1).filled())))
                .map_err(e)?;
        }
        if !entries.is_empty() {
            draw_legend_strip(&strip, &entries, px)?;
        }
        Ok(())
    }
}
