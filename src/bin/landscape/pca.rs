//! `landscape pca`: trajectory PCA of a recorded run (§7 of the paper).

use std::path::PathBuf;

use anyhow::Context;
use tch_landscape::analysis::pca::{
    GramPrecision, SignRule, TrajectoryPca, DEFAULT_CHUNK, DEFAULT_COMPONENTS,
};
use tch_landscape::{Run, Selection};

/// Principal components of a run's trajectory: explained variance, the path
/// in PC1/PC2 coordinates, per-tensor figures, and the PCA plane as
/// directions (raw and filter-normalized) for surfaces on the PCA plane.
///
/// Streams the snapshots once for the figures and the path (the (n−1)² Gram
/// matrix and a few chunks in memory, whatever the model size), and once more
/// for the directions (skip with --no-directions).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  landscape pca runs/demo/mlp-digits --out /tmp/pca\n  duckdb -c \"select * from '/tmp/pca/pca-path.parquet'\"\n  landscape pca --joint runs/a runs/b --out /tmp/joint   # one plane for both paths\n\nWrites pca-variance.parquet, pca-path.parquet, pca-tensors.parquet, pca.json,\ndirections-raw.parquet and directions-filter.parquet."
)]
pub struct Args {
    /// The run directory (with --joint: two or more run directories).
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Output directory (default: RUN/pca; required with --joint).
    #[arg(long)]
    out: Option<PathBuf>,
    /// One PCA plane fitted to the trajectories of all the runs given
    /// together, centred on the FIRST run's final model: every run's path
    /// relative to it, on the same axes. The runs must have the same tensors
    /// and shapes.
    #[arg(long)]
    joint: bool,
    /// Also make the final model an (all-zero) row of the PCA matrix, as the
    /// paper's reference code does, before mean-centring; by default it is
    /// only the centre (the paper's text). Moves the ratios and the path by a
    /// few percent.
    #[arg(long)]
    include_final: bool,
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
    /// Precision of the Gram matrix's chunk products: f32 (the snapshots'
    /// own precision, full BLAS speed) or f64 (exact to ~1e-12, about twice
    /// the time). Sums are float64 either way.
    #[arg(long, default_value = "f32")]
    precision: GramPrecision,
    /// How component signs are fixed: path (the snapshot with the largest
    /// |centred coordinate| is positive: scikit-learn < 1.5 and the paper's
    /// reference code; one pass) or components (the component's largest
    /// |entry| is positive: scikit-learn ≥ 1.5; one more pass).
    #[arg(long, default_value = "path")]
    signs: SignRule,
    /// Do not write the PCA plane as directions (directions-*.parquet, for
    /// `landscape surface --directions pca`): saves the second pass over the
    /// snapshots.
    #[arg(long)]
    no_directions: bool,
    /// libtorch threads for the Gram products (default: the cores minus one
    /// for the reader thread, 1 to 8: idle BLAS threads spinning beside the
    /// reader cost more than they gain).
    #[arg(long)]
    threads: Option<usize>,
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
    let mut builder = TrajectoryPca::builder();
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    let pb = pca_progress_bar();
    let bar = pb.clone();
    let builder = builder
        .on_progress(move |p| {
            if bar.length() != Some(p.total) || bar.message() != p.pass {
                bar.set_message(p.pass);
                bar.set_length(p.total);
                bar.set_position(0);
                bar.reset_eta();
                if bar.is_hidden() {
                    // Drawn from the first report on (stderr, terminals only).
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
            }
            bar.set_position(p.done);
        })
        .components(args.components)
        .chunk(args.chunk)
        .selection(selection)
        .include_final(args.include_final)
        .precision(args.precision)
        .signs(args.signs)
        .build()?;
    let (pca, files, out) = if args.joint {
        if args.runs.len() < 2 {
            anyhow::bail!(
                "--joint needs at least two run directories, got {}",
                args.runs.len()
            );
        }
        let Some(out) = args.out.clone() else {
            anyhow::bail!(
                "--joint needs --out DIR (the PCA of several runs belongs to none of them)"
            );
        };
        let runs = args
            .runs
            .iter()
            .map(|d| Run::open(d).with_context(|| format!("opening run {}", d.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<&Run> = runs.iter().collect();
        let pca = builder
            .fit_joint(&refs)
            .context("joint trajectory PCA failed")?;
        let files = pca.save_joint_with(&refs, &out, !args.no_directions)?;
        (pca, files, out)
    } else {
        let [dir] = args.runs.as_slice() else {
            anyhow::bail!(
                "expected one run directory, got {} (use --joint for a PCA of several runs)",
                args.runs.len()
            );
        };
        let run = Run::open(dir)?;
        let pca = builder.fit(&run).context("trajectory PCA failed")?;
        let out = args.out.clone().unwrap_or_else(|| dir.join("pca"));
        let files = pca.save_joint_with(&[&run], &out, !args.no_directions)?;
        (pca, files, out)
    };
    pb.finish_and_clear();
    outln!(
        "trajectory PCA of {} snapshots{}, {} parameters ({:.2} s): rank {}{}",
        pca.path.len(),
        match pca.runs.len() {
            1 => String::new(),
            n => format!(
                " of {n} runs (centre: the final model of run {})",
                pca.run_id
            ),
        },
        pca.numel,
        pca.seconds,
        pca.rank,
        if pca.include_final {
            ", final model included as a zero row"
        } else {
            ""
        }
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
    let joint = pca.runs.len() > 1;
    outln!(
        "  {}snapshot  epoch        pc1        pc2  residual",
        if joint { "run       " } else { "" }
    )?;
    for p in &pca.path {
        let run: String = p.run_id.chars().take(8).collect();
        outln!(
            "  {}{:>8} {:>6} {:>10.4} {:>10.4} {:>9.4}",
            if joint {
                format!("{run:<10}")
            } else {
                String::new()
            },
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

/// The bar of `landscape pca`: the pass over the snapshots and how many
/// values of each snapshot it has read (on a terminal only).
fn pca_progress_bar() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::hidden();
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "pca {msg:<10} [{bar:30}] {percent:>3}% of {human_len} values per snapshot, {eta} left",
    ) {
        pb.set_style(style);
    }
    pb
}
