//! The "Mode connectivity" section: for every `RUN_DIR/connect/NAME/`, the
//! loss and accuracy along the trained curve and along the straight line
//! between the same two models, and the barriers of both.

use std::path::Path;

use crate::error::Result;
use crate::report::figures::{accuracy_axis, LinePlot, Series, ACCURACY_RANGE};
use crate::report::output::Output;
use crate::store::connect::{read_curve, CurveRow, CURVE_FILE};

/// Where `landscape connect` writes under a run.
pub const CONNECT_DIR: &str = "connect";

pub(super) fn section(out: &mut Output, run_dir: &Path) -> Result<()> {
    out.section("connect", "Mode connectivity");
    let found = crate::report::inputs::load_subdirs(&run_dir.join(CONNECT_DIR), CURVE_FILE, |d| {
        read_curve(&d.join(CURVE_FILE))
    })?;
    if found.is_empty() {
        out.missing(
            "No curve between this run's model and another's.",
            "landscape connect RUN_DIR OTHER_RUN_DIR",
        );
        return Ok(());
    }
    out.text(
        "A curve with one trained bend between this run's final model (t = 0) and another \
         run's (t = 1), against the straight line between them (Garipov et al. 2018): loss \
         along both paths on every split, accuracy on the right axis. The barrier is the \
         largest loss along a path minus the mean of its ends' losses.",
    );
    let mut table = Vec::new();
    for (name, (rows, summary)) in &found {
        figure(out, name, rows, summary)?;
        for b in summary["barriers"].as_array().into_iter().flatten() {
            table.push(vec![
                name.clone(),
                b["path"].as_str().unwrap_or("?").to_string(),
                b["split"].as_str().unwrap_or("?").to_string(),
                b["height"]
                    .as_f64()
                    .map_or("–".into(), |h| format!("{h:.4}")),
                b["at_t"].as_f64().map_or("–".into(), |t| format!("{t:.3}")),
            ]);
        }
    }
    out.table(&["curve", "path", "split", "barrier", "at t"], &table);
    Ok(())
}

fn figure(
    out: &mut Output,
    name: &str,
    rows: &[CurveRow],
    summary: &serde_json::Value,
) -> Result<()> {
    let mut splits: Vec<&str> = Vec::new();
    for r in rows {
        if !splits.contains(&r.split.as_str()) {
            splits.push(&r.split);
        }
    }
    let series =
        |path: &str, what: &str, value: &dyn Fn(&CurveRow) -> Option<f64>| -> Vec<Series> {
            splits
                .iter()
                .enumerate()
                .map(|(i, sp)| Series {
                    name: format!("{what}: {path}, {sp}"),
                    points: rows
                        .iter()
                        .filter(|r| r.path == path && r.split == *sp)
                        .map(|r| (r.t, value(r).unwrap_or(f64::NAN)))
                        .collect(),
                    color: i,
                    dashed: path == "line",
                })
                .filter(|s| s.points.iter().any(|p| p.1.is_finite()))
                .collect()
        };
    // Colour: the split; solid: the curve, dashed: the line.
    let both = |what: &str, value: &dyn Fn(&CurveRow) -> Option<f64>| -> Vec<Series> {
        let (c, l) = (series("curve", what, value), series("line", what, value));
        c.into_iter().zip(l).flat_map(|(c, l)| [c, l]).collect()
    };
    let loss = both("loss", &|r| Some(r.loss));
    let acc = both("accuracy", &|r| r.accuracy);
    let kind = summary["curve"].as_str().unwrap_or("curve");
    let plot = LinePlot {
        title: format!("{name}: {kind} curve vs straight line"),
        x_label: "t  (0: this run's model, 1: the other's)".into(),
        y_label: "loss".into(),
        y2_range: accuracy_axis(&acc).or(Some(ACCURACY_RANGE)),
        y2: (!acc.is_empty()).then(|| ("accuracy (%)".to_string(), acc)),
        series: loss,
        ..Default::default()
    };
    let ends = summary["ends"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .unwrap_or_default();
    let s = &summary["settings"];
    let caption = format!(
        "{name}: {ends}; colour: split; solid: the trained {kind} curve, dashed: the straight \
         line; {} epochs, lr {}, seed {}; accuracy: lines with points, right axis",
        s["epochs"], s["lr"], s["seed"]
    );
    out.plot(&plot, &format!("connect_{name}"), &caption)
}
