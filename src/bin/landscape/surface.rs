//! `landscape surface`: a filter-normalized surface around a snapshot of a
//! run recorded by `landscape demo` (the digits MLP), in one process, as one
//! shard of a batch-scheduler job (`--shard i/n`), or over MPI (`--mpi`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use tch::nn::VarStore;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::shard::Shard;
use tch_landscape::analysis::surface::{Surface, SurfaceResult};
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::DIGITS_MLP_MODEL;
use tch_landscape::models::{Mlp, W1_SIZES};
use tch_landscape::store::fsutil::create_dir_in;
use tch_landscape::Run;

/// Compute a 1-D or 2-D filter-normalized loss surface (train and test
/// splits of the UCI digits) around a snapshot of a run recorded by
/// `landscape demo`. Your own models: use the library (README).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    landscape surface runs/demo/mlp-digits --out s/filter-2d\n  \
    landscape surface runs/demo/mlp-digits --shard 0/4 --out s/shard-0   (then `landscape merge`)\n  \
    mpirun -np 4 landscape surface runs/demo/mlp-digits --mpi --out s/filter-2d")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory (resumes what it holds).
    #[arg(long)]
    out: PathBuf,
    /// Snapshot at the centre (default: the last).
    #[arg(long)]
    snapshot: Option<usize>,
    /// 1 for a line, 2 for a plane.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    dims: u8,
    /// Points per axis.
    #[arg(long, default_value_t = 25)]
    grid: usize,
    /// Half-width of the grid: coordinates run from -R to R.
    #[arg(long, default_value_t = 1.0)]
    range: f64,
    /// Seed of the random directions.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// Compute only shard i of n (points with flat index ≡ i mod n), for
    /// Slurm array jobs; `slurm` reads SLURM_ARRAY_TASK_ID/COUNT.
    #[arg(long)]
    shard: Option<String>,
    /// Intra-op threads (default: all cores, or cores / ranks per node under --mpi).
    #[arg(long)]
    threads: Option<usize>,
    /// Launched by mpirun: every rank evaluates a share, rank 0 writes.
    #[arg(long)]
    mpi: bool,
}

/// The most intra-op threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;

pub fn run(args: Args) -> anyhow::Result<()> {
    #[cfg(feature = "mpi")]
    let mpi = if args.mpi {
        Some(tch_landscape::distributed::Mpi::init()?)
    } else {
        None
    };
    #[cfg(not(feature = "mpi"))]
    if args.mpi {
        bail!("--mpi: this landscape was built without MPI; rebuild with `cargo build --release --features mpi,cli`");
    }
    if let Some(t) = args.threads {
        if !(1..=MAX_THREADS).contains(&t) {
            bail!("--threads {t}: expected 1 to {MAX_THREADS}");
        }
        tch::set_num_threads(t as i32);
    }
    let shard = parse_shard(args.shard.as_deref())?;
    let run = open_demo_run(&args)?;
    if args.out.starts_with(&args.run) {
        // Inside the run, which may come from someone else: no planted link
        // between the run and the output.
        create_dir_in(&args.run, &args.out)?;
    }
    let snapshot = match args.snapshot {
        Some(s) => s,
        None => run
            .len()
            .checked_sub(1)
            .context("the run has no snapshots")?,
    };
    let centre = ParamSet::from_run(&run, snapshot)?;
    let dirs = Directions::random(&centre)
        .dims(args.dims.into())
        .seed(args.seed)
        .build()?
        .with_description(format!("snapshot {snapshot} of {}", run.manifest().run_id));

    #[cfg(feature = "mpi")]
    let device = mpi.as_ref().map_or(tch::Device::Cpu, |m| m.device());
    #[cfg(not(feature = "mpi"))]
    let device = tch::Device::Cpu;
    let vs = VarStore::new(device);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    run.load_into(snapshot, &vs)?;
    let (train, test) = Digits::load()?.split_at(1437)?;
    let on = |t: &tch::Tensor| t.to_device(device);
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &on(&train.x), &on(&train.y))?
        .split("test", &on(&test.x), &on(&test.y))?;

    let r = args.range;
    let mut builder = if args.dims == 1 {
        Surface::builder(&dirs).line(-r..=r, args.grid)
    } else {
        Surface::builder(&dirs).grid(-r..=r, args.grid, -r..=r, args.grid)
    };
    if let Some(s) = shard {
        builder = builder.shard(s);
    }
    let surface = builder.build()?;
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &mpi {
        return match mpi.evaluate_surface(&surface, &vs, &mut eval, &args.out)? {
            Some(res) => summary(&res, mpi.size()),
            None => Ok(()),
        };
    }
    let res = surface.evaluate(&vs, &mut eval, &args.out)?;
    summary(&res, 1)
}

/// `--shard i/n` or `--shard slurm`.
fn parse_shard(arg: Option<&str>) -> anyhow::Result<Option<Shard>> {
    Ok(match arg {
        None => None,
        Some("slurm") => Some(Shard::from_slurm_env()?.context(
            "--shard slurm: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not an array job?)",
        )?),
        Some(s) => Some(s.parse()?),
    })
}

/// The run, which must have been recorded by `landscape demo`.
fn open_demo_run(args: &Args) -> anyhow::Result<Run> {
    let run = Run::open(&args.run)?;
    let model_name = run.manifest().user.get("model").map(String::as_str);
    if model_name != Some(DIGITS_MLP_MODEL) {
        bail!(
            "{}: `landscape surface` knows only runs of `landscape demo` (model '{DIGITS_MLP_MODEL}'), \
             this run's model is {}; for your own model use SurfaceBuilder::shard / Mpi::evaluate_surface from your program (README, \"Many machines\")",
            args.run.display(),
            model_name.map_or("not recorded".to_string(), |m| format!("'{m}'"))
        );
    }
    Ok(run)
}

fn summary(r: &SurfaceResult, processes: usize) -> anyhow::Result<()> {
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
    for s in &r.sharpness {
        outln!(
            "  {:<5} L(θ*) = {:.4}  curvature {:.3}",
            s.split,
            s.centre_loss,
            s.curvature_x.unwrap_or(f64::NAN)
        )?;
    }
    Ok(())
}
