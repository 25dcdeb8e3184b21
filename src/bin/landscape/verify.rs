//! `landscape verify`: checks everything a run directory holds.

use std::path::{Path, PathBuf};

use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::hessian::{CurvatureMap, CURVATURE_FILE};
use tch_landscape::analysis::pca::{
    PcaSummary, DIRECTIONS_FILTER_FILE, DIRECTIONS_RAW_FILE, SUMMARY_FILE,
};
use tch_landscape::analysis::surface::{SurfaceResult, DIRECTIONS_FILE, RESULT_FILE};
use tch_landscape::store::run::{Verification, CURVATURE_DIR, PCA_DIR, SURFACES_DIR};
use tch_landscape::{Error, Run};

use crate::term::{escape, escaped};

/// Check a run directory: the manifest, every snapshot (structure,
/// checksums, values that are not finite, agreement with the manifest, no
/// missing snapshot), the metrics table, and the surfaces, curvature maps and
/// PCA stored in it (RUN/surfaces/*, RUN/curvature/*, RUN/pca).
///
/// Reads every recorded value once. Prints one line per problem and a
/// summary; the exit status is 1 when anything is wrong. Files written before
/// tch-landscape stored checksums are reported as notes, not problems.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  landscape verify runs/demo/mlp-digits")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = &args.run;
    let mut v = Run::verify_dir(dir);
    let mut results = 0;
    for sub in subdirs(&dir.join(SURFACES_DIR))?
        .into_iter()
        .chain(subdirs(&dir.join(CURVATURE_DIR))?)
    {
        results += 1;
        v.merge(tch_landscape::store::surface::verify_dir(&sub));
        check_result(&sub, &mut v);
    }
    let pca = dir.join(PCA_DIR);
    if pca.is_dir() {
        results += 1;
        load(&pca.join(SUMMARY_FILE), &mut v, |p| {
            PcaSummary::load(p).map(drop)
        });
        for name in [DIRECTIONS_RAW_FILE, DIRECTIONS_FILTER_FILE] {
            load(&pca.join(name), &mut v, |p| Directions::load(p).map(drop));
        }
    }
    // A file read by the store's check and again by its loader reports the
    // same problem twice.
    let mut seen = std::collections::HashSet::new();
    v.problems.retain(|e| seen.insert(e.to_string()));
    report(dir, &v, results)?;
    if v.is_clean() {
        Ok(())
    } else {
        let n = v.problems.len() + v.non_finite.len();
        anyhow::bail!(
            "{} failed verification: {n} problem{}",
            escaped(dir.display()),
            if n == 1 { "" } else { "s" }
        )
    }
}

/// Loads a finished surface or curvature map, and its directions.
fn check_result(dir: &Path, v: &mut Verification) {
    if dir.join(CURVATURE_FILE).exists() {
        load(&dir.join(CURVATURE_FILE), v, |_| {
            CurvatureMap::load(dir).map(drop)
        });
    } else if dir.join(RESULT_FILE).exists() {
        // surface.parquet itself was counted by `verify_dir`.
        if let Err(e) = SurfaceResult::load(dir) {
            v.problems.push(e);
        }
    }
    load(&dir.join(DIRECTIONS_FILE), v, |p| {
        Directions::load(p).map(drop)
    });
}

/// Reads `path`, when there is one, with `read`: one more file checked, or
/// one more problem.
fn load(path: &Path, v: &mut Verification, read: impl FnOnce(&Path) -> tch_landscape::Result<()>) {
    if std::fs::symlink_metadata(path).is_err() {
        return;
    }
    v.files += 1;
    if let Err(e) = read(path) {
        v.problems.push(e);
    }
}

/// The sub-directories of `dir`, sorted; none when it does not exist.
fn subdirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", dir, e).into()),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// One line per problem, per tensor with non-finite values and per file
/// without checksums, then the summary.
fn report(dir: &Path, v: &Verification, results: usize) -> std::io::Result<()> {
    for e in &v.problems {
        outln!("problem: {}", escaped(e))?;
    }
    for nf in &v.non_finite {
        outln!("non-finite: {}", escaped(nf))?;
    }
    for p in &v.without_checksums {
        outln!(
            "note: {}: no checksums (written before tch-landscape stored them): its structure was checked, its values could not be",
            escaped(p.display())
        )?;
    }
    let verdict = if v.is_clean() { "OK" } else { "FAILED" };
    outln!(
        "{verdict}: {}: {} files checked ({results} result directories), {} problems, {} tensors with non-finite values, {} files without checksums",
        escape(&dir.display().to_string()),
        v.files,
        v.problems.len(),
        v.non_finite.len(),
        v.without_checksums.len()
    )
}
