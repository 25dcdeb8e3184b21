//! The "Training" section: the recorded metrics, per-epoch series against
//! epochs and per-step series against steps in figures of their own (never
//! on one axis), losses and accuracies together (accuracy on a second axis),
//! other metrics (e.g. the learning rate) apart; learning-rate drops marked.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::report::figures::{accuracy_axis, LinePlot, Series};
use crate::report::metrics::{Metrics, Points};
use crate::report::output::Output;

/// Series of one kind (per epoch or per step), by name; a metric keeps its
/// colour across figures and test metrics are dashed.
struct Named<'m>(&'m BTreeMap<String, Points>);

impl Named<'_> {
    /// The series whose name passes `keep`.
    fn pick(&self, keep: impl Fn(&str) -> bool) -> Vec<Series> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| keep(n))
            .map(|(color, (n, p))| Series {
                name: n.clone(),
                points: p.clone(),
                color,
                dashed: n.contains("test"),
            })
            .collect()
    }
}

/// Draws the figures of one kind of series (`x` is "epoch" or "step").
fn figures(
    out: &mut Output,
    series: &BTreeMap<String, Points>,
    x: &str,
    drops: &[f64],
    lr: Option<&str>,
) -> Result<()> {
    if series.is_empty() {
        return Ok(());
    }
    let named = Named(series);
    let is_lr = |n: &str| lr == Some(n);
    let losses = named.pick(|n| n.contains("loss") && !is_lr(n));
    let accs = named.pick(|n| n.contains("acc") && !is_lr(n));
    let others = named.pick(|n| is_lr(n) || (!n.contains("loss") && !n.contains("acc")));
    let vlines: Vec<(f64, String)> = drops.iter().map(|&d| (d, "lr drop".to_string())).collect();
    let (stem, title, other_stem) = match x {
        "step" => ("step_metrics", "Per-step metrics", "other_step_metrics"),
        _ => ("training_curves", "Training curves", "other_metrics"),
    };
    let drops_note = match (lr, drops.is_empty()) {
        (Some(name), false) => format!("; red lines mark drops of the learning rate ({name})"),
        (Some(name), true) => format!("; the learning rate ({name}) never drops"),
        (None, _) => "; no learning-rate metric (lr, learning_rate, or one named with RecorderBuilder::learning_rate_metric / --lr-metric)".to_string(),
    };
    if !(losses.is_empty() && accs.is_empty()) {
        let curves = LinePlot {
            title: title.into(),
            x_label: x.into(),
            y_label: "loss".into(),
            series: losses,
            y2_range: accuracy_axis(&accs),
            y2: (!accs.is_empty()).then(|| ("accuracy (%)".to_string(), accs)),
            vlines: vlines.clone(),
            log_y: false,
            ..Default::default()
        };
        out.plot(
            &curves,
            stem,
            &format!("Metrics recorded per {x}, against the {x}{drops_note}"),
        )?;
    }
    if !others.is_empty() {
        let plot = LinePlot {
            title: format!("Other metrics per {x}"),
            x_label: x.into(),
            y_label: "value".into(),
            series: others,
            vlines,
            ..Default::default()
        };
        out.plot(
            &plot,
            other_stem,
            &format!("Other metrics recorded per {x} (e.g. the learning rate){drops_note}"),
        )?;
    }
    Ok(())
}

pub(super) fn section(out: &mut Output, metrics: &Metrics) -> Result<()> {
    out.section("training", "Training");
    out.figs_start();
    if metrics.epoch.is_empty() && metrics.step.is_empty() {
        out.figs_end();
        out.missing(
            "No metrics were recorded.",
            "rec.on_epoch_end(epoch, &[(\"train_loss\", l), (\"lr\", lr)])",
        );
        return Ok(());
    }
    let lr = metrics.lr.as_deref();
    // A drop after epoch (step) e is drawn between e and e + 1.
    for (series, x, drops) in [
        (&metrics.epoch, "epoch", &metrics.drops.epochs),
        (&metrics.step, "step", &metrics.drops.steps),
    ] {
        let lines: Vec<f64> = drops.iter().map(|&e| e as f64 + 0.5).collect();
        figures(out, series, x, &lines, lr)?;
    }
    out.figs_end();
    Ok(())
}
