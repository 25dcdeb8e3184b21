//! The "Sharpness" section: the sharpness figures stored with each 1-D and
//! 2-D surface, one row per surface and split.

use crate::analysis::surface::SurfaceResult;
use crate::report::fmt_opt;
use crate::report::output::Output;

pub(super) fn section(out: &mut Output, surfaces: &[(String, SurfaceResult)]) {
    out.section("sharpness", "Sharpness");
    let rows: Vec<Vec<String>> = surfaces
        .iter()
        .flat_map(|(name, s)| {
            s.sharpness.iter().map(move |sh| {
                vec![
                    name.clone(),
                    reference_cell(sh),
                    sh.split.clone(),
                    format!("{:.4}", sh.reference_loss),
                    fmt_opt(sh.curvature_x),
                    fmt_opt(sh.curvature_y),
                    fmt_opt(sh.width),
                    fmt_opt(sh.area),
                    format!("{:.4}", sh.max_increase),
                    if sh.bounded {
                        "yes".into()
                    } else {
                        "no (grid edge)".into()
                    },
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        out.missing(
            "No sharpness figures (they come with 1-D and 2-D surfaces).",
            "landscape demo",
        );
        return;
    }
    out.text("Measured at each surface's reference point (θ* of a slice; for an interpolation, the end that is the trained model): L0, the loss evaluated there (on its own when it is not a grid point), the curvature there (second differences with the nearest grid points on either side), the width (1-D) or area (2-D) of the connected region around it where L < L0 + ε, and the largest loss increase on the grid.");
    out.table(
        &[
            "surface",
            "reference point",
            "split",
            "L0 (loss there)",
            "d²L/dα²",
            "d²L/dβ²",
            "width",
            "area",
            "max increase",
            "bounded",
        ],
        &rows,
    );
}

/// The reference point of a sharpness row: what it is and where.
pub(crate) fn reference_cell(sh: &crate::analysis::sharpness::Sharpness) -> String {
    let [x, y] = sh.reference;
    let label = if sh.reference_label.is_empty() {
        "centre (file without a stored reference: L0 from the nearest grid point)".to_string()
    } else {
        sh.reference_label.clone()
    };
    // No "-0" when a coordinate is a negative zero.
    let show = |v: f64| format!("{}", v + 0.0);
    format!(
        "{label} at ({}, {}){}",
        show(x),
        show(y),
        if sh.reference_on_grid {
            ""
        } else {
            ", evaluated on its own"
        }
    )
}
