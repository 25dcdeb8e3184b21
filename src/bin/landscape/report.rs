//! `landscape report`: the HTML report of a run.

use std::path::PathBuf;

use tch_landscape::report::{write_report, ReportOptions};

/// Write RUN_DIR/report/index.html (self-contained) with every figure as PNG and SVG beside it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  landscape report runs/demo/mlp-digits --log")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory (default: RUN/report).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Plot 2-D losses on a log10 scale.
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
        out: args.out,
    };
    let index = write_report(&args.run, &opts)?;
    outln!("{}", index.display())?;
    Ok(())
}
