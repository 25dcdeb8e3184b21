//! `landscape compare`: several runs on one page with shared scales.

use std::path::PathBuf;

use tch_landscape::report::compare::write_comparison_with_pca;

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
    /// A joint trajectory PCA of the runs (`landscape pca --joint RUN_A RUN_B … --out DIR`):
    /// their optimizer paths are drawn on its plane.
    #[arg(long, value_name = "DIR")]
    pca: Option<PathBuf>,
    #[command(flatten)]
    figures: crate::report::FigureArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.figures.options(None);
    let index = write_comparison_with_pca(&args.runs, &args.out, &opts, args.pca.as_deref())?;
    outln!("{}", index.display())?;
    Ok(())
}
