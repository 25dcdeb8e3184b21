//! `landscape interpolate`: the loss along the straight line between two
//! snapshots of a run, or between the final snapshots of two runs (paper
//! Figs. 2a and 3), θ(α) = (1−α)θ_A + αθ_B.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::model_check::ModelMatch;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::Run;

use crate::model::{AxisArg, ModelArgs, Session};
use crate::surface::{compute, summary};

/// Linear interpolation between two snapshots (or two runs' final models),
/// written under RUN/surfaces/NAME where `landscape report` finds it.
/// BatchNorm statistics are interpolated with the weights (--bn fixed, the
/// default) or re-estimated at each α (--bn recalibrate).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    landscape interpolate runs/demo/mlp-digits                      (θ₀ → final, → RUN/surfaces/interp-0-N)\n  \
    landscape interpolate runs/small-batch --other runs/large-batch --x -0.5:1.5:41\n  \
    landscape interpolate runs/cnn --model cnn.pt --data d.safetensors --from 3 --to 9 --bn recalibrate")]
pub struct Args {
    /// The run directory (θ_A is its snapshot --from).
    run: PathBuf,
    /// A second run of the same model: θ_B is its final snapshot.
    #[arg(long)]
    other: Option<PathBuf>,
    /// Snapshot of θ_A (default: 0 with one run, the last with --other).
    #[arg(long)]
    from: Option<usize>,
    /// Snapshot of θ_B in the same run (default: the last).
    #[arg(long, conflicts_with = "other")]
    to: Option<usize>,
    /// α axis FROM:TO:POINTS (α = 0 is θ_A, α = 1 is θ_B).
    #[arg(long, allow_hyphen_values = true, default_value = "-0.5:1.5:41")]
    x: AxisArg,
    /// Output directory (resumes what it holds); default RUN/surfaces/NAME.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name under RUN/surfaces (default: interp-FROM-TO, or interp-OTHER).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let session = Session::open(&args.run, &args.model)?;
    let last = session.snapshot(None)?;
    // The reference point of the sharpness figures: the end that is the
    // trained model (the later snapshot of one run; run A's model between
    // two runs), stated with the result.
    let (a, b, description, default_name, reference) = match &args.other {
        None => {
            let from = session.snapshot(Some(args.from.unwrap_or(0)))?;
            let to = session.snapshot(Some(args.to.unwrap_or(last)))?;
            if from == to {
                bail!("--from {from} --to {to}: the two ends are the same snapshot");
            }
            (
                session.params_at(from)?,
                session.params_at(to)?,
                format!(
                    "snapshot {from} → snapshot {to} of {}",
                    session.run.manifest().run_id
                ),
                format!("interp-{from}-{to}"),
                if to > from {
                    (1.0, format!("the later end, {}", session.describe(to)))
                } else {
                    (0.0, format!("the later end, {}", session.describe(from)))
                },
            )
        }
        Some(other) => {
            let from = session.snapshot(Some(args.from.unwrap_or(last)))?;
            let run_b = Run::open(other).with_context(|| format!("--other {}", other.display()))?;
            let matched = ModelMatch::check(&run_b, &session.vs, session.bn.is_some())
                .with_context(|| format!("--other {}", other.display()))?;
            let end = run_b.len().checked_sub(1).with_context(|| {
                format!("--other {}: the run has no snapshots", other.display())
            })?;
            let b = matched.params_at(&run_b, end)?;
            let other_name = other
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "other".into());
            (
                session.params_at(from)?,
                b,
                format!(
                    "snapshot {from} of {} → final snapshot {end} of {}",
                    session.run.manifest().run_id,
                    run_b.manifest().run_id
                ),
                format!("interp-{other_name}"),
                (
                    0.0,
                    format!(
                        "run A's end, {} of {}",
                        session.describe(from),
                        session.run.manifest().run_id
                    ),
                ),
            )
        }
    };
    let dirs = Directions::interpolation(&a, &b)?
        .with_description(description)
        .with_reference([reference.0, 0.0], reference.1)
        .with_run_id(&session.run.manifest().run_id);
    let name = args.name.clone().unwrap_or(default_name);
    let out = session.output(args.out.as_deref(), "surfaces", &name)?;
    // Every variable of the model moves with α, except running statistics
    // the runs lack, which the check allowed only because they are
    // recalibrated at every point.
    let builder = Surface::builder(&dirs).line(args.x.from..=args.x.to, args.x.points);
    tracing::info!(out = %out.display(), directions = %dirs.meta.description, "computing an interpolation");
    match compute(&session, builder, &out, "interpolation")? {
        Some(res) => {
            summary(&res, session.processes())?;
            let at = |alpha: f64| {
                res.points.iter().find(|p| p.point.x == alpha).map(|p| {
                    p.splits
                        .iter()
                        .map(|s| format!("{} {:.4}", s.split, s.loss))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            };
            for (alpha, end) in [(0.0, "θ_A"), (1.0, "θ_B")] {
                if let Some(text) = at(alpha) {
                    outln!("  α = {alpha} ({end}): loss {text}")?;
                }
            }
            Ok(())
        }
        None => Ok(()),
    }
}
