//! The recorded metrics as the report draws them: per-epoch series (reported
//! with a snapshot at an epoch's end) apart from per-step series (reported by
//! `on_step_end`), never mixed on one axis; and where the learning rate drops,
//! found by the metric's role rather than one exact name.

use std::collections::BTreeMap;

use crate::store::metrics::MetricRow;
use crate::store::run::Run;
use crate::store::snapshot::Trigger;

/// Names taken for the learning rate when the run does not name its metric
/// (compared without regard to case).
pub(crate) const LR_NAMES: [&str; 4] = ["lr", "learning_rate", "learning-rate", "learningrate"];

/// One metric's points, (epoch or step, value), sorted by x.
pub(crate) type Points = Vec<(f64, f64)>;

/// The recorded metrics, split by what they were reported at.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Per-epoch series by name, x = epoch.
    pub(crate) epoch: BTreeMap<String, Points>,
    /// Per-step series by name, x = global optimizer step.
    pub(crate) step: BTreeMap<String, Points>,
    /// The learning-rate metric, when one was found.
    pub(crate) lr: Option<String>,
    /// Where it drops.
    pub(crate) drops: LrDrops,
}

/// Where the learning rate drops.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LrDrops {
    /// Epochs after which it is lower (for per-epoch figures).
    pub(crate) epochs: Vec<u64>,
    /// Steps after which it is lower, when it was reported per step.
    pub(crate) steps: Vec<u64>,
}

/// The learning-rate metric among `names`: `marked` (the run's or the
/// user's choice) when given, else the first of [`LR_NAMES`] present.
pub(crate) fn lr_metric<'n>(
    names: impl IntoIterator<Item = &'n str> + Clone,
    marked: Option<&str>,
) -> Option<String> {
    if let Some(m) = marked {
        return Some(m.to_string());
    }
    LR_NAMES.iter().find_map(|want| {
        names
            .clone()
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(want))
            .map(str::to_string)
    })
}

impl Metrics {
    /// Splits `rows` of `run` by [`MetricRow::is_per_epoch`] (as the
    /// export's `epochs.parquet` does). `lr` names the
    /// learning-rate metric (else the run's manifest, else [`LR_NAMES`]).
    pub(crate) fn from_run(run: &Run, rows: &[MetricRow], lr: Option<&str>) -> Metrics {
        let trigger = |i: u32| run.snapshot(i as usize).ok().map(|s| s.meta().trigger);
        let marked = lr.or(run.manifest().lr_metric.as_deref());
        Metrics::new(rows, trigger, marked)
    }

    /// [`from_run`](Self::from_run) with the snapshots' triggers given by
    /// `trigger`.
    pub(crate) fn new(
        rows: &[MetricRow],
        trigger: impl Fn(u32) -> Option<Trigger>,
        lr: Option<&str>,
    ) -> Metrics {
        let mut m = Metrics::default();
        // Rows of the same name and x (a step reported twice) keep the last.
        let mut epoch: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
        let mut step: BTreeMap<String, BTreeMap<u64, (u64, f64)>> = BTreeMap::new();
        for r in rows {
            let per_step = !r.is_per_epoch(r.snapshot.and_then(&trigger));
            match (per_step, r.step) {
                (true, Some(s)) => {
                    step.entry(r.name.clone())
                        .or_default()
                        .insert(s, (r.epoch, r.value));
                }
                _ => {
                    epoch
                        .entry(r.name.clone())
                        .or_default()
                        .insert(r.epoch, r.value);
                }
            }
        }
        m.lr = lr_metric(epoch.keys().chain(step.keys()).map(String::as_str), lr);
        if let Some(name) = &m.lr {
            if let Some(series) = epoch.get(name) {
                let v: Vec<(u64, f64)> = series.iter().map(|(&e, &v)| (e, v)).collect();
                m.drops.epochs = v
                    .windows(2)
                    .filter(|w| w[1].1 < w[0].1)
                    .map(|w| w[0].0)
                    .collect();
            } else if let Some(series) = step.get(name) {
                let v: Vec<(u64, u64, f64)> =
                    series.iter().map(|(&s, &(e, v))| (s, e, v)).collect();
                for w in v.windows(2).filter(|w| w[1].2 < w[0].2) {
                    m.drops.steps.push(w[0].0);
                    if m.drops.epochs.last() != Some(&w[0].1) {
                        m.drops.epochs.push(w[0].1);
                    }
                }
            }
        }
        let points = |s: BTreeMap<u64, f64>| -> Points {
            s.into_iter().map(|(x, v)| (x as f64, v)).collect()
        };
        m.epoch = epoch.into_iter().map(|(n, s)| (n, points(s))).collect();
        m.step = step
            .into_iter()
            .map(|(n, s)| (n, points(s.into_iter().map(|(x, (_, v))| (x, v)).collect())))
            .collect();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        name: &str,
        snapshot: Option<u32>,
        epoch: u64,
        step: Option<u64>,
        value: f64,
    ) -> MetricRow {
        MetricRow {
            snapshot,
            epoch,
            step,
            name: name.into(),
            value,
            unix_time: 0.0,
        }
    }

    #[test]
    fn epoch_and_step_rows_are_told_apart_by_their_snapshot() {
        // Steps 1..=6, two epochs of three steps, a step snapshot at step 3
        // (snapshot 1), epoch snapshots 2 and 3; `train_loss` reported both
        // per step and per epoch under one name.
        let trigger = |i: u32| {
            Some(match i {
                0 => Trigger::TrainStart,
                1 => Trigger::StepEnd,
                _ => Trigger::EpochEnd,
            })
        };
        let mut rows = Vec::new();
        for s in 1..=6u64 {
            let snap = (s == 3).then_some(1);
            rows.push(row(
                "train_loss",
                snap,
                (s - 1) / 3 + 1,
                Some(s),
                1.0 / s as f64,
            ));
        }
        rows.push(row("train_loss", Some(2), 1, Some(3), 0.5));
        rows.push(row("train_loss", Some(3), 2, Some(6), 0.2));
        rows.push(row("Learning_Rate", Some(2), 1, Some(3), 0.1));
        rows.push(row("Learning_Rate", Some(3), 2, Some(6), 0.01));
        let m = Metrics::new(&rows, trigger, None);
        assert_eq!(m.epoch["train_loss"], vec![(1.0, 0.5), (2.0, 0.2)]);
        let steps: Vec<f64> = m.step["train_loss"].iter().map(|p| p.0).collect();
        assert_eq!(steps, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.lr.as_deref(), Some("Learning_Rate"));
        assert_eq!(m.drops.epochs, vec![1]);
        assert!(m.drops.steps.is_empty());
    }

    #[test]
    fn the_learning_rate_is_found_by_role_and_per_step_drops_by_step() {
        let trigger = |_: u32| Some(Trigger::EpochEnd);
        let rows: Vec<MetricRow> = (1..=8u64)
            .map(|s| {
                row(
                    "my_lr",
                    None,
                    (s - 1) / 4 + 1,
                    Some(s),
                    if s <= 5 { 0.1 } else { 0.01 },
                )
            })
            .collect();
        // Not one of the usual names: found only when marked.
        assert_eq!(Metrics::new(&rows, trigger, None).lr, None);
        let m = Metrics::new(&rows, trigger, Some("my_lr"));
        assert_eq!(m.drops.steps, vec![5]);
        assert_eq!(m.drops.epochs, vec![2]);
        assert!(m.epoch.is_empty());
        // The usual names, any case.
        assert_eq!(lr_metric(["loss", "LR"], None).as_deref(), Some("LR"));
        assert_eq!(
            lr_metric(["loss", "learning_rate"], None).as_deref(),
            Some("learning_rate")
        );
        assert_eq!(lr_metric(["loss"], None), None);
    }
}
