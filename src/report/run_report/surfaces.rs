//! The "Loss surfaces" section: per surface, a 1-D slice (loss and
//! accuracy, paper Figs. 2a, 3) or, per split of a 2-D surface, contour
//! lines and a heat map (Figs. 1, 5), plus an interactive 3-D view of the
//! first split. Every figure marks the reference point θ*
//! ([`reference_point`]); the axes of surfaces on a PCA plane read
//! "PC1: 85.0 %" ([`axis_labels`]).

use crate::analysis::directions::{DirectionKind, DirectionsMeta};
use crate::analysis::pca::PcaSummary;
use crate::analysis::surface::SurfaceResult;
use crate::error::Result;
use crate::report::figures::{
    accuracy_axis, ContourPlot, LevelSpacing, LinePlot, Series, ACCURACY_RANGE,
};
use crate::report::output::Output;
use crate::report::{non_finite_note, sanitize, ReportOptions};

/// One surface and how to draw it.
struct Drawn<'a> {
    name: &'a str,
    stem: String,
    surface: &'a SurfaceResult,
    opts: &'a ReportOptions,
    /// The run's trajectory PCA, for the axis labels of PCA planes.
    pca: Option<&'a PcaSummary>,
}

/// The reference point of a surface in its grid coordinates (α, β; β is 0
/// on a 1-D slice): θ*, or for an interpolation the trained end (stored
/// with the result, [`SurfaceResult::reference`]).
pub(crate) fn reference_point(s: &SurfaceResult) -> Option<(f64, f64)> {
    let [x, y] = s.reference();
    Some((x, y))
}

/// The explained variance ratios of a PCA plane's two directions: from the
/// directions' metadata (`pca.explained_variance_ratio`), else from the
/// run's `pca/pca.json`. `None` for other directions.
pub(crate) fn pca_ratios(s: &SurfaceResult, pca: Option<&PcaSummary>) -> Option<Vec<f64>> {
    let d = &s.spec.directions;
    if d.kind != DirectionKind::Pca {
        return None;
    }
    d.extra
        .get("pca.explained_variance_ratio")
        .and_then(|v| serde_json::from_str::<Vec<f64>>(v).ok())
        .filter(|v| !v.is_empty())
        .or_else(|| pca.map(|p| p.explained_variance_ratio.clone()))
}

/// The axis labels of a surface: "PC1: 85.0 %" and "PC2: 11.1 %" on a PCA
/// plane, α and β otherwise.
pub(crate) fn axis_labels(s: &SurfaceResult, pca: Option<&PcaSummary>) -> (String, String) {
    match pca_ratios(s, pca) {
        Some(r) => {
            let pc = |i: usize| match r.get(i) {
                Some(v) if v.is_finite() => format!("PC{}: {:.1} %", i + 1, 100.0 * v),
                _ => format!("PC{}", i + 1),
            };
            (pc(0), pc(1))
        }
        None => ("α".into(), "β".into()),
    }
}

pub(super) fn section(
    out: &mut Output,
    surfaces: &[(String, SurfaceResult)],
    opts: &ReportOptions,
    pca: Option<&PcaSummary>,
) -> Result<()> {
    out.section("surfaces", "Loss surfaces");
    if surfaces.is_empty() {
        out.missing(
            "No surface has been computed for this run.",
            "Surface::builder(&dirs).grid(..).build()?.evaluate(&vs, &mut eval, RUN_DIR/surfaces/NAME) — the demo computes several",
        );
    }
    for (name, surface) in surfaces {
        let s = Drawn {
            name,
            stem: sanitize(name),
            surface,
            opts,
            pca,
        };
        out.figs_start();
        match surface.spec.grid.y {
            None => slice_figure(out, &s)?,
            Some(_) => {
                for split in surface.splits() {
                    contour_figures(out, &s, &split)?;
                }
                view_3d(out, &s);
            }
        }
        out.figs_end();
    }
    Ok(())
}

/// How the directions were made, for captions.
fn describe(d: &DirectionsMeta) -> String {
    match d.kind {
        DirectionKind::Interpolation => "linear interpolation".to_string(),
        DirectionKind::Pca => "PCA directions".to_string(),
        _ => match (d.normalization, d.seed) {
            (Some(n), Some(seed)) => {
                format!("{n:?}-normalized random directions, seed {seed}").to_lowercase()
            }
            _ => format!("{:?} directions", d.kind).to_lowercase(),
        },
    }
}

/// A 1-D slice: the loss of every split (solid) and its accuracy (dashed,
/// right axis) when recorded.
fn slice_figure(out: &mut Output, s: &Drawn) -> Result<()> {
    let (name, surface) = (s.name, s.surface);
    let xs = surface.spec.grid.x.values();
    let splits = surface.splits();
    let series = |values: &dyn Fn(&str) -> Vec<f64>, label: &str, dashed: bool| -> Vec<Series> {
        splits
            .iter()
            .enumerate()
            .map(|(i, sp)| (i, sp, values(sp)))
            .filter(|(_, _, v)| !dashed || v.iter().any(|x| x.is_finite()))
            .map(|(i, sp, v)| Series {
                name: format!("{sp} {label}"),
                points: xs.iter().copied().zip(v).collect(),
                color: i,
                dashed,
            })
            .collect()
    };
    let loss = series(&|sp| surface.loss(sp), "loss", false);
    let acc = series(&|sp| surface.accuracy(sp), "accuracy", true);
    let losses: Vec<f64> = splits.iter().flat_map(|sp| surface.loss(sp)).collect();
    let reference = reference_point(surface);
    let has_acc = !acc.is_empty();
    let y2_range = accuracy_axis(&acc).or(Some(ACCURACY_RANGE));
    let plot = LinePlot {
        title: format!("{name}: 1-D slice"),
        x_label: if surface.spec.directions.kind == DirectionKind::Interpolation {
            "α  (θ = (1−α)θ₀ + αθ₁)".into()
        } else {
            axis_labels(surface, s.pca).0
        },
        y_label: "loss".into(),
        series: loss,
        y2: has_acc.then(|| ("accuracy (%)".to_string(), acc)),
        log_y: s.opts.log_scale,
        y2_range,
        guides: reference
            .map(|r| (r.0, "θ*".to_string()))
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let caption = format!(
        "{name}: {}; loss (lines){}; dotted grey line: θ* (paper Figs. 2a, 3){}",
        describe(&surface.spec.directions),
        if has_acc {
            " and accuracy (lines with points, right axis, 0–100 %)"
        } else {
            ""
        },
        non_finite_note(&losses)
    );
    out.plot(&plot, &format!("{}_1d", s.stem), &caption)
}

/// Contour lines and a heat map of the loss of `split` over a 2-D surface.
fn contour_figures(out: &mut Output, s: &Drawn, split: &str) -> Result<()> {
    let (name, surface) = (s.name, s.surface);
    let grid = &surface.spec.grid;
    let z = surface.loss(split);
    let note = non_finite_note(&z);
    let (x_label, y_label) = axis_labels(surface, s.pca);
    let spacing = LevelSpacing::or_default(s.opts.level_spacing, s.opts.log_scale);
    let plot = ContourPlot {
        title: format!("{name}: {split} loss"),
        x_label,
        y_label,
        xs: grid.x.values(),
        ys: grid.y.map(|a| a.values()).unwrap_or_default(),
        z,
        log: s.opts.log_scale,
        z_label: "loss".into(),
        reference: reference_point(surface),
        ..Default::default()
    }
    .auto_scale_spaced(s.opts.levels, Some(spacing));
    let levels = plot.describe_levels(spacing);
    let stem = format!("{}_{}", s.stem, sanitize(split));
    let lines = ContourPlot {
        filled: false,
        ..plot.clone()
    };
    let kind = describe(&surface.spec.directions);
    out.plot(
        &lines,
        &format!("{stem}_contour"),
        &format!(
            "{name}: {split} loss contours, {kind}; {levels}; star: θ* (paper Figs. 1, 5){note}"
        ),
    )?;
    let filled = ContourPlot {
        filled: true,
        ..plot
    };
    out.plot(
        &filled,
        &format!("{stem}_heat"),
        &format!("{name}: {split} loss heat map with contours; {levels}; star: θ*{note}"),
    )
}

/// The interactive 3-D view of the first split (non-finite values are gaps).
fn view_3d(out: &mut Output, s: &Drawn) {
    let grid = &s.surface.spec.grid;
    let (Some(y), Some(split)) = (grid.y, s.surface.splits().first().cloned()) else {
        return;
    };
    let log = s.opts.log_scale;
    let z: Vec<f64> = s
        .surface
        .loss(&split)
        .into_iter()
        .map(|v| if log { v.log10() } else { v })
        .collect();
    let (x_label, y_label) = axis_labels(s.surface, s.pca);
    out.surface_3d(
        &format!("{}: {split} loss (3-D)", s.name),
        (&grid.x.values(), &y.values(), &z),
        (&x_label, &y_label, if log { "log10 loss" } else { "loss" }),
    );
}
