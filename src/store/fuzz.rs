//! Mutation fuzzing of every reader of the crate's files (issue 13).
//!
//! One test per reader feeds it mutants of committed seed files and checks
//! that it returns `Ok` or `Err`, and never panics, hangs or allocates
//! without bound:
//!
//! | target | reader | mutated files |
//! |---|---|---|
//! | `snapshot` | `Run::open`, then every tensor (slices, tch tensors, flat vectors, chunk stream) | `snapshots/*.arrow`, `manifest.json` |
//! | `metrics` | `store::metrics::read_metrics` | `metrics.arrow` |
//! | `manifest` | `Manifest::read` | `manifest.json` |
//! | `ipc` | `store::table::read_ipc` (metrics, points and a mixed schema) | `table.arrow` |
//! | `segments` | `SurfaceDir::read_segments` (the resumable surface's points) | `points/*.arrow` |
//! | `surface_json` | `SurfaceResult::load` (spec, grid validation, points, sharpness) | `surface.json` |
//! | `surface_parquet` | `SurfaceResult::load` | `surface.parquet` |
//! | `pca_json` | `PcaSummary::load` | `pca.json` |
//! | `shard` | what `landscape merge` reads: `merge_shards` / `merge_curvature_shards` | every file of the shard directories |
//!
//! **Mutants.** A ChaCha8 generator seeded with the target's name and the
//! iteration number (so every run feeds the same inputs, and a failure names
//! the iteration that reproduces it) picks a seed directory and a file, then
//! flips a bit, sets a byte to 0, 0xff or a random value, truncates, inserts
//! a duplicated chunk or random bytes, overwrites an aligned word with an
//! "interesting" integer (0, -1, `i32::MAX`, …) or stacks several of these;
//! JSON files also get field-value replacements (huge, negative, NaN-like,
//! string, empty, control characters, removed or duplicated fields) and
//! files with numbered names are deleted or duplicated under another number.
//!
//! **Checks.** Each input is read on a thread of its own under
//! `catch_unwind`, with a time guard ([`INPUT_TIMEOUT`]) and a counting
//! allocator (refusing a reader that asks for more than
//! [`MAX_ALLOCATION`] bytes at once or [`MAX_TOTAL_ALLOCATION`] in all for
//! one input of a few kilobytes). The summary line of every target counts
//! the inputs read `Ok`, refused with an error, panicking, hanging, and read
//! `Ok` with other values than the seed's (`silent`): a damaged snapshot or
//! metrics file whose values read back different without an error is a
//! silent corruption; [`ASSERT_NO_SILENT_CORRUPTION`] turns those into
//! failures once the files carry checksums. Panicking inputs are saved
//! under `$TMPDIR/landscape-fuzz/<target>/<iteration>/`.
//!
//! **Budget.** Fixed iteration counts, about a minute for all targets in
//! `cargo test --release --lib store::fuzz` on two cores;
//! `LANDSCAPE_FUZZ_ITERS=20` multiplies them (any positive number, e.g. 0.1
//! for a smoke run) and `LANDSCAPE_FUZZ_SEED=N` draws other inputs, for
//! longer local campaigns (`-- --nocapture` shows the summaries).
//!
//! **Seeds** live in `tests/fuzz/corpus/<target>/<seed>/`, each directory a
//! complete input of its reader (a seed named `bad-*` is one the reader
//! refuses, e.g. an unfinished shard). They come from tiny real runs,
//! surfaces, curvature maps and a PCA made by [`generate_corpus`]; after a
//! format change, regenerate and commit them:
//!
//! ```text
//! cargo test --release --lib store::fuzz::generate_corpus -- --ignored
//! git add tests/fuzz/corpus
//! ```
//!
//! This test module reaches up to `analysis` (the surface spec, its grid
//! validation and the shard merge are readers of stored files too); nothing
//! outside tests does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, Once};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// Fail on silent corruption: a mutated snapshot or metrics file read back
/// `Ok` with other values than the seed's. Off until snapshots and IPC files
/// carry checksums (issue 13); the summaries count such inputs meanwhile.
const ASSERT_NO_SILENT_CORRUPTION: bool = false;

/// The longest one input may take to read before it counts as a hang.
const INPUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest single allocation a reader may ask for while reading one
/// mutant (the seeds are a few kilobytes; a 10⁷-point grid, the largest a
/// `surface.json` may declare, needs 80 MB per value column).
const MAX_ALLOCATION: usize = 256 << 20;

/// The most bytes a reader may allocate in all while reading one mutant.
const MAX_TOTAL_ALLOCATION: usize = 1 << 30;

/// Where the seeds are.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus")
}

// ---------------------------------------------------------------------------
// Allocation accounting: the fuzz threads switch it on for themselves.

/// The system allocator, counting what the current thread asks for while
/// [`TRACK`] is set.
struct CountingAlloc;

thread_local! {
    /// Whether this thread's allocations are counted.
    static TRACK: Cell<bool> = const { Cell::new(false) };
    /// The largest single request since counting started.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// The sum of all requests since counting started.
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
            let _ = TOTAL.try_with(|s| s.set(s.get().saturating_add(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// accounting only touches const-initialized thread-locals (no allocation).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------
// Panics on fuzz threads: recorded (with their location), not printed.

/// Name prefix of the threads that read mutants.
const THREAD_PREFIX: &str = "fuzz:";

/// Where and why the last panic of each fuzz thread happened.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Installs (once) a panic hook that records the panics of fuzz threads,
/// by thread name, and hands every other panic to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            match thread.name() {
                Some(name) if name.starts_with(THREAD_PREFIX) => {
                    let location = info
                        .location()
                        .map(|l| format!("{}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    let message = payload_text(info.payload());
                    if let Ok(mut p) = PANICS.lock() {
                        p.retain(|(n, _)| n != name);
                        p.push((name.to_string(), format!("{message} at {location}")));
                    }
                }
                _ => previous(info),
            }
        }));
    });
}

fn payload_text(payload: &dyn std::any::Any) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-text panic payload)".into())
}

/// The recorded panic of the fuzz thread `name`.
fn take_panic(name: &str) -> String {
    PANICS
        .lock()
        .ok()
        .and_then(|mut p| {
            let i = p.iter().position(|(n, _)| n == name)?;
            Some(p.swap_remove(i).1)
        })
        .unwrap_or_else(|| "(no message recorded)".into())
}

// ---------------------------------------------------------------------------
// Targets.

/// What a reader read, hashed: the values (whose change under a mutation
/// without an error is a silent corruption) and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest {
    /// Number of items read (snapshots, rows, points).
    count: usize,
    /// Hash of the values.
    values: u64,
    /// Hash of everything else read (metadata, specs).
    meta: u64,
}

/// A reader under test: reads the input directory `dir` (a copy of a seed,
/// one file mutated) with `scratch` an empty directory for outputs.
type Reader = fn(dir: &Path, scratch: &Path) -> Result<Digest>;

/// One fuzz target.
struct Target {
    /// Its name, and the corpus sub-directory of its seeds.
    name: &'static str,
    /// Inputs per run (times `LANDSCAPE_FUZZ_ITERS`).
    iters: usize,
    /// The relative weight of mutating the file at this path (relative to
    /// the seed directory, `/`-separated); 0: never mutated.
    weight: fn(&str) -> u32,
    /// The reader.
    read: Reader,
    /// Whether a changed value read `Ok` is a silent corruption (the file
    /// kinds that carry, or will carry, checksums).
    values_checked: bool,
}

fn hash_of(v: &impl Hash) -> u64 {
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
            if let Some(v) = snap.f32_values(k) {
                v.iter().for_each(|x| x.to_bits().hash(&mut values));
            } else if let Some(v) = snap.f64_values(k) {
                v.iter().for_each(|x| x.to_bits().hash(&mut values));
            }
        }
        for (name, t) in run.tensors(i)? {
            (name, t.size()).hash(&mut meta);
        }
        run.flat_f32(i, &Selection::All)?.len().hash(&mut meta);
    }
    let streamed: usize = run.stream(&Selection::All, 7)?.map(|c| c.data.len()).sum();
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
fn mixed_schema() -> arrow::datatypes::SchemaRef {
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
fn targets() -> Vec<Target> {
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

// ---------------------------------------------------------------------------
// Mutations.

/// Integers that make parsers of offsets and lengths go wrong.
const INTERESTING: [i64; 14] = [
    0,
    1,
    -1,
    7,
    8,
    64,
    -8,
    0x7f,
    0xffff,
    i32::MAX as i64,
    i32::MIN as i64,
    0x7fff_fff8,
    i64::MAX,
    i64::MIN,
];

/// One byte-level mutation of `data`, and its description.
fn mutate_bytes_once(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) -> String {
    let len = data.len();
    let pos = |rng: &mut ChaCha8Rng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    if len == 0 {
        let n = rng.random_range(1..=64);
        data.extend((0..n).map(|_| rng.random::<u8>()));
        return format!("{n} random bytes into an empty file");
    }
    match rng.random_range(0..9u32) {
        0 => {
            let (i, bit) = (pos(rng), rng.random_range(0..8));
            data[i] ^= 1 << bit;
            format!("bit {bit} of byte {i} flipped")
        }
        1..=3 => {
            let i = pos(rng);
            let v = match rng.random_range(0..3u32) {
                0 => 0,
                1 => 0xff,
                _ => rng.random(),
            };
            data[i] = v;
            format!("byte {i} set to {v:#04x}")
        }
        4 => {
            let at = pos(rng);
            data.truncate(at);
            format!("truncated to {at} bytes")
        }
        5 => {
            let start = pos(rng);
            let n = rng.random_range(1..=(len - start).min(512));
            let chunk = data[start..start + n].to_vec();
            let at = rng.random_range(0..=len);
            data.splice(at..at, chunk);
            format!("{n} bytes from {start} duplicated at {at}")
        }
        6 => {
            let n = rng.random_range(1..=64);
            let at = rng.random_range(0..=len);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
            format!("{n} random bytes inserted at {at}")
        }
        7 if len >= 4 => {
            let i = rng.random_range(0..len / 4) * 4;
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())] as i32;
            data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            format!("i32 at {i} set to {v}")
        }
        8 if len >= 8 => {
            let i = rng.random_range(0..len / 8) * 8;
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            data[i..i + 8].copy_from_slice(&v.to_le_bytes());
            format!("i64 at {i} set to {v}")
        }
        _ => {
            let i = pos(rng);
            data[i] = data[i].wrapping_add(rng.random_range(1..=16));
            format!("byte {i} incremented")
        }
    }
}

/// A byte-level mutant: one mutation, or (one time in four) a stack of two
/// to six.
fn mutate_bytes(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) -> String {
    let n = if rng.random_range(0..4u32) == 0 {
        rng.random_range(2..=6)
    } else {
        1
    };
    (0..n)
        .map(|_| mutate_bytes_once(rng, data))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Placeholder of a non-JSON token (`NaN`, `1e999`) in a value, replaced
/// in the serialized text.
const RAW: &str = "__fuzz_raw_token__";

/// A replacement for a JSON value: huge, negative, NaN-like, string, empty,
/// or a variation of `old`; a raw token to splice in the text when the
/// replacement is not JSON.
fn replacement(rng: &mut ChaCha8Rng, old: &Value) -> (Value, Option<&'static str>) {
    let v = match rng.random_range(0..30u32) {
        0 => Value::from(1e308),
        1 => Value::from(u64::MAX),
        2 => serde_json::from_str("9223372036854776121").unwrap_or(Value::Null), // 2^63 + 313
        3 => Value::from(1_000_000_000_000u64),
        4 => Value::from(4_000_000_000u64),
        5 => Value::from(u32::MAX),
        6 => Value::from(-1),
        7 => Value::from(-1e308),
        8 => Value::from(i64::MIN),
        9 => Value::from(0),
        10 => Value::from(0.5),
        11 => Value::from(5e-324),
        12 => Value::from("NaN"),
        13 => Value::from("inf"),
        14 => Value::from(""),
        15 => Value::from("x"),
        16 => Value::from("1"),
        17 => Value::from("a\u{0}b\n\u{1b}[31m\u{7f}\u{202e}"),
        18 => Value::from("é".repeat(20_000)),
        19 => Value::Null,
        20 => Value::Array(Vec::new()),
        21 => Value::Object(Default::default()),
        22 => Value::from(true),
        23 => Value::Array(vec![old.clone(), old.clone()]),
        24 => match old {
            Value::Number(n) => Value::from(-n.as_f64().unwrap_or(1.0)),
            _ => Value::from(-1),
        },
        25 => match old {
            Value::Number(n) => match n.as_u64() {
                Some(u) => Value::from(u.wrapping_add(1)),
                None => Value::from(n.as_f64().unwrap_or(0.0) * 1e300),
            },
            Value::String(s) => Value::from(format!("{s}x")),
            _ => Value::from(1),
        },
        26 => return (Value::from(RAW), Some("NaN")),
        27 => return (Value::from(RAW), Some("-Infinity")),
        28 => return (Value::from(RAW), Some("1e999")),
        _ => return (Value::from(RAW), Some("-0")),
    };
    (v, None)
}

/// The JSON pointers of every value inside `v` (not `v` itself).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        _ => {}
    }
}

/// A JSON-aware mutant of `data` (one to three edits of values, removed or
/// duplicated fields and elements), or `None` when `data` is not JSON.
fn mutate_json(rng: &mut ChaCha8Rng, data: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut doc: Value = serde_json::from_slice(data).ok()?;
    let mut what = Vec::new();
    let mut raw = None;
    for _ in 0..rng.random_range(1..=3) {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let p = all[rng.random_range(0..all.len())].clone();
        let (parent_ptr, key) = p.rsplit_once('/')?;
        let op = rng.random_range(0..10u32);
        let parent = doc.pointer_mut(parent_ptr)?;
        match (op, parent) {
            (0, Value::Object(m)) => {
                m.remove(key);
                what.push(format!("{p} removed"));
            }
            (0, Value::Array(a)) => {
                if let Ok(i) = key.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
                what.push(format!("{p} removed"));
            }
            (1, Value::Array(a)) => {
                if let Some(v) = key.parse::<usize>().ok().and_then(|i| a.get(i)).cloned() {
                    let n = rng.random_range(1..=3);
                    a.extend(std::iter::repeat_n(v, n));
                }
                what.push(format!("{p} duplicated"));
            }
            (1, Value::Object(m)) => {
                m.insert("fuzz_unknown_field".into(), Value::from(1));
                what.push(format!("unknown field beside {p}"));
            }
            (_, parent) => {
                let old = match parent {
                    Value::Object(m) => m.get(key).cloned(),
                    Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)).cloned(),
                    _ => None,
                }
                .unwrap_or(Value::Null);
                let (new, token) = replacement(rng, &old);
                if let Some(t) = token {
                    if raw.is_some() {
                        continue; // one raw token per mutant
                    }
                    raw = Some(t);
                }
                let shown = token.map_or_else(|| short(&new), str::to_string);
                *doc.pointer_mut(&p)? = new;
                what.push(format!("{p} = {shown}"));
            }
        }
    }
    let mut text = if rng.random_bool(0.5) {
        serde_json::to_string_pretty(&doc).ok()?
    } else {
        serde_json::to_string(&doc).ok()?
    };
    if let Some(t) = raw {
        text = text.replacen(&format!("\"{RAW}\""), t, 1);
    }
    Some((text.into_bytes(), what.join("; ")))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(40).collect::<String>(),
            s.len()
        )
    } else {
        s
    }
}

/// What one mutant does to the seed directory.
enum Change {
    /// `rel` gets these bytes.
    Write(String, Vec<u8>),
    /// `rel` is removed.
    Remove(String),
    /// `from` is copied to the new file `to`.
    Copy(String, String),
}

/// Draws the mutation of iteration `iter`: the seed, the file, the change.
fn draw(
    rng: &mut ChaCha8Rng,
    files: &[(String, u32)],
    read: impl Fn(&str) -> Vec<u8>,
) -> (Change, String) {
    let total: u32 = files.iter().map(|f| f.1).sum();
    let mut pick = rng.random_range(0..total);
    let (rel, _) = files
        .iter()
        .find(|f| {
            if pick < f.1 {
                true
            } else {
                pick -= f.1;
                false
            }
        })
        .unwrap_or(&files[0]);
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let numbered = file.len() == 12
        && file.ends_with(".arrow")
        && file.as_bytes()[..6].iter().all(u8::is_ascii_digit);
    let op = rng.random_range(0..100u32);
    if numbered && op < 3 {
        return (Change::Remove(rel.clone()), format!("{rel}: removed"));
    }
    if numbered && op < 6 {
        let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        let to = format!("{dir}/{:06}.arrow", rng.random_range(0..12u32));
        if files.iter().all(|f| f.0 != to) {
            return (
                Change::Copy(rel.clone(), to.clone()),
                format!("{rel}: copied to {to}"),
            );
        }
    }
    let mut data = read(rel);
    if file.ends_with(".json") && op < 70 {
        if let Some((bytes, what)) = mutate_json(rng, &data) {
            return (Change::Write(rel.clone(), bytes), format!("{rel}: {what}"));
        }
    }
    if op >= 98 {
        return (
            Change::Write(rel.clone(), Vec::new()),
            format!("{rel}: emptied"),
        );
    }
    let what = mutate_bytes(rng, &mut data);
    (Change::Write(rel.clone(), data), format!("{rel}: {what}"))
}

// ---------------------------------------------------------------------------
// The loop.

/// What reading one input gave.
enum Outcome {
    Ok(Digest),
    Err(String),
    Panic(String),
    Hang,
}

/// One input read on its own thread, under `catch_unwind`, a time guard and
/// allocation accounting; returns the outcome and the largest single and
/// total allocation.
fn read_guarded(t: &Target, dir: &Path, scratch: &Path) -> (Outcome, usize, usize) {
    let (tx, rx) = mpsc::channel();
    let (read, dir, scratch) = (t.read, dir.to_path_buf(), scratch.to_path_buf());
    let name = format!("{THREAD_PREFIX}{}", t.name);
    let spawned = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            LARGEST.with(|l| l.set(0));
            TOTAL.with(|s| s.set(0));
            TRACK.with(|t| t.set(true));
            let r = std::panic::catch_unwind(|| read(&dir, &scratch));
            TRACK.with(|t| t.set(false));
            let alloc = (LARGEST.with(Cell::get), TOTAL.with(Cell::get));
            let outcome = match r {
                Ok(Ok(d)) => Outcome::Ok(d),
                Ok(Err(e)) => Outcome::Err(e.to_string()),
                Err(p) => Outcome::Panic(payload_text(p.as_ref())),
            };
            let _ = tx.send((outcome, alloc));
        });
    let handle = match spawned {
        Ok(h) => h,
        Err(e) => return (Outcome::Err(format!("spawning the reader: {e}")), 0, 0),
    };
    match rx.recv_timeout(INPUT_TIMEOUT) {
        Ok((Outcome::Panic(msg), alloc)) => {
            let _ = handle.join();
            (
                Outcome::Panic(format!("{msg} ({})", take_panic(&name))),
                alloc.0,
                alloc.1,
            )
        }
        Ok((outcome, alloc)) => {
            let _ = handle.join();
            (outcome, alloc.0, alloc.1)
        }
        // Hung (or died without sending): the thread is left behind.
        Err(_) => (Outcome::Hang, 0, 0),
    }
}

/// Copies the directory `from` into `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The files under `dir`, as `/`-separated relative paths, sorted.
fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// A seed directory, copied to a working directory.
struct Seed {
    name: String,
    work: PathBuf,
    /// Mutable files and their weights.
    files: Vec<(String, u32)>,
    /// What the reader reads from the unmutated seed.
    baseline: std::result::Result<Digest, String>,
}

/// What a fuzz run found.
#[derive(Default)]
struct Report {
    inputs: usize,
    unchanged: usize,
    ok: usize,
    err: usize,
    /// Ok, with other values than the seed's.
    silent_values: usize,
    /// Ok, same values, other metadata or another number of items.
    silent_other: usize,
    panics: Vec<String>,
    hangs: Vec<String>,
    over_allocation: Vec<String>,
    largest: usize,
    total: usize,
    /// The first errors of each kind, as examples.
    examples: BTreeSet<String>,
    silent_examples: Vec<String>,
}

/// Multiplier of the iteration counts (`LANDSCAPE_FUZZ_ITERS`).
fn iteration_factor() -> f64 {
    std::env::var("LANDSCAPE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(1.0)
}

/// The base seed of the mutations (`LANDSCAPE_FUZZ_SEED`, default 0).
fn base_seed() -> u64 {
    std::env::var("LANDSCAPE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Saves the working directory of a failing input for reproduction.
fn save_failure(target: &str, iter: usize, seed: &Seed, what: &str) -> PathBuf {
    let dest = std::env::temp_dir()
        .join("landscape-fuzz")
        .join(target)
        .join(iter.to_string());
    let _ = std::fs::remove_dir_all(&dest);
    copy_dir(&seed.work, &dest.join(&seed.name));
    let _ = std::fs::write(dest.join("MUTATION.txt"), what);
    dest
}

/// A temporary directory for the working copies of the seeds: in memory
/// (`/dev/shm`) where there is one, since a rewritten file costs
/// milliseconds on some disk file systems (ext4 flushes a file truncated
/// and rewritten) and microseconds there.
fn work_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Runs target `t` over its seeds.
fn fuzz(t: &Target) -> Report {
    install_panic_hook();
    let corpus = corpus_dir().join(t.name);
    let tmp = work_dir();
    let mut seed_dirs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: regenerate the corpus (module docs)",
                corpus.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    seed_dirs.sort();
    assert!(!seed_dirs.is_empty(), "no seeds in {}", corpus.display());
    let mut seeds = Vec::new();
    for dir in seed_dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let work = tmp.path().join("seeds").join(&name);
        copy_dir(&dir, &work);
        let mut all = Vec::new();
        files_under(&work, "", &mut all);
        let files: Vec<(String, u32)> = all
            .into_iter()
            .map(|rel| {
                let w = (t.weight)(&rel);
                (rel, w)
            })
            .filter(|f| f.1 > 0)
            .collect();
        assert!(!files.is_empty(), "{}: no file to mutate", dir.display());
        let scratch = tmp.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let baseline = match read_guarded(t, &work, &scratch).0 {
            Outcome::Ok(d) => Ok(d),
            Outcome::Err(e) => Err(e),
            Outcome::Panic(p) => panic!("{}: the seed panics the reader: {p}", dir.display()),
            Outcome::Hang => panic!("{}: the seed hangs the reader", dir.display()),
        };
        let _ = std::fs::remove_dir_all(&scratch);
        match (&baseline, name.starts_with("bad-")) {
            (Ok(_), false) | (Err(_), true) => {}
            (Ok(_), true) => panic!("{}: a bad- seed reads back without an error", dir.display()),
            (Err(e), false) => panic!(
                "{}: the seed does not read back ({e}); regenerate the corpus (module docs)",
                dir.display()
            ),
        }
        seeds.push(Seed {
            name,
            work,
            files,
            baseline,
        });
    }

    let iters = ((t.iters as f64) * iteration_factor()).ceil() as usize;
    let name_hash = hash_of(&t.name);
    let mut report = Report::default();
    for iter in 0..iters {
        let mut rng = ChaCha8Rng::seed_from_u64(name_hash ^ base_seed());
        rng.set_stream(iter as u64);
        let _ = rng.next_u64();
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let (change, what) = draw(&mut rng, &seed.files, |rel| {
            std::fs::read(seed.work.join(rel)).unwrap()
        });
        // Apply, remembering how to undo.
        let in_place = matches!(change, Change::Write(..));
        let (touched, original) = match &change {
            Change::Write(rel, bytes) => {
                let path = seed.work.join(rel);
                let original = std::fs::read(&path).unwrap();
                if *bytes == original {
                    report.unchanged += 1;
                    continue;
                }
                std::fs::write(&path, bytes).unwrap();
                (path, Some(original))
            }
            Change::Remove(rel) => {
                let path = seed.work.join(rel);
                let original = std::fs::read(&path).unwrap();
                std::fs::remove_file(&path).unwrap();
                (path, Some(original))
            }
            Change::Copy(from, to) => {
                let path = seed.work.join(to);
                std::fs::copy(seed.work.join(from), &path).unwrap();
                (path, None)
            }
        };
        report.inputs += 1;
        let scratch = tmp.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let (outcome, largest, total) = read_guarded(t, &seed.work, &scratch);
        report.largest = report.largest.max(largest);
        report.total = report.total.max(total);
        let label = format!("#{iter} {}/{what}", seed.name);
        if largest > MAX_ALLOCATION || total > MAX_TOTAL_ALLOCATION {
            let saved = save_failure(t.name, iter, seed, &what);
            report.over_allocation.push(format!(
                "{label}: allocated {largest} bytes at once, {total} in all (saved in {})",
                saved.display()
            ));
        }
        match outcome {
            Outcome::Ok(d) => {
                report.ok += 1;
                if let Ok(base) = &seed.baseline {
                    // A file removed or added changes what is read without
                    // damaging a value (a missing snapshot): counted apart.
                    if in_place && d.values != base.values {
                        report.silent_values += 1;
                        if report.silent_examples.len() < 5 {
                            report.silent_examples.push(label);
                        }
                    } else if d != *base {
                        report.silent_other += 1;
                    }
                }
            }
            Outcome::Err(e) => {
                report.err += 1;
                if report.examples.len() < 6 {
                    let kind: String = e.chars().take(100).collect();
                    report.examples.insert(kind);
                }
            }
            Outcome::Panic(msg) => {
                let saved = save_failure(t.name, iter, seed, &what);
                report
                    .panics
                    .push(format!("{label}: {msg} (saved in {})", saved.display()));
            }
            Outcome::Hang => {
                let saved = save_failure(t.name, iter, seed, &what);
                report.hangs.push(format!(
                    "{label}: no answer in {INPUT_TIMEOUT:?} (saved in {})",
                    saved.display()
                ));
                // The reader still runs on this directory: stop here.
                break;
            }
        }
        // Undo.
        match original {
            Some(bytes) => std::fs::write(&touched, bytes).unwrap(),
            None => std::fs::remove_file(&touched).unwrap(),
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    report
}

/// Runs target `name` and fails on panics, hangs, unbounded allocations
/// and (with [`ASSERT_NO_SILENT_CORRUPTION`]) silent corruption.
fn check(name: &str) {
    let t = targets()
        .into_iter()
        .find(|t| t.name == name)
        .expect("a known target");
    let t0 = Instant::now();
    let r = fuzz(&t);
    eprintln!(
        "fuzz {:<15} inputs {:>6} ok {:>5} err {:>6} panics {} hangs {} over-allocation {} ok-changed-values {} ok-changed-other {} \
         (largest allocation {} KiB, most in all {} KiB, {:.1} s)",
        t.name,
        r.inputs,
        r.ok,
        r.err,
        r.panics.len(),
        r.hangs.len(),
        r.over_allocation.len(),
        r.silent_values,
        r.silent_other,
        r.largest >> 10,
        r.total >> 10,
        t0.elapsed().as_secs_f64()
    );
    for e in &r.examples {
        eprintln!("  error, e.g.: {}", e.escape_debug());
    }
    let kind = if t.values_checked {
        "silent corruption"
    } else {
        "accepted edit"
    };
    for s in &r.silent_examples {
        eprintln!("  {kind}: {}", s.escape_debug());
    }
    let mut failures: Vec<&String> = r.panics.iter().chain(&r.hangs).collect();
    failures.extend(&r.over_allocation);
    let silent_fails = ASSERT_NO_SILENT_CORRUPTION && t.values_checked && r.silent_values > 0;
    assert!(
        failures.is_empty() && !silent_fails,
        "fuzz {}: {} panicking, {} hanging, {} over-allocating inputs, {} silent value changes:\n{}",
        t.name,
        r.panics.len(),
        r.hangs.len(),
        r.over_allocation.len(),
        r.silent_values,
        failures
            .iter()
            .take(20)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        r.inputs > 0 && r.ok + r.err == r.inputs,
        "fuzz {}: {} inputs, {} read",
        t.name,
        r.inputs,
        r.ok + r.err
    );
}

#[test]
fn fuzz_snapshot() {
    check("snapshot");
}

#[test]
fn fuzz_metrics() {
    check("metrics");
}

#[test]
fn fuzz_manifest() {
    check("manifest");
}

#[test]
fn fuzz_ipc() {
    check("ipc");
}

#[test]
fn fuzz_segments() {
    check("segments");
}

#[test]
fn fuzz_surface_json() {
    check("surface_json");
}

#[test]
fn fuzz_surface_parquet() {
    check("surface_parquet");
}

#[test]
fn fuzz_pca_json() {
    check("pca_json");
}

#[test]
fn fuzz_shard() {
    check("shard");
}

/// The harness itself can fail: a reader that panics on some input, one
/// that hangs, one that allocates without bound, and mutants that differ
/// from their seed.
#[test]
fn the_harness_catches_panics_hangs_and_allocations() {
    install_panic_hook();
    let tmp = tempfile::tempdir().unwrap();
    let target = |read: Reader| Target {
        name: "self-test",
        iters: 1,
        weight: |_| 1,
        read,
        values_checked: true,
    };
    let (out, ..) = read_guarded(
        &target(|_, _| panic!("boom on purpose")),
        tmp.path(),
        tmp.path(),
    );
    assert!(
        matches!(&out, Outcome::Panic(m) if m.contains("boom on purpose") && m.contains("fuzz.rs"))
    );
    let (_, largest, _) = read_guarded(
        &target(|_, _| {
            let v = vec![1u8; MAX_ALLOCATION + 1];
            Ok(Digest {
                count: v.len(),
                values: 0,
                meta: 0,
            })
        }),
        tmp.path(),
        tmp.path(),
    );
    assert!(largest > MAX_ALLOCATION);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let seed = br#"{"a": [1, 2.5, "x"], "b": {"c": null}}"#.to_vec();
    let mut changed = 0;
    for _ in 0..200 {
        let mut bytes = seed.clone();
        let _ = mutate_bytes(&mut rng, &mut bytes);
        changed += usize::from(bytes != seed);
        if let Some((json, what)) = mutate_json(&mut rng, &seed) {
            assert!(!what.is_empty());
            changed += usize::from(json != seed);
        }
    }
    assert!(
        changed > 350,
        "{changed} of 400 mutants differ from the seed"
    );
}

/// The hang guard, on a reader that sleeps past it: slow (10 s), hence
/// ignored; run it with `-- --ignored`.
#[test]
#[ignore]
fn the_harness_reports_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target {
        name: "self-test-hang",
        iters: 1,
        weight: |_| 1,
        read: |_, _| {
            std::thread::sleep(INPUT_TIMEOUT * 2);
            Err(Error::invalid("never", "reached"))
        },
        values_checked: false,
    };
    assert!(matches!(
        read_guarded(&t, tmp.path(), tmp.path()).0,
        Outcome::Hang
    ));
}

// ---------------------------------------------------------------------------
// The seed generator.

/// Regenerates `tests/fuzz/corpus` from tiny real runs, surfaces, shards,
/// curvature maps and a PCA (see the module docs).
#[test]
#[ignore]
fn generate_corpus() {
    seeds::generate(&corpus_dir()).unwrap();
}

mod seeds {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray};
    use arrow::array::{UInt32Array, UInt64Array};
    use arrow::ipc::writer::FileWriter;
    use tch::nn::{self, VarStore};
    use tch::{Device, Kind, Tensor};

    use super::{copy_dir, files_under, mixed_schema};
    use crate::analysis::directions::Directions;
    use crate::analysis::evaluator::ClassifierEvaluator;
    use crate::analysis::hessian::{Curvature, Lanczos, SupervisedObjective};
    use crate::analysis::params::ParamSet;
    use crate::analysis::pca::TrajectoryPca;
    use crate::analysis::shard::Shard;
    use crate::analysis::surface::Surface;
    use crate::error::Result;
    use crate::recorder::Recorder;
    use crate::store::run::Run;
    use crate::tensor::Selection;

    /// Copies the listed files (relative paths) of `from` into `to`.
    fn copy_files(from: &Path, to: &Path, files: &[&str]) {
        for f in files {
            let dest = to.join(f);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(from.join(f), &dest)
                .unwrap_or_else(|e| panic!("{}: {e}", from.join(f).display()));
        }
    }

    /// Copies a directory without its hidden files (locks, temporaries).
    fn copy_visible(from: &Path, to: &Path) {
        let mut all = Vec::new();
        files_under(from, "", &mut all);
        let visible: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|f| !f.split('/').any(|p| p.starts_with('.')))
            .collect();
        copy_files(from, to, &visible);
    }

    /// A run of a 4 → 3 linear layer: three snapshots, one per epoch end
    /// (the first at train start), or step snapshots with metrics per step.
    fn record(dir: &Path, kind: Kind, steps: bool) -> Result<(VarStore, nn::Linear)> {
        let mut vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "lin", 4, 3, Default::default());
        if kind == Kind::Double {
            vs.double();
        }
        let mut builder = Recorder::builder(dir)
            .fsync(false)
            .metadata("model", "fuzz-seed");
        if steps {
            builder = builder.every_n_steps(2);
        }
        let mut rec = builder.build(&vs)?;
        let mut step = 0;
        for epoch in 1..=2u64 {
            tch::no_grad(|| {
                for (_, mut t) in vs.variables() {
                    let _ = t.g_add_(&(Tensor::randn_like(&t) * 0.1));
                }
            });
            if steps {
                for _ in 0..2 {
                    step += 1;
                    rec.on_step_end(epoch, step, &[("batch_loss", 1.0 / step as f64)])?;
                }
            }
            rec.on_epoch_end(
                epoch,
                &[("loss", 1.0 / epoch as f64), ("acc", 30.0 * epoch as f64)],
            )?;
        }
        rec.finish()?;
        Ok((vs, lin))
    }

    /// A three-batch table of every column type, with nulls.
    fn mixed_table(path: &Path) {
        let schema = mixed_schema();
        let file = std::fs::File::create(path).unwrap();
        let mut w = FileWriter::try_new(file, &schema).unwrap();
        for b in 0..3u32 {
            let n = 2 + b as usize;
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from_iter_values(
                    (0..n as u32).map(|i| i + 10 * b),
                )),
                Arc::new(UInt64Array::from_iter(
                    (0..n as u64).map(|i| (i % 2 == 0).then_some(i << 40)),
                )),
                Arc::new(Float32Array::from_iter_values(
                    (0..n).map(|i| i as f32 * 0.5),
                )),
                Arc::new(Float64Array::from_iter(
                    (0..n).map(|i| (i != 1).then_some(-(i as f64) / 3.0)),
                )),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i != 0).then(|| "é".repeat(i))),
                )),
            ];
            w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
                .unwrap();
        }
        w.finish().unwrap();
    }

    pub(super) fn generate(corpus: &Path) -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        if corpus.exists() {
            std::fs::remove_dir_all(corpus).unwrap();
        }
        tch::manual_seed(13);

        // Runs: snapshots, manifests, metrics.
        let (vs, lin) = record(&t.join("f32"), Kind::Float, false)?;
        record(&t.join("f64"), Kind::Double, true)?;
        for run in ["f32", "f64"] {
            copy_visible(&t.join(run), &corpus.join("snapshot").join(run));
            copy_files(
                &t.join(run),
                &corpus.join("manifest").join(run),
                &["manifest.json"],
            );
        }
        copy_files(
            &t.join("f32"),
            &corpus.join("metrics/epochs"),
            &["metrics.arrow"],
        );
        copy_files(
            &t.join("f64"),
            &corpus.join("metrics/steps"),
            &["metrics.arrow"],
        );
        std::fs::create_dir_all(corpus.join("ipc/metrics")).unwrap();
        std::fs::copy(
            t.join("f32/metrics.arrow"),
            corpus.join("ipc/metrics/table.arrow"),
        )
        .unwrap();
        std::fs::create_dir_all(corpus.join("ipc/mixed")).unwrap();
        mixed_table(&corpus.join("ipc/mixed/table.arrow"));

        // PCA of the float32 run.
        let run = Run::open(t.join("f32"))?;
        let pca = TrajectoryPca::builder()
            .selection(Selection::All)
            .build()?
            .fit(&run)?;
        pca.save(&run, &t.join("pca"))?;
        copy_files(&t.join("pca"), &corpus.join("pca_json/f32"), &["pca.json"]);

        // Surfaces around the float32 run's last snapshot.
        let x = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(3, [16], (Kind::Int64, Device::Cpu));
        let dirs = Directions::random(&ParamSet::from_varstore(&vs)?)
            .seed(7)
            .build()?
            .with_description("fuzz seed".to_string());
        let eval = || -> Result<ClassifierEvaluator<'_>> {
            ClassifierEvaluator::new(&lin)
                .split("train", &x.narrow(0, 0, 8), &y.narrow(0, 0, 8))?
                .split("test", &x.narrow(0, 8, 8), &y.narrow(0, 8, 8))
        };
        let whole = [
            "surface.json",
            "surface.parquet",
            "directions.parquet",
            "sharpness.json",
        ];
        let grid = Surface::builder(&dirs).grid(-1.0..=1.0, 3, -0.5..=0.5, 3);
        grid.build()?
            .evaluate(&vs, &mut eval()?, t.join("grid2d"))?;
        let line = Surface::builder(&dirs).line(-1.0..=1.0, 5);
        line.build()?.evaluate(&vs, &mut eval()?, t.join("line"))?;
        for s in ["grid2d", "line"] {
            copy_files(&t.join(s), &corpus.join("surface_json").join(s), &whole);
            copy_files(&t.join(s), &corpus.join("surface_parquet").join(s), &whole);
        }
        let shard_files = ["surface.json", "surface.parquet", "directions.parquet"];
        for i in 0..2 {
            let dir = t.join(format!("shard-{i}"));
            Surface::builder(&dirs)
                .grid(-1.0..=1.0, 3, -0.5..=0.5, 3)
                .shard(Shard::new(i, 2)?)
                .build()?
                .evaluate(&vs, &mut eval()?, &dir)?;
            copy_files(
                &dir,
                &corpus.join(format!("shard/surface/shard-{i}")),
                &shard_files,
            );
        }
        copy_files(
            &t.join("shard-0"),
            &corpus.join("shard/bad-unfinished/shard-0"),
            &shard_files,
        );

        // Unfinished: cancelled after three points, flushed one at a time.
        for (name, shard) in [
            ("partial", None),
            ("partial-shard", Some(Shard::new(1, 2)?)),
        ] {
            let cancel = Arc::new(AtomicBool::new(false));
            let flag = cancel.clone();
            let mut b = Surface::builder(&dirs)
                .grid(-1.0..=1.0, 3, -0.5..=0.5, 3)
                .flush_every(1)
                .cancel_on(cancel)
                .on_progress(move |done, _| {
                    if done >= 3 {
                        flag.store(true, Ordering::SeqCst);
                    }
                });
            if let Some(s) = shard {
                b = b.shard(s);
            }
            let r = b.build()?.evaluate(&vs, &mut eval()?, t.join(name))?;
            assert!(!r.complete, "{name}: the cancelled surface completed");
        }
        copy_visible(&t.join("partial"), &corpus.join("segments/partial"));
        let partial = corpus.join("shard/bad-unfinished/shard-1");
        copy_visible(&t.join("partial-shard"), &partial);

        // Curvature-map shards on a line.
        for i in 0..2 {
            let dir = t.join(format!("curvature-{i}"));
            let surface = Surface::builder(&dirs)
                .line(-1.0..=1.0, 4)
                .shard(Shard::new(i, 2)?)
                .build()?;
            Curvature::builder(surface)
                .selection(Selection::Weights)
                .lanczos(Lanczos::builder().tol(1e-2).build()?)
                .build()?
                .evaluate(&vs, SupervisedObjective::new(&lin, &x, &y)?, &dir)?;
            let files = [
                "surface.json",
                "surface.parquet",
                "directions.parquet",
                "curvature.parquet",
            ];
            copy_files(
                &dir,
                &corpus.join(format!("shard/curvature/shard-{i}")),
                &files,
            );
        }

        // One points segment as an IPC seed.
        let mut segs = Vec::new();
        files_under(&corpus.join("segments/partial/points"), "", &mut segs);
        let first = segs.first().expect("segments of the partial surface");
        std::fs::create_dir_all(corpus.join("ipc/points")).unwrap();
        std::fs::copy(
            corpus.join("segments/partial/points").join(first),
            corpus.join("ipc/points/table.arrow"),
        )
        .unwrap();

        let mut all = Vec::new();
        files_under(corpus, "", &mut all);
        let bytes: u64 = all
            .iter()
            .map(|f| std::fs::metadata(corpus.join(f)).unwrap().len())
            .sum();
        eprintln!(
            "{} seed files, {bytes} bytes in {}",
            all.len(),
            corpus.display()
        );
        assert!(
            bytes < 1 << 20,
            "the corpus is {bytes} bytes, more than 1 MiB"
        );
        // Round trip: a copy of the corpus is the corpus.
        copy_dir(corpus, &t.join("copy"));
        Ok(())
    }
}
