//! `landscape merge`: combine the shards of a surface, a curvature map or
//! an animation.

use std::path::PathBuf;

use tch_landscape::analysis::animate::merge_animation_shards;
use tch_landscape::analysis::hessian::{merge_curvature_shards, CURVATURE_FILE};
use tch_landscape::analysis::surface::merge_shards;
use tch_landscape::store::animation::SPEC_FILE as ANIMATION_SPEC;

/// Combine shard directories (from `--shard i/n` / `SurfaceBuilder::shard`) into
/// the result one process computing the whole grid writes (for an
/// animation: every frame, then its table, GIF and PNG frames). Refuses
/// incomplete, missing, repeated or mismatched shards.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape merge s/shard-0 s/shard-1 s/shard-2 s/shard-3 --out s/filter-2d"
)]
pub struct Args {
    /// The shard directories, in any order.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.shards.iter().any(|s| s.join(ANIMATION_SPEC).exists()) {
        let t0 = std::time::Instant::now();
        let anim = merge_animation_shards(&args.shards, &args.out)?;
        let split = anim.preferred_split().unwrap_or_default();
        return crate::animate::finish(&anim, &split, 0.6, 0, t0);
    }
    if args.shards.iter().any(|s| s.join(CURVATURE_FILE).exists()) {
        let m = merge_curvature_shards(&args.shards, &args.out)?;
        outln!(
            "{}: curvature map of {} points from {} shards",
            m.dir.display(),
            m.points.len(),
            args.shards.len()
        )?;
    } else {
        let r = merge_shards(&args.shards, &args.out)?;
        outln!(
            "{}: surface of {} points from {} shards",
            r.dir.display(),
            r.points.len(),
            args.shards.len()
        )?;
    }
    Ok(())
}
