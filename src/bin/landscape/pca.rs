//! `landscape pca`: trajectory PCA of a recorded run (§7 of the paper).

use std::path::PathBuf;

use anyhow::Context;
use tch_landscape::analysis::pca::{TrajectoryPca, DEFAULT_CHUNK, DEFAULT_COMPONENTS};
use tch_landscape::{Run, Selection};

/// Principal components of a run's trajectory: explained variance, the path
/// in PC1/PC2 coordinates, per-tensor figures, and the PCA plane as
/// directions (raw and filter-normalized) for surfaces on the PCA plane.
///
/// Streams the snapshots twice in bounded memory (the (n−1)² Gram matrix and
/// a few chunks), whatever the model size.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape pca runs/demo/mlp-digits --out /tmp/pca\n  duckdb -c \"select * from '/tmp/pca/pca-path.parquet'\"\n\nWrites pca-variance.parquet, pca-path.parquet, pca-tensors.parquet, pca.json,\ndirections-raw.parquet and directions-filter.parquet."
)]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory (default: RUN/pca).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Number of principal components.
    #[arg(short = 'k', long, default_value_t = DEFAULT_COMPONENTS)]
    components: usize,
    /// Values streamed per tensor chunk from each snapshot (memory ≈ 40 ×
    /// snapshots × chunk bytes).
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    chunk: usize,
    /// Tensors analysed: weights (dim ≥ 2, the reference default), trainable
    /// (biases too) or all (buffers too).
    #[arg(long, value_enum, default_value_t = Select::Weights)]
    select: Select,
    /// Only the tensors whose name contains this text (instead of --select).
    #[arg(long, conflicts_with = "tensor")]
    contains: Option<String>,
    /// Exactly this tensor (repeatable; instead of --select).
    #[arg(long)]
    tensor: Vec<String>,
}

/// The `--select` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Select {
    Weights,
    Trainable,
    All,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let selection = match (&args.contains, args.tensor.is_empty()) {
        (Some(text), _) => Selection::NameContains(text.clone()),
        (None, false) => Selection::Names(args.tensor.clone()),
        (None, true) => match args.select {
            Select::Weights => Selection::Weights,
            Select::Trainable => Selection::Trainable,
            Select::All => Selection::All,
        },
    };
    let run = Run::open(&args.run)?;
    let pca = TrajectoryPca::builder()
        .components(args.components)
        .chunk(args.chunk)
        .selection(selection)
        .build()?
        .fit(&run)
        .context("trajectory PCA failed")?;
    let out = args.out.unwrap_or_else(|| args.run.join("pca"));
    let files = pca.save(&run, &out)?;
    outln!(
        "trajectory PCA of {} snapshots, {} parameters ({:.2} s): rank {}",
        pca.path.len(),
        pca.numel,
        pca.seconds,
        pca.rank
    )?;
    for (k, (v, r)) in pca
        .explained_variance
        .iter()
        .zip(&pca.explained_variance_ratio)
        .enumerate()
    {
        outln!(
            "  PC{}: explained variance {v:.6e}, {:.2} %",
            k + 1,
            100.0 * r
        )?;
    }
    outln!("  PC1 + PC2: {:.2} %", 100.0 * pca.plane_ratio())?;
    outln!("  snapshot  epoch          x          y  residual")?;
    for p in &pca.path {
        outln!(
            "  {:>8} {:>6} {:>10.4} {:>10.4} {:>9.4}",
            p.snapshot,
            p.epoch,
            p.x(),
            p.y(),
            p.residual
        )?;
    }
    outln!(
        "written to {}",
        files.summary.parent().unwrap_or(&out).display()
    )?;
    Ok(())
}
