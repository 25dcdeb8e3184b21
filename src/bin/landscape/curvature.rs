//! `landscape curvature`: the Hessian of the training loss at a snapshot
//! (λmax/λmin, top-k, trace, spectral density) or a |λmin/λmax| map over a
//! grid of random directions around it (paper Fig. 7).

use std::path::PathBuf;

use anyhow::bail;
use serde::Serialize;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::hessian::{
    Curvature, CurvatureMap, Hessian, Hutchinson, Lanczos, Slq, SupervisedObjective,
};
use tch_landscape::analysis::surface::Surface;
use tch_landscape::store::fsutil::DirLock;
use tch_landscape::store::hessian::{write_hessian, HessianRow};
use tch_landscape::tensor::Selection;

use crate::model::{progress_bar, AxisArg, ModelArgs, Session};

/// Hessian eigenvalues of the training loss at a snapshot, or a
/// |λmin/λmax| map around it (--map), written under RUN/curvature/NAME.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    landscape curvature runs/demo/mlp-digits                          (λmax, λmin at the last snapshot)\n  \
    landscape curvature runs/cnn --model cnn.pt --data d.safetensors --top-k 5 --trace 100 --density\n  \
    landscape curvature runs/demo/mlp-digits --map --x -0.5:0.5:7 --y -0.5:0.5:7\n\n\
    Writes hessian.parquet (one point) or curvature.parquet (--map).")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory; default RUN/curvature/NAME.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name under RUN/curvature (default: hessian-SNAPSHOT, or ratio-filter-2d).
    #[arg(long)]
    name: Option<String>,
    /// Snapshot (default: the last).
    #[arg(long)]
    at: Option<usize>,
    /// Parameters: weights (dim ≥ 2, the reference's choice) or trainable (biases, BN γ/β too).
    #[arg(long, value_enum, default_value_t = Select::Weights)]
    select: Select,
    /// Relative residual tolerance of Lanczos.
    #[arg(long, default_value_t = 1e-3)]
    tol: f64,
    /// Lanczos iteration cap.
    #[arg(long, default_value_t = 200)]
    max_iter: usize,
    /// Seed of the Lanczos start vector, trace probes and density probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also the k largest and k smallest eigenvalues.
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    /// Hutchinson's trace with this many probes (0: none).
    #[arg(long, default_value_t = 0)]
    trace: usize,
    /// The spectral density by stochastic Lanczos quadrature.
    #[arg(long)]
    density: bool,
    /// A map of λmin, λmax, |λmin/λmax| over a grid of filter-normalized
    /// random directions around the snapshot instead of one point.
    #[arg(long)]
    map: bool,
    /// Map x axis FROM:TO:POINTS.
    #[arg(long, allow_hyphen_values = true, default_value = "-0.5:0.5:5")]
    x: AxisArg,
    /// Map y axis FROM:TO:POINTS.
    #[arg(long, allow_hyphen_values = true, default_value = "-0.5:0.5:5")]
    y: AxisArg,
    /// Seed of the map's random directions.
    #[arg(long, default_value_t = 123)]
    direction_seed: u64,
    #[command(flatten)]
    model: ModelArgs,
}

/// `--select`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Select {
    Weights,
    Trainable,
}

/// What `hessian.parquet` records about how its values were computed.
#[derive(Debug, Serialize)]
struct Settings {
    schema_version: u32,
    run_id: String,
    snapshot: usize,
    epoch: u64,
    selection: String,
    parameters: usize,
    lanczos_tol: f64,
    lanczos_max_iter: usize,
    seed: u64,
    top_k: usize,
    trace_probes: usize,
    density: bool,
    bn: String,
    objective: String,
    model: String,
    hvps: usize,
    seconds: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let session = Session::open(&args.run, &args.model)?;
    let snapshot = session.snapshot(args.at)?;
    let selection = match args.select {
        Select::Weights => Selection::Weights,
        Select::Trainable => Selection::Trainable,
    };
    let lanczos = Lanczos::builder()
        .tol(args.tol)
        .max_iter(args.max_iter)
        .seed(args.seed)
        .top_k(args.top_k)
        .bottom_k(args.top_k)
        .build()?;
    session.load(snapshot)?;
    let objective = session.objective()?;
    if args.map {
        return map(&args, &session, snapshot, selection, lanczos, objective);
    }
    if args.model.shard.is_some() || args.model.mpi {
        bail!("--shard/--mpi: a single point is computed by one process; use them with --map");
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("hessian-{snapshot}"));
    let out = session.output(args.out.as_deref(), "curvature", &name)?;
    let _lock = DirLock::create(&out)?;
    let t0 = std::time::Instant::now();
    tracing::info!(snapshot, selection = %selection, "computing Hessian eigenvalues");
    let mut h = Hessian::at(&session.vs, objective, &selection)?;
    let pb = progress_bar("hessian", true);
    pb.set_message(format!("Hessian ({} parameters)", h.dim()));
    pb.tick();
    let spectrum = tch::with_grad(|| h.eigenvalues(&lanczos))?;
    let mut rows = Vec::new();
    let row = |quantity: &str, index: usize, value: f64, aux: Option<f64>| HessianRow {
        quantity: quantity.to_string(),
        index: index as u32,
        value,
        aux,
    };
    rows.push(row("lambda_max", 0, spectrum.lambda_max, None));
    rows.push(row("lambda_min", 0, spectrum.lambda_min, None));
    for (k, (v, r)) in spectrum.top.iter().zip(&spectrum.top_residuals).enumerate() {
        rows.push(row("top", k, *v, Some(*r)));
    }
    for (k, (v, r)) in spectrum
        .bottom
        .iter()
        .zip(&spectrum.bottom_residuals)
        .enumerate()
    {
        rows.push(row("bottom", k, *v, Some(*r)));
    }
    let trace = if args.trace > 0 {
        tracing::info!(probes = args.trace, "estimating the Hessian trace");
        let hut = Hutchinson::builder()
            .probes(args.trace)
            .seed(args.seed)
            .build()?;
        let t = tch::with_grad(|| h.trace(&hut))?;
        rows.push(row("trace", 0, t.estimate, Some(t.std_error)));
        Some(t)
    } else {
        None
    };
    let density = if args.density {
        tracing::info!("estimating the spectral density");
        let slq = Slq::builder().seed(args.seed).build()?;
        let d = tch::with_grad(|| h.density(&slq))?;
        for (k, (x, v)) in d.grid.iter().zip(&d.density).enumerate() {
            rows.push(row("density", k, *v, Some(*x)));
        }
        Some(d)
    } else {
        None
    };
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let settings = Settings {
        schema_version: 1,
        run_id: session.run.manifest().run_id.clone(),
        snapshot,
        epoch: session.run.snapshots()[snapshot].meta().epoch,
        selection: selection.to_string(),
        parameters: h.dim(),
        lanczos_tol: args.tol,
        lanczos_max_iter: args.max_iter,
        seed: args.seed,
        top_k: args.top_k,
        trace_probes: args.trace,
        density: args.density,
        bn: session
            .bn
            .map_or("fixed (as recorded)".to_string(), |b| b.to_string()),
        objective: h.describe(),
        model: session.description.clone(),
        hvps: h.hvps(),
        seconds,
    };
    let path = write_hessian(&out, &settings.run_id, &rows, &settings)?;
    outln!(
        "Hessian of the training loss at snapshot {snapshot} ({} parameters, {}): {} HVPs in {seconds:.2} s",
        h.dim(),
        selection,
        h.hvps()
    )?;
    outln!(
        "  λmax {:.6}  λmin {:.6}  |λmin/λmax| {:.4}",
        spectrum.lambda_max,
        spectrum.lambda_min,
        spectrum.abs_ratio()
    )?;
    if args.top_k > 1 {
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.6}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!("  top {}: {}", args.top_k, list(&spectrum.top))?;
        outln!("  bottom {}: {}", args.top_k, list(&spectrum.bottom))?;
    }
    if let Some(t) = trace {
        outln!(
            "  trace {:.4} ± {:.4} ({} probes)",
            t.estimate,
            t.std_error,
            t.probes
        )?;
    }
    if let Some(d) = density {
        outln!(
            "  spectral density on [{:.4}, {:.4}] ({} points)",
            d.grid.first().copied().unwrap_or(f64::NAN),
            d.grid.last().copied().unwrap_or(f64::NAN),
            d.grid.len()
        )?;
    }
    outln!("written to {}", path.display())?;
    Ok(())
}

/// The |λmin/λmax| map around the snapshot.
fn map(
    args: &Args,
    session: &Session,
    snapshot: usize,
    selection: Selection,
    lanczos: Lanczos,
    objective: SupervisedObjective<'_>,
) -> anyhow::Result<()> {
    let centre = session.params_at(snapshot)?;
    let dirs = Directions::random(&centre)
        .seed(args.direction_seed)
        .build()?
        .with_description(format!(
            "snapshot {snapshot} of {}",
            session.run.manifest().run_id
        ))
        .with_reference([0.0, 0.0], format!("θ* = {}", session.describe(snapshot)))
        .with_run_id(&session.run.manifest().run_id);
    // Named apart from surfaces ("filter-2d"): a map of the Hessian's
    // eigenvalue ratio, usually over a smaller range.
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| "ratio-filter-2d".into());
    let out = session.output(args.out.as_deref(), "curvature", &name)?;
    let builder = Surface::builder(&dirs).grid(
        args.x.from..=args.x.to,
        args.x.points,
        args.y.from..=args.y.to,
        args.y.points,
    );
    let (builder, pb) = session.configure(builder, "curvature map");
    let curvature = Curvature::builder(builder.build()?)
        .selection(selection)
        .lanczos(lanczos)
        .build()?;
    tracing::info!(out = %out.display(), "computing a curvature map");
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &session.mpi {
        let res = mpi.evaluate_curvature(curvature, &session.vs, objective, &out)?;
        pb.finish_and_clear();
        return match res {
            Some(m) => map_summary(&m, &out),
            None => Ok(()),
        };
    }
    let m = curvature.evaluate(&session.vs, objective, &out)?;
    pb.finish_and_clear();
    map_summary(&m, &out)
}

fn map_summary(m: &CurvatureMap, out: &std::path::Path) -> anyhow::Result<()> {
    let ratios = m.abs_ratio();
    let max = ratios.iter().copied().fold(f64::NAN, f64::max);
    outln!(
        "{}: |λmin/λmax| over {} points, largest {max:.4}",
        out.display(),
        ratios.len()
    )?;
    if let Some(c) = m.centre() {
        outln!(
            "  centre: λmax {:.6}  λmin {:.6}  |λmin/λmax| {:.4}",
            c.lambda_max,
            c.lambda_min,
            c.abs_ratio
        )?;
    }
    Ok(())
}
