//! The "Curvature" section (paper Fig. 7): per curvature map, |λmin/λmax|
//! over its grid and the eigenvalues at the point nearest the centre; the
//! Hessians computed at one point (extreme eigenvalues, trace, spectral
//! density).

use crate::analysis::hessian::CurvatureMap;
use crate::error::Result;
use crate::report::figures::{ColourScale, ContourPlot, LinePlot, Series};
use crate::report::inputs::PointHessian;
use crate::report::output::Output;
use crate::report::sanitize;

pub(super) fn section(
    out: &mut Output,
    maps: &[(String, CurvatureMap)],
    points: &[(String, PointHessian)],
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
        ratio_figure(out, name, map)?;
        out.figs_end();
        centre_table(out, map);
    }
    Ok(())
}

/// |λmin/λmax| on a fixed 0–1 scale (2-D maps only).
fn ratio_figure(out: &mut Output, name: &str, map: &CurvatureMap) -> Result<()> {
    let g = map.grid();
    let Some(y) = g.y else {
        return Ok(());
    };
    let plot = ContourPlot {
        title: format!("{name}: |λmin / λmax|"),
        x_label: "α".into(),
        y_label: "β".into(),
        xs: g.x.values(),
        ys: y.values(),
        z: map.abs_ratio(),
        colours: ColourScale::new(0.0, 1.0),
        z_label: "|λmin/λmax|".into(),
        filled: true,
        levels: vec![0.05, 0.1, 0.25, 0.5],
        ..Default::default()
    };
    let stem = format!("{}_ratio", sanitize(name));
    out.plot(
        &plot,
        &stem,
        "Blue (near 0): locally convex; yellow: strong negative curvature (paper Fig. 7)",
    )
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
