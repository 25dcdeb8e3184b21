//! The "Curvature" section (paper Fig. 7): per curvature map, |λmin/λmax|
//! over its grid and the eigenvalues at the point nearest the centre.

use crate::analysis::hessian::CurvatureMap;
use crate::error::Result;
use crate::report::figures::{ColourScale, ContourPlot};
use crate::report::output::Output;
use crate::report::sanitize;

pub(super) fn section(out: &mut Output, maps: &[(String, CurvatureMap)]) -> Result<()> {
    out.section("curvature", "Curvature (Hessian eigenvalues)");
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
