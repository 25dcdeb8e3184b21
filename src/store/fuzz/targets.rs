//! The fuzz targets: one reader each, and what it is fed.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::analysis::hessian::{merge_curvature_shards, CURVATURE_FILE};
use crate::analysis::surface::{merge_shards, SurfaceResult};
use crate::error::{Error, Result};
use crate::store::manifest::Manifest;
use crate::store::metrics::{metrics_schema, read_metrics, METRICS_FILE};
use crate::store::pca::PcaSummary;
use crate::store::run::Run;
use crate::store::surface::{points_schema, SurfaceDir, SPEC_FILE};
use crate::store::table::read_ipc;
use crate::tensor::Selection;

/// What a reader read, hashed: the values (whose change under a mutation
/// without an error is a silent corruption) and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Digest {
    /// Number of items read (snapshots, rows, points).
    pub(super) count: usize,
    /// Hash of the values.
    pub(super) values: u64,
    /// Hash of everything else read (metadata, specs).
    pub(super) meta: u64,
}

/// A reader under test: reads the input directory `dir` (a copy of a seed,
/// one file mutated) with `scratch` an empty directory for outputs.
pub(super) type Reader = fn(dir: &Path, scratch: &Path) -> Result<Digest>;

/// One fuzz target.
pub(super) struct Target {
    /// Its name, and the corpus sub-directory of its seeds.
    pub(super) name: &'static str,
    /// Inputs per run (times `LANDSCAPE_FUZZ_ITERS`).
    pub(super) iters: usize,
    /// The relative weight of mutating the file at this path (relative to
    /// the seed directory, `/`-separated); 0: never mutated.
    pub(super) weight: fn(&str) -> u32,
    /// The reader.
    pub(super) read: Reader,
    /// Whether a changed value read `Ok` is a silent corruption (the file
    /// kinds that carry, or will carry, checksums).
    pub(super) values_checked: bool,
}

pub(super) fn hash_of(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn hash_debug(v: &impl std::fmt::Debug) -> u64 {
    hash_of(&format!("{v:?}"))
}

/// Whether `rel` is a file with a six-digit numbered name in `dir`.
fn numbered_in(rel: &str, dir: &str) -> bool {
    rel.strip_prefix(dir)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_suffix(".arrow"))
        .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// `Run::open`, then every tensor of every snapshot as the analyses read
/// them: borrowed slices, tch tensors of the recorded shapes and dtypes,
/// flat vectors, and the chunk stream.
fn read_run(dir: &Path, _: &Path) -> Result<Digest> {
    let run = Run::open(dir)?;
    let (mut values, mut meta) = (DefaultHasher::new(), DefaultHasher::new());
    run.manifest().run_id.hash(&mut meta);
    for i in 0..run.len() {
        let snap = run.snapshot(i)?;
        format!("{:?}", snap.meta()).hash(&mut meta);
        for k in 0..run.manifest().tensors.len() {
            if let Some(v) = snap.values(k) {
                (0..v.len()).for_each(|j| v.get_f64(j).map(f64::to_bits).hash(&mut values));
            }
        }
        for (name, t) in run.tensors(i)? {
            (name, t.size()).hash(&mut meta);
        }
        run.flat_f32(i, &Selection::All)?.len().hash(&mut meta);
    }
    let mut streamed = 0usize;
    for chunk in run.stream(&Selection::All, 7)? {
        streamed += chunk?.data.len();
    }
    streamed.hash(&mut meta);
    Ok(Digest {
        count: run.len(),
        values: values.finish(),
        meta: meta.finish(),
    })
}

fn read_metrics_file(dir: &Path, _: &Path) -> Result<Digest> {
    let rows = read_metrics(&dir.join(METRICS_FILE))?;
    Ok(Digest {
        count: rows.len(),
        values: hash_debug(&rows),
        meta: 0,
    })
}

fn read_manifest(dir: &Path, _: &Path) -> Result<Digest> {
    let m = Manifest::read(dir)?;
    Ok(Digest {
        count: m.tensors.len(),
        values: hash_debug(&m.tensors),
        meta: hash_debug(&m),
    })
}

/// The schema each `ipc` seed is read with, by seed name.
fn ipc_schema(seed: &str) -> arrow::datatypes::SchemaRef {
    match seed {
        "metrics" => metrics_schema(),
        "points" => points_schema(),
        _ => mixed_schema(),
    }
}

/// A table of every column type the crate stores, nullable and not.
pub(super) fn mixed_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("u32", DataType::UInt32, false),
        Field::new("u64", DataType::UInt64, true),
        Field::new("f32", DataType::Float32, false),
        Field::new("f64", DataType::Float64, true),
        Field::new("text", DataType::Utf8, true),
    ]))
}

fn read_ipc_table(dir: &Path, _: &Path) -> Result<Digest> {
    let seed = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let batches = read_ipc(&dir.join("table.arrow"), &ipc_schema(&seed))?;
    Ok(Digest {
        count: batches.iter().map(|b| b.num_rows()).sum(),
        values: hash_debug(&batches),
        meta: 0,
    })
}

/// The number of points of the grid in `dir/surface.json` (not mutated by
/// the `segments` target).
fn grid_len(dir: &Path) -> Result<usize> {
    let path = dir.join(SPEC_FILE);
    let spec: Value = crate::store::fsutil::read_json(&path)?;
    let n = |axis: &str| spec["grid"][axis]["n"].as_u64();
    let len = n("x")
        .zip(n("y").or(Some(1)))
        .and_then(|(x, y)| usize::try_from(x.checked_mul(y)?).ok())
        .ok_or_else(|| Error::corrupt(&path, "no grid"))?;
    Ok(len)
}

fn read_surface_segments(dir: &Path, _: &Path) -> Result<Digest> {
    let segments = SurfaceDir::new(dir).read_segments(grid_len(dir)?)?;
    Ok(Digest {
        count: segments.points.len(),
        values: hash_debug(&segments.points),
        meta: 0,
    })
}

/// `SurfaceResult::load`, then what the report and `landscape vtk` ask of
/// the result.
fn read_surface(dir: &Path, _: &Path) -> Result<Digest> {
    let r = SurfaceResult::load(dir)?;
    r.spec.grid.validate(2)?;
    let mut values = DefaultHasher::new();
    for split in r.splits() {
        for v in r.loss(&split).into_iter().chain(r.accuracy(&split)) {
            v.to_bits().hash(&mut values);
        }
    }
    Ok(Digest {
        count: r.points.len(),
        values: values.finish() ^ hash_debug(&r.points),
        meta: hash_debug(&(&r.spec, &r.sharpness)),
    })
}

fn read_pca_summary(dir: &Path, _: &Path) -> Result<Digest> {
    let s = PcaSummary::load(&dir.join("pca.json"))?;
    let coords: Vec<(f64, f64)> = s.path.iter().map(|p| (p.x(), p.y())).collect();
    Ok(Digest {
        count: s.path.len(),
        values: hash_debug(&(&s.explained_variance, coords)),
        meta: hash_debug(&s),
    })
}

/// What `landscape merge` does with the shard directories `dir/shard-*`.
fn read_shards(dir: &Path, scratch: &Path) -> Result<Digest> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
        })
        .collect();
    shards.sort();
    let out = scratch.join("merged");
    if shards.iter().any(|s| s.join(CURVATURE_FILE).exists()) {
        let m = merge_curvature_shards(&shards, &out)?;
        Ok(Digest {
            count: m.points.len(),
            values: hash_debug(&m.points),
            meta: hash_debug(&m.spec),
        })
    } else {
        let r = merge_shards(&shards, &out)?;
        Ok(Digest {
            count: r.points.len(),
            values: hash_debug(&r.points),
            meta: hash_debug(&(&r.spec, &r.sharpness)),
        })
    }
}

/// Every target, with its share of the budget (about a minute in all).
pub(super) fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "snapshot",
            iters: 20000,
            weight: |rel| {
                if numbered_in(rel, "snapshots") {
                    4
                } else {
                    u32::from(rel == "manifest.json")
                }
            },
            read: read_run,
            values_checked: true,
        },
        Target {
            name: "metrics",
            iters: 30000,
            weight: |rel| u32::from(rel == METRICS_FILE),
            read: read_metrics_file,
            values_checked: true,
        },
        Target {
            name: "manifest",
            iters: 20000,
            weight: |rel| u32::from(rel == "manifest.json"),
            read: read_manifest,
            values_checked: false,
        },
        Target {
            name: "ipc",
            iters: 30000,
            weight: |rel| u32::from(rel == "table.arrow"),
            read: read_ipc_table,
            values_checked: true,
        },
        Target {
            name: "segments",
            iters: 25000,
            weight: |rel| u32::from(numbered_in(rel, "points")),
            read: read_surface_segments,
            values_checked: true,
        },
        Target {
            name: "surface_json",
            iters: 20000,
            weight: |rel| u32::from(rel == SPEC_FILE),
            read: read_surface,
            values_checked: false,
        },
        Target {
            name: "surface_parquet",
            iters: 20000,
            weight: |rel| u32::from(rel == "surface.parquet"),
            read: read_surface,
            values_checked: false,
        },
        Target {
            name: "pca_json",
            iters: 15000,
            weight: |rel| u32::from(rel == "pca.json"),
            read: read_pca_summary,
            values_checked: false,
        },
        Target {
            name: "shard",
            iters: 8000,
            weight: |rel| {
                let file = rel.rsplit('/').next().unwrap_or(rel);
                match file {
                    SPEC_FILE => 3,
                    "surface.parquet" | CURVATURE_FILE => 2,
                    "directions.parquet" => 1,
                    _ if rel.contains("/points/") => 1,
                    _ => 0,
                }
            },
            read: read_shards,
            values_checked: false,
        },
    ]
}
