//! The loss landscape over training (`landscape animate`): surfaces at
//! several snapshots along the same directions, one frame per snapshot.
//!
//! Two planes:
//!
//! - [`AnimationPlane::Pca`]: the trajectory PCA's plane (unit-norm PC1 and
//!   PC2). Frame k is the plane through snapshot θ_k parallel to it, in the
//!   plane's own coordinates: the grid point (x_k, y_k) — θ_k's projected
//!   coordinates — is θ_k, so every frame shares the axes of the projected
//!   path, and the path can be drawn across every frame. The last frame
//!   (θ_final at the origin) is the plain PCA-plane surface.
//! - [`AnimationPlane::Fixed`]: fixed directions (seeded random ones made
//!   around the final model, or saved ones) laid through each snapshot: the
//!   grid point (0, 0) of frame k is θ_k.
//!
//! Each frame is an ordinary surface directory (resumable, shardable); the
//! frames' directions come from [`Directions::recentred`]. The settings of
//! the whole animation are an [`AnimationSpec`] (`animation.json`), the
//! values of all frames one long table (`animation.parquet`,
//! [`AnimationResult::save_table`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::directions::{Directions, DirectionsMeta};
use crate::analysis::grid::Grid;
use crate::analysis::params::ParamSet;
use crate::analysis::shard::Shard;
use crate::analysis::surface::{merge_shards, SurfaceResult};
use crate::error::{Error, Result};
use crate::store::animation::{read_spec, write_spec, write_table, AnimationRow, TABLE_FILE};
use crate::store::manifest::rfc3339_utc;

/// The `format` of every `animation.json`.
pub const ANIMATION_FORMAT: &str = "tch-landscape-animation";

/// The plane the frames are laid in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnimationPlane {
    /// The trajectory PCA's plane (unit-norm components), each frame
    /// through its snapshot, in the plane's coordinates.
    Pca,
    /// Fixed directions, each frame centred on its snapshot.
    Fixed,
}

impl AnimationPlane {
    /// The name in files and on the command line: `pca` or `fixed`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnimationPlane::Pca => "pca",
            AnimationPlane::Fixed => "fixed",
        }
    }
}

/// One frame: a snapshot and where its surface is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameSpec {
    /// Snapshot index in the run.
    pub snapshot: usize,
    /// The snapshot's epoch.
    pub epoch: u64,
    /// The snapshot's grid coordinates in the frame (its reference point):
    /// its projected coordinates on the PCA plane, `[0, 0]` for fixed
    /// directions.
    pub at: [f64; 2],
    /// The frame's surface directory, relative to the animation's
    /// (`frames/NNNNNN`, the snapshot index).
    pub dir: String,
}

impl FrameSpec {
    /// The frame of snapshot `snapshot` at `at`.
    pub fn new(snapshot: usize, epoch: u64, at: [f64; 2]) -> FrameSpec {
        FrameSpec {
            snapshot,
            epoch,
            at,
            dir: format!("frames/{snapshot:06}"),
        }
    }
}

/// A point of the projected optimizer path (every snapshot, not only the
/// frames'), drawn on the frames of a PCA-plane animation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    /// Snapshot index.
    pub snapshot: usize,
    /// Epoch.
    pub epoch: u64,
    /// PC1 coordinate.
    pub x: f64,
    /// PC2 coordinate.
    pub y: f64,
}

/// Everything that determines an animation's values (`animation.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnimationSpec {
    /// Always [`ANIMATION_FORMAT`].
    pub format: String,
    /// On-disk schema version.
    pub schema_version: u32,
    /// The plane.
    pub plane: AnimationPlane,
    /// The directions before they are laid through each snapshot: their
    /// id, seed, normalization, description (the frames' directions differ
    /// only in their centre).
    pub directions: DirectionsMeta,
    /// The lattice every frame is evaluated on (each frame's own reference
    /// point, its snapshot, is added to it when off the lattice).
    pub grid: Grid,
    /// The evaluator (model, data, loss, BatchNorm policy).
    pub evaluator: String,
    /// The frames, in snapshot order.
    pub frames: Vec<FrameSpec>,
    /// The projected path of every snapshot (PCA plane; empty otherwise).
    pub path: Vec<PathPoint>,
    /// The shard each frame holds, when only every n-th point was computed.
    pub shard: Option<Shard>,
    /// When the animation was first started (RFC 3339 UTC).
    pub created_utc: String,
}

/// The schema version of `animation.json` this version writes.
pub const ANIMATION_SCHEMA_VERSION: u32 = 1;

impl AnimationSpec {
    /// Whether `other` asks for the same values (a directory holding one
    /// may be resumed by the other).
    pub fn same_work(&self, other: &AnimationSpec) -> bool {
        self.plane == other.plane
            && self.directions.id == other.directions.id
            && self.grid == other.grid
            && self.evaluator == other.evaluator
            && self.frames == other.frames
            && self.shard == other.shard
    }

    /// This spec, to be computed into `dir`: when `dir` already holds an
    /// animation it must be of the same work (then it is resumed and keeps
    /// its start time), otherwise an error names its `animation.json`; a
    /// new one is stamped with the current time.
    pub fn resume_in(mut self, dir: &Path) -> Result<AnimationSpec> {
        match read_spec(dir)? {
            Some(old) if !old.same_work(&self) => Err(Error::invalid(
                "animation directory",
                format!(
                    "{} holds an animation of other settings (directions, grid, snapshots, model or shard); use another --out or --name",
                    dir.join(crate::store::animation::SPEC_FILE).display()
                ),
            )),
            Some(old) => {
                self.created_utc = old.created_utc;
                Ok(self)
            }
            None => {
                self.created_utc = rfc3339_utc(std::time::SystemTime::now());
                Ok(self)
            }
        }
    }

    /// Checks what serde does not: the format name, at least one frame,
    /// frames in increasing snapshot order, each in its own `frames/NNNNNN`
    /// directory, finite coordinates.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Err(Error::corrupt(path, why));
        if self.format != ANIMATION_FORMAT {
            return bad(format!(
                "\"format\" is {:?}, expected \"{ANIMATION_FORMAT}\"",
                self.format
            ));
        }
        if self.frames.is_empty() {
            return bad("\"frames\" is empty, expected at least one frame".into());
        }
        for (i, f) in self.frames.iter().enumerate() {
            if f.dir != FrameSpec::new(f.snapshot, f.epoch, f.at).dir {
                return bad(format!(
                    "frame {i}: \"dir\" is {:?}, expected \"frames/{:06}\"",
                    f.dir, f.snapshot
                ));
            }
            if !f.at.iter().all(|v| v.is_finite()) {
                return bad(format!("frame {i}: \"at\" is not finite: {:?}", f.at));
            }
            if i > 0 && f.snapshot <= self.frames[i - 1].snapshot {
                return bad(format!(
                    "frame {i}: snapshot {} does not follow snapshot {}",
                    f.snapshot,
                    self.frames[i - 1].snapshot
                ));
            }
        }
        if self
            .path
            .iter()
            .any(|p| !(p.x.is_finite() && p.y.is_finite()))
        {
            return bad("\"path\" has a non-finite coordinate".into());
        }
        Ok(())
    }
}

/// The directions of one frame: `base` laid through `theta` so that the
/// grid point `at` is `theta` (see [`Directions::recentred`]), its
/// reference point labelled with the snapshot.
pub fn frame_directions(
    base: &Directions,
    theta: &ParamSet,
    frame: &FrameSpec,
) -> Result<Directions> {
    base.recentred(
        theta,
        frame.at,
        &format!("snapshot {} (epoch {})", frame.snapshot, frame.epoch),
    )
}

/// A computed (or loaded) animation: its settings and every frame's surface.
#[derive(Debug)]
pub struct AnimationResult {
    /// The animation's directory.
    pub dir: PathBuf,
    /// Its settings.
    pub spec: AnimationSpec,
    /// One surface per frame, in the order of `spec.frames`.
    pub frames: Vec<SurfaceResult>,
}

impl AnimationResult {
    /// Reads an animation directory: `animation.json` and every frame's
    /// surface (each must be whole, on the animation's grid).
    pub fn load(dir: impl AsRef<Path>) -> Result<AnimationResult> {
        let dir = dir.as_ref();
        let spec = read_spec(dir)?.ok_or_else(|| {
            Error::invalid(
                "animation directory",
                format!("{} has no animation.json", dir.display()),
            )
        })?;
        Self::with_frames(dir, spec)
    }

    /// The animation `spec` of `dir` with its frames read back.
    pub fn with_frames(dir: &Path, spec: AnimationSpec) -> Result<AnimationResult> {
        let mut frames = Vec::with_capacity(spec.frames.len());
        for f in &spec.frames {
            let fdir = dir.join(&f.dir);
            let s = SurfaceResult::load(&fdir)?;
            if s.spec.grid.x != spec.grid.x || s.spec.grid.y != spec.grid.y {
                return Err(Error::corrupt(
                    fdir.join("surface.json"),
                    "the frame's grid is not the animation's (animation.json)".to_string(),
                ));
            }
            frames.push(s);
        }
        Ok(AnimationResult {
            dir: dir.to_path_buf(),
            spec,
            frames,
        })
    }

    /// Writes `animation.json` into `dir` (atomically).
    pub fn save_spec(dir: &Path, spec: &AnimationSpec) -> Result<()> {
        write_spec(dir, spec)
    }

    /// Reads `animation.json` of `dir` (checked), `None` when there is none.
    pub fn read_spec(dir: &Path) -> Result<Option<AnimationSpec>> {
        read_spec(dir)
    }

    /// Split names, in the evaluator's order.
    pub fn splits(&self) -> Vec<String> {
        self.frames.first().map(|f| f.splits()).unwrap_or_default()
    }

    /// The split media and reports draw by default: `train` when the
    /// animation has it, else its first split (`None` without values).
    pub fn preferred_split(&self) -> Option<String> {
        let splits = self.splits();
        splits
            .iter()
            .find(|s| s.as_str() == "train")
            .or(splits.first())
            .cloned()
    }

    /// Every value of every frame, one row per (frame, grid point, split),
    /// the frames' reference points (the snapshots themselves) included.
    pub fn rows(&self) -> Vec<AnimationRow> {
        let mut rows = Vec::new();
        for (i, (f, s)) in self.spec.frames.iter().zip(&self.frames).enumerate() {
            for p in &s.points {
                let at_snapshot = p.point.x == f.at[0] && p.point.y == f.at[1];
                for v in &p.splits {
                    rows.push(AnimationRow {
                        frame: i as u32,
                        snapshot: f.snapshot as u64,
                        epoch: f.epoch,
                        x: p.point.x,
                        y: p.point.y,
                        at_snapshot,
                        split: v.split.clone(),
                        loss: v.loss,
                        accuracy: v.accuracy,
                    });
                }
            }
        }
        rows
    }

    /// The loss of the frame's own snapshot on `split` (its reference
    /// point), per frame.
    pub fn snapshot_losses(&self, split: &str) -> Vec<f64> {
        self.frames
            .iter()
            .map(|s| s.reference_value(split).map_or(f64::NAN, |v| v.loss))
            .collect()
    }

    /// Writes `animation.parquet` (every row of [`rows`](Self::rows), the
    /// settings in its metadata); returns its path.
    pub fn save_table(&self) -> Result<PathBuf> {
        let path = self.dir.join(TABLE_FILE);
        write_table(&path, &self.rows(), &self.spec)?;
        Ok(path)
    }
}

/// Combines the shard directories of an animation (`landscape animate
/// --shard i/n`, every frame holding shard i) into `out`: each frame's
/// shards are merged as surfaces are ([`merge_shards`]: incomplete,
/// missing, repeated or mismatched shards are refused), then the
/// animation's settings without the shard and its table are written.
pub fn merge_animation_shards(
    shards: &[impl AsRef<Path>],
    out: impl AsRef<Path>,
) -> Result<AnimationResult> {
    let out = out.as_ref();
    let Some(first_dir) = shards.first() else {
        return Err(Error::invalid("shards", "no shard directory given"));
    };
    let mut specs = Vec::with_capacity(shards.len());
    for d in shards {
        let d = d.as_ref();
        let spec = read_spec(d)?.ok_or_else(|| {
            Error::invalid(
                "shards",
                format!(
                    "{} has no animation.json: not an animation shard",
                    d.display()
                ),
            )
        })?;
        if spec.shard.is_none() {
            return Err(Error::invalid(
                "shards",
                format!("{} holds a whole animation, not a shard", d.display()),
            ));
        }
        specs.push(spec);
    }
    let first = &specs[0];
    for (d, s) in shards.iter().zip(&specs).skip(1) {
        let whole = |s: &AnimationSpec| AnimationSpec {
            shard: None,
            created_utc: String::new(),
            ..s.clone()
        };
        if !whole(s).same_work(&whole(first)) {
            return Err(Error::invalid(
                "shards",
                format!(
                    "{} is a shard of another animation than {} (directions, grid, snapshots or model differ)",
                    d.as_ref().display(),
                    first_dir.as_ref().display()
                ),
            ));
        }
    }
    let spec = AnimationSpec {
        shard: None,
        created_utc: specs
            .iter()
            .map(|s| s.created_utc.clone())
            .min()
            .unwrap_or_default(),
        ..first.clone()
    };
    crate::store::fsutil::create_output_dir(out)?;
    let _lock = crate::store::fsutil::DirLock::create(out)?;
    let spec = spec.resume_in(out)?;
    crate::store::fsutil::create_dir_in(out, &out.join("frames"))?;
    for f in &spec.frames {
        let parts: Vec<PathBuf> = shards.iter().map(|d| d.as_ref().join(&f.dir)).collect();
        merge_shards(&parts, out.join(&f.dir))?;
    }
    write_spec(out, &spec)?;
    let merged = AnimationResult::with_frames(out, spec)?;
    merged.save_table()?;
    Ok(merged)
}
