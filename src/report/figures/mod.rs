//! Figures drawn with plotters (no system libraries): line plots with an
//! optional second y axis, histograms, contour/heat maps with an optional
//! path on top, and bar charts. Each renders to PNG (for slides) and SVG
//! (inlined in the HTML report and written beside it for papers); both are
//! drawn in memory first and written atomically, so a final name never holds
//! a truncated figure.
//!
//! Text uses DejaVu Sans, shipped in `assets/fonts` (Bitstream Vera licence).

mod bar;
mod colour;
mod contour;
mod histogram;
mod line;
mod png;

use std::io::Write as _;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::store::fsutil::write_atomic;

pub(crate) use bar::BarPlot;
pub(crate) use colour::ColourScale;
pub(crate) use contour::{plotted, ContourPlot};
pub(crate) use histogram::HistogramPlot;
pub(crate) use line::{LinePlot, Series};

const FONT: &str = "sans-serif";
static FONT_ONCE: Once = Once::new();

fn ensure_font() {
    FONT_ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
        if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_err() {
            tracing::error!("the bundled DejaVu Sans font could not be registered");
        }
    });
}

/// Colours for series, in order (Tableau 10).
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The colour of series `i` (the palette repeats).
fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// What drawing a figure returns: plotters' errors as text.
type DrawResult = std::result::Result<(), String>;

/// A drawable figure.
pub(crate) trait Figure {
    /// Draws onto any plotters backend.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
}

fn e<T: std::fmt::Debug>(err: T) -> String {
    format!("{err:?}")
}

/// Figure size in pixels.
pub(crate) const SIZE: (u32, u32) = (720, 480);

/// Renders `fig` to `dir/name.png` and `dir/name.svg` (each written
/// atomically); returns the SVG text.
pub(crate) fn render(fig: &impl Figure, dir: &Path, name: &str) -> Result<String> {
    ensure_font();
    let png_path = dir.join(format!("{name}.png"));
    let svg_path = dir.join(format!("{name}.svg"));
    let drawing = |path: &Path, msg: String| Error::io("drawing", path, std::io::Error::other(msg));
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        fig.draw(&root).map_err(|m| drawing(&png_path, m))?;
        root.present().map_err(|m| drawing(&png_path, e(m)))?;
    }
    let png = png::encode_rgb(&rgb, SIZE).map_err(|err| Error::io("encoding", &png_path, err))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        fig.draw(&root).map_err(|m| drawing(&svg_path, m))?;
        root.present().map_err(|m| drawing(&svg_path, e(m)))?;
    }
    write_file(&png_path, png.as_slice())?;
    write_file(&svg_path, svg.as_bytes())?;
    Ok(svg)
}

/// Writes `bytes` to `path` atomically (temporary name, then rename).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, false, |w| {
        w.write_all(bytes)
            .map_err(|err| Error::io("writing", path, err))
    })
}

/// The finite range of `values`, widened to a unit interval around a single
/// value; `None` when no value is finite.
fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some(if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    })
}

fn pad((lo, hi): (f64, f64)) -> (f64, f64) {
    let d = (hi - lo) * 0.05;
    (lo - d, hi + d)
}

fn no_data<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    root.draw(&Text::new(
        format!("{title}: no finite data"),
        (20, 20),
        (FONT, 18).into_font(),
    ))
    .map_err(e)?;
    Ok(())
}

/// A level or tick value, short.
fn fmt_level(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The legend box, top right, used by every chart with a legend.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: Option<SeriesLabelPosition>,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    let mut labels = chart.configure_series_labels();
    labels
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200));
    if let Some(p) = position {
        labels.position(p);
    }
    labels.draw().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_range_skips_non_finite_and_widens_constants() {
        let v = [f64::NAN, 2.0, f64::INFINITY, -1.0, f64::NEG_INFINITY];
        assert_eq!(finite_range(v.into_iter()), Some((-1.0, 2.0)));
        assert_eq!(finite_range([3.0, 3.0].into_iter()), Some((2.5, 3.5)));
        assert_eq!(finite_range([f64::NAN].into_iter()), None);
    }

    #[test]
    fn figures_with_non_finite_values_render() {
        let dir = tempfile::tempdir().unwrap();
        let nan = f64::NAN;
        let z = vec![1.0, nan, f64::INFINITY, 2.0, 0.5, 3.0, nan, 1.5, 4.0];
        let xs = vec![-1.0, 0.0, 1.0];
        let plot = ContourPlot {
            xs: xs.clone(),
            ys: xs.clone(),
            z,
            log: true,
            filled: true,
            path: vec![(0.0, 0.0, true), (f64::NAN, 1.0, false)],
            ..Default::default()
        }
        .auto_scale(5);
        let svg = render(&plot, dir.path(), "c").unwrap();
        assert!(svg.contains("<svg"));
        let png = std::fs::read(dir.path().join("c.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Nothing finite: an empty heat map, no panic.
        let empty = ContourPlot {
            xs: xs.clone(),
            ys: xs,
            z: vec![nan; 9],
            filled: true,
            ..Default::default()
        }
        .auto_scale(5);
        assert!(render(&empty, dir.path(), "e").unwrap().contains("<svg"));
        let line = LinePlot {
            series: vec![Series {
                name: "l".into(),
                points: vec![(0.0, nan), (1.0, f64::INFINITY), (2.0, 1.0)],
                color: 0,
                dashed: false,
            }],
            log_y: true,
            ..Default::default()
        };
        render(&line, dir.path(), "l").unwrap();
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
