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
    #[command(flatten)]
    figures: FigureArgs,
}

/// Figure options shared by `report` and `compare`.
#[derive(Debug, clap::Args)]
pub struct FigureArgs {
    /// Plot 2-D losses on a log10 scale.
    #[arg(long)]
    log: bool,
    /// Number of contour levels.
    #[arg(long, default_value_t = 12)]
    levels: usize,
}

impl FigureArgs {
    /// The report options, writing into `out` (default: beside the run).
    pub fn options(&self, out: Option<PathBuf>) -> ReportOptions {
        ReportOptions {
            log_scale: self.log,
            levels: self.levels,
            out,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.figures.options(args.out);
    let index = write_report(&args.run, &opts)?;
    outln!("{}", index.display())?;
    Ok(())
}
