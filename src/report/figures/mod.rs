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
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::report::options::SCALES;
use crate::store::fsutil::write_atomic;

pub(crate) use crate::report::options::LevelSpacing;
pub(crate) use bar::BarPlot;
pub(crate) use colour::ColourScale;
pub(crate) use contour::{plotted, ContourPlot};
pub(crate) use histogram::HistogramPlot;
pub(crate) use line::{accuracy_axis, LinePlot, Series, ACCURACY_RANGE};

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

/// The pixel scale of one rendering: every size in a figure (fonts, line
/// widths, margins, markers) is given at scale 1 (a 720 × 480 figure) and
/// multiplied by the scale, so a PNG at scale 2 looks the same, only sharper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Px(pub(crate) f64);

impl Px {
    /// `v` pixels at this scale, rounded.
    pub(crate) fn i(self, v: f64) -> i32 {
        (v * self.0).round() as i32
    }

    /// `v` pixels at this scale, rounded, at least 1.
    pub(crate) fn u(self, v: f64) -> u32 {
        (v * self.0).round().max(1.0) as u32
    }

    /// `v` pixels at this scale (font sizes).
    pub(crate) fn f(self, v: f64) -> f64 {
        v * self.0
    }
}

/// A drawable figure.
pub(crate) trait Figure {
    /// Draws onto any plotters backend, with sizes multiplied by `px`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, px: Px) -> DrawResult;
}

fn e<T: std::fmt::Debug>(err: T) -> String {
    format!("{err:?}")
}

/// Figure size in pixels at scale 1 (the SVG's size).
pub(crate) const SIZE: (u32, u32) = (720, 480);

/// Renders `fig` into an RGB buffer of `scale` × 720 × 480 pixels (scale 1
/// to 3, clamped); `path` names the file it is for in errors.
pub(crate) fn render_rgb(
    fig: &impl Figure,
    scale: u32,
    path: &Path,
) -> Result<(Vec<u8>, (u32, u32))> {
    ensure_font();
    let scale = scale.clamp(*SCALES.start(), *SCALES.end());
    let drawing = |msg: String| Error::io("drawing", path, std::io::Error::other(msg));
    let (w, h) = (SIZE.0 * scale, SIZE.1 * scale);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        fig.draw(&root, Px(scale as f64)).map_err(drawing)?;
        root.present().map_err(|m| drawing(e(m)))?;
    }
    Ok((rgb, (w, h)))
}

/// Renders `fig` to the PNG file `path` at `scale` (see [`render_rgb`]).
pub(crate) fn render_png(fig: &impl Figure, scale: u32, path: &Path) -> Result<()> {
    let (rgb, size) = render_rgb(fig, scale, path)?;
    let png = png::encode_rgb(&rgb, size).map_err(|err| Error::io("encoding", path, err))?;
    write_file(path, png.as_slice())
}

/// Renders `fig` to `dir/name.png`, `scale` × 720 × 480 pixels (scale 1 to
/// 3, clamped), and `dir/name.svg` (720 × 480 user units); returns the SVG
/// text.
pub(crate) fn render_scaled(
    fig: &impl Figure,
    dir: &Path,
    name: &str,
    scale: u32,
) -> Result<String> {
    let png_path = dir.join(format!("{name}.png"));
    let svg_path = dir.join(format!("{name}.svg"));
    let (rgb, size) = render_rgb(fig, scale, &png_path)?;
    let png = png::encode_rgb(&rgb, size).map_err(|err| Error::io("encoding", &png_path, err))?;
    let drawing = |msg: String| Error::io("drawing", &svg_path, std::io::Error::other(msg));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        fig.draw(&root, Px(1.0)).map_err(drawing)?;
        root.present().map_err(|m| drawing(e(m)))?;
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

fn no_data<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, px: Px) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    root.draw(&Text::new(
        format!("{title}: no finite data"),
        (px.i(20.0), px.i(20.0)),
        (FONT, px.f(18.0)).into_font(),
    ))
    .map_err(e)?;
    Ok(())
}

/// `s` without a minus sign in front of a zero ("-0", "-0.00", "-0.0e0"),
/// so no figure ever prints a negative zero.
fn no_negative_zero(s: String) -> String {
    match s.strip_prefix('-') {
        Some(rest)
            if rest
                .chars()
                .all(|c| matches!(c, '0' | '.' | 'e' | 'E' | '+' | '-')) =>
        {
            rest.to_string()
        }
        _ => s,
    }
}

/// A level or tick value, short; never a negative zero.
fn fmt_level(v: f64) -> String {
    let s = if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    no_negative_zero(s)
}

/// An axis tick label for an axis spanning `span`: as many decimals as a
/// tenth of the span needs, values within 10⁻⁹ of the span of zero printed
/// as "0", scientific notation for very large or small spans; never a
/// negative zero. Every figure's axes use it.
pub(crate) fn fmt_tick(v: f64, span: f64) -> String {
    let span = if span.is_finite() && span > 0.0 {
        span
    } else {
        1.0
    };
    if !v.is_finite() {
        return String::new();
    }
    if v.abs() <= span * 1e-9 {
        return "0".into();
    }
    let step = span / 10.0;
    let big = v.abs().max(span);
    let s = if big >= 1e5 || span < 1e-4 {
        format!("{v:.2e}")
    } else {
        let d = (-step.log10().floor()).clamp(0.0, 8.0) as usize;
        format!("{v:.d$}")
    };
    no_negative_zero(s)
}

/// A dash pattern of a line (on, off), in pixels at scale 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Dash {
    /// A solid line.
    Solid,
    /// Dashes `on` long, `off` apart.
    Dashed(u32, u32),
}

/// The shape of a point marker.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) enum Shape {
    /// A filled circle.
    #[default]
    Circle,
    /// An open circle (a ring).
    Ring,
    /// A filled square.
    Square,
    /// A filled triangle, point up.
    Triangle,
    /// A filled five-pointed star.
    Star,
}

/// A marked point of a 2-D figure (e.g. the start and end of a path), drawn
/// after everything else with a white outline and listed in the legend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    /// Position in data coordinates.
    pub(crate) x: f64,
    /// Position in data coordinates.
    pub(crate) y: f64,
    /// Shape.
    pub(crate) shape: Shape,
    /// Colour.
    pub(crate) colour: RGBColor,
    /// Legend label.
    pub(crate) label: String,
}

/// One legend entry: a line swatch (with its dash), a marker, or a patch.
#[derive(Debug, Clone)]
pub(crate) struct LegendEntry {
    label: String,
    colour: RGBColor,
    line: Option<Dash>,
    marker: Option<Shape>,
    patch: bool,
}

impl LegendEntry {
    /// A line swatch drawn with the line's own dash, with an optional marker.
    pub(crate) fn line(label: &str, colour: RGBColor, dash: Dash, marker: Option<Shape>) -> Self {
        LegendEntry {
            label: label.to_string(),
            colour,
            line: Some(dash),
            marker,
            patch: false,
        }
    }

    /// A marker alone.
    pub(crate) fn marker(label: &str, colour: RGBColor, shape: Shape) -> Self {
        LegendEntry {
            label: label.to_string(),
            colour,
            line: None,
            marker: Some(shape),
            patch: false,
        }
    }

    /// A filled patch (bars, histograms).
    pub(crate) fn patch(label: &str, colour: RGBColor) -> Self {
        LegendEntry {
            label: label.to_string(),
            colour,
            line: None,
            marker: None,
            patch: true,
        }
    }
}

/// Legend layout: the swatch width, gaps and row height at scale 1.
const SWATCH: f64 = 28.0;
const LEGEND_FONT: f64 = 13.0;
const LEGEND_ROW: f64 = 20.0;

/// The rows of `entries` laid out left to right within `width` pixels.
fn legend_rows<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    width: i32,
    px: Px,
) -> Vec<Vec<(usize, i32)>> {
    let font: TextStyle = (FONT, px.f(LEGEND_FONT)).into_font().into();
    let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut x = 0;
    for (k, entry) in entries.iter().enumerate() {
        let text = area
            .estimate_text_size(&entry.label, &font)
            .map(|(w, _)| w as i32)
            .unwrap_or(px.i(7.0 * entry.label.chars().count() as f64));
        let w = px.i(SWATCH + 6.0) + text + px.i(18.0);
        if x > 0 && x + w > width {
            rows.push(Vec::new());
            x = 0;
        }
        if let Some(row) = rows.last_mut() {
            row.push((k, x));
        }
        x += w;
    }
    rows.retain(|r| !r.is_empty());
    rows
}

/// The height of the legend strip of `entries` under a figure of `root`'s
/// width (0 when there is no entry).
pub(crate) fn legend_height<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    px: Px,
) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let width = root.dim_in_pixel().0 as i32 - px.i(24.0);
    let rows = legend_rows(root, entries, width, px).len() as f64;
    px.u(rows * LEGEND_ROW + 8.0)
}

/// Draws `entries` in rows across `area` (a strip below the plot, so the
/// legend never covers data).
pub(crate) fn draw_legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    px: Px,
) -> DrawResult {
    let width = area.dim_in_pixel().0 as i32 - px.i(24.0);
    let rows = legend_rows(area, entries, width, px);
    let row_w = |row: &Vec<(usize, i32)>| {
        row.last().map_or(0, |&(k, x)| {
            let font: TextStyle = (FONT, px.f(LEGEND_FONT)).into_font().into();
            let t = area
                .estimate_text_size(&entries[k].label, &font)
                .map(|(w, _)| w as i32)
                .unwrap_or(0);
            x + px.i(SWATCH + 6.0) + t
        })
    };
    for (r, row) in rows.iter().enumerate() {
        let left = (area.dim_in_pixel().0 as i32 - row_w(row)) / 2;
        let y = px.i(4.0 + LEGEND_ROW * (r as f64 + 0.5));
        for &(k, x) in row {
            let entry = &entries[k];
            let x = left + x;
            draw_swatch(area, entry, (x, y), px)?;
            let style = TextStyle::from((FONT, px.f(LEGEND_FONT)).into_font())
                .pos(Pos::new(HPos::Left, VPos::Center));
            area.draw(&Text::new(
                entry.label.clone(),
                (x + px.i(SWATCH + 6.0), y),
                style,
            ))
            .map_err(e)?;
        }
    }
    Ok(())
}

/// The swatch of one legend entry, its left end at `(x, y)`.
fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entry: &LegendEntry,
    (x, y): (i32, i32),
    px: Px,
) -> DrawResult {
    let w = px.i(SWATCH);
    if entry.patch {
        let r = Rectangle::new(
            [
                (x + px.i(4.0), y - px.i(6.0)),
                (x + w - px.i(4.0), y + px.i(6.0)),
            ],
            entry.colour.mix(0.6).filled(),
        );
        area.draw(&r).map_err(e)?;
    }
    if let Some(dash) = entry.line {
        draw_dashed(
            area,
            &[(x, y), (x + w, y)],
            dash,
            entry.colour.stroke_width(px.u(2.0)),
            px,
        )?;
    }
    match (entry.marker, entry.line) {
        // A line's point markers: small, as on the line.
        (Some(_), Some(_)) => {
            let dot = Circle::new((x + w / 2, y), px.i(3.5), entry.colour.filled());
            area.draw(&dot).map_err(e)?;
        }
        (Some(shape), None) => draw_marker(area, (x + w / 2, y), shape, entry.colour, px)?,
        _ => {}
    }
    Ok(())
}

/// A polyline in pixel coordinates of `area`, with `dash` (scaled by `px`).
pub(crate) fn draw_dashed<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pts: &[(i32, i32)],
    dash: Dash,
    style: ShapeStyle,
    px: Px,
) -> DrawResult {
    let (on, off) = match dash {
        Dash::Solid => {
            return area.draw(&PathElement::new(pts.to_vec(), style)).map_err(e);
        }
        Dash::Dashed(on, off) => (px.f(on as f64), px.f(off as f64)),
    };
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
        let len = (dx * dx + dy * dy).sqrt();
        let mut t = 0.0;
        while t < len {
            let t1 = (t + on).min(len);
            let at = |s: f64| {
                (
                    a.0 + (dx * s / len).round() as i32,
                    a.1 + (dy * s / len).round() as i32,
                )
            };
            area.draw(&PathElement::new(vec![at(t), at(t1)], style))
                .map_err(e)?;
            t = t1 + off;
        }
    }
    Ok(())
}

/// A marker of `shape` centred at pixel `c` of `area`, with a white outline
/// so it stays visible over lines, heat maps and other markers.
pub(crate) fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: (i32, i32),
    shape: Shape,
    colour: RGBColor,
    px: Px,
) -> DrawResult {
    let r = px.f(6.0);
    let at = |pts: &[(f64, f64)], k: f64| -> Vec<(i32, i32)> {
        pts.iter()
            .map(|(x, y)| {
                (
                    c.0 + (x * r * k).round() as i32,
                    c.1 + (y * r * k).round() as i32,
                )
            })
            .collect()
    };
    let outline = WHITE.stroke_width(px.u(1.5));
    let polygon = |pts: &[(f64, f64)]| -> DrawResult {
        let big = at(pts, 1.0);
        let mut ring = big.clone();
        ring.push(big[0]);
        area.draw(&Polygon::new(big, colour.filled())).map_err(e)?;
        area.draw(&PathElement::new(ring, outline)).map_err(e)
    };
    match shape {
        Shape::Circle => {
            area.draw(&Circle::new(c, r as i32, colour.filled()))
                .map_err(e)?;
            area.draw(&Circle::new(c, r as i32, outline)).map_err(e)
        }
        Shape::Ring => {
            area.draw(&Circle::new(
                c,
                (r * 1.4) as i32,
                WHITE.stroke_width(px.u(4.5)),
            ))
            .map_err(e)?;
            area.draw(&Circle::new(
                c,
                (r * 1.4) as i32,
                colour.stroke_width(px.u(2.5)),
            ))
            .map_err(e)
        }
        Shape::Square => polygon(&[(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
        Shape::Triangle => polygon(&[(0.0, -1.2), (1.05, 0.75), (-1.05, 0.75)]),
        Shape::Star => {
            let pts: Vec<(f64, f64)> = (0..10)
                .map(|k| {
                    let a = std::f64::consts::PI * (k as f64 / 5.0 - 0.5);
                    let rr = if k % 2 == 0 { 1.5 } else { 0.6 };
                    (rr * a.cos(), rr * a.sin())
                })
                .collect();
            polygon(&pts)
        }
    }
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
        let svg = render_scaled(&plot, dir.path(), "c", 1).unwrap();
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
        assert!(render_scaled(&empty, dir.path(), "e", 1)
            .unwrap()
            .contains("<svg"));
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
        render_scaled(&line, dir.path(), "l", 2).unwrap();
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
