//! The "Training" section: the recorded metrics per epoch, losses and
//! accuracies together (accuracy on a second axis), other metrics (e.g. the
//! learning rate) apart; learning-rate drops marked.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::report::figures::{accuracy_axis, LinePlot, Series};
use crate::report::output::Output;
use crate::store::metrics::MetricRow;

/// The metrics' series, by name; a metric keeps its colour across figures
/// and test metrics are dashed.
struct Metrics(BTreeMap<String, Vec<(f64, f64)>>);

impl Metrics {
    fn new(rows: &[MetricRow]) -> Metrics {
        let mut by_name: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for r in rows {
            by_name
                .entry(r.name.clone())
                .or_default()
                .push((r.epoch as f64, r.value));
        }
        Metrics(by_name)
    }

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

pub(super) fn section(out: &mut Output, rows: &[MetricRow], drops: &[u64]) -> Result<()> {
    out.section("training", "Training");
    let metrics = Metrics::new(rows);
    out.figs_start();
    if metrics.0.is_empty() {
        out.figs_end();
        out.missing(
            "No metrics were recorded.",
            "rec.on_epoch_end(epoch, &[(\"train_loss\", l), (\"lr\", lr)])",
        );
        return Ok(());
    }
    let vlines: Vec<(f64, String)> = drops
        .iter()
        .map(|&e| (e as f64 + 0.5, "lr drop".to_string()))
        .collect();
    let losses = metrics.pick(|n| n.contains("loss"));
    let accs = metrics.pick(|n| n.contains("acc"));
    let others = metrics.pick(|n| !n.contains("loss") && !n.contains("acc"));
    let curves = LinePlot {
        title: "Training curves".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: if losses.is_empty() {
            others.clone()
        } else {
            losses
        },
        y2_range: accuracy_axis(&accs),
        y2: (!accs.is_empty()).then(|| ("accuracy (%)".to_string(), accs)),
        vlines: vlines.clone(),
        log_y: false,
        ..Default::default()
    };
    out.plot(
        &curves,
        "training_curves",
        "Recorded metrics per epoch; red lines mark learning-rate drops",
    )?;
    if !others.is_empty() {
        let plot = LinePlot {
            title: "Other metrics".into(),
            x_label: "epoch".into(),
            y_label: "value".into(),
            series: others,
            vlines,
            ..Default::default()
        };
        out.plot(
            &plot,
            "other_metrics",
            "Other recorded metrics (e.g. learning rate)",
        )?;
    }
    out.figs_end();
    Ok(())
}
