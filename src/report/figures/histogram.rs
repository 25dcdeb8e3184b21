//! Overlaid histograms of several value sets, as fractions of each set.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    draw_legend_strip, e, finite_range, fmt_tick, legend_height, no_data, palette, DrawResult,
    Figure, LegendEntry, Px, FONT,
};

/// Overlaid histograms of several value sets.
#[derive(Debug, Clone, Default)]
pub(crate) struct HistogramPlot {
    /// Title.
    pub(crate) title: String,
    /// x-axis label.
    pub(crate) x_label: String,
    /// (label, values) per set.
    pub(crate) sets: Vec<(String, Vec<f64>)>,
    /// Number of bins.
    pub(crate) bins: usize,
}

/// The fraction of the finite `values` in each of `bins` equal bins over
/// `[lo, lo + bins · width]` (the last bin includes its upper end).
fn fractions(values: &[f64], lo: f64, width: f64, bins: usize) -> Vec<f64> {
    let mut c = vec![0.0; bins];
    let finite = || values.iter().filter(|x| x.is_finite());
    let n = finite().count().max(1) as f64;
    for x in finite() {
        let b = (((x - lo) / width) as usize).min(bins - 1);
        c[b] += 1.0 / n;
    }
    c
}

impl Figure for HistogramPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, px: Px) -> DrawResult {
        let Some((lo, hi)) = finite_range(self.sets.iter().flat_map(|s| s.1.iter().copied()))
        else {
            return no_data(root, &self.title, px);
        };
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f64;
        let counts: Vec<Vec<f64>> = self
            .sets
            .iter()
            .map(|(_, v)| fractions(v, lo, width, bins))
            .collect();
        let ymax = counts.iter().flatten().cloned().fold(0.0, f64::max) * 1.08;
        let ymax = ymax.max(1e-12);
        root.fill(&WHITE).map_err(e)?;
        let entries: Vec<LegendEntry> = self
            .sets
            .iter()
            .enumerate()
            .map(|(k, (name, _))| LegendEntry::patch(name, palette(k)))
            .collect();
        let h = legend_height(root, &entries, px);
        let (upper, strip) = root.split_vertically(root.dim_in_pixel().1 - h);
        let mut chart = ChartBuilder::on(&upper)
            .caption(&self.title, (FONT, px.f(20.0)))
            .margin(px.u(12.0))
            .x_label_area_size(px.u(42.0))
            .y_label_area_size(px.u(64.0))
            .build_cartesian_2d(lo..hi, 0.0..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc("fraction of values")
            .label_style((FONT, px.f(13.0)))
            .axis_desc_style((FONT, px.f(14.0)))
            .x_label_formatter(&|v| fmt_tick(*v, hi - lo))
            .y_label_formatter(&|v| fmt_tick(*v, ymax))
            .set_all_tick_mark_size(px.i(5.0))
            .axis_style(BLACK.stroke_width(px.u(1.0)))
            .bold_line_style(RGBColor(225, 225, 225).stroke_width(px.u(1.0)))
            .light_line_style(RGBColor(245, 245, 245).stroke_width(px.u(1.0)))
            .draw()
            .map_err(e)?;
        for (k, c) in counts.iter().enumerate() {
            let color = palette(k);
            chart
                .draw_series(c.iter().enumerate().map(|(b, &h)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, h)], color.mix(0.45).filled())
                }))
                .map_err(e)?;
        }
        draw_legend_strip(&strip, &entries, px)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_sum_to_one_over_finite_values() {
        let v = [0.0, 0.1, 0.5, 0.9, 1.0, f64::NAN];
        let f = fractions(&v, 0.0, 0.5, 2);
        approx::assert_abs_diff_eq!(f[0], 0.4, epsilon = 1e-12);
        approx::assert_abs_diff_eq!(f[1], 0.6, epsilon = 1e-12);
        assert_eq!(fractions(&[f64::NAN], 0.0, 1.0, 3), vec![0.0; 3]);
    }
}
