//! Overlaid histograms of several value sets, as fractions of each set.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_legend, e, finite_range, no_data, palette, DrawResult, Figure, FONT};

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
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let Some((lo, hi)) = finite_range(self.sets.iter().flat_map(|s| s.1.iter().copied()))
        else {
            return no_data(root, &self.title);
        };
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f64;
        let counts: Vec<Vec<f64>> = self
            .sets
            .iter()
            .map(|(_, v)| fractions(v, lo, width, bins))
            .collect();
        let ymax = counts.iter().flatten().cloned().fold(0.0, f64::max) * 1.08;
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, 0.0..ymax.max(1e-12))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc("fraction of values")
            .label_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        for (k, ((name, _), c)) in self.sets.iter().zip(&counts).enumerate() {
            let color = palette(k);
            chart
                .draw_series(c.iter().enumerate().map(|(b, &h)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, h)], color.mix(0.45).filled())
                }))
                .map_err(e)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.mix(0.6).filled())
                });
        }
        draw_legend(&mut chart, None)
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
