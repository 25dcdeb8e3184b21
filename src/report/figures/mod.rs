//! Figures drawn with plotters (no system libraries): line plots with an
//! optional second y axis, histograms, contour/heat maps with an optional
//! path on top, and bar charts. Each renders to PNG (for slides) and SVG
//! (inlined in the HTML report and written beside it for papers).
//!
//! Text uses DejaVu Sans, shipped in `assets/fonts` (Bitstream Vera licence).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use crate::error::{Error, Result};

const FONT: &str = "sans-serif";
static FONT_ONCE: Once = Once::new();

fn ensure_font() {
    FONT_ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_err() {
            tracing::error!("the bundled DejaVu Sans font could not be registered");
        }
    });
}

/// Colours for series, in order (Tableau 10).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points; non-finite y values break the line.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Dashed line (e.g. the test split).
    pub dashed: bool,
}

/// A line chart, optionally with a second y axis and vertical markers.
#[derive(Debug, Clone, Default)]
pub struct LinePlot {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// Left y-axis label.
    pub y_label: String,
    /// Series on the left axis.
    pub series: Vec<Series>,
    /// Right-axis label and series.
    pub y2: Option<(String, Vec<Series>)>,
    /// x positions of vertical markers (e.g. learning-rate drops), with a label.
    pub vlines: Vec<(f64, String)>,
    /// Logarithmic left axis.
    pub log_y: bool,
}

/// Overlaid histograms of several value sets.
#[derive(Debug, Clone, Default)]
pub struct HistogramPlot {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// (label, values) per set.
    pub sets: Vec<(String, Vec<f64>)>,
    /// Number of bins.
    pub bins: usize,
}

/// A 2-D field drawn as a heat map with contour lines, optionally with a
/// path (x, y, highlighted) on top.
#[derive(Debug, Clone, Default)]
pub struct ContourPlot {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// x coordinates of the columns (increasing).
    pub xs: Vec<f64>,
    /// y coordinates of the rows (increasing).
    pub ys: Vec<f64>,
    /// Values, row-major (`ys.len()` rows of `xs.len()`), NaN allowed.
    pub z: Vec<f64>,
    /// Contour levels (in the plotted scale); empty: no lines.
    pub levels: Vec<f64>,
    /// Colour scale (min, max), in the plotted scale.
    pub z_range: (f64, f64),
    /// Plot log10(z) instead of z.
    pub log: bool,
    /// Label of the colour bar.
    pub z_label: String,
    /// A path on top: (x, y, highlighted); highlighted points are red.
    pub path: Vec<(f64, f64, bool)>,
    /// Fill the background with the heat map (otherwise white).
    pub filled: bool,
}

/// A bar chart.
#[derive(Debug, Clone, Default)]
pub struct BarPlot {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// (label, value) bars.
    pub bars: Vec<(String, f64)>,
    /// An optional line over the bars (e.g. cumulative), same labels.
    pub line: Option<Vec<f64>>,
}

/// A drawable figure.
pub trait Figure {
    /// Draws onto any plotters backend.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

fn e<T: std::fmt::Debug>(err: T) -> String {
    format!("{err:?}")
}

/// Figure size in pixels.
pub const SIZE: (u32, u32) = (720, 480);

/// Renders `fig` to `dir/name.png` and `dir/name.svg`; returns the SVG text.
pub fn render(fig: &impl Figure, dir: &Path, name: &str) -> Result<String> {
    render_sized(fig, dir, name, SIZE)
}

/// [`render`] with a given size.
pub fn render_sized(fig: &impl Figure, dir: &Path, name: &str, size: (u32, u32)) -> Result<String> {
    ensure_font();
    let fail = |path: &Path, msg: String| Error::invalid(format!("figure {}", path.display()), msg);
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        fig.draw(&root).map_err(|m| fail(&png, m))?;
        root.present().map_err(|m| fail(&png, e(m)))?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        fig.draw(&root).map_err(|m| fail(&png, m))?;
        root.present().map_err(|m| fail(&png, e(m)))?;
    }
    let svg_path = dir.join(format!("{name}.svg"));
    std::fs::write(&svg_path, &svg).map_err(|err| Error::io("writing", &svg_path, err))?;
    Ok(svg)
}

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

fn no_data<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(e)?;
    root.draw(&Text::new(
        format!("{title}: no finite data"),
        (20, 20),
        (FONT, 18).into_font(),
    ))
    .map_err(e)?;
    Ok(())
}

fn segments(points: &[(f64, f64)], log: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &(x, y) in points {
        let y = if log { y.log10() } else { y };
        if y.is_finite() {
            out.last_mut().expect("non-empty").push((x, y));
        } else if !out.last().expect("non-empty").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

impl Figure for LinePlot {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let log = self.log_y;
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let Some(xr) = finite_range(
            all().map(|p| p.0).chain(
                self.y2
                    .iter()
                    .flat_map(|(_, s)| s.iter().flat_map(|s| s.points.iter().map(|p| p.0))),
            ),
        ) else {
            return no_data(root, &self.title);
        };
        let yr =
            finite_range(all().map(|p| if log { p.1.log10() } else { p.1 })).unwrap_or((0.0, 1.0));
        let (y0, y1) = pad(yr);
        root.fill(&WHITE).map_err(e)?;
        let mut cb = ChartBuilder::on(root);
        cb.caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64);
        if self.y2.is_some() {
            cb.right_y_label_area_size(64);
        }
        let y2r = self
            .y2
            .as_ref()
            .and_then(|(_, s)| finite_range(s.iter().flat_map(|s| s.points.iter().map(|p| p.1))))
            .map(pad)
            .unwrap_or((0.0, 1.0));
        let mut chart = cb
            .build_cartesian_2d(xr.0..xr.1, y0..y1)
            .map_err(e)?
            .set_secondary_coord(xr.0..xr.1, y2r.0..y2r.1);
        let y_label = if log {
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
        for (x, label) in &self.vlines {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, y0), (*x, y1)],
                    RED.mix(0.6).stroke_width(1),
                )))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, y1),
                    (FONT, 12).into_font().color(&RED),
                )))
                .map_err(e)?;
        }
        for s in &self.series {
            let color = PALETTE[s.color % PALETTE.len()];
            let style = color.stroke_width(2);
            for (k, seg) in segments(&s.points, log).into_iter().enumerate() {
                let series = if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(seg, 6, 4, style))
                        .map_err(e)?
                } else {
                    chart.draw_series(LineSeries::new(seg, style)).map_err(e)?
                };
                if k == 0 {
                    series.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        if let Some((label, series)) = &self.y2 {
            chart
                .configure_secondary_axes()
                .y_desc(label.as_str())
                .label_style((FONT, 13))
                .draw()
                .map_err(e)?;
            for s in series {
                let color = PALETTE[s.color % PALETTE.len()];
                for (k, seg) in segments(&s.points, false).into_iter().enumerate() {
                    let drawn = chart
                        .draw_secondary_series(DashedLineSeries::new(
                            seg,
                            3,
                            3,
                            color.stroke_width(2),
                        ))
                        .map_err(e)?;
                    if k == 0 {
                        drawn.label(s.name.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    }
                }
            }
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

impl Figure for HistogramPlot {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let Some((lo, hi)) = finite_range(self.sets.iter().flat_map(|s| s.1.iter().copied()))
        else {
            return no_data(root, &self.title);
        };
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f64;
        let counts: Vec<Vec<f64>> = self
            .sets
            .iter()
            .map(|(_, v)| {
                let mut c = vec![0.0; bins];
                let n = v.iter().filter(|x| x.is_finite()).count().max(1) as f64;
                for x in v.iter().filter(|x| x.is_finite()) {
                    let b = (((x - lo) / width) as usize).min(bins - 1);
                    c[b] += 1.0 / n;
                }
                c
            })
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
            let color = PALETTE[k % PALETTE.len()];
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
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

impl ContourPlot {
    /// The plotted value of a raw value (log10 when `log` is set).
    pub fn scale(&self, v: f64) -> f64 {
        if self.log {
            v.max(1e-300).log10()
        } else {
            v
        }
    }

    /// `n` levels over the finite range of the plotted values, spaced
    /// quadratically from the minimum so the basin around a minimizer gets
    /// as many lines as the walls (linear spacing when `linear`).
    pub fn auto_levels(values: &[f64], n: usize, linear: bool) -> Vec<f64> {
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
}

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

impl Figure for ContourPlot {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        if nx == 0 || ny == 0 || self.z.len() != nx * ny {
            return no_data(root, &self.title);
        }
        root.fill(&WHITE).map_err(e)?;
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 90);
        let (x0, x1) = (self.xs[0], self.xs[nx - 1]);
        let (y0, y1) = (self.ys[0], self.ys[ny - 1]);
        let (x0, x1) = if x0 == x1 {
            (x0 - 0.5, x1 + 0.5)
        } else {
            (x0, x1)
        };
        let (y0, y1) = if y0 == y1 {
            (y0 - 0.5, y1 + 0.5)
        } else {
            (y0, y1)
        };
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        let (zlo, zhi) = self.z_range;
        let half = |v: &[f64], i: usize| -> (f64, f64) {
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
        };
        if self.filled {
            let cells = (0..ny)
                .flat_map(|iy| (0..nx).map(move |ix| (ix, iy)))
                .filter_map(|(ix, iy)| {
                    let v = self.scale(self.z[iy * nx + ix]);
                    if !v.is_finite() {
                        return None;
                    }
                    let (xa, xb) = if nx == 1 {
                        (x0, x1)
                    } else {
                        half(&self.xs, ix)
                    };
                    let (ya, yb) = if ny == 1 {
                        (y0, y1)
                    } else {
                        half(&self.ys, iy)
                    };
                    let c = ViridisRGB::get_color_normalized(v.clamp(zlo, zhi), zlo, zhi);
                    Some(Rectangle::new([(xa, ya), (xb, yb)], c.filled()))
                });
            chart.draw_series(cells).map_err(e)?;
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
            let scaled: Vec<f64> = self
                .z
                .iter()
                .map(|&v| {
                    let s = self.scale(v);
                    // marching squares needs finite values; push NaN far above all levels
                    if s.is_finite() {
                        s
                    } else {
                        f64::MAX / 4.0
                    }
                })
                .collect();
            // contour-rs (like d3-contour) puts sample k at the centre of
            // cell k, i.e. at k + 0.5 in its coordinates; shift by half a
            // step so lines sit on the data's coordinates.
            let (dx, dy) = (
                (self.xs[nx - 1] - self.xs[0]) / (nx - 1) as f64,
                (self.ys[ny - 1] - self.ys[0]) / (ny - 1) as f64,
            );
            let builder = contour::ContourBuilder::new(nx, ny, true)
                .x_origin(self.xs[0] - dx / 2.0)
                .y_origin(self.ys[0] - dy / 2.0)
                .x_step(dx)
                .y_step(dy);
            let lines = builder.lines(&scaled, &self.levels).map_err(e)?;
            // The rings' closing segments run along the outer cell border.
            let (bx0, bx1, by0, by1) = (
                self.xs[0] - dx / 2.0,
                self.xs[nx - 1] + dx / 2.0,
                self.ys[0] - dy / 2.0,
                self.ys[ny - 1] + dy / 2.0,
            );
            let tol = 1e-9 * ((bx1 - bx0).abs() + (by1 - by0).abs());
            // Marching squares closes rings along the grid's border; those
            // pieces are not isolines.
            let on_border = |a: (f64, f64), b: (f64, f64)| {
                let same = |u: f64, v: f64, w: f64| (u - w).abs() <= tol && (v - w).abs() <= tol;
                same(a.0, b.0, bx0)
                    || same(a.0, b.0, bx1)
                    || same(a.1, b.1, by0)
                    || same(a.1, b.1, by1)
            };
            let mut placed: Vec<(f64, f64)> = Vec::new();
            let (sx, sy) = ((bx1 - bx0).abs().max(1e-12), (by1 - by0).abs().max(1e-12));
            for line in &lines {
                let color = if self.filled {
                    WHITE.mix(0.9)
                } else {
                    ViridisRGB::get_color_normalized(line.threshold().clamp(zlo, zhi), zlo, zhi)
                        .mix(1.0)
                };
                let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
                for ls in line.geometry().0.iter() {
                    let pts: Vec<(f64, f64)> = ls.0.iter().map(|c| (c.x, c.y)).collect();
                    let mut cur: Vec<(f64, f64)> = Vec::new();
                    for w in pts.windows(2) {
                        if on_border(w[0], w[1]) {
                            if cur.len() > 1 {
                                pieces.push(std::mem::take(&mut cur));
                            }
                            cur.clear();
                        } else {
                            if cur.is_empty() {
                                cur.push(w[0]);
                            }
                            cur.push(w[1]);
                        }
                    }
                    if cur.len() > 1 {
                        pieces.push(cur);
                    }
                }
                for piece in &pieces {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            piece.clone(),
                            color.stroke_width(1),
                        )))
                        .map_err(e)?;
                }
                // One label per level, at the point farthest from the border
                // and from the labels already placed.
                let score = |p: &(f64, f64)| {
                    let border = ((p.0 - bx0) / sx)
                        .min((bx1 - p.0) / sx)
                        .min((p.1 - by0) / sy)
                        .min((by1 - p.1) / sy);
                    let near = placed
                        .iter()
                        .map(|q| (((p.0 - q.0) / sx).powi(2) + ((p.1 - q.1) / sy).powi(2)).sqrt())
                        .fold(1.0, f64::min);
                    border.min(near)
                };
                if let Some(best) = pieces
                    .iter()
                    .flatten()
                    .max_by(|a, b| score(a).total_cmp(&score(b)))
                {
                    if score(best) > 0.04 {
                        placed.push(*best);
                        let style =
                            (FONT, 11)
                                .into_font()
                                .color(if self.filled { &WHITE } else { &BLACK });
                        chart
                            .draw_series(std::iter::once(Text::new(
                                fmt_level(line.threshold()),
                                *best,
                                style,
                            )))
                            .map_err(e)?;
                    }
                }
            }
        }
        if !self.path.is_empty() {
            let pts: Vec<(f64, f64)> = self.path.iter().map(|p| (p.0, p.1)).collect();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    pts.clone(),
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
        }
        // Colour bar.
        let (bw, bh) = bar.dim_in_pixel();
        let (top, bottom) = (40i32, bh as i32 - 50);
        let steps = 64;
        for i in 0..steps {
            let t0 = bottom - (bottom - top) * i / steps;
            let t1 = bottom - (bottom - top) * (i + 1) / steps;
            let v = zlo + (zhi - zlo) * (i as f64 + 0.5) / steps as f64;
            bar.draw(&Rectangle::new(
                [(10, t1), (30, t0)],
                ViridisRGB::get_color_normalized(v, zlo, zhi).filled(),
            ))
            .map_err(e)?;
        }
        for k in 0..=4 {
            let v = zlo + (zhi - zlo) * k as f64 / 4.0;
            let y = bottom - (bottom - top) * k / 4;
            bar.draw(&Text::new(fmt_level(v), (34, y - 6), (FONT, 11)))
                .map_err(e)?;
        }
        let label = if self.log {
            format!("log10 {}", self.z_label)
        } else {
            self.z_label.clone()
        };
        bar.draw(&Text::new(label, (4, 14), (FONT, 12)))
            .map_err(e)?;
        let _ = bw;
        Ok(())
    }
}

impl Figure for BarPlot {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        if self.bars.is_empty() {
            return no_data(root, &self.title);
        }
        let n = self.bars.len();
        let ymax = self
            .bars
            .iter()
            .map(|b| b.1)
            .chain(self.line.iter().flatten().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-12)
            * 1.1;
        root.fill(&WHITE).map_err(e)?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..ymax)
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
                    PALETTE[0].filled(),
                )
            }))
            .map_err(e)?;
        if let Some(line) = &self.line {
            chart
                .draw_series(LineSeries::new(
                    line.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                    PALETTE[1].stroke_width(2),
                ))
                .map_err(e)?;
            chart
                .draw_series(
                    line.iter()
                        .enumerate()
                        .map(|(i, v)| Circle::new((i as f64, *v), 3, PALETTE[1].filled())),
                )
                .map_err(e)?;
        }
        Ok(())
    }
}
