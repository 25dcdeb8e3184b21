//! Bar charts with labelled bars and an optional line over them.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{e, no_data, palette, DrawResult, Figure, FONT};

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
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        if self.bars.is_empty() {
            return no_data(root, &self.title);
        }
        let n = self.bars.len();
        root.fill(&WHITE).map_err(e)?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..self.y_max())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FONT, 13))
            .x_labels(n.min(20))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .light_line_style(RGBColor(235, 235, 235))
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
                .draw_series(LineSeries::new(points(), palette(1).stroke_width(2)))
                .map_err(e)?;
            chart
                .draw_series(points().map(|p| Circle::new(p, 3, palette(1).filled())))
                .map_err(e)?;
        }
        Ok(())
    }
}
