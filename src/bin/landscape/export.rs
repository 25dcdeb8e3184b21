//! `landscape export`: a run as zstd Parquet for pyarrow, polars and DuckDB.

use std::io::Write;
use std::path::PathBuf;

use tch_landscape::store::export::{export_parquet, DEFAULT_CHUNK};
use tch_landscape::Run;

/// Write trajectory.parquet, metrics.parquet, epochs.parquet and summary.parquet
/// (every table starts with run_id; layout in schemas/export.json).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape export runs/demo/mlp-digits --out /tmp/export\n  duckdb -c \"select * from '/tmp/export/epochs.parquet' where trigger <> 'step_end'\"\n\nTables: trajectory (values by snapshot, tensor, chunk; with role, shape, numel),\nmetrics (long: one row per reported value), epochs (one row per snapshot, one\ncolumn per epoch-level metric), summary (norm, mean, std, min, max per tensor)."
)]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory (default: RUN/export).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Values per trajectory row (tensors larger than this span several rows).
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    chunk: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let run = Run::open(&args.run)?;
    let out = args.out.unwrap_or_else(|| args.run.join("export"));
    let s = export_parquet(&run, &out, args.chunk)?;
    let mut out = std::io::stdout().lock();
    for path in [&s.trajectory, &s.metrics, &s.epochs, &s.summary] {
        writeln!(out, "{}", path.display())?;
    }
    out.flush()?;
    Ok(())
}
