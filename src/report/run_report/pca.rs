//! The "Optimizer path" section (paper Fig. 9): the explained variance of
//! the trajectory PCA, the projected path (over the loss on the PCA plane
//! when that surface exists) and the per-tensor figures, from
//! `RUN_DIR/pca/pca.json` read as the [`PcaSummary`] that wrote it.

use crate::analysis::directions::DirectionKind;
use crate::analysis::pca::PcaSummary;
use crate::analysis::surface::SurfaceResult;
use crate::error::Result;
use crate::report::figures::{BarPlot, ContourPlot, LevelSpacing, Marker, Shape, PALETTE};
use crate::report::output::Output;
use crate::report::ReportOptions;

/// What the section draws from.
pub(super) struct Inputs<'a> {
    /// The PCA, when computed.
    pub(super) pca: Option<&'a PcaSummary>,
    /// The run's surfaces (one of them may lie on the PCA plane).
    pub(super) surfaces: &'a [(String, SurfaceResult)],
    /// Epochs after which the learning rate dropped.
    pub(super) drops: &'a [u64],
    /// Report settings.
    pub(super) opts: &'a ReportOptions,
}

pub(super) fn section(out: &mut Output, inputs: Inputs) -> Result<()> {
    out.section("pca", "Optimizer path (trajectory PCA)");
    let Some(p) = inputs.pca else {
        out.missing("No trajectory PCA for this run.", "landscape pca RUN_DIR");
        return Ok(());
    };
    let ratio = &p.explained_variance_ratio;
    if ratio.is_empty() {
        out.text(&format!("The trajectory PCA has no component ({} snapshots, {} parameters): the path does not move, or pca.json lists no explained variance ratio.", p.path.len(), p.numel));
    } else {
        out.text(&format!(
            "PC1 and PC2 explain {:.1} % of the variation of the path ({} snapshots, {} parameters).",
            100.0 * ratio.iter().take(2).sum::<f64>(),
            p.path.len(),
            p.numel
        ));
    }
    let plane = inputs
        .surfaces
        .iter()
        .find(|(_, s)| s.spec.directions.kind == DirectionKind::Pca && s.spec.grid.y.is_some());
    out.figs_start();
    variance_figure(out, p)?;
    if !p.path.is_empty() {
        path_figure(out, p, &inputs, plane)?;
    }
    out.figs_end();
    if p.path.is_empty() {
        out.text("pca.json holds no projected path, so there is no path figure.");
    }
    if plane.is_none() {
        out.missing("No loss surface on the PCA plane yet.", "PcaResult::directions(&run, false) → Surface … RUN_DIR/surfaces/pca-plane (the demo does this)");
    }
    tensor_table(out, p);
    Ok(())
}

/// The ratio of each component, from the cumulative ratios.
fn spectrum(cumulative: &[f64]) -> Vec<f64> {
    cumulative
        .iter()
        .scan(0.0, |prev, &c| {
            let r = c - *prev;
            *prev = c;
            Some(r)
        })
        .collect()
}

/// The ratio per component (bars) and cumulative (line), first ten.
fn variance_figure(out: &mut Output, p: &PcaSummary) -> Result<()> {
    if p.cumulative_ratio.is_empty() {
        return Ok(());
    }
    let bars = BarPlot {
        title: "Explained variance".into(),
        x_label: "principal component".into(),
        y_label: "explained variance ratio".into(),
        bars: spectrum(&p.cumulative_ratio)
            .into_iter()
            .take(10)
            .enumerate()
            .map(|(i, r)| (format!("PC{}", i + 1), r))
            .collect(),
        line: Some(p.cumulative_ratio.iter().take(10).copied().collect()),
        legend: vec!["per component".into(), "cumulative".into()],
    };
    out.plot(
        &bars,
        "pca_variance",
        "Explained variance ratio per component (bars) and cumulative (line)",
    )
}

/// `[lo − 10 %, hi + 10 %]` of the finite values (`[−1, 1]` when none is).
fn span(v: &[f64]) -> Vec<f64> {
    let finite = || v.iter().copied().filter(|x| x.is_finite());
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    if lo > hi {
        return vec![-1.0, 1.0];
    }
    let m = ((hi - lo) * 0.1).max(1e-6);
    vec![lo - m, hi + m]
}

/// The start (θ₀), end (final model) and learning-rate-drop markers of the
/// path, in drawing order: drops last, as rings, so a drop among many
/// overlapping points (or on the end point) stays visible.
fn path_markers(p: &PcaSummary, drops: &[u64]) -> Vec<Marker> {
    let mut markers = Vec::new();
    let (Some(first), Some(last)) = (p.path.first(), p.path.last()) else {
        return markers;
    };
    markers.push(Marker {
        x: first.x(),
        y: first.y(),
        shape: Shape::Triangle,
        colour: PALETTE[2],
        label: format!("start θ₀ (epoch {})", first.epoch),
    });
    markers.push(Marker {
        x: last.x(),
        y: last.y(),
        shape: Shape::Square,
        colour: PALETTE[0],
        label: format!("end, final model (epoch {})", last.epoch),
    });
    let dropped: Vec<_> = p.path.iter().filter(|q| drops.contains(&q.epoch)).collect();
    let epochs: Vec<String> = dropped.iter().map(|q| q.epoch.to_string()).collect();
    let label = match epochs.len() {
        1 => format!("lr drop (after epoch {})", epochs[0]),
        _ => format!("lr drops (after epochs {})", epochs.join(", ")),
    };
    for q in dropped {
        markers.push(Marker {
            x: q.x(),
            y: q.y(),
            shape: Shape::Ring,
            colour: PALETTE[3],
            label: label.clone(),
        });
    }
    markers
}

/// The projected path, over the loss on the PCA plane when computed.
fn path_figure(
    out: &mut Output,
    p: &PcaSummary,
    inputs: &Inputs,
    plane: Option<&(String, SurfaceResult)>,
) -> Result<()> {
    let ratio = |i: usize| 100.0 * p.explained_variance_ratio.get(i).copied().unwrap_or(0.0);
    let path: Vec<(f64, f64, bool)> = p.path.iter().map(|q| (q.x(), q.y(), false)).collect();
    let base = ContourPlot {
        x_label: format!("PC1: {:.1} %", ratio(0)),
        y_label: format!("PC2: {:.1} %", ratio(1)),
        path,
        path_label: "optimizer path (one point per snapshot)".into(),
        markers: path_markers(p, inputs.drops),
        ..Default::default()
    };
    let spacing = LevelSpacing::or_default(inputs.opts.level_spacing, inputs.opts.log_scale);
    let (fig, levels) = match plane {
        Some((name, s)) => {
            let split = s.splits().first().cloned().unwrap_or_default();
            let fig = ContourPlot {
                title: format!("Optimizer path over {name} ({split} loss)"),
                xs: s.spec.grid.x.values(),
                ys: s.spec.grid.y.map(|a| a.values()).unwrap_or_default(),
                z: s.loss(&split),
                log: inputs.opts.log_scale,
                z_label: "loss".into(),
                ..base
            }
            .auto_scale_spaced(inputs.opts.levels, Some(spacing));
            let levels = format!("; {}", fig.describe_levels(spacing));
            (fig, levels)
        }
        None => {
            let (xs, ys): (Vec<f64>, Vec<f64>) = base.path.iter().map(|q| (q.0, q.1)).unzip();
            let fig = ContourPlot {
                title: "Optimizer path".into(),
                xs: span(&xs),
                ys: span(&ys),
                z: vec![f64::NAN; 4],
                ..base
            };
            (fig, String::new())
        }
    };
    out.plot(&fig, "pca_path", &format!("Projected optimizer path (paper Fig. 9): triangle: start θ₀; square: final model (θ*, at the origin); red rings: snapshots after which the learning rate dropped{levels}"))
}

/// Per tensor: the ratio of the first two components of its own trajectory.
fn tensor_table(out: &mut Output, p: &PcaSummary) {
    if p.tensors.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = p
        .tensors
        .iter()
        .map(|t| {
            let r = t.own_ratio;
            vec![
                t.name.clone(),
                format!("{:.1} %", 100.0 * r[0]),
                format!("{:.1} %", 100.0 * r[1]),
                format!("{:.1} %", 100.0 * (r[0] + r[1])),
            ]
        })
        .collect();
    out.text("Per tensor: explained variance ratio of the first two principal components of that tensor's own trajectory (how low-dimensional each layer moves).");
    out.table(&["tensor", "PC1", "PC2", "PC1+PC2"], &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectrum_undoes_the_cumulative_sum() {
        let s = spectrum(&[0.5, 0.75, 1.0]);
        assert_eq!(s, vec![0.5, 0.25, 0.25]);
        assert!(spectrum(&[]).is_empty());
    }

    #[test]
    fn span_pads_the_finite_range() {
        let s = span(&[0.0, f64::NAN, 10.0]);
        assert_eq!(s, vec![-1.0, 11.0]);
        assert_eq!(span(&[]), vec![-1.0, 1.0]);
        let one = span(&[2.0]);
        assert!(one[0] < 2.0 && one[1] > 2.0);
    }
}
