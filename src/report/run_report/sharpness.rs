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
                    sh.split.clone(),
                    format!("{:.4}", sh.centre_loss),
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
    out.text("Curvature at the centre (central differences), width (1-D) or area (2-D) of the connected region around the centre where L < L(θ*) + ε, and the largest loss increase on the grid.");
    out.table(
        &[
            "surface",
            "split",
            "L(θ*)",
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
