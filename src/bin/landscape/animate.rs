//! `landscape animate`: the loss landscape over training — one surface per
//! chosen snapshot along the same directions (the trajectory PCA's plane by
//! default, with the optimizer's path across it), written as surface
//! directories, one table, an animated GIF and a PNG sequence.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use tch_landscape::analysis::animate::{
    frame_directions, AnimationPlane, AnimationResult, AnimationSpec, FrameSpec, PathPoint,
    ANIMATION_FORMAT, ANIMATION_SCHEMA_VERSION,
};
use tch_landscape::analysis::directions::{Directions, Normalization};
use tch_landscape::analysis::pca::{PcaSummary, TrajectoryPca, DIRECTIONS_RAW_FILE};
use tch_landscape::analysis::surface::Surface;
use tch_landscape::report::animation::{write_media, MediaOptions};
use tch_landscape::store::fsutil::DirLock;
use tch_landscape::store::run::PCA_DIR;

use crate::model::{AxisArg, ModelArgs, Session};

/// The loss landscape over training: a 2-D surface at each chosen snapshot
/// along the same directions, as frames of an animation. With the PCA plane
/// (default) frame k is the plane through snapshot k parallel to the
/// trajectory PCA's PC1/PC2 plane, in its coordinates, so the optimizer's
/// path is drawn across every frame (the PCA is fitted first when RUN/pca
/// has no components). With random or saved directions each frame is
/// centred on its snapshot. Frames are surface directories (resumed when
/// rerun; --shard i/n and --mpi apply to every frame); the command writes
/// animation.parquet, animation.gif and a PNG per frame (png/) for slides;
/// `landscape report` shows it as an interactive animation.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    landscape animate runs/demo/mlp-digits                         (→ RUN/animations/pca)\n  \
    landscape animate runs/demo/mlp-digits --snapshots 0:20:2 --grid 25\n  \
    landscape animate runs/cnn --model cnn.pt --data d.npz --directions random --range 0.5\n  \
    duckdb -c \"select epoch, min(loss) from 'runs/demo/mlp-digits/animations/pca/animation.parquet' where split='train' group by epoch\"")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Snapshots, FROM:TO:STEP (indices; TO included when the step lands
    /// on it), FROM:TO, or `all` (default: all, or 16 evenly spaced ones
    /// with the first and the last when there are more).
    #[arg(long)]
    snapshots: Option<SnapshotRange>,
    /// pca (the trajectory PCA's plane, unit-norm components), random
    /// (seeded, filter-normalized at the final model), or a directions file
    /// (.parquet, two directions).
    #[arg(long, default_value = "pca")]
    directions: String,
    /// x axis FROM:TO:POINTS (default: the path's extent plus a margin on
    /// the PCA plane, -R:R:GRID otherwise).
    #[arg(long, allow_hyphen_values = true)]
    x: Option<AxisArg>,
    /// y axis FROM:TO:POINTS.
    #[arg(long, allow_hyphen_values = true)]
    y: Option<AxisArg>,
    /// Points per axis when --x/--y are not given.
    #[arg(long, default_value_t = 25)]
    grid: usize,
    /// Half-width R of the axes of random or saved directions.
    #[arg(long, default_value_t = 1.0)]
    range: f64,
    /// Seed of random directions.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// The split drawn in the GIF and PNG frames.
    #[arg(long, default_value = "train")]
    split: String,
    /// Seconds each frame of the GIF is shown (the last one 3×).
    #[arg(long, default_value_t = 0.6)]
    frame_seconds: f64,
    /// Output directory (resumes what it holds); default RUN/animations/NAME.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name under RUN/animations (default: pca, random or the file's stem).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

/// `--snapshots`: a range of snapshot indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotRange {
    from: usize,
    to: Option<usize>,
    step: usize,
}

impl std::str::FromStr for SnapshotRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(SnapshotRange {
                from: 0,
                to: None,
                step: 1,
            });
        }
        let num = |t: &str| -> Result<usize, String> {
            t.trim()
                .parse()
                .map_err(|_| format!("'{t}' is not a snapshot index"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (from, to, step) = match parts[..] {
            [a, b] => (num(a)?, num(b)?, 1),
            [a, b, c] => (num(a)?, num(b)?, num(c)?),
            _ => return Err(format!("'{s}': expected FROM:TO:STEP, FROM:TO or all")),
        };
        if step == 0 || to < from {
            return Err(format!(
                "'{s}': expected FROM ≤ TO and a positive STEP, e.g. 0:20:2"
            ));
        }
        Ok(SnapshotRange {
            from,
            to: Some(to),
            step,
        })
    }
}

/// Most frames chosen when --snapshots is not given.
const DEFAULT_FRAMES: usize = 16;

/// The snapshot indices of the frames.
fn frame_snapshots(range: Option<SnapshotRange>, n: usize) -> anyhow::Result<Vec<usize>> {
    let Some(last) = n.checked_sub(1) else {
        bail!("the run has no snapshots");
    };
    let Some(r) = range else {
        if n <= DEFAULT_FRAMES {
            return Ok((0..n).collect());
        }
        let k = DEFAULT_FRAMES - 1;
        let mut v: Vec<usize> = (0..=k).map(|i| (i * last + k / 2) / k).collect();
        v.dedup();
        return Ok(v);
    };
    let to = r.to.unwrap_or(last);
    if to > last {
        bail!("--snapshots: the run has snapshots 0 to {last}, not {to}");
    }
    Ok((r.from..=to).step_by(r.step).collect())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    if !(args.frame_seconds > 0.0 && args.frame_seconds <= 60.0) {
        bail!(
            "--frame-seconds {}: expected 0 < seconds ≤ 60",
            args.frame_seconds
        );
    }
    let session = Session::open(&args.run, &args.model)?;
    let snapshots = frame_snapshots(args.snapshots, session.run.len())?;
    let epoch = |i: usize| -> anyhow::Result<u64> { Ok(session.run.snapshot(i)?.meta().epoch) };
    let (plane, base, path, name) = plane(&args, &session)?;
    let mut frames = Vec::with_capacity(snapshots.len());
    for &s in &snapshots {
        let at = match plane {
            AnimationPlane::Pca => {
                let p = path.iter().find(|p| p.snapshot == s).with_context(|| {
                    format!("the trajectory PCA (RUN/pca) has no snapshot {s}: refit it with `landscape pca`")
                })?;
                [p.x, p.y]
            }
            AnimationPlane::Fixed => [0.0, 0.0],
        };
        frames.push(FrameSpec::new(s, epoch(s)?, at));
    }
    let (x, y) = axes(&args, plane, &path)?;
    let grid = *Surface::builder(&base)
        .grid(x.from..=x.to, x.points, y.from..=y.to, y.points)
        .build()?
        .grid();
    let name = args.name.clone().unwrap_or(name);
    let out = session.output(args.out.as_deref(), "animations", &name)?;
    let _lock = session
        .is_root()
        .then(|| DirLock::create(&out))
        .transpose()?;
    let spec = AnimationSpec {
        format: ANIMATION_FORMAT.into(),
        schema_version: ANIMATION_SCHEMA_VERSION,
        plane,
        directions: base.meta.clone(),
        grid,
        evaluator: session.description.clone(),
        frames,
        path,
        shard: session.shard,
        created_utc: String::new(),
    };
    let spec = spec.resume_in(&out)?;
    if session.is_root() {
        AnimationResult::save_spec(&out, &spec)?;
    }
    let n = spec.frames.len();
    let mut computed = 0;
    for (i, f) in spec.frames.iter().enumerate() {
        session.load(f.snapshot)?;
        let dirs = frame_directions(&base, &session.params_at(f.snapshot)?, f)?;
        let builder =
            Surface::builder(&dirs).grid(x.from..=x.to, x.points, y.from..=y.to, y.points);
        let stage = format!("frame {}/{n} (epoch {})", i + 1, f.epoch);
        let t = Instant::now();
        if let Some(res) = crate::surface::compute(&session, builder, &out.join(&f.dir), &stage)? {
            computed += res.computed;
            outln!(
                "{stage}: {} points computed in {:.2} s",
                res.computed,
                t.elapsed().as_secs_f64()
            )?;
        }
    }
    if !session.is_root() {
        return Ok(());
    }
    if let Some(s) = spec.shard {
        outln!(
            "{}: shard {s} of {n} frames, {computed} points ({:.1} s); combine the shards with `landscape merge`",
            out.display(),
            t0.elapsed().as_secs_f64()
        )?;
        return Ok(());
    }
    let anim = AnimationResult::with_frames(&out, spec)?;
    finish(&anim, &args.split, args.frame_seconds, computed, t0)
}

/// Writes the table and the media of a whole animation and says so.
pub fn finish(
    anim: &AnimationResult,
    split: &str,
    frame_seconds: f64,
    computed: usize,
    t0: Instant,
) -> anyhow::Result<()> {
    let table = anim.save_table()?;
    let t_media = Instant::now();
    let media = write_media(
        anim,
        &MediaOptions {
            split: split.to_string(),
            frame_seconds,
            ..MediaOptions::default()
        },
    )?;
    outln!(
        "{}: {} frames, {computed} points computed ({:.1} s); {}; {} and {} PNG frames ({:.1} s)",
        anim.dir.display(),
        anim.frames.len(),
        t0.elapsed().as_secs_f64(),
        table.display(),
        media.gif.display(),
        media.pngs.len(),
        t_media.elapsed().as_secs_f64()
    )?;
    let losses = anim.snapshot_losses(split);
    for (f, l) in anim.spec.frames.iter().zip(&losses) {
        outln!(
            "  epoch {:>4} (snapshot {:>3}) at ({:.4}, {:.4}): {split} loss {l:.4}",
            f.epoch,
            f.snapshot,
            f.at[0] + 0.0,
            f.at[1] + 0.0
        )?;
    }
    Ok(())
}

/// The plane, its directions (before they are laid through each
/// snapshot), the projected path (PCA plane) and the default name.
fn plane(
    args: &Args,
    session: &Session,
) -> anyhow::Result<(AnimationPlane, Directions, Vec<PathPoint>, String)> {
    let run_id = session.run.manifest().run_id.clone();
    match args.directions.as_str() {
        "pca" => {
            let (mut dirs, path) = pca_plane(session)?;
            if dirs.meta.run_id().is_none() {
                dirs = dirs.with_run_id(&run_id);
            }
            Ok((AnimationPlane::Pca, dirs, path, "pca".into()))
        }
        "random" => {
            let last = session.snapshot(None)?;
            let dirs = Directions::random(&session.params_at(last)?)
                .dims(2)
                .seed(args.seed)
                .normalization(Normalization::Filter)
                .build()?
                .with_description(format!(
                    "filter-normalized at {} of {run_id}",
                    session.describe(last)
                ))
                .with_run_id(&run_id);
            Ok((AnimationPlane::Fixed, dirs, Vec::new(), "random".into()))
        }
        file => {
            let path = Path::new(file);
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .context("--directions: expected pca, random or a .parquet file")?;
            let mut dirs =
                Directions::load(path).with_context(|| format!("--directions {file}"))?;
            if dirs.len() != 2 {
                bail!(
                    "--directions {file}: an animation needs two directions, the file has {}",
                    dirs.len()
                );
            }
            if dirs.meta.run_id().is_none() {
                dirs = dirs.with_run_id(&run_id);
            }
            dirs.check_model(&session.vs)
                .with_context(|| format!("--directions {file}"))?;
            Ok((AnimationPlane::Fixed, dirs, Vec::new(), stem))
        }
    }
}

/// The PCA plane's unit-norm directions and the projected path, from
/// RUN/pca; fitted there first when it has no components or was fitted to
/// fewer snapshots than the run now has.
fn pca_plane(session: &Session) -> anyhow::Result<(Directions, Vec<PathPoint>)> {
    let dir = session.run_dir.join(PCA_DIR);
    let raw = dir.join(DIRECTIONS_RAW_FILE);
    let current = |s: &PcaSummary| {
        s.snapshots == session.run.len()
            && s.run_id == session.run.manifest().run_id
            && s.runs.len() <= 1
    };
    let fresh = raw.exists() && PcaSummary::load_dir(&dir).is_ok_and(|s| current(&s));
    if !fresh {
        if !session.is_root() {
            bail!(
                "{}: no current trajectory PCA with components; run `landscape pca {}` first",
                dir.display(),
                session.run_dir.display()
            );
        }
        outln!(
            "fitting the trajectory PCA ({} snapshots) into {}",
            session.run.len(),
            dir.display()
        )?;
        let pca = TrajectoryPca::builder()
            .build()?
            .fit(&session.run)
            .context("trajectory PCA failed")?;
        pca.save_joint_with(&[&session.run], &dir, true)?;
    }
    let summary = PcaSummary::load_dir(&dir)?;
    if summary.explained_variance_ratio.len() < 2 {
        bail!(
            "{}: the trajectory has fewer than two principal components (rank {}): there is no plane to animate",
            dir.display(),
            summary.rank
        );
    }
    let dirs = Directions::load(&raw).with_context(|| format!("{}", raw.display()))?;
    dirs.check_model(&session.vs)
        .with_context(|| format!("{}", raw.display()))?;
    let path = summary
        .path
        .iter()
        .map(|p| PathPoint {
            snapshot: p.snapshot as usize,
            epoch: p.epoch,
            x: p.x(),
            y: p.y(),
        })
        .collect();
    Ok((dirs, path))
}

/// The grid's axes: as given, or around the path (PCA plane: its extent
/// plus 25 % on each side, the shorter side at least a third of the
/// longer), or -R:R.
fn axes(
    args: &Args,
    plane: AnimationPlane,
    path: &[PathPoint],
) -> anyhow::Result<(AxisArg, AxisArg)> {
    let default = match plane {
        AnimationPlane::Fixed => {
            let a = AxisArg {
                from: -args.range,
                to: args.range,
                points: args.grid,
            };
            (a, a)
        }
        AnimationPlane::Pca => {
            let extent = |v: Vec<f64>| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            };
            let (x0, x1) = extent(path.iter().map(|p| p.x).collect());
            let (y0, y1) = extent(path.iter().map(|p| p.y).collect());
            let longest = (x1 - x0).max(y1 - y0);
            if !(longest > 0.0 && longest.is_finite()) {
                bail!("the projected path does not move: there is no extent to animate");
            }
            let axis = |lo: f64, hi: f64| {
                let half = ((hi - lo) / 2.0).max(longest / 6.0) * 1.25 + longest * 0.05;
                let mid = (lo + hi) / 2.0;
                AxisArg {
                    from: mid - half,
                    to: mid + half,
                    points: args.grid,
                }
            };
            (axis(x0, x1), axis(y0, y1))
        }
    };
    Ok((args.x.unwrap_or(default.0), args.y.unwrap_or(default.1)))
}
