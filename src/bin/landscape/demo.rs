//! `landscape demo`: train the digits MLP with the hook and export the run.

use std::path::PathBuf;

use anyhow::Context;
use tch_landscape::demo::{self, TrainConfig};

/// Train an MLP on the UCI digits with the recorder attached, then export it.
///
/// Example: `landscape demo --out runs/demo`
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  landscape demo --out runs/demo")]
pub struct Args {
    /// Directory for the demo's runs and outputs.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Number of training epochs.
    #[arg(long, default_value_t = 20)]
    epochs: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = TrainConfig {
        epochs: args.epochs,
        ..TrainConfig::default()
    };
    let t0 = std::time::Instant::now();
    let s = demo::run(&args.out, &cfg).context("demo failed")?;
    println!(
        "trained W1's MLP on the UCI digits for {} epochs: loss {:.4}, accuracy {:.1} % ({:.1} s)",
        cfg.epochs,
        s.final_loss,
        s.final_accuracy,
        t0.elapsed().as_secs_f64()
    );
    println!("run directory: {} ({} snapshots)", s.run_dir.display(), s.snapshots);
    println!("parquet export: {}", s.export.trajectory.parent().unwrap_or(&s.run_dir).display());
    Ok(())
}
