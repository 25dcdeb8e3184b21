//! `landscape connect`: a low-loss curve between the final models of two
//! runs (mode connectivity, Garipov et al. 2018), against the straight line.

use std::path::PathBuf;

use anyhow::Context;
use tch_landscape::analysis::connect::{
    evaluate_paths, ConnectSummary, Curve, CurveKind, CurveTrainer, TrainSettings,
};
use tch_landscape::analysis::evaluator::Evaluator;
use tch_landscape::analysis::model_check::ModelMatch;
use tch_landscape::store::connect::STATE_FILE;
use tch_landscape::store::fsutil::DirLock;
use tch_landscape::Run;

use crate::model::{ModelArgs, Session};

/// Trains a curve with one bend between the final models of RUN_A and RUN_B
/// (quadratic Bézier or two segments) to low training loss, then evaluates
/// it and the straight line between the same ends on every split: loss and
/// accuracy against t, and each path's barrier (its largest loss minus the
/// mean of the ends'). Writes curve.parquet, connect.json and the bend's
/// training state (curve-state.arrow: interrupted trainings resume from
/// it, to the same curve). BatchNorm statistics are re-estimated at each t
/// with --bn recalibrate.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    landscape connect runs/seed1 runs/seed2                (→ runs/seed1/connect/bezier-seed2)\n  \
    landscape connect runs/a runs/b --curve polychain --epochs 40 --points 61\n  \
    duckdb -c \"select path, max(loss) from 'runs/a/connect/bezier-b/curve.parquet' where split='train' group by path\"")]
pub struct Args {
    /// θ_A: the final snapshot of this run.
    run_a: PathBuf,
    /// θ_B: the final snapshot of this run (same model).
    run_b: PathBuf,
    /// The curve: bezier or polychain.
    #[arg(long, default_value = "bezier")]
    curve: CurveKind,
    /// Training epochs of the bend.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// SGD learning rate of the bend.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay on the bend.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Seed of the batch order and of the sampled t.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Points evaluated along each path, ends included.
    #[arg(long, default_value_t = 61)]
    points: usize,
    /// Output directory (resumes the training it holds); default
    /// RUN_A/connect/NAME.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name under RUN_A/connect (default: CURVE-<RUN_B's directory name>).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let session = Session::open(&args.run_a, &args.model)?;
    let a_end = session.snapshot(None)?;
    let run_b =
        Run::open(&args.run_b).with_context(|| format!("RUN_B {}", args.run_b.display()))?;
    let matched = ModelMatch::check(&run_b, &session.vs, session.bn.is_some())
        .with_context(|| format!("RUN_B {}", args.run_b.display()))?;
    let b_end = run_b
        .len()
        .checked_sub(1)
        .with_context(|| format!("RUN_B {}: the run has no snapshots", args.run_b.display()))?;
    let a = session.params_at(a_end)?;
    let b = matched.params_at(&run_b, b_end)?;
    let ends = [
        format!(
            "{} of run {}",
            session.describe(a_end),
            session.run.manifest().run_id
        ),
        format!(
            "snapshot {b_end} (final) of run {}",
            run_b.manifest().run_id
        ),
    ];
    let other = args
        .run_b
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "other".into());
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{other}", args.curve));
    let out = session.output(args.out.as_deref(), "connect", &name)?;
    tch_landscape::store::fsutil::create_output_dir(&out)?;
    let _lock = DirLock::acquire(&out)?;
    let settings = TrainSettings {
        epochs: args.epochs,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        batch: session.batch,
        seed: args.seed,
    };
    let train = session.data.train();
    let mut curve = Curve::midpoint(args.curve, a, b)?;
    outln!(
        "training a {} curve between {} and {} ({} epochs, lr {}, seed {}) → {}",
        args.curve,
        ends[0],
        ends[1],
        args.epochs,
        args.lr,
        args.seed,
        out.display()
    )?;
    let log = CurveTrainer::new(&session.vs, session.module(), &train.x, &train.y)
        .settings(settings.clone())
        .loss(session.loss)
        .train(&mut curve, Some(&out.join(STATE_FILE)))?;
    if let Some(last) = log.last() {
        outln!(
            "  epoch {}: mean training loss along the curve {:.4}",
            last.epoch,
            last.loss
        )?;
    }
    let mut eval = session.evaluator()?;
    let rows = evaluate_paths(&curve, &session.vs, &mut eval, args.points)?;
    let summary = ConnectSummary {
        curve: args.curve,
        settings,
        points: args.points,
        ends,
        evaluator: eval.describe(),
        barriers: ConnectSummary::barriers_of(&rows),
        log,
        seconds: t0.elapsed().as_secs_f64(),
    };
    summary.save(&out, &rows)?;
    for b in &summary.barriers {
        outln!(
            "  {:<5} barrier on {:<6} {:>9.4} (largest loss at t = {:.3})",
            b.path,
            b.split,
            b.height,
            b.at_t
        )?;
    }
    outln!("written to {} ({:.1} s)", out.display(), summary.seconds)?;
    Ok(())
}
