//! Merging shard directories into the surface one process would have
//! written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{PointValue, SurfaceResult, SurfaceSpec};
use crate::analysis::shard::Shard;
use crate::error::{Error, Result};
use crate::store::fsutil::DirLock;
use crate::store::surface::{SurfaceDir, SPEC_FILE};

/// Combines the shard directories `shards` (computed with
/// [`SurfaceBuilder::shard`](super::SurfaceBuilder::shard), in any order)
/// into `out`, which then holds what one process computing the whole grid
/// writes: `surface.json` (without shard), `directions.parquet`,
/// `surface.parquet` and `sharpness.json`.
///
/// Refuses, naming the directories, shards that do not belong together
/// (different directions — hence a different model or centre —, grid,
/// evaluator or shard count: [`Error::ShardMismatch`]), a missing or
/// repeated shard, and a shard that is not finished ([`Error::Incomplete`],
/// saying how many points it has; rerunning it resumes).
pub fn merge_shards(shards: &[impl AsRef<Path>], out: impl AsRef<Path>) -> Result<SurfaceResult> {
    let out = SurfaceDir::new(out.as_ref());
    let _span = tracing::info_span!("merge", out = %out.path().display()).entered();
    let _lock = DirLock::create(out.path())?;
    let loaded = check_shards(shards)?;
    let first = &loaded[0];
    let spec = SurfaceSpec {
        shard: None,
        created_utc: loaded
            .iter()
            .map(|s| s.spec.created_utc.clone())
            .min()
            .unwrap_or_default(),
        ..first.spec.clone()
    };
    if let Some(old) = SurfaceSpec::read(&out)? {
        if !old.same_work(&spec) {
            return Err(Error::invalid(
                "output directory",
                format!(
                    "{} holds a different surface (directions {}); merge into a new directory",
                    out.path().display(),
                    old.directions.id
                ),
            ));
        }
    }
    let source = first.dir.clone();
    let mut points: Vec<PointValue> = loaded.into_iter().flat_map(|s| s.points).collect();
    points.sort_by_key(|p| p.point.index);
    out.create()?;
    out.copy_directions(&source)?;
    out.write_spec(&spec)?;
    out.write_result(&spec, &points)?;
    let result = SurfaceResult::finished(out.path(), spec, points);
    out.write_sharpness(&result.sharpness)?;
    tracing::info!(
        shards = shards.len(),
        points = result.points.len(),
        "shards merged"
    );
    Ok(result)
}

/// A finished shard directory.
struct LoadedShard {
    dir: SurfaceDir,
    spec: SurfaceSpec,
    shard: Shard,
    points: Vec<PointValue>,
}

/// Loads and cross-checks shard directories (see [`merge_shards`]).
fn check_shards(shards: &[impl AsRef<Path>]) -> Result<Vec<LoadedShard>> {
    if shards.is_empty() {
        return Err(Error::invalid("shards", "no shard directories given"));
    }
    let mut loaded: Vec<LoadedShard> = Vec::new();
    let mut seen: BTreeMap<usize, PathBuf> = BTreeMap::new();
    for dir in shards {
        let (dir, spec, shard) = read_shard_spec(dir.as_ref())?;
        if let Some(first) = loaded.first() {
            same_surface(first, &dir, &spec, shard)?;
        }
        if let Some(other) = seen.insert(shard.index(), dir.path().to_path_buf()) {
            return Err(Error::ShardMismatch {
                path: dir.path().to_path_buf(),
                reason: format!("shard {shard} given twice: also {}", other.display()),
            });
        }
        let points = read_finished_points(&dir, &spec, shard)?;
        loaded.push(LoadedShard {
            dir,
            spec,
            shard,
            points,
        });
    }
    let n = loaded[0].shard.count();
    let missing: Vec<String> = (0..n)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::ShardMismatch {
            path: loaded[0].dir.path().to_path_buf(),
            reason: format!(
                "missing shard(s) {} of this surface: got {} of {n}",
                missing.join(", "),
                seen.len()
            ),
        });
    }
    Ok(loaded)
}

/// The spec and shard of the shard directory `dir`.
fn read_shard_spec(dir: &Path) -> Result<(SurfaceDir, SurfaceSpec, Shard)> {
    let dir = SurfaceDir::new(dir);
    let mismatch = |reason: String| Error::ShardMismatch {
        path: dir.path().to_path_buf(),
        reason,
    };
    let spec: SurfaceSpec = SurfaceSpec::read(&dir)?
        .ok_or_else(|| mismatch(format!("not a surface directory (no {SPEC_FILE})")))?;
    let shard = spec
        .shard
        .ok_or_else(|| mismatch("holds a whole surface, not a shard".into()))?;
    Ok((dir, spec, shard))
}

/// Checks that the shard in `dir` belongs to the same surface as `first`.
fn same_surface(
    first: &LoadedShard,
    dir: &SurfaceDir,
    spec: &SurfaceSpec,
    shard: Shard,
) -> Result<()> {
    let f = &first.spec;
    let differ = |what: &str, a: String, b: String| -> Result<()> {
        Err(Error::ShardMismatch {
            path: dir.path().to_path_buf(),
            reason: format!(
                "a shard of a different surface than {}: {what} {a} vs {b}",
                first.dir.path().display()
            ),
        })
    };
    if f.directions.id != spec.directions.id {
        let what = "directions (centre/model or directions differ):";
        return differ(what, f.directions.id.clone(), spec.directions.id.clone());
    }
    if f.grid != spec.grid {
        return differ("grid", format!("{:?}", f.grid), format!("{:?}", spec.grid));
    }
    if f.evaluator != spec.evaluator {
        return differ(
            "evaluator",
            format!("'{}'", f.evaluator),
            format!("'{}'", spec.evaluator),
        );
    }
    if f.sharpness_epsilon != spec.sharpness_epsilon {
        let (a, b) = (f.sharpness_epsilon, spec.sharpness_epsilon);
        return differ("sharpness epsilon", format!("{a:?}"), format!("{b:?}"));
    }
    if first.shard.count() != shard.count() {
        let (a, b) = (first.shard.count(), shard.count());
        return differ("shard count", a.to_string(), b.to_string());
    }
    Ok(())
}

/// The points of a finished shard, or [`Error::Incomplete`] saying how far
/// it got.
fn read_finished_points(
    dir: &SurfaceDir,
    spec: &SurfaceSpec,
    shard: Shard,
) -> Result<Vec<PointValue>> {
    let total = spec.wanted().count();
    let points = if dir.has_result() {
        dir.read_result(spec.grid.len())?
    } else {
        Vec::new()
    };
    if points.len() == total && points.iter().all(|p| shard.contains(p.point.index)) {
        return Ok(points);
    }
    let done = if points.is_empty() {
        // Unfinished: its points are still in segments.
        dir.read_segments(spec.grid.len()).map_or(0, |s| {
            s.points.keys().filter(|&&i| shard.contains(i)).count()
        })
    } else {
        points.len()
    };
    Err(Error::Incomplete {
        path: dir.path().to_path_buf(),
        what: format!("shard {shard}"),
        done,
        total,
    })
}
