//! `landscape surface`: a 1-D or 2-D loss surface around a snapshot of any
//! run — the demo's, or one whose TorchScript model and data are given —
//! along seeded random (filter-, layer- or un-normalized), PCA-plane or
//! saved directions; in one process, as one shard of a batch-scheduler job
//! (`--shard i/n`), or over MPI (`--mpi`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tch_landscape::analysis::directions::{Directions, Ignore, Normalization};
use tch_landscape::analysis::pca::{DIRECTIONS_FILTER_FILE, DIRECTIONS_RAW_FILE};
use tch_landscape::analysis::surface::{Surface, SurfaceBuilder, SurfaceResult};
use tch_landscape::store::run::PCA_DIR;

use crate::model::{AxisArg, ModelArgs, Session};

/// Compute a 1-D or 2-D loss surface (every split of the data) around a
/// snapshot, written under RUN/surfaces/NAME where `landscape report` finds it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    landscape surface runs/demo/mlp-digits                       (→ RUN/surfaces/filter-2d)\n  \
    landscape surface runs/cnn --model cnn.pt --data digits.safetensors --bn recalibrate\n  \
    landscape surface runs/cnn --model cnn.pt --data d.npz --directions pca --x -2:2:31 --y -2:2:31\n  \
    landscape surface runs/demo/mlp-digits --dims 1 --norm layer --x -1:1:51\n  \
    landscape surface runs/demo/mlp-digits --shard 0/4 --out s/shard-0   (then `landscape merge`)\n  \
    mpirun -np 4 landscape surface runs/demo/mlp-digits --mpi")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory (resumes what it holds); default RUN/surfaces/NAME.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name of the result under RUN/surfaces (default: from the directions, e.g. filter-2d).
    #[arg(long)]
    name: Option<String>,
    /// Snapshot at the centre (default: the last). Random directions only.
    #[arg(long, alias = "snapshot")]
    at: Option<usize>,
    /// 1 for a line, 2 for a plane.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    dims: u8,
    /// random, pca (the plane written by `landscape pca`, centred at the
    /// final snapshot), or a directions file (.parquet, `Directions::save`).
    #[arg(long, default_value = "random")]
    directions: String,
    /// Normalization of random directions: filter (the paper's), layer or none.
    #[arg(long, value_enum, default_value_t = Norm::Filter)]
    norm: Norm,
    /// 1-D tensors (biases, BN γ/β) in random directions: bias-bn zeroes
    /// them (the paper's default), none treats them like weights.
    #[arg(long, value_enum, default_value_t = IgnoreArg::BiasBn)]
    ignore: IgnoreArg,
    /// PCA directions: filter-normalized (default) or unit-norm components.
    #[arg(long)]
    raw_pca: bool,
    /// x axis FROM:TO:POINTS (default: -R:R:GRID).
    #[arg(long, allow_hyphen_values = true)]
    x: Option<AxisArg>,
    /// y axis FROM:TO:POINTS (default: -R:R:GRID).
    #[arg(long, allow_hyphen_values = true)]
    y: Option<AxisArg>,
    /// Points per axis when --x/--y are not given.
    #[arg(long, default_value_t = 25)]
    grid: usize,
    /// Half-width R of the axes when --x/--y are not given.
    #[arg(long, default_value_t = 1.0)]
    range: f64,
    /// Seed of the random directions.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    #[command(flatten)]
    model: ModelArgs,
}

/// `--norm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Norm {
    Filter,
    Layer,
    None,
}

/// `--ignore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IgnoreArg {
    BiasBn,
    None,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let session = Session::open(&args.run, &args.model)?;
    let (dirs, default_name) = directions(&args, &session)?;
    if dirs.len() < args.dims as usize {
        bail!(
            "--dims {}: the directions have only {} direction(s)",
            args.dims,
            dirs.len()
        );
    }
    let name = args.name.clone().unwrap_or(default_name);
    let out = session.output(args.out.as_deref(), "surfaces", &name)?;
    let axis = |a: Option<AxisArg>| {
        a.unwrap_or(AxisArg {
            from: -args.range,
            to: args.range,
            points: args.grid,
        })
    };
    let (x, y) = (axis(args.x), axis(args.y));
    let mut builder = Surface::builder(&dirs);
    builder = if args.dims == 1 {
        if args.y.is_some() {
            bail!("--y: a 1-D surface (--dims 1) has no y axis");
        }
        builder.line(x.from..=x.to, x.points)
    } else {
        builder.grid(x.from..=x.to, x.points, y.from..=y.to, y.points)
    };
    tracing::info!(
        out = %out.display(),
        directions = %dirs.meta.description,
        evaluator = %session.description,
        "computing a loss surface"
    );
    match compute(&session, builder, &out, "surface")? {
        Some(res) => summary(&res, session.processes()),
        None => Ok(()),
    }
}

/// The directions asked for, and the result's default name.
fn directions(args: &Args, session: &Session) -> anyhow::Result<(Directions, String)> {
    let dims = format!("{}d", args.dims);
    match args.directions.as_str() {
        "random" => {
            let snapshot = session.snapshot(args.at)?;
            let centre = session.params_at(snapshot)?;
            let (norm, norm_name) = match args.norm {
                Norm::Filter => (Normalization::Filter, "filter"),
                Norm::Layer => (Normalization::Layer, "layer"),
                Norm::None => (Normalization::None, "raw"),
            };
            let ignore = match args.ignore {
                IgnoreArg::BiasBn => Ignore::BiasAndBn,
                IgnoreArg::None => Ignore::Nothing,
            };
            let dirs = Directions::random(&centre)
                .dims(args.dims.into())
                .seed(args.seed)
                .normalization(norm)
                .ignore(ignore)
                .build()?
                .with_description(format!(
                    "snapshot {snapshot} of {}",
                    session.run.manifest().run_id
                ))
                .with_reference([0.0, 0.0], format!("θ* = {}", session.describe(snapshot)))
                .with_run_id(&session.run.manifest().run_id);
            let mut name = format!("{norm_name}-{dims}");
            if args.at.is_some() {
                name.push_str(&format!("-at{snapshot}"));
            }
            Ok((dirs, name))
        }
        other => {
            if args.at.is_some() {
                bail!("--at: the centre of {other} directions is stored with them; --at applies to random directions");
            }
            let (path, name) = if other == "pca" {
                let file = if args.raw_pca {
                    DIRECTIONS_RAW_FILE
                } else {
                    DIRECTIONS_FILTER_FILE
                };
                let path = session.run_dir.join(PCA_DIR).join(file);
                if !path.exists() {
                    bail!(
                        "--directions pca: {} does not exist; run `landscape pca {}` first",
                        path.display(),
                        session.run_dir.display()
                    );
                }
                (path, format!("pca-{dims}"))
            } else {
                let path = Path::new(other).to_path_buf();
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .context("--directions: expected random, pca or a .parquet file")?;
                (path, format!("{stem}-{dims}"))
            };
            let mut dirs = Directions::load(&path)
                .with_context(|| format!("--directions {}", path.display()))?;
            if dirs.meta.run_id().is_none() {
                dirs = dirs.with_run_id(&session.run.manifest().run_id);
            }
            dirs.check_model(&session.vs)
                .with_context(|| format!("--directions {}", path.display()))?;
            // The model holds the centre's buffers (not part of PCA
            // directions) from the final snapshot.
            session.load(session.snapshot(None)?)?;
            Ok((dirs, name))
        }
    }
}

/// Evaluates `builder`'s surface into `out` with the session's shard and a
/// progress bar: in one process, or over MPI (`None` on ranks that do not
/// write).
pub fn compute(
    session: &Session,
    builder: SurfaceBuilder<'_>,
    out: &Path,
    stage: &str,
) -> anyhow::Result<Option<SurfaceResult>> {
    let (builder, pb) = session.configure(builder, stage);
    let surface = builder.build()?;
    let mut eval = session.evaluator()?;
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &session.mpi {
        let res = mpi.evaluate_surface(&surface, &session.vs, &mut eval, out)?;
        pb.finish_and_clear();
        return Ok(res);
    }
    let replicas = session.replicas();
    let res = if replicas > 1 {
        drop(eval);
        let spec = session.replica_spec();
        let (spec, centre) = (&spec, &session.vs);
        let before = tch::get_num_threads();
        tch::set_num_threads(1);
        let res = surface.evaluate_parallel(replicas, move || spec.build(centre), out);
        tch::set_num_threads(before);
        res?
    } else {
        surface.evaluate(&session.vs, &mut eval, out)?
    };
    pb.finish_and_clear();
    Ok(Some(res))
}

pub fn summary(r: &SurfaceResult, processes: usize) -> anyhow::Result<()> {
    outln!(
        "{}: {} points computed in {:.2} s ({:.1} points/s, {processes} process(es)){}",
        r.dir.display(),
        r.computed,
        r.seconds,
        r.computed as f64 / r.seconds.max(1e-9),
        r.spec
            .shard
            .map(|s| format!(", shard {s}"))
            .unwrap_or_default()
    )?;
    if let Some(first) = r.sharpness.first() {
        let [x, y] = first.reference;
        let on = if first.reference_on_grid {
            "a grid point"
        } else {
            "evaluated on its own, not a grid point"
        };
        outln!(
            "  reference: {} at ({}, {}), {on}",
            first.reference_label,
            x + 0.0,
            y + 0.0
        )?;
    }
    for s in &r.sharpness {
        let curvature = s
            .curvature_x
            .map_or("– (no grid points on both sides)".to_string(), |c| {
                format!("{c:.3}")
            });
        outln!(
            "  {:<5} L0 = {:.4}  d²L/dα² {curvature}",
            s.split,
            s.reference_loss,
        )?;
    }
    Ok(())
}
