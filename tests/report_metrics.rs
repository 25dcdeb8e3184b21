//! The report's training figures: per-step metrics against steps, apart
//! from per-epoch metrics (also under the same name); learning-rate drops
//! found by the metric's role; `landscape compare` draws every run's curves
//! and drops and lists the surfaces only some runs have.

mod common;

use std::path::Path;

use tch::nn;
use tch::{Device, Tensor};
use tch_landscape::report::{write_comparison, write_report, ReportOptions};
use tch_landscape::Recorder;

/// Two epochs of four steps: `train_loss` per step and per epoch under one
/// name, the learning rate under `lr_name` (per epoch, dropping after epoch
/// 1), snapshots every 2 steps too.
fn record(dir: &Path, lr_name: &str, mark: bool) {
    let vs = nn::VarStore::new(Device::Cpu);
    let _lin = nn::linear(vs.root() / "lin", 4, 3, Default::default());
    let mut builder = Recorder::builder(dir).fsync(false).every_n_steps(2);
    if mark {
        builder = builder.learning_rate_metric(lr_name);
    }
    let mut rec = builder.build(&vs).unwrap();
    let mut step = 0;
    for epoch in 1..=2u64 {
        for _ in 0..4 {
            step += 1;
            tch::no_grad(|| {
                for (_, mut t) in vs.variables() {
                    let _ = t.g_add_(&(Tensor::randn_like(&t) * 0.01));
                }
            });
            rec.on_step_end(epoch, step, &[("train_loss", 1.0 / step as f64)])
                .unwrap();
        }
        let lr = if epoch == 1 { 0.1 } else { 0.01 };
        rec.on_epoch_end(epoch, &[("train_loss", 0.5 / epoch as f64), (lr_name, lr)])
            .unwrap();
    }
    rec.finish().unwrap();
}

/// The texts of the SVG figure `stem`, trimmed.
fn svg(dir: &Path, stem: &str) -> Vec<String> {
    let s = std::fs::read_to_string(dir.join(format!("{stem}.svg")))
        .unwrap_or_else(|e| panic!("{stem}.svg: {e}"));
    s.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

fn has(texts: &[String], want: &str) -> bool {
    texts.iter().any(|t| t.contains(want))
}

#[test]
fn step_and_epoch_metrics_are_drawn_apart_and_lr_drops_found_by_role() {
    let tmp = common::tempdir();
    for (name, lr_name, mark) in [("a", "learning_rate", false), ("b", "my_lr", true)] {
        let run = tmp.path().join(name);
        record(&run, lr_name, mark);
        let index = write_report(&run, &ReportOptions::default()).unwrap();
        let html = std::fs::read_to_string(&index).unwrap();
        let report = index.parent().unwrap();
        // Per-step train_loss has its own figure against steps 1..8; the
        // per-epoch figure has the epoch values only.
        let steps = svg(report, "step_metrics");
        assert!(steps.iter().any(|t| t == "step"), "{name}: {steps:?}");
        let epochs = svg(report, "training_curves");
        assert!(epochs.iter().any(|t| t == "epoch"), "{name}: {epochs:?}");
        assert!(
            !epochs.iter().any(|t| t == "step"),
            "{name}: steps on the epoch figure"
        );
        // The learning rate is found under its name and its drop drawn.
        assert!(
            html.contains(&format!("drops of the learning rate ({lr_name})")),
            "{name}: {lr_name} not taken for the learning rate"
        );
        assert!(has(&svg(report, "other_metrics"), "lr drop"), "{name}");
    }
    // An unmarked, unusual name is not guessed.
    let run = tmp.path().join("c");
    record(&run, "my_lr", false);
    let index = write_report(&run, &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    assert!(html.contains("no learning-rate metric"), "{html}");
    // compare: both runs' drops on the shared figure, and the surfaces only
    // one run has are listed.
    let out = tmp.path().join("cmp");
    let page = write_comparison(
        &[tmp.path().join("a"), tmp.path().join("b")],
        &out,
        &ReportOptions::default(),
    )
    .unwrap();
    let page = std::fs::read_to_string(page).unwrap();
    assert!(
        page.contains("train_loss per step"),
        "per-step figure in compare"
    );
    assert!(page.contains("train_loss per epoch"));
    let drops = (0..8)
        .filter(|k| out.join(format!("metric_{k}.svg")).exists())
        .map(|k| svg(&out, &format!("metric_{k}")))
        .any(|t| has(&t, "lr drop, a") && has(&t, "lr drop, b"));
    assert!(drops, "each run's drop on the shared figure");
}
