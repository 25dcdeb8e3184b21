//! `landscape watch`: keeps the report of a run that is still being
//! recorded up to date.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tch_landscape::analysis::pca::{LiveGram, LiveUpdate, TrajectoryPca};
use tch_landscape::report::{write_report, ReportOptions};
use tch_landscape::Run;

/// Watches a run directory while the recorder writes it: whenever a new
/// snapshot is in place (only complete, renamed files are read; the
/// recorder is never waited for or locked out), refits the trajectory PCA
/// (from 3 snapshots on; RUN/pca, without directions) and rewrites the
/// report (RUN/report: training curves, weight norms, the path so far).
/// Stops once the recorder has finished the run and the last update is
/// written.
///
/// The PCA is refitted from Gram rows kept in memory: each new snapshot
/// costs one row (its products with every snapshot, one read of the run),
/// not the whole n×n Gram matrix. The first look, and a run that changed
/// under the watcher (re-recorded, fewer snapshots), computes every row.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    landscape watch runs/long-run            (open runs/long-run/report/index.html, reload now and then)")]
pub struct Args {
    /// The run directory (being recorded).
    run: PathBuf,
    /// Seconds between looks at the directory.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Give up after this many seconds without a new snapshot (default:
    /// wait until the run is finished).
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Scheduling priority of the watcher (nice value, 0 to 19): by default
    /// the lowest, so that on a busy machine the training gets the cores
    /// first and the report waits.
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(0..=19))]
    nice: i32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        anyhow::bail!(
            "--interval {}: expected a positive number of seconds",
            args.interval
        );
    }
    let interval = Duration::from_secs_f64(args.interval);
    lower_priority(args.nice);
    let mut seen: Option<(usize, bool)> = None;
    let mut live = TrajectoryPca::builder().build()?.live();
    let mut last_change = Instant::now();
    loop {
        // A run being written can be caught between two files (e.g. the
        // metrics journal mid-append): such a look is retried, not fatal.
        match look(&args, &mut seen, &mut live) {
            Ok(Some(true)) => return Ok(()),
            Ok(Some(false)) => last_change = Instant::now(),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "watch: will look again"),
        }
        if let Some(limit) = args.idle_timeout {
            if last_change.elapsed().as_secs_f64() > limit {
                anyhow::bail!(
                    "{}: no new snapshot for {limit} s (--idle-timeout) and the run is not finished",
                    args.run.display()
                );
            }
        }
        std::thread::sleep(interval);
    }
}

/// One look: `Some(done)` after an update (done: the run is finished),
/// `None` when nothing changed. `live` keeps the PCA's Gram rows between
/// looks.
fn look(
    args: &Args,
    seen: &mut Option<(usize, bool)>,
    live: &mut LiveGram,
) -> anyhow::Result<Option<bool>> {
    let run = Run::open(&args.run)?;
    let now = (run.len(), run.manifest().finished);
    if *seen == Some(now) {
        return Ok(None);
    }
    let t0 = Instant::now();
    let pca_note = match live.refresh(&run) {
        Ok(update) => {
            let rows = rows_note(&update);
            if run.len() < 3 {
                format!(", {rows}")
            } else {
                match live.fit(&run) {
                    Ok(pca) => {
                        pca.save_joint_with(&[&run], &args.run.join("pca"), false)?;
                        format!(", PC1+PC2 {:.1} %, {rows}", 100.0 * pca.plane_ratio())
                    }
                    // E.g. no variation yet: the report says the PCA is missing.
                    Err(e) => format!(", {rows}, no PCA yet ({e})"),
                }
            }
        }
        // The rows could not be kept (e.g. over their memory bound): the
        // PCA from scratch, as without them.
        Err(e) if run.len() >= 3 => {
            live.clear();
            tracing::warn!(error = %e, "watch: no live Gram rows, refitting from scratch");
            match TrajectoryPca::builder().build()?.fit(&run) {
                Ok(pca) => {
                    pca.save_joint_with(&[&run], &args.run.join("pca"), false)?;
                    format!(
                        ", PC1+PC2 {:.1} %, refitted from scratch ({e})",
                        100.0 * pca.plane_ratio()
                    )
                }
                Err(e) => format!(", no PCA yet ({e})"),
            }
        }
        Err(e) => {
            live.clear();
            format!(", no PCA yet ({e})")
        }
    };
    let pca_s = t0.elapsed().as_secs_f64();
    write_report(&args.run, &ReportOptions::default())?;
    *seen = Some(now);
    outln!(
        "updated: {} snapshots{pca_note}{} ({:.2} s, PCA {pca_s:.2} s)",
        now.0,
        if now.1 { ", run finished" } else { "" },
        t0.elapsed().as_secs_f64()
    )?;
    Ok(Some(now.1))
}

/// "3 new Gram rows", and why all were rebuilt if they were.
fn rows_note(u: &LiveUpdate) -> String {
    let rows = format!(
        "{} new Gram row{}",
        u.new_rows,
        if u.new_rows == 1 { "" } else { "s" }
    );
    match &u.rebuilt {
        Some(why) => format!("{rows} (rebuilt: {why})"),
        None => rows,
    }
}

/// Lowers this process's scheduling priority to `nice` (a failure only
/// logged: the watcher works at any priority).
#[cfg(unix)]
fn lower_priority(nice: i32) {
    // SAFETY: plain system call on this process (who = 0).
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::warn!(nice, "watch: could not lower the priority");
    }
}

/// Lowers this process's scheduling priority (not on this platform).
#[cfg(not(unix))]
fn lower_priority(_nice: i32) {}
