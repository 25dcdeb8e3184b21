//! The "Weights" section: the weights' L2 norm per snapshot (paper Fig. 2b)
//! and their histograms, first against last snapshot (Fig. 2c).

use crate::error::Result;
use crate::report::figures::{HistogramPlot, LinePlot, Series};
use crate::report::output::Output;
use crate::store::manifest::Role;
use crate::store::run::{Run, Selection};

pub(super) fn section(out: &mut Output, run: &Run, drops: &[u64]) -> Result<()> {
    out.section("weights", "Weights");
    if run.is_empty() {
        out.missing(
            "The run has no snapshot.",
            "Recorder::builder(dir).build(&vs)",
        );
        return Ok(());
    }
    // The weights (tensors with ≥ 2 dims), or every trainable tensor when
    // the run has none.
    let has_weights = run
        .manifest()
        .tensors
        .iter()
        .any(|t| t.role == Role::Weight);
    let sel = if has_weights {
        Selection::Weights
    } else {
        Selection::Trainable
    };
    out.figs_start();
    norm_figure(out, run, &sel, drops)?;
    histogram_figure(out, run, &sel)?;
    out.figs_end();
    Ok(())
}

fn norm_figure(out: &mut Output, run: &Run, sel: &Selection, drops: &[u64]) -> Result<()> {
    let mut norms = Vec::with_capacity(run.len());
    for (i, s) in run.snapshots().iter().enumerate() {
        let v = run.flat_f32(i, sel)?;
        let n = v
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        norms.push((s.meta().epoch as f64, n));
    }
    let plot = LinePlot {
        title: "Weight norm".into(),
        x_label: "epoch".into(),
        y_label: "‖θ‖₂ (weights)".into(),
        series: vec![Series {
            name: "L2 norm".into(),
            points: norms,
            color: 0,
            dashed: false,
        }],
        vlines: drops
            .iter()
            .map(|&e| (e as f64, "lr drop".to_string()))
            .collect(),
        ..Default::default()
    };
    out.plot(
        &plot,
        "weight_norm",
        "L2 norm of the weights (tensors with ≥ 2 dims) per snapshot (paper Fig. 2b)",
    )
}

fn histogram_figure(out: &mut Output, run: &Run, sel: &Selection) -> Result<()> {
    let last = run.len() - 1;
    let set = |i: usize| -> Result<(String, Vec<f64>)> {
        let values = run.flat_f32(i, sel)?;
        Ok((
            format!("snapshot {i} (epoch {})", run.snapshots()[i].meta().epoch),
            values.iter().map(|&x| x as f64).collect(),
        ))
    };
    let hist = HistogramPlot {
        title: "Weight histogram".into(),
        x_label: "weight value".into(),
        sets: vec![set(0)?, set(last)?],
        bins: 80,
    };
    out.plot(
        &hist,
        "weight_histogram",
        "Weights of the first and last snapshot (paper Fig. 2c)",
    )
}
