//! `landscape info`: what a run directory holds.

use std::path::PathBuf;

use tch_landscape::Run;

/// Print a run's manifest summary, snapshots and metric names.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  landscape info runs/demo/mlp-digits")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let run = Run::open(&args.run)?;
    let m = run.manifest();
    println!("run {} ({})", m.run_id, args.run.display());
    println!(
        "created {} by tch-landscape {}, schema v{}, {}",
        m.created_utc,
        m.crate_version,
        m.schema_version,
        if m.finished {
            "finished"
        } else {
            "not finished (recorder did not call finish)"
        }
    );
    println!(
        "{} tensors, {} values per snapshot ({:?})",
        m.tensors.len(),
        m.total_numel(),
        m.storage_dtype
    );
    for t in &m.tensors {
        println!(
            "  {:<40} {:>14} {:?} {}",
            t.name,
            format!("{:?}", t.shape),
            t.role,
            t.dtype
        );
    }
    for s in &m.skipped {
        println!("  {:<40} skipped ({}): {}", s.name, s.dtype, s.reason);
    }
    println!("{} snapshots", run.len());
    for s in run.snapshots() {
        let meta = s.meta();
        println!(
            "  #{:<5} epoch {:<5} step {:<8} {:?}",
            meta.index,
            meta.epoch,
            meta.step
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            meta.trigger
        );
    }
    let mut names: Vec<String> = run.metrics()?.into_iter().map(|r| r.name).collect();
    names.sort();
    names.dedup();
    println!(
        "metrics: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    Ok(())
}
