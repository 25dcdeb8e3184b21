//! `landscape info`: what a run directory holds.

use std::io::Write;
use std::path::PathBuf;

use tch_landscape::{Manifest, Run};

use crate::term::{escape, escaped};

/// Print a run's manifest summary, snapshots and metric names.
///
/// Reads every recorded value once (seconds for a run of a few GB) to print
/// a warning line per tensor holding non-finite values (NaN, ±∞) and per
/// damaged tensor; `landscape verify` checks everything, results included.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  landscape info runs/demo/mlp-digits")]
pub struct Args {
    /// The run directory.
    run: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let run = Run::open(&args.run)?;
    let mut out = std::io::stdout().lock();
    let m = run.manifest();
    writeln!(
        out,
        "run {} ({})",
        escape(&m.run_id),
        escaped(args.run.display())
    )?;
    write_tensors(&mut out, m)?;
    write_snapshots(&mut out, &run)?;
    let mut names: Vec<String> = run.metrics()?.into_iter().map(|r| r.name).collect();
    names.sort();
    names.dedup();
    let names = if names.is_empty() {
        "none".to_string()
    } else {
        escape(&names.join(", ")).into_owned()
    };
    writeln!(out, "metrics: {names}")?;
    write_user(&mut out, m)?;
    let check = run.verify();
    for e in &check.problems {
        writeln!(out, "warning: {}", escaped(e))?;
    }
    for nf in &check.non_finite {
        writeln!(out, "warning: {}", escaped(nf))?;
    }
    if !check.without_checksums.is_empty() {
        writeln!(
            out,
            "note: {} files have no checksums (written before tch-landscape stored them): their values could not be checked",
            check.without_checksums.len()
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The manifest's provenance and its tensors (recorded and skipped).
fn write_tensors(out: &mut impl Write, m: &Manifest) -> std::io::Result<()> {
    let state = if m.finished {
        "finished"
    } else {
        "not finished (recorder did not call finish)"
    };
    writeln!(
        out,
        "created {} by tch-landscape {}, schema v{}, {state}",
        escape(&m.created_utc),
        escape(&m.crate_version),
        m.schema_version
    )?;
    writeln!(
        out,
        "{} tensors, {} values per snapshot, stored as {}{}",
        m.tensors.len(),
        m.total_numel(),
        m.storage_dtype,
        if m.storage_dtype.is_lossy() {
            " (rounded: opt-in 16-bit storage)"
        } else {
            " (exact)"
        }
    )?;
    for t in &m.tensors {
        let shape = format!("{:?}", t.shape);
        writeln!(
            out,
            "  {:<40} {shape:>14} {:?} {}",
            escape(&t.name),
            t.role,
            escape(&t.dtype)
        )?;
    }
    for s in &m.skipped {
        writeln!(
            out,
            "  {:<40} skipped ({}): {}",
            escape(&s.name),
            escape(&s.dtype),
            escape(&s.reason)
        )?;
    }
    Ok(())
}

/// The user's key/value metadata.
fn write_user(out: &mut impl Write, m: &Manifest) -> std::io::Result<()> {
    if m.user.is_empty() {
        return writeln!(out, "user metadata: none");
    }
    writeln!(out, "user metadata:")?;
    for (k, v) in &m.user {
        writeln!(out, "  {} = {}", escape(k), escape(v))?;
    }
    Ok(())
}

/// One line per snapshot: index, epoch, step, trigger.
fn write_snapshots(out: &mut impl Write, run: &Run) -> std::io::Result<()> {
    writeln!(out, "{} snapshots", run.len())?;
    for s in run.snapshots() {
        let meta = s.meta();
        let step = meta.step.map_or_else(|| "-".into(), |s| s.to_string());
        writeln!(
            out,
            "  #{:<5} epoch {:<5} step {:<8} {:?}",
            meta.index, meta.epoch, step, meta.trigger
        )?;
    }
    Ok(())
}
