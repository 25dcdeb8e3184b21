//! `landscape demo`: train the digits MLP with the hook, compute its
//! landscape and write the report.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tch_landscape::demo::{self, DemoConfig, DemoSummary, TrainConfig};

/// Train an MLP on the UCI digits with the recorder attached, then compute
/// surfaces and write the HTML report.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape demo --out runs/demo\n  (then open runs/demo/mlp-digits/report/index.html)"
)]
pub struct Args {
    /// Directory for the demo's runs and outputs.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Number of training epochs.
    #[arg(long, default_value_t = 20)]
    epochs: u64,
    /// Points per axis of the 2-D surfaces.
    #[arg(long, default_value_t = 25)]
    grid: usize,
    /// Replace the run an earlier demo recorded in OUT (refused otherwise).
    #[arg(long)]
    overwrite: bool,
    /// Seed of the initialization and the batch order (two demos of
    /// different seeds give two minima for `landscape connect`).
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = DemoConfig {
        train: TrainConfig {
            epochs: args.epochs,
            seed: args.seed,
            ..TrainConfig::default()
        },
        grid_2d: args.grid,
        overwrite: args.overwrite,
        ..DemoConfig::default()
    };
    let t0 = std::time::Instant::now();
    let pb = ProgressBar::new(0);
    pb.set_style(ProgressStyle::with_template(
        "{msg:>14} [{bar:40}] {pos}/{len} points ({per_sec}, eta {eta})",
    )?);
    let mut progress = |stage: &str, done: usize, total: usize| {
        pb.set_message(stage.to_string());
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    let s = demo::run(&args.out, &cfg, &mut progress).context("demo failed")?;
    pb.finish_and_clear();
    let mut out = std::io::stdout().lock();
    write_summary(&mut out, &cfg, &s)?;
    writeln!(out, "done in {:.1} s", t0.elapsed().as_secs_f64())?;
    out.flush()?;
    Ok(())
}

/// What the demo trained and where its outputs are.
fn write_summary(out: &mut impl Write, cfg: &DemoConfig, s: &DemoSummary) -> std::io::Result<()> {
    writeln!(
        out,
        "trained W1's MLP on 1437 UCI digits for {} epochs: train loss {:.4}, accuracy {:.1} %",
        cfg.train.epochs, s.final_loss, s.final_accuracy
    )?;
    writeln!(
        out,
        "run directory:  {} ({} snapshots)",
        s.run_dir.display(),
        s.snapshots
    )?;
    writeln!(
        out,
        "parquet export: {}",
        s.export.trajectory.parent().unwrap_or(&s.run_dir).display()
    )?;
    for (name, dir) in &s.surfaces {
        writeln!(out, "surface {name:<14} {}", dir.display())?;
    }
    writeln!(out, "report:         {}", s.report.display())
}
