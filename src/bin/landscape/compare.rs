//! `landscape compare`: several runs on one page with shared scales.

use std::path::PathBuf;

use tch_landscape::report::write_comparison;

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
    #[command(flatten)]
    figures: crate::report::FigureArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.figures.options(None);
    let index = write_comparison(&args.runs, &args.out, &opts)?;
    outln!("{}", index.display())?;
    Ok(())
}
