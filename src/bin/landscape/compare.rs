//! `landscape compare`: several runs on one page with shared scales.

use std::path::PathBuf;

use tch_landscape::report::{write_comparison, ReportOptions};

/// Put the same figures of several runs side by side, with identical colour scale, contour levels and axes.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape compare runs/small-batch runs/large-batch --out runs/compare"
)]
pub struct Args {
    /// Two or more run directories.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "compare")]
    out: PathBuf,
    /// Plot losses on a log10 scale.
    #[arg(long)]
    log: bool,
    /// Number of contour levels.
    #[arg(long, default_value_t = 12)]
    levels: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ReportOptions {
        log_scale: args.log,
        levels: args.levels,
        out: None,
    };
    let index = write_comparison(&args.runs, &args.out, &opts)?;
    outln!("{}", index.display())?;
    Ok(())
}
