//! The "Curvature" section (paper Fig. 7): per curvature map, |λmin/λmax|
//! over its grid and the eigenvalues at the point nearest the centre; the
//! Hessians computed at one point (extreme eigenvalues, trace, spectral
//! density).

use crate::analysis::hessian::CurvatureMap;
use crate::error::Result;
use crate::report::figures::{ColourScale, ContourPlot, LinePlot, Series};
use crate::report::inputs::PointHessian;
use crate::report::output::Output;
use crate::report::{sanitize, RatioScale, ReportOptions};

/// The levels of |λmin/λmax| drawn as contours: 1 % and 5 %.
const RATIO_LEVELS: [f64; 2] = [0.01, 0.05];

/// The paper's fixed colour range of |λmin/λmax| (Li et al. 2018, Fig. 7).
const PAPER_RANGE: (f64, f64) = (0.0, 0.5);

pub(super) fn section(
    out: &mut Output,
    maps: &[(String, CurvatureMap)],
    points: &[(String, PointHessian)],
    opts: &ReportOptions,
) -> Result<()> {
    out.section("curvature", "Curvature (Hessian eigenvalues)");
    point_table(out, points);
    for (name, (rows, _)) in points {
        density_figure(out, name, rows)?;
    }
    if maps.is_empty() {
        out.missing(
            "No curvature map for this run.",
            "CurvatureMap over a grid → RUN_DIR/curvature/NAME (the demo computes a small one)",
        );
    }
    for (name, map) in maps {
        out.figs_start();
        ratio_figure(out, name, map, opts)?;
        out.figs_end();
        centre_table(out, map);
    }
    Ok(())
}

/// The file stem of the |λmin/λmax| figure of the map in
/// `RUN/curvature/NAME`: `curvature-NAME_ratio`, apart from every surface's
/// figures.
pub(crate) fn ratio_stem(name: &str) -> String {
    format!("curvature-{}_ratio", sanitize(name))
}

/// For a caption: which of [`RATIO_LEVELS`] the finite `values` cross
/// (a contour is drawn) and which they never reach.
fn crossings(values: &[f64]) -> String {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = (
        finite().fold(f64::INFINITY, f64::min),
        finite().fold(f64::NEG_INFINITY, f64::max),
    );
    let pct = |l: f64| format!("{} %", 100.0 * l);
    let (crossed, not): (Vec<f64>, Vec<f64>) =
        RATIO_LEVELS.iter().partition(|&&l| lo < l && l < hi);
    let mut parts = Vec::new();
    if !crossed.is_empty() {
        let v: Vec<String> = crossed.iter().map(|&l| pct(l)).collect();
        parts.push(format!("contours at {}", v.join(" and ")));
    }
    if !not.is_empty() {
        let v: Vec<String> = not.iter().map(|&l| pct(l)).collect();
        let side = if lo > hi {
            "no finite value".to_string()
        } else {
            format!(
                "the ratio ({}–{}) never crosses {}",
                fmt_ratio(lo),
                fmt_ratio(hi),
                v.join(" or ")
            )
        };
        parts.push(side);
    }
    parts.join("; ")
}

fn fmt_ratio(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else {
        format!("{v:.4}")
    }
}

/// |λmin/λmax| with contours at 1 % and 5 % (2-D maps only), coloured from
/// the data's range or the paper's fixed 0–0.5.
fn ratio_figure(
    out: &mut Output,
    name: &str,
    map: &CurvatureMap,
    opts: &ReportOptions,
) -> Result<()> {
    let g = map.grid();
    let Some(y) = g.y else {
        return Ok(());
    };
    let z = map.abs_ratio();
    let (colours, scale) = match opts.ratio_scale {
        RatioScale::Data => (
            ColourScale::of(z.iter().copied()),
            "colours span the map's own range",
        ),
        RatioScale::Paper => (
            ColourScale::new(PAPER_RANGE.0, PAPER_RANGE.1),
            "colours on the paper's fixed 0–0.5 scale",
        ),
    };
    let note = crossings(&z);
    let plot = ContourPlot {
        title: format!("{name}: |λmin / λmax|"),
        x_label: "α".into(),
        y_label: "β".into(),
        xs: g.x.values(),
        ys: y.values(),
        z,
        colours,
        z_label: "|λmin/λmax|".into(),
        filled: true,
        levels: RATIO_LEVELS.to_vec(),
        // The centre of the map's grid, θ*, as on the surfaces.
        reference: Some((0.0, 0.0)),
        ..Default::default()
    };
    let caption = format!(
        "{name}: |λmin/λmax| over α ∈ [{}, {}] × β ∈ [{}, {}] ({} × {} points); {scale}; {note}; near 0 (dark): locally convex; star: θ* (paper Fig. 7)",
        // `+ 0.0` turns a −0 bound into 0.
        g.x.min + 0.0,
        g.x.max + 0.0,
        y.min + 0.0,
        y.max + 0.0,
        g.x.n,
        y.n
    );
    out.plot(&plot, &ratio_stem(name), &caption)
}

/// λmin, λmax and their ratio at the computed point nearest (0, 0).
fn centre_table(out: &mut Output, map: &CurvatureMap) {
    let centre = map
        .points
        .iter()
        .min_by(|a, b| (a.x.abs() + a.y.abs()).total_cmp(&(b.x.abs() + b.y.abs())));
    if let Some(c) = centre {
        out.table(
            &["at", "λmin", "λmax", "|λmin/λmax|"],
            &[vec![
                format!("centre ({}, {})", c.x, c.y),
                format!("{:.5}", c.lambda_min),
                format!("{:.5}", c.lambda_max),
                format!("{:.4}", (c.lambda_min / c.lambda_max).abs()),
            ]],
        );
    }
}

/// One row per point Hessian: where, λmax, λmin, their ratio, the trace.
fn point_table(out: &mut Output, points: &[(String, PointHessian)]) {
    if points.is_empty() {
        return;
    }
    let value = |rows: &[crate::store::hessian::HessianRow], q: &str| {
        rows.iter()
            .find(|r| r.quantity == q)
            .map(|r| (r.value, r.aux))
    };
    let fmt =
        |v: Option<(f64, Option<f64>)>| v.map_or("–".to_string(), |(v, _)| format!("{v:.5}"));
    let table: Vec<Vec<String>> = points
        .iter()
        .map(|(name, (rows, settings))| {
            let (max, min) = (value(rows, "lambda_max"), value(rows, "lambda_min"));
            let ratio = match (max, min) {
                (Some((a, _)), Some((b, _))) if a != 0.0 => format!("{:.4}", (b / a).abs()),
                _ => "–".into(),
            };
            let trace = value(rows, "trace").map_or("–".to_string(), |(t, se)| {
                format!("{t:.4} ± {:.4}", se.unwrap_or(f64::NAN))
            });
            let setting = |k: &str| {
                settings
                    .get(k)
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            vec![
                name.clone(),
                format!(
                    "snapshot {} (epoch {})",
                    setting("snapshot"),
                    setting("epoch")
                ),
                fmt(max),
                fmt(min),
                ratio,
                trace,
                setting("selection"),
                setting("bn"),
            ]
        })
        .collect();
    out.table(
        &[
            "result",
            "at",
            "λmax",
            "λmin",
            "|λmin/λmax|",
            "trace",
            "parameters",
            "BatchNorm",
        ],
        &table,
    );
}

/// The spectral density of a point Hessian, when it was computed.
fn density_figure(
    out: &mut Output,
    name: &str,
    rows: &[crate::store::hessian::HessianRow],
) -> Result<()> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.quantity == "density")
        .filter_map(|r| r.aux.map(|x| (x, r.value)))
        .filter(|(x, v)| x.is_finite() && v.is_finite())
        .collect();
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max);
    if points.is_empty() || top <= 0.0 {
        return Ok(());
    }
    // Ten decades below the peak are drawn; lower values (the smoothing's
    // tails, zeros) break the line instead of lying on an invented floor.
    let floor = top * 1e-10;
    let points = points
        .into_iter()
        .map(|(x, v)| (x, if v >= floor { v } else { f64::NAN }))
        .collect();
    let plot = LinePlot {
        title: format!("{name}: Hessian eigenvalue density"),
        x_label: "eigenvalue".into(),
        y_label: "density".into(),
        series: vec![Series {
            name: "SLQ density".into(),
            points,
            color: 0,
            dashed: false,
        }],
        log_y: true,
        ..Default::default()
    };
    out.figs_start();
    out.plot(
        &plot,
        &format!("{}_density", sanitize(name)),
        "Eigenvalue density by stochastic Lanczos quadrature (Gaussian-smoothed)",
    )?;
    out.figs_end();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_say_which_levels_are_crossed() {
        let both = crossings(&[0.0, 0.02, 0.3, f64::NAN]);
        assert_eq!(both, "contours at 1 % and 5 %");
        let none = crossings(&[0.1, 0.3]);
        assert!(none.contains("never crosses 1 % or 5 %"), "{none}");
        let one = crossings(&[0.02, 0.3]);
        assert!(
            one.contains("contours at 5 %") && one.contains("never crosses 1 %"),
            "{one}"
        );
        assert_eq!(ratio_stem("a b"), "curvature-a_b_ratio");
    }
}
