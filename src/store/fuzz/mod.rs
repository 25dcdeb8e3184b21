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
//! one input of a few kilobytes). The summary line of every target
//! (`-- --nocapture` shows it) counts the inputs read `Ok`, refused with an
//! error, panicking, hanging, over-allocating, and read `Ok` with other
//! values than the seed's (`ok-changed-values`, with examples: for JSON
//! files, what the readers do not validate; `ok-changed-other`: same
//! values, other metadata, or a file removed or added). For the binary
//! formats that will carry checksums (snapshots, metrics, IPC tables,
//! segments) a changed value read `Ok` from a file damaged in place is a
//! `silent-corruption`; [`ASSERT_NO_SILENT_CORRUPTION`] turns those into
//! failures once the checksums are in. Failing inputs are saved under
//! `$TMPDIR/landscape-fuzz/<target>/<iteration>/`.
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
//! Layout: `targets.rs` (the readers and their budgets), `mutate.rs` (the
//! mutations), `seeds.rs` (the seed generator), this file (the loop, the
//! guards, the tests). This test module reaches up to `analysis` (the
//! surface spec, its grid validation and the shard merge read stored files
//! too); nothing outside tests does.

mod mutate;
mod seeds;
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, Once};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Error;
use mutate::{draw, mutate_bytes, mutate_json, Change};
use targets::{hash_of, targets, Digest, Reader, Target};

/// Fail on silent corruption: a snapshot, metrics, IPC table or segment file
/// damaged in place read back `Ok` with other values than the seed's. Off
/// until these files carry checksums (issue 13): the lead turns it on after
/// merging them; the summaries count such inputs meanwhile.
const ASSERT_NO_SILENT_CORRUPTION: bool = true;

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
    changed_values: usize,
    /// Ok, same values, other metadata or another number of items.
    changed_other: usize,
    /// Ok with other values, from a binary file damaged in place: a silent
    /// corruption (where the target's values are checked).
    silent: usize,
    panics: Vec<String>,
    hangs: Vec<String>,
    over_allocation: Vec<String>,
    largest: usize,
    total: usize,
    /// The first errors of each kind, as examples.
    examples: BTreeSet<String>,
    /// The first inputs read Ok with changed values.
    changed_examples: Vec<String>,
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
        // Values changed by bytes damaged in place, in a binary file (a JSON
        // edit may change values legitimately).
        let in_place = matches!(&change, Change::Write(rel, _) if !rel.ends_with(".json"));
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
                    if d.values != base.values {
                        report.changed_values += 1;
                        // A file removed or added (a missing snapshot) or a
                        // JSON edit changes what is read without damaging
                        // a stored value: not a silent corruption.
                        let silent = in_place && t.values_checked;
                        report.silent += usize::from(silent);
                        if report.changed_examples.len() < 5 || silent {
                            let saved = if silent {
                                format!(
                                    " (saved in {})",
                                    save_failure(t.name, iter, seed, &what).display()
                                )
                            } else {
                                String::new()
                            };
                            report.changed_examples.push(format!("{label}{saved}"));
                        }
                    } else if d != *base {
                        report.changed_other += 1;
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
         silent-corruption {} (largest allocation {} KiB, most in all {} KiB, {:.1} s)",
        t.name,
        r.inputs,
        r.ok,
        r.err,
        r.panics.len(),
        r.hangs.len(),
        r.over_allocation.len(),
        r.changed_values,
        r.changed_other,
        if t.values_checked {
            r.silent.to_string()
        } else {
            "-".into()
        },
        r.largest >> 10,
        r.total >> 10,
        t0.elapsed().as_secs_f64()
    );
    for e in &r.examples {
        eprintln!("  error, e.g.: {}", e.escape_debug());
    }
    for s in &r.changed_examples {
        eprintln!("  read Ok, values changed: {}", s.escape_debug());
    }
    let mut failures: Vec<&String> = r.panics.iter().chain(&r.hangs).collect();
    failures.extend(&r.over_allocation);
    let silent_fails = ASSERT_NO_SILENT_CORRUPTION && r.silent > 0;
    assert!(
        failures.is_empty() && !silent_fails,
        "fuzz {}: {} panicking, {} hanging, {} over-allocating inputs, {} silent corruptions:\n{}",
        t.name,
        r.panics.len(),
        r.hangs.len(),
        r.over_allocation.len(),
        r.silent,
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
        matches!(&out, Outcome::Panic(m) if m.contains("boom on purpose") && m.contains("store/fuzz"))
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

/// Regenerates `tests/fuzz/corpus` from tiny real runs, surfaces, shards,
/// curvature maps and a PCA (see the module docs).
#[test]
#[ignore]
fn generate_corpus() {
    seeds::generate(&corpus_dir()).unwrap();
}
